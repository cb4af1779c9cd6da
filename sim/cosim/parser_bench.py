"""The capsule parser (``nvmf_parser``) under cocotb: the runs the command line makes.

* :func:`run_random_stream`: seeded random capsules on random QPs (or the demo's
  realistic profile), every outcome checked against :func:`sim.model.parser.parse_capsule`;
  ``nvmf-offload parser-demo`` reports it;
* :func:`run_throughput`: back-to-back single-SQE capsules; ``nvmf-offload bench``
  reports capsules a cycle against one capsule per SQE beat count.

Knobs come from the environment: ``NVMF_SEED``, ``NVMF_COUNT``, ``NVMF_IDLE`` /
``NVMF_BACKPRESSURE`` (fraction of paused cycles), ``NVMF_PROFILE`` (``realistic``),
``NVMF_REPORT`` (a JSON file for the summary of a run). ``tb/parser`` runs both as
tests too.
"""

import json
import os
import random
from collections import Counter

import cocotb
from cocotb.triggers import RisingEdge

from rtl.formats import QP_OPS_ALL, Action
from sim.cosim.parser_env import TB, Scoreboard, random_pause
from sim.traffic.capsules import CapsuleGen, keyed_sgl, make_sqe


def _env_float(name, default=0.0):
    return float(os.environ.get(name, default))


async def _configure_random_qps(tb, gen, rng):
    """Eight QPs with random attributes, one of each interesting kind guaranteed."""
    qpns = rng.sample(range(tb.params.qp_count), min(8, tb.params.qp_count))
    for i, qpn in enumerate(qpns):
        attrs = gen.qp_attrs()
        if i == 0:
            attrs.update(offload=1, offload_only=0, ops=QP_OPS_ALL)
        elif i == 1:
            attrs.update(offload=1, offload_only=1)
        elif i == 2:
            attrs.update(offload=0)
        await tb.write_qp(qpn, attrs)
    # a QPN beyond the table: never offloaded
    return qpns + [tb.params.qp_count + 5]


# The demo's profile: what a target sees on healthy connections, plus a little
# of everything software has to handle.
REALISTIC_WEIGHTS = {"read": 40, "write": 22, "write_icd": 14, "flush": 3, "write_zeroes": 3,
                     "dsm": 2, "dsm_icd": 2, "fabrics": 3, "bad_sgl_type": 1,
                     "icd_offset_beyond": 1, "zero_length": 1, "unknown_opcode": 1}


async def _configure_realistic_qps(tb):
    """Three offloaded I/O QPs (IOCCSZ 260: 4 KiB in-capsule) and one software-only QP."""
    std = {"offload": 1, "offload_only": 0, "ops": QP_OPS_ALL, "ioccsz": 260, "icdoff": 0}
    for qpn in (1, 2, 3):
        await tb.write_qp(qpn, std)
    await tb.write_qp(4, dict(std, offload=0))
    return [1, 2, 3, 1, 2, 3, 4]


@cocotb.test()
async def run_random_stream(dut):
    """Seeded random capsules on random QPs, every outcome checked against the model."""
    tb = TB(dut)
    seed = int(os.environ.get("NVMF_SEED", "1"))
    count = int(os.environ.get("NVMF_COUNT", "200"))
    rng = random.Random(seed)
    idle, bp = _env_float("NVMF_IDLE"), _env_float("NVMF_BACKPRESSURE")
    if idle:
        tb.set_idle_generator(random_pause(random.Random(seed + 1), idle))
    if bp:
        tb.set_backpressure_generator(random_pause(random.Random(seed + 2), bp),
                                      random_pause(random.Random(seed + 3), bp))
    await tb.cycle_reset()
    gen = CapsuleGen(rng, tb.params.max_capsule_bytes)
    realistic = os.environ.get("NVMF_PROFILE") == "realistic"
    if realistic:
        qpns = await _configure_realistic_qps(tb)
    else:
        qpns = await _configure_random_qps(tb, gen, rng)

    sb = Scoreboard(tb)
    kinds = Counter()
    start = tb.cycle
    for _ in range(count):
        qpn = rng.choice(qpns)
        kind = None
        if realistic:
            kind = rng.choices(list(REALISTIC_WEIGHTS), list(REALISTIC_WEIGHTS.values()))[0]
        kind, capsule = gen.capsule(tb.attrs_of(qpn), kind)
        kinds[kind] += 1
        await sb.send(capsule, qpn, label=kind)
    checked = await sb.check_all()
    assert checked == count
    actions = Counter(o["action"].name for o in sb.outcomes)
    assert sum(actions.values()) == count
    tb.log.info("checked %d capsules in %d cycles: %s", count, tb.cycle - start, dict(actions))
    if os.environ.get("NVMF_REPORT"):
        reasons = Counter(o["reason"].name for o in sb.outcomes
                          if o["action"] in (Action.SOFTWARE, Action.QP_ERROR))
        statuses = Counter(f"0x{o['status']['sc']:02x}" for o in sb.outcomes
                           if o["action"] == Action.RESPOND)
        with open(os.environ["NVMF_REPORT"], "w") as f:
            json.dump({"capsules": count, "cycles": tb.cycle - start, "kinds": kinds,
                       "actions": actions, "reasons": reasons, "statuses": statuses,
                       "data_width": tb.params.data_width,
                       "descriptors_checked": sb.checked,
                       "packets_checked": sb.packets_checked,
                       "bytes_checked": sb.bytes_checked,
                       "capsule_bytes_in": sum(sb.capsule_bytes)}, f)


@cocotb.test()
async def run_throughput(dut):
    """Back-to-back single-SQE capsules, no pauses: capsules per cycle at the output."""
    tb = TB(dut)
    count = int(os.environ.get("NVMF_COUNT", "400"))
    await tb.cycle_reset()
    await tb.write_qp(1, {"offload": 1, "offload_only": 0, "ops": QP_OPS_ALL,
                          "ioccsz": 4, "icdoff": 0})
    sb = Scoreboard(tb)
    for i in range(count):
        capsule = make_sqe(0x02, i & 0xFFFF, 1, sgl=keyed_sgl(0x1000 * i, 4096, 7), nlb=7)
        await sb.send(capsule, 1, label="read")
    # first descriptor out to last descriptor out: the steady-state rate
    while tb.cmd_sink.empty():
        await RisingEdge(dut.clk)
    first = tb.cycle
    while tb.cmd_sink.count() < count:
        await RisingEdge(dut.clk)
    elapsed = tb.cycle - first
    await sb.check_all()
    rate = (count - 1) / elapsed if elapsed else float("inf")
    limit = 1 / tb.params.sqe_beats
    tb.log.info("%.4f capsules/cycle (limit %.4f, ratio %.3f)", rate, limit, rate / limit)
    if os.environ.get("NVMF_REPORT"):
        with open(os.environ["NVMF_REPORT"], "w") as f:
            json.dump({"data_width": tb.params.data_width, "capsules": count,
                       "cycles": elapsed, "rate": rate, "limit": limit}, f)
    assert rate >= 0.95 * limit, f"{rate:.4f} capsules/cycle is below 0.95 x {limit:.4f}"
