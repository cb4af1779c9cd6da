"""cocotb tests of ``nvmf_engine_front``; launched by ``tb/engine/test_engine.py``."""

import os
import random

import cocotb
from cocotb.triggers import ClockCycles

from rtl.formats import QP_OPS_ALL, OpBit, Opcode, Table
from sim.cosim.parser_env import random_pause
from sim.cosim.regs import TeeRegs
from sim.driver import NvmeCtrlAttrs, NvmfDevice, SrqAttrs
from sim.traffic.capsules import CapsuleGen, icd_sgl, keyed_sgl, make_sqe
from tb.engine.engine_tb import TB, EngineScoreboard


class Setup:
    """Two subsystems, three namespaces, QPs of every kind; remembers what it made."""

    async def build(self, tb):
        self.regs = TeeRegs(tb)
        dev = self.dev = NvmfDevice(self.regs, tb.params)
        await dev.open()
        caps = dev.caps
        ioccsz = caps.max_ioccsz
        self.srqs = []
        for i in range(2):
            self.srqs.append(await dev.create_srq(SrqAttrs(
                ops=QP_OPS_ALL, max_namespaces=caps.max_srq_namespaces, ioccsz=ioccsz,
                icdoff=0, max_io_size=32768, queue_depth=64,
                staging_addr=0x4000_0000 * (i + 1), staging_len=caps.min_staging_buf_size)))
        ctrls = []
        for i, srq in enumerate(self.srqs):
            ctrls.append(await dev.create_nvme_ctrl(srq, NvmeCtrlAttrs(
                sq_addr=0x10_0000_0000 + i * 0x10000, sq_entries=64,
                cq_addr=0x10_0000_8000 + i * 0x10000, cq_entries=64,
                sq_db_addr=0xF000_1000 + 8 * i, cq_db_addr=0xF000_1004 + 8 * i,
                msix_data=i)))
        # (subsystem index, fe_nsid) -> (lba_data_size, nsze)
        self.namespaces = {(0, 1): (512, 4096), (0, 2): (4096, 1024), (1, 1): (512, 2048)}
        await dev.map_nvmf_nsid([ctrls[0]], 1, 512, 1, 4096)
        await dev.map_nvmf_nsid([ctrls[0]], 2, 4096, 2, 1024,
                                ops=QP_OPS_ALL & ~(1 << OpBit.WRITE_ZEROES))
        await dev.map_nvmf_nsid([ctrls[1]], 1, 512, 5, 2048)
        # QPs: (qpn, subsystem index, offload, offload_only)
        self.qps = [(1, 0, True, False), (2, 0, True, True), (3, 1, True, False),
                    (4, 1, False, False), (5, 1, True, True)]
        for qpn, sub, offload, only in self.qps:
            await dev.qp_set_nvmf(qpn, self.srqs[sub] if offload else None, offload=offload,
                                  offload_only=only, sqsize=16, sqid=qpn)


async def _configured(tb):
    """Reset, build the target through the driver, and a scoreboard that knows its QPs."""
    await tb.cycle_reset()
    setup = Setup()
    await setup.build(tb)
    sb = EngineScoreboard(tb)
    for qpn, *_ in setup.qps:
        sb.front.qp_configured(qpn)
    return setup, sb


def namespace_capsule(rng, setup, qp, cid):
    """A capsule aimed at the namespace checks: mostly valid, sometimes just off."""
    _, sub, _, _ = qp
    roll = rng.random()
    fe = rng.choice([1, 2, 3]) if roll < 0.9 else rng.choice([0, 9])
    lba, nsze = setup.namespaces.get((sub, fe), (512, 1000))
    op = rng.choice([Opcode.READ, Opcode.READ, Opcode.WRITE, Opcode.WRITE, Opcode.FLUSH,
                     Opcode.WRITE_ZEROES, Opcode.DSM])
    nlb = rng.choice([0, 1, 7, 15, 63, 127]) if rng.random() < 0.95 else 0xFFFF
    slba = rng.randrange(nsze)
    if rng.random() < 0.1:
        slba = nsze - rng.randrange(1, 4) if rng.random() < 0.5 else (1 << 64) - 1
    length = (nlb + 1) * lba
    if rng.random() < 0.08:
        length += rng.choice([-512, 512, 1])
    length = max(0, min(length, (1 << 24) - 1))
    if op in (Opcode.FLUSH, Opcode.WRITE_ZEROES):
        return make_sqe(op, cid, fe, slba=slba, nlb=nlb)
    if op == Opcode.DSM:
        nr = rng.randrange(4)
        ranges = bytes(16 * (nr + 1))
        if rng.random() < 0.5:
            return make_sqe(op, cid, fe, nr=nr, sgl=icd_sgl(0, len(ranges))) + ranges
        return make_sqe(op, cid, fe, nr=nr, sgl=keyed_sgl(0x2000, len(ranges), 7))
    if op == Opcode.WRITE and length <= 1024 and rng.random() < 0.5:
        data = bytes(rng.getrandbits(8) for _ in range(length))
        return make_sqe(op, cid, fe, slba=slba, nlb=nlb, sgl=icd_sgl(0, length)) + data
    return make_sqe(op, cid, fe, slba=slba, nlb=nlb,
                    sgl=keyed_sgl(0x1000 * cid, length, 0x55, invalidate=rng.random() < 0.2))


