"""cocotb tests of ``nvmf_parser``; launched by ``tb/parser/test_parser.py``.

Each test reads its knobs from the environment the pytest runner sets:
``NVMF_SEED``, ``NVMF_COUNT``, ``NVMF_IDLE`` / ``NVMF_BACKPRESSURE`` (fraction of
paused cycles), ``NVMF_CASE`` (a name from ``cases.py``), ``NVMF_REPORT`` (a
JSON file for the summary of a run).
"""

import itertools
import os

import cocotb
from cocotbext.axi import AxiStreamFrame

from rtl.formats import QP_OPS_ALL, Action, NvmeStatus, Opcode, Reason, build_capsule
from sim.cosim.parser_env import TB, Scoreboard
from sim.model.parser import parse_capsule
from sim.traffic.capsules import icd_sgl, keyed_sgl, make_sqe
from tb.parser.cases import CASES


@cocotb.test()
async def run_directed_case(dut):
    """One hand-written capsule; its exact outcome and the model's must both hold."""
    tb = TB(dut)
    case = CASES[os.environ["NVMF_CASE"]]
    await tb.cycle_reset()
    qpn = 3
    await tb.write_qp(qpn, case.attrs)
    sb = Scoreboard(tb)
    # the case twice, the second time behind a valid capsule, to show the
    # parser recovers and keeps order
    await sb.send(case.capsule, qpn, label=case.name)
    filler = make_sqe(0x02, 0x77, 1, sgl=keyed_sgl(0x2000, 512, 1))
    await sb.send(filler, qpn, label="filler")
    await sb.send(case.capsule, qpn, label=case.name)
    await sb.check_all()
    for outcome in (sb.outcomes[0], sb.outcomes[2]):
        assert outcome["action"] == case.action, (outcome["action"], case.action)
        assert outcome["reason"] == case.reason, (outcome["reason"], case.reason)
        if case.status is not None:
            sct, sc, dnr = case.status
            assert (outcome["status"]["sct"], outcome["status"]["sc"],
                    outcome["status"]["dnr"]) == (sct.value, sc.value, dnr)
        else:
            assert outcome["status"] == {"p": 0, "sc": 0, "sct": 0, "crd": 0, "m": 0, "dnr": 0}
        assert outcome["has_data"] == int(case.data is not None)
    if case.data is not None:
        _, _, packet = sb.expected[0]
        assert packet == case.data, "reference model disagrees with the hand-written case"


# --- directed corner cases (found by mutation testing of the parser) ---------------------------

_STD = {"offload": 1, "offload_only": 0, "ops": QP_OPS_ALL, "ioccsz": 260, "icdoff": 0}
_ICD = bytes((21 + i * 13) & 0xFF for i in range(600))


@cocotb.test()
async def run_unaligned_data_ending_at_capsule_end(dut):
    """In-capsule data off a beat boundary that ends exactly with the capsule's last beat."""
    tb = TB(dut)
    await tb.cycle_reset()
    await tb.write_qp(3, _STD)
    sb = Scoreboard(tb)
    B = tb.params.beat_bytes
    for off, length in [(5, 27), (B - 3, 3 * B + 3), (1, 2 * B - 1)]:
        off += (-(64 + off + length)) % B       # the capsule ends on a beat boundary
        capsule = build_capsule(make_sqe(Opcode.WRITE, 1, 1, sgl=icd_sgl(off, length)),
                                _ICD[:off + length])
        assert len(capsule) % B == 0 and (64 + off) % B != 0
        await sb.send(capsule, 3, label=f"icd {off}+{length}")
    await sb.check_all(timeout_cycles=3000)
    assert all(o["action"] == Action.SERVE for o in sb.outcomes)


@cocotb.test()
async def run_offset_high_bits_answer_sgl_offset_invalid(dut):
    """An in-capsule offset with bits above 16 set is beyond the data, whatever its low bits."""
    tb = TB(dut)
    await tb.cycle_reset()
    await tb.write_qp(3, _STD)
    sb = Scoreboard(tb)
    for off in [(1 << 17) + 4, 1 << 40, (1 << 63) | 8]:
        capsule = build_capsule(make_sqe(Opcode.WRITE, 1, 1, sgl=icd_sgl(off, 4)), _ICD[:128])
        await sb.send(capsule, 3, label=hex(off))
    await sb.check_all()
    for o in sb.outcomes:
        assert o["action"] == Action.RESPOND, o
        assert o["status"]["sc"] == NvmeStatus.SGL_OFFSET_INVALID[1].value, o


@cocotb.test()
async def run_huge_capsule_length_saturates(dut):
    """Capsules of 65536 bytes and more: QP error, capsule_len reported as 65535."""
    tb = TB(dut)
    await tb.cycle_reset()
    await tb.write_qp(3, _STD)
    sb = Scoreboard(tb)
    sqe = make_sqe(Opcode.WRITE, 1, 1, sgl=keyed_sgl(0, 512, 1))
    await sb.send(sqe + bytes(70000 - 64), 3, label="70000 bytes")
    await sb.send(sqe + bytes(65536 - 64), 3, label="65536 bytes")
    await sb.check_all(timeout_cycles=20000)
    for o in sb.outcomes:
        assert (o["action"], o["reason"], o["capsule_len"]) == \
            (Action.QP_ERROR, Reason.OVERSIZE, 0xFFFF), o


@cocotb.test()
async def run_long_data_stall_fills_the_packet_fifo(dut):
    """Data output stalled for 3000 cycles under four maximum capsules: nothing lost."""
    tb = TB(dut)
    await tb.cycle_reset()
    await tb.write_qp(3, dict(_STD, offload=0))
    tb.set_backpressure_generator(None, itertools.chain(itertools.repeat(1, 3000),
                                                        itertools.repeat(0)))
    sb = Scoreboard(tb)
    size = tb.params.max_capsule_bytes
    for i in range(4):
        sqe = make_sqe(Opcode.WRITE, i, 1, sgl=keyed_sgl(0, 512, 1))
        await sb.send(sqe + bytes((i * 7 + j) & 0xFF for j in range(size - 64)), 3,
                      label=f"software capsule {i}")
    await sb.check_all(timeout_cycles=30000)


@cocotb.test()
async def run_qpn_is_sampled_on_the_first_beat(dut):
    """tuser changes after the first beat: the capsule still belongs to the first beat's QP."""
    tb = TB(dut)
    await tb.cycle_reset()
    await tb.write_qp(3, _STD)
    sb = Scoreboard(tb)
    B = tb.params.beat_bytes
    capsule = make_sqe(Opcode.READ, 1, 1, sgl=keyed_sgl(0x1000, 512, 1), nlb=0)
    fields, packet = parse_capsule(capsule, 3, tb.attrs_of(3), tb.params.max_capsule_bytes)
    sb.expected.append(("tuser 3 then 9", fields, packet))
    await tb.source.send(AxiStreamFrame(capsule, tuser=[3] * B + [9] * (len(capsule) - B)))
    await sb.check_all()
    assert sb.outcomes[0]["qpn"] == 3 and sb.outcomes[0]["action"] == Action.SERVE
