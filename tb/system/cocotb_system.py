"""System tests of ``nvmf_engine``: capsules in, NVMe commands to modelled SSDs, data
through staging, responses out; launched by ``tb/system/test_system.py``.
"""

import os
import random

import cocotb
from cocotbext.axi import AxiStreamFrame

from rtl.formats import Opcode
from sim.cosim.system import CounterModel, SystemTB, Target
from sim.cosim.system import collect as _collect
from sim.traffic.capsules import icd_sgl, keyed_sgl, make_sqe


@cocotb.test()
async def run_write_then_read_back(dut):
    """Writes (keyed and in-capsule) then reads: three in four read back one write's
    blocks (in a random order), the rest random blocks, written or not; every byte read
    equals the byte written, every response succeeds with its CID."""
    tb = SystemTB(dut)
    await tb.reset()
    target = Target()
    await target.build(tb)
    rng = random.Random(int(os.environ.get("NVMF_SEED", "5")))
    count = int(os.environ.get("NVMF_COUNT", "24"))
    shadow = [{}, {}]                 # per subsystem: lba -> block bytes
    counters = CounterModel()
    cid = 0
    expected = {}
    starts = [rng.sample(range(0, 2048, 8), count), rng.sample(range(2048), count)]
    written = []                      # (subsystem, slba, nlb) of each write
    reread = 0                        # written blocks that reads compare
    for phase in ("write", "read"):
        sent = 0
        again = rng.sample(written, len(written))
        for n in range(count):
            s = rng.randrange(2)
            lba_size = (512, 4096)[s]
            nlb = rng.randrange(1 if lba_size == 4096 else 8)
            # writes never overlap each other; most reads read one write's blocks back
            # (so that most writes have every byte they moved compared; each write is
            # read back at most once), the others random blocks
            if phase == "write":
                slba = starts[s][n]
                written.append((s, slba, nlb))
            elif again and rng.random() < 0.75:
                s, slba, nlb = again.pop()
                lba_size = (512, 4096)[s]
            else:
                slba = rng.randrange(2048)
            length = (nlb + 1) * lba_size
            buf = 0x1000_0000 * (s + 1) + n * 8192          # a buffer of its own
            mem = target.memory[s]
            off = buf - 0x1000_0000 * (s + 1)
            cid += 1
            if phase == "write":
                payload = bytes(rng.getrandbits(8) for _ in range(length))
                icd = length <= 2048 and rng.random() < 0.5
                counters.served(s, Opcode.WRITE, nlb + 1, icd=icd)
                if icd:
                    capsule = make_sqe(Opcode.WRITE, cid, 1, slba=slba, nlb=nlb,
                                       sgl=icd_sgl(0, length)) + payload
                else:
                    mem[off:off + length] = payload
                    capsule = make_sqe(Opcode.WRITE, cid, 1, slba=slba, nlb=nlb,
                                       sgl=keyed_sgl(buf, length, 0x100 * (s + 1)))
                for i in range(nlb + 1):
                    shadow[s][slba + i] = payload[i * lba_size:(i + 1) * lba_size]
            else:
                mem[off:off + length] = bytes(length)
                counters.served(s, Opcode.READ, nlb + 1)
                capsule = make_sqe(Opcode.READ, cid, 1, slba=slba, nlb=nlb,
                                   sgl=keyed_sgl(buf, length, 0x100 * (s + 1)))
                zero = bytes(lba_size)
                expected[cid] = (s, off, b"".join(shadow[s].get(slba + i, zero)
                                                  for i in range(nlb + 1)))
                reread += sum(slba + i in shadow[s] for i in range(nlb + 1))
            await tb.source.send(AxiStreamFrame(capsule, tuser=s + 1))
            sent += 1
        responses = await _collect(tb, sent, 20000 + 2000 * sent)
        for r in responses:
            assert r["status"] == {"p": 0, "sc": 0, "sct": 0, "crd": 0, "m": 0, "dnr": 0}, r
        if phase == "read":
            for r in responses:
                s, off, want = expected[r["cid"]]
                got = bytes(target.memory[s][off:off + len(want)])
                assert got == want, f"cid {r['cid']}: read data differs from what was written"
    assert reread > 0, "no read compared a written block"
    assert tb.exc.empty() and tb.qp_err.empty()
    await counters.check(tb, target)
    tb.log.info("%d commands, %d SSD commands, %d RDMA READs, %d RDMA WRITEs, %d written "
                "blocks read back", 2 * count, sum(s.executed for s in target.ssds),
                tb.rdma.reads, tb.rdma.writes, reread)