@cocotb.test()
async def run_mixed_traffic(dut):
    """Namespace-aware and malformed capsules on five QPs; every output checked."""
    tb = TB(dut)
    seed = int(os.environ.get("NVMF_SEED", "11"))
    rng = random.Random(seed)
    busy = float(os.environ.get("NVMF_BACKPRESSURE", "0"))
    if busy:
        tb.set_idle_generator(random_pause(random.Random(seed + 1), busy))
        tb.set_backpressure_generator(lambda: random_pause(random.Random(rng.random()), busy))
    setup, sb = await _configured(tb)
    gen = CapsuleGen(rng, tb.params.max_capsule_bytes)
    count = int(os.environ.get("NVMF_COUNT", "150"))
    for i in range(count):
        qp = rng.choice(setup.qps)
        if rng.random() < 0.75:
            capsule = namespace_capsule(rng, setup, qp, i & 0xFFFF)
            label = "ns"
        else:
            label, capsule = gen.capsule(tb.model.qp_entry(qp[0])["attrs"])
        await sb.send(capsule, qp[0], label)
    counts = await sb.check_all()
    tb.log.info("outcomes %s; streams %s", sb.kinds, counts)
    for kind in ("response", "to_software", "serve"):
        assert sb.kinds.get(kind, 0) > 0, f"no {kind} outcome in {sb.kinds}"
    # events and counters: read through the driver, RTL and model compared by TeeRegs
    await setup.dev.read_events()
    for srq in setup.srqs:
        await setup.dev.srq_counters(srq)
        for ns in srq.namespaces.values():
            await setup.dev.ns_counters(ns)


@cocotb.test()
async def run_qp_error_discards_until_reconfigured(dut):
    """Unsupported opcode on an offload-only QP: one QP error, discards, reset by qp_set."""
    tb = TB(dut)
    setup, sb = await _configured(tb)
    read = make_sqe(Opcode.READ, 1, 1, nlb=0, sgl=keyed_sgl(0x1000, 512, 3))
    await sb.send(read, 2, "read")
    await sb.send(make_sqe(0x05, 2, 1), 2, "unknown opcode")
    for cid in range(3, 6):
        await sb.send(make_sqe(Opcode.READ, cid, 1, nlb=0, sgl=keyed_sgl(0x1000, 512, 3)), 2,
                      "after error")
    await sb.send(read, 1, "other QP unaffected")
    await sb.check_all()
    assert sb.kinds == {"serve": 2, "qp_error": 4}, sb.kinds
    await setup.dev.qp_set_nvmf(2, setup.srqs[0], offload=True, offload_only=True,
                                sqsize=16, sqid=2)
    sb.front.qp_configured(2)
    await ClockCycles(dut.clk, 5)
    await sb.send(read, 2, "after re-enable")
    await sb.check_all()
    batch = await setup.dev.read_events()
    assert len(batch.events) == 1


@cocotb.test()
async def run_sqhd_wraps_at_sqsize(dut):
    """SQHD in responses counts capsules modulo sqsize, whatever their outcome."""
    tb = TB(dut)
    setup, sb = await _configured(tb)
    bad = make_sqe(Opcode.READ, 9, 1, psdt=0)          # answered by the engine
    for i in range(40):
        await sb.send(bad if i % 3 else make_sqe(Opcode.FLUSH, i, 1), 1, "sqhd")
    await sb.check_all()


@cocotb.test()
async def run_namespace_being_unmapped_is_not_ready(dut):
    """Between the first step of an unmap (the namespace entry's ``ready`` cleared) and
    the last, capsules for it are answered 0x82 Namespace Not Ready and counted as the
    namespace's errors, on a plain and on an offload-only QP; after the unmap a plain QP
    hands them to software."""
    tb = TB(dut)
    setup, sb = await _configured(tb)
    dev, srq = setup.dev, setup.srqs[0]
    ns = srq.namespaces[1]
    # the driver's first unmap step alone (unmap_nvmf_nsid does three in a row)
    await dev._write_entry(Table.NAMESPACE, ns.slot, dev._ns_fields(
        srq, 1, ns.nvme_nsid, ns.nsze, ns.ops, ns.lba_data_size, ns.ctrls, ready=0))
    before = sb.kinds.get("response", 0)
    for cid, qpn in ((1, 1), (2, 2), (3, 1)):
        await sb.send(make_sqe(Opcode.READ, cid, 1, nlb=0, sgl=keyed_sgl(0x1000, 512, 3)),
                      qpn, "not ready")
    await sb.send(make_sqe(Opcode.FLUSH, 4, 1), 1, "not ready")
    await sb.send(make_sqe(Opcode.FLUSH, 5, 2), 1, "the other namespace serves")
    await sb.check_all()
    assert sb.kinds.get("response", 0) - before == 4, sb.kinds
    # counters and events read through the driver: RTL and model compared by TeeRegs
    counters = await dev.ns_counters(ns)
    assert counters["errors"] == 4, counters
    await dev.srq_counters(srq)
    await dev.unmap_nvmf_nsid(srq, 1)
    await sb.send(make_sqe(Opcode.FLUSH, 6, 1), 1, "unmapped")
    await sb.check_all()
    assert sb.kinds.get("to_software", 0) >= 1, sb.kinds
