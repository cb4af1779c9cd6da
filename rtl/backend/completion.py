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
    (N, c_late, c_queue, cbits, fin_cqe_w, gen, p, queues, rel_ctx, rel_keep, rel_v, scan_ctx,
     scan_v, scan_zombie, sst_ctx, sst_sub, sst_v, state) = u.take(
        "N c_late c_queue cbits fin_cqe_w gen p queues rel_ctx rel_keep rel_v scan_ctx scan_v "
        "scan_zombie sst_ctx sst_sub sst_v state")
    # --- completions ------------------------------------------------------------------------
    cq = top.i_cqe.payload
    cid = cq.cqe.cid
    q_ctx = cid[:cbits]
    q_match = ((q_ctx < N) & (cid[cbits:] == gen.read(q_ctx))
               & (c_queue.read(q_ctx) == cq.queue))
    # the context's RETIRING is written from registers the cycle after its CQE is taken
    # (``ret_v``/``ret_ctx``), and the timeout scanner's give-up likewise (``scan_v``/
    # ``scan_ctx``): a CQE for a context with a state write pending sees the state to be
    # written (a compare of its CID with two registers chooses it), so that
    # i_cqe.ready comes from the retirement FIFO's room alone, a register
    ret_v, ret_ctx = Signal(), Signal(cbits)
    # Retirement's release (``rel_v``/``rel_ctx``: ZOMBIE when ``rel_keep``, else FREE)
    # and submission's SQE or refusal (``sst_v``/``sst_ctx``: SUBMITTED when
    # ``sst_sub``, else RETIRING) are written the cycle after them too, and forwarded
    # the same way.
    # (as flags, so that the compares run beside the state's read: the pending writes
    # are of different contexts; neither completion's nor the scanner's forwarded state
    # is SUBMITTED or ZOMBIE, the scanner's is TIMED_OUT or RETIRING, the release's
    # ZOMBIE or FREE)
    hit_ret, hit_scan = ret_v & (ret_ctx == q_ctx), scan_v & (scan_ctx == q_ctx)
    hit_rel, hit_sub = rel_v & (rel_ctx == q_ctx), sst_v & (sst_ctx == q_ctx)
    stored = ~hit_ret & ~hit_scan & ~hit_rel & ~hit_sub
    q_state = state[q_ctx]
    q_live = q_match & ((stored & (q_state == _State.SUBMITTED)) | (hit_sub & sst_sub))
    q_zombie = q_match & ((stored & (q_state == _State.ZOMBIE)) | (hit_rel & rel_keep))
    q_pending_timeout = q_match & ((stored & (q_state == _State.TIMED_OUT))
                                   | (~hit_ret & hit_scan & ~scan_zombie))
    room = fin_cqe_w.ready
    cqe_taken = Signal()
    m.d.comb += [top.i_cqe.ready.eq(room), cqe_taken.eq(top.i_cqe.valid & room)]
    # (the record's fields are driven whether or not it is offered: its FIFO's head
    # register takes them without the offer's decision in front)
    m.d.comb += [fin_cqe_w.valid.eq(cqe_taken & (q_live | q_zombie)),
                 fin_cqe_w.payload.ctx.eq(q_ctx),
                 fin_cqe_w.payload.kind.eq(Mux(q_zombie, _Kind.ZOMBIE, _Kind.CQE)),
                 fin_cqe_w.payload.status.eq(cq.cqe.status.as_value()[1:]),
                 fin_cqe_w.payload.dw0.eq(cq.cqe.dw0)]
    m.d.sync += [ret_v.eq(cqe_taken & (q_live | q_zombie)), ret_ctx.eq(q_ctx)]
    with m.If(ret_v):
        m.d.sync += state[ret_ctx].eq(_State.RETIRING)
    # the late flag of a timed-out context whose CQE came is set from registers the cycle
    # after (``late_v``/``late_ctx``); its readers (retirement's zombie decision, the
    # timeout scanner) see the pending write too, so they see the CQE when they did
    # when it was written at once
    late_v, late_ctx = Signal(), Signal(cbits)
    m.d.sync += [late_v.eq(cqe_taken & q_pending_timeout), late_ctx.eq(q_ctx)]
    with m.If(late_v):
        m.d.sync += c_late[late_ctx].eq(1)
    # the queue store learns of the CQE (its SQ head, one command fewer outstanding) from
    # registers, the cycle after it is taken: the context's reads and the CID match end
    # at flip-flops here, not in the queues' counters. Its credit shows a cycle later
    # (a queue's room already comes from a register), never earlier
    m.d.sync += [queues.cqe_en.eq(cqe_taken & (cq.queue < p.backend_queues)),
                 queues.cqe_owned.eq(q_live | q_zombie | q_pending_timeout),
                 queues.cqe_q.eq(cq.queue), queues.cqe_sqhd.eq(cq.cqe.sqhd)]
    def late(ctx):
        """Whether the late flag of context ``ctx`` is set or is being set."""
        return c_late[ctx] | (late_v & (late_ctx == ctx))
    u.give(late=late, q_ctx=q_ctx, ret_ctx=ret_ctx, ret_v=ret_v)
