"""The main job's workload: random 4 KiB reads and writes at a fixed queue depth.

Two QPs, one per subsystem, each on its own SSD; every read is checked
against what was written. Knobs (environment): ``NVMF_COUNT`` commands,
``NVMF_QD`` per QP, ``NVMF_READ_PCT``, ``NVMF_SEED``; ``NVMF_REPORT`` (a JSON
file for the report), ``NVMF_PROGRESS`` (a file that receives "done total"
lines while it runs).
"""

import json
import os
import random

import cocotb
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamFrame

from rtl.formats import Cqe, Opcode, decode
from sim.cosim.system import CounterModel, SystemTB, Target
from sim.traffic.capsules import keyed_sgl, make_sqe

BLOCK = 4096


@cocotb.test()
async def run_workload(dut):
    """4 KiB random read/write mix at queue depth QD on each of two QPs, data verified."""
    tb = SystemTB(dut)
    await tb.reset()
    target = Target()
    await target.build(tb, latency=int(os.environ.get("NVMF_SSD_LATENCY", "200")))
    rng = random.Random(int(os.environ.get("NVMF_SEED", "2026")))
    total = int(os.environ.get("NVMF_COUNT", "400"))
    qd = int(os.environ.get("NVMF_QD", "32"))
    read_pct = int(os.environ.get("NVMF_READ_PCT", "70"))
    progress = os.environ.get("NVMF_PROGRESS")

    lba_size = (512, 4096)
    nblocks = 1024                                   # 4 KiB units per namespace
    shadow = [{}, {}]                                # unit -> 4 KiB written
    inflight = [dict(), dict()]                      # cid -> command record
    busy_units = [set(), set()]
    buffers = [list(range(128)), list(range(128))]   # free 8 KiB buffers: 1 MiB a QP
    sent = done = 0
    verified = 0
    latencies = []
    log = []
    per_op = {"read": 0, "write": 0}
    counters = CounterModel()
    cid = 0
    start = tb.cycle

    def submit(s):
        nonlocal cid, sent
        unit = rng.randrange(nblocks)
        while unit in busy_units[s]:
            unit = rng.randrange(nblocks)
        is_read = rng.randrange(100) < read_pct
        buf_index = buffers[s].pop()
        base = 0x1000_0000 * (s + 1)
        off = buf_index * 8192
        nlb = BLOCK // lba_size[s] - 1
        slba = unit * (BLOCK // lba_size[s])
        cid = (cid + 1) & 0xFFFF
        mem = target.memory[s]
        if is_read:
            mem[off:off + BLOCK] = bytes(BLOCK)
            capsule = make_sqe(Opcode.READ, cid, 1, slba=slba, nlb=nlb,
                               sgl=keyed_sgl(base + off, BLOCK, 0x100 * (s + 1)))
        else:
            payload = rng.randbytes(BLOCK)
            mem[off:off + BLOCK] = payload
            capsule = make_sqe(Opcode.WRITE, cid, 1, slba=slba, nlb=nlb,
                               sgl=keyed_sgl(base + off, BLOCK, 0x100 * (s + 1)))
            shadow[s][unit] = payload
        busy_units[s].add(unit)
        inflight[s][cid] = (is_read, unit, buf_index, off, tb.cycle)
        sent += 1
        return capsule

    async def feed():
        while sent < total:
            for s in range(2):
                if len(inflight[s]) < qd and sent < total:
                    capsule = submit(s)
                    await tb.source.send(AxiStreamFrame(capsule, tuser=s + 1))
            await RisingEdge(dut.clk)

    feeder = cocotb.start_soon(feed())
    budget = 200_000 + 5_000 * total
    while done < total:
        assert tb.cycle - start < budget, f"{done} of {total} done after {budget} cycles"
        if tb.resp.empty():
            await RisingEdge(dut.clk)
            continue
        frame = tb.resp.recv_nowait()
        qpn = int(frame.tuser[0] if isinstance(frame.tuser, list) else frame.tuser) & 0xFFFFFF
        s = qpn - 1
        cqe = decode(Cqe, bytes(frame.tdata))
        assert cqe["status"]["sc"] == 0 and cqe["status"]["sct"] == 0, cqe
        is_read, unit, buf_index, off, t0 = inflight[s].pop(cqe["cid"])
        latencies.append(tb.cycle - t0)
        log.append([tb.cycle - start, tb.cycle - t0, int(is_read)])
        if is_read:
            want = shadow[s].get(unit, bytes(BLOCK))
            got = bytes(target.memory[s][off:off + BLOCK])
            assert got == want, f"QP {qpn} cid {cqe['cid']}: read data differs"
            verified += BLOCK
            per_op["read"] += 1
        else:
            per_op["write"] += 1
            verified += 0
        counters.served(s, Opcode.READ if is_read else Opcode.WRITE, BLOCK // lba_size[s])
        busy_units[s].discard(unit)
        buffers[s].append(buf_index)
        done += 1
        if progress and (done % 10 == 0 or done == total):
            with open(progress, "a") as f:
                f.write(f"{done} {total}\n")
    await feeder
    cycles = tb.cycle - start
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    lo, hi = latencies[0], latencies[-1]
    step = max(1, -(-(hi - lo + 1) // 20))
    histogram = [0] * 20
    for value in latencies:
        histogram[min(19, (value - lo) // step)] += 1
    report = {
        "commands": total, "cycles": cycles, "queue_depth": qd, "read_pct": read_pct,
        "block": BLOCK, "per_op": per_op, "bytes_moved": total * BLOCK,
        "bytes_verified": verified,
        "latency": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
                    "max": hi, "min": lo, "histogram": histogram, "bin_cycles": step},
        "commands_log": log,            # [completion cycle, latency, is_read] per command
        "ssd_commands": sum(ssd.executed for ssd in target.ssds),
        "rdma_reads": tb.rdma.reads, "rdma_writes": tb.rdma.writes,
        "data_width": tb.params.data_width,
    }
    assert tb.exc.empty() and tb.qp_err.empty()
    await counters.check(tb, target)
    if os.environ.get("NVMF_REPORT"):
        with open(os.environ["NVMF_REPORT"], "w") as f:
            json.dump(report, f)
    tb.log.info("workload: %s", report)