async def _use(tb, name):
    """A ``USE_*`` register of the RTL alone, as a dict of its fields (the CSR model holds
    no I/O, so these reads do not go through :class:`TeeRegs`)."""
    reg = tb.model.regmap[name]
    resp = await tb.axil.read(reg.offset, 4)
    assert int(resp.resp) == 0, f"SLVERR reading {name}"
    value = int.from_bytes(resp.data, "little")
    return {f.name: (value >> f.lsb) & ((1 << f.width) - 1) for f in reg.fields}


async def _await_live(tb, count, budget=4000):
    """Poll ``USE_CONTEXTS`` until ``count`` contexts hold a command."""
    start = tb.cycle
    while True:
        use = await _use(tb, "USE_CONTEXTS")
        if use["live"] == count:
            return
        assert tb.cycle - start < budget, (
            f"USE_CONTEXTS.live is {use['live']}, not {count}, after {budget} cycles")


@cocotb.test()
async def run_dataless_commands_take_no_staging_slot(dut):
    """Flush and Write Zeroes held in a slow SSD occupy contexts but no staging slot; a
    keyed Write beside them takes exactly one; every slot and context is free after."""
    tb = SystemTB(dut)
    await tb.reset()
    target = Target()
    await target.build(tb, latency=3000)
    counters = CounterModel()
    cid = 0
    for n in range(12):
        s = n % 2
        cid += 1
        if n % 3 == 2:
            capsule = make_sqe(Opcode.WRITE_ZEROES, cid, 1, slba=8 * n, nlb=7)
            counters.served(s, Opcode.WRITE_ZEROES)
        else:
            capsule = make_sqe(Opcode.FLUSH, cid, 1)
            counters.served(s, Opcode.FLUSH)
        await tb.source.send(AxiStreamFrame(capsule, tuser=s + 1))
    await _await_live(tb, 12)
    assert (await _use(tb, "USE_STAGING"))["pages"] == 0, "a data-less command took a page"
    # A Write moves data: it must show up in the same register, or the check above is void.
    target.memory[0][0:4096] = bytes(range(256)) * 16
    cid += 1
    counters.served(0, Opcode.WRITE, 8)
    await tb.source.send(AxiStreamFrame(
        make_sqe(Opcode.WRITE, cid, 1, slba=4096, nlb=7,
                 sgl=keyed_sgl(0x1000_0000, 4096, 0x100)), tuser=1))
    await _await_live(tb, 13)
    assert (await _use(tb, "USE_STAGING"))["pages"] == 1, "the Write holds no staging page"
    responses = await _collect(tb, cid, 40000)
    assert sorted(r["cid"] for r in responses) == list(range(1, cid + 1))
    for r in responses:
        assert r["status"]["sc"] == 0 and r["status"]["sct"] == 0, r
    # (a context goes back to the free list a few cycles after its response: its pages
    # are given back first, one a cycle)
    await _await_live(tb, 0, budget=200)
    assert (await _use(tb, "USE_CONTEXTS"))["zombies"] == 0
    assert (await _use(tb, "USE_STAGING"))["pages"] == 0
    assert tb.exc.empty() and tb.qp_err.empty()
    await counters.check(tb, target)
