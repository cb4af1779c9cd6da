"""The back end's completion unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal

from ..formats import CqCompletion
from ..stream_util import RegisterSlice
from .common import (
    _Kind,
    _State,
)


def build(m, top, u):
    """Completion: a CQE retires its context by CID (context index and generation); the late
    CQE of a command given up is dropped.

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (N, c_late, c_queue, cbits, fin_cqe_w, gen, p, queues, state) = u.take(
        "N c_late c_queue cbits fin_cqe_w gen p queues state")
    # --- completions ------------------------------------------------------------------------
    # the CQE enters through a register slice (i_cqe.ready from a flip-flop). Whether its
    # CID names the context's current command on its queue (generation and queue from
    # the LUT memories) is worked out into a register beside the slice's output, for the
    # CQE it holds in the next cycle; the context's state is then read at the output.
    # A generation changes only on a free context (no CQE is taken for it) and a queue
    # at submission: in the cycle after a submission the check may be stale, and the
    # CQE waits
    m.submodules.cqe_in = cin = RegisterSlice(CqCompletion)
    m.d.comb += [cin.i_valid.eq(top.i_cqe.valid), top.i_cqe.ready.eq(cin.i_ready),
                 cin.i_data.eq(top.i_cqe.payload)]
    sel = Signal(CqCompletion)
    m.d.comb += sel.eq(Mux(~cin.o_valid | cin.o_ready,
                           Mux(cin.spare_valid, cin.spare, cin.i_data), cin.o_data))
    s_ctx = sel.cqe.cid[:cbits]
    q_match, cq_stale = Signal(), Signal()
    m.d.sync += [q_match.eq((s_ctx < N) & (sel.cqe.cid[cbits:] == gen.read(s_ctx))
                            & (c_queue.read(s_ctx) == sel.queue)),
                 cq_stale.eq(queues.submit_en)]
    cq = cin.o_data
    cid = cq.cqe.cid
    q_ctx = cid[:cbits]
    q_valid = cin.o_valid & ~cq_stale
    q_state = state[q_ctx]
    q_live = q_match & (q_state == _State.SUBMITTED)
    q_zombie = q_match & (q_state == _State.ZOMBIE)
    q_pending_timeout = q_match & (q_state == _State.TIMED_OUT)
    cqe_taken = Signal()
    with m.If(q_valid & (q_live | q_zombie)):
        m.d.comb += [fin_cqe_w.valid.eq(1), fin_cqe_w.payload.ctx.eq(q_ctx),
                     fin_cqe_w.payload.kind.eq(Mux(q_live, _Kind.CQE, _Kind.ZOMBIE)),
                     fin_cqe_w.payload.status.eq(cq.cqe.status.as_value()[1:]),
                     fin_cqe_w.payload.dw0.eq(cq.cqe.dw0),
                     cin.o_ready.eq(fin_cqe_w.ready), cqe_taken.eq(fin_cqe_w.ready)]
        with m.If(fin_cqe_w.ready):
            m.d.sync += state[q_ctx].eq(_State.RETIRING)
    with m.Else():
        m.d.comb += [cin.o_ready.eq(~cq_stale), cqe_taken.eq(q_valid)]
        with m.If(q_valid & q_pending_timeout):
            m.d.sync += c_late[q_ctx].eq(1)
    m.d.comb += [queues.cqe_en.eq(cqe_taken & (cq.queue < p.backend_queues)),
                 queues.cqe_owned.eq(q_live | q_zombie | q_pending_timeout),
                 queues.cqe_q.eq(cq.queue), queues.cqe_sqhd.eq(cq.cqe.sqhd)]
    u.give(q_ctx=q_ctx, q_valid=q_valid)
