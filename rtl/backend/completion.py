"""The back end's completion unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal

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
    cq = top.i_cqe.payload
    cid = cq.cqe.cid
    q_ctx = cid[:cbits]
    q_state = state[q_ctx]
    q_match = ((q_ctx < N) & (cid[cbits:] == gen.read(q_ctx))
               & (c_queue.read(q_ctx) == cq.queue))
    q_live = q_match & (q_state == _State.SUBMITTED)
    q_zombie = q_match & (q_state == _State.ZOMBIE)
    q_pending_timeout = q_match & (q_state == _State.TIMED_OUT)
    cqe_taken = Signal()
    with m.If(top.i_cqe.valid & (q_live | q_zombie)):
        m.d.comb += [fin_cqe_w.valid.eq(1), fin_cqe_w.payload.ctx.eq(q_ctx),
                     fin_cqe_w.payload.kind.eq(Mux(q_live, _Kind.CQE, _Kind.ZOMBIE)),
                     fin_cqe_w.payload.status.eq(cq.cqe.status.as_value()[1:]),
                     fin_cqe_w.payload.dw0.eq(cq.cqe.dw0),
                     top.i_cqe.ready.eq(fin_cqe_w.ready), cqe_taken.eq(fin_cqe_w.ready)]
        with m.If(fin_cqe_w.ready):
            m.d.sync += state[q_ctx].eq(_State.RETIRING)
    with m.Else():
        m.d.comb += [top.i_cqe.ready.eq(1), cqe_taken.eq(top.i_cqe.valid)]
        with m.If(top.i_cqe.valid & q_pending_timeout):
            m.d.sync += c_late[q_ctx].eq(1)
    m.d.comb += [queues.cqe_en.eq(cqe_taken & (cq.queue < p.backend_queues)),
                 queues.cqe_owned.eq(q_live | q_zombie | q_pending_timeout),
                 queues.cqe_q.eq(cq.queue), queues.cqe_sqhd.eq(cq.cqe.sqhd)]
    u.give(q_ctx=q_ctx)
