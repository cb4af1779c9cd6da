"""Formal proof (SymbiYosys through YoWASP, as ``tb/formal/test_stream_formal.py``) of the
back end's backend-queue table (``rtl/backend/queues.py``, ``_Queues``): an SQ tail never
overruns the credit learnt from SQHD, and no more commands are outstanding on a queue
than its CQ can hold.

The table is proved alone (one queue, see ``NQ``), between an environment that keeps
the contracts of its neighbours:

- configuration: a pulse on ``cfg_valid`` at most every third cycle (the control
  plane's commands take longer), with an entry as the control plane validates it
  (SQ and CQ of at least two entries, the initial tail inside the SQ);
- admission submits only to the queue the table picked (``pick_ok``, ``pick_q``);
- the SSD reports, in each CQE, an SQ head between the one the table learnt last
  and its tail (it cannot have consumed entries never written); a CQE that names a
  command (``cqe_owned``) comes only while the queue has one outstanding that is
  not lost; a command is lost (``lose_en``) only while one is outstanding, and in
  the cycle of such a CQE on its queue only for another command.

The harness counts the SQ entries in flight itself (submissions less what each SQHD
consumed) and the proof shows, by k-induction, for every configured queue:

- the table's ring occupancy (tail - head, modulo the ring) equals that count, and
  the count never exceeds entries - 1: the tail never passes the SSD's head, so the
  SSD never sees an empty ring that holds commands;
- commands outstanding stay at most CQ entries - 1, and lost ones never exceed them;
  the table's outstanding and lost counts equal the harness's own (submissions less
  CQEs, losses less the CQEs of lost commands);
- ``Cover``: a full SQ (entries - 1 in flight), a full CQ credit, and a submission
  and a CQE on one queue in the same cycle are reached, so the proof is not vacuous.
"""

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Array, Assert, Assume, Cover, Module, Mux, ResetSignal, Signal

from rtl.backend import _Queues
from rtl.params import EngineParams
from tb.formal.test_stream_formal import _sby

# One queue: every queue's state and update is the same code behind its index compare,
# and two queues take z3 more than ten minutes; the index decode of submit_q / cqe_q is
# exercised by the simulations. Rings of 2 to 16 entries are configured (the arithmetic is
# the same at any size, and the induction itself assumes nothing about the size).
NQ = 1
MAX_RING = 16
DEPTH = {"prove": 2, "cover": 8}


def _ring(tail, head, entries):
    """Entries from ``head`` to ``tail`` on a ring of ``entries``."""
    return Mux(tail >= head, tail - head, tail + entries - head)[:17]


def _harness(break_room=False):
    dut = _Queues(EngineParams(backend_queues=NQ))
    m = Module()
    m.submodules.dut = dut
    e = dut.rd_data
    m.d.comb += Assume(~ResetSignal())

    # configuration, as the control plane validates it, one command at a time
    cfg1, cfg2 = Signal(), Signal()
    m.d.sync += [cfg1.eq(dut.cfg_valid), cfg2.eq(cfg1)]
    m.d.comb += [Assume(~(dut.cfg_valid & (cfg1 | cfg2))), Assume(dut.cfg_index < NQ),
                 Assume(e.sq_entries >= 2), Assume(e.cq_entries >= 2),
                 Assume(e.sq_entries <= MAX_RING), Assume(e.cq_entries <= MAX_RING),
                 Assume(e.sq_tail_init < e.sq_entries)]
    index = Signal(8)
    with m.If(dut.cfg_valid):
        m.d.sync += index.eq(dut.cfg_index)
    loading = cfg2                    # the table loads the entry two cycles after the pulse
    m.d.comb += [Assert(dut.cfg_pending == cfg1), Assert(dut.cfg_loaded == cfg2)]
    with m.If(cfg1 | cfg2):
        m.d.comb += Assert(dut.cfg_at == index)

    # admission: only to the queue picked
    with m.If(dut.submit_en):
        submit_ok = dut.pick_ok & (dut.submit_q == dut.pick_q)
        if break_room:               # a broken admission that ignores the SQ credit
            submit_ok = dut.submit_q < NQ
        m.d.comb += Assume(submit_ok)
    # the harness's own count, per queue, of commands outstanding (submitted, no CQE yet)
    # and of those lost (given up and reclaimed without their CQE)
    cmds = [Signal(18, name=f"cmds{k}") for k in range(NQ)]
    lostc = [Signal(18, name=f"lostc{k}") for k in range(NQ)]
    q_cmds, q_lost = Array(cmds)[dut.cqe_q], Array(lostc)[dut.cqe_q]
    l_cmds, l_lost = Array(cmds)[dut.lose_q], Array(lostc)[dut.lose_q]
    # the SSD: SQHD between the head learnt and the tail; CQEs and losses of real commands
    q = dut.cqe_q
    with m.If(dut.cqe_en):
        m.d.comb += [Assume(q < NQ), Assume(dut.cqe_sqhd < dut.entries[q]),
                     Assume(_ring(dut.cqe_sqhd, dut.head[q], dut.entries[q])
                            <= _ring(dut.tail[q], dut.head[q], dut.entries[q]))]
        with m.If(dut.cqe_owned):
            m.d.comb += Assume(q_cmds > q_lost)
    with m.If(dut.lose_en):
        m.d.comb += [Assume(dut.lose_q < NQ), Assume(l_cmds > l_lost)]
        # a CQE and a loss in one cycle on one queue are for two different commands (the
        # back end's scanner does not give up the context a CQE is arriving for)
        with m.If(dut.cqe_en & dut.cqe_owned & (dut.cqe_q == dut.lose_q)):
            m.d.comb += Assume(q_cmds > q_lost + 1)

    for k in range(NQ):
        inflight = Signal(18, name=f"inflight{k}")     # SQEs written, not yet consumed
        sub = dut.submit_en & (dut.submit_q == k)
        cqe = dut.cqe_en & (dut.cqe_q == k)
        consumed = Mux(cqe, _ring(dut.cqe_sqhd, dut.head[k], dut.entries[k]), 0)
        owned = cqe & dut.cqe_owned
        found = cqe & ~dut.cqe_owned & (lostc[k] != 0)     # the CQE of a lost command
        lose = dut.lose_en & (dut.lose_q == k)
        with m.If(loading & (index == k)):
            m.d.sync += [inflight.eq(0), cmds[k].eq(0), lostc[k].eq(0)]
        with m.Else():
            m.d.sync += [inflight.eq(inflight + sub - consumed),
                         cmds[k].eq(cmds[k] + sub - owned - found),
                         lostc[k].eq(lostc[k] + lose - found)]
        entries, cq_entries = dut.entries[k], dut.cq_entries[k]
        with m.If(dut.valid[k]):
            m.d.comb += [
                Assert(entries >= 2), Assert(cq_entries >= 2),
                Assert(dut.tail[k] < entries), Assert(dut.head[k] < entries),
                Assert(_ring(dut.tail[k], dut.head[k], entries) == inflight),
                Assert(inflight <= entries - 1),
                Assert(dut.outstanding[k] <= cq_entries - 1),
                Assert(dut.lost[k] <= dut.outstanding[k]),
                Assert(dut.outstanding[k] == cmds[k]), Assert(dut.lost[k] == lostc[k]),
                Cover(inflight == entries - 1),
                Cover(dut.outstanding[k] == cq_entries - 1),
                Cover(sub & cqe & (inflight != 0)),
            ]
    ports = [dut.cfg_valid, dut.cfg_index, dut.rd_data.as_value(), dut.pick_mask, dut.pick_from,
             dut.submit_en, dut.submit_q, dut.cqe_en, dut.cqe_q, dut.cqe_sqhd,
             dut.cqe_owned, dut.lose_en, dut.lose_q, dut.fail_en, dut.fail_q, dut.look_q]
    return m, ports


@pytest.mark.parametrize("task", ["prove", "cover"])
def test_sq_tail_never_overruns_the_sqhd_credit_nor_the_cq(tmp_path, task):
    m, ports = _harness()
    rc, log = _sby(tmp_path, "queues", rtlil.convert(m, ports=ports), task, depth=DEPTH[task])
    assert rc == 0 and "DONE (PASS" in log, log[-3000:]
    if task == "prove":
        assert "returned pass for induction" in log, log[-3000:]


def test_the_proof_catches_an_admission_that_ignores_the_credit(tmp_path):
    """Submitting to any queue (not only the one picked) overruns the ring: a bounded
    check finds the counterexample (a full two-entry ring written again)."""
    m, ports = _harness(break_room=True)
    rc, log = _sby(tmp_path, "queues_broken", rtlil.convert(m, ports=ports), "bmc",
                   depth=DEPTH["cover"])
    assert rc != 0 and "DONE (FAIL" in log, log[-3000:]
