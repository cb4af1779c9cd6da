"""The back end's timeout scan unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Cat, Mux, Signal

from .common import (
    _Kind,
    _State,
)


def build(m, top, u):
    """The timeout scanner, in two stages: the first reads context ``scan`` (queue, submission
    time), the second gives its verdict.

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (c_queue, c_start, cbits, fin_scan_w, now, q_ctx, queues, state) = u.take(
        "c_queue c_start cbits fin_scan_w now q_ctx queues state")
    # --- timeout scanner -------------------------------------------------------------------
    # two stages: the first reads context ``scan`` (queue, submission time, the queue's
    # timeout and failure) into a verdict register, the second gives up the context if
    # it is still submitted (the same submission: only submission writes the time, and
    # it comes from another state) and no CQE for it arrives in that cycle
    # A zombie (given up, waiting for its late CQE) is reclaimed for good once twice the
    # timeout has passed since its submission: released like a late CQE's, and its
    # queue counts a lost command (its CQ slot stays reserved).
    scan = Signal(cbits)
    m.d.comb += queues.look_q.eq(c_queue.read(scan))
    age = Signal(32)
    m.d.comb += age.eq(now - c_start.read(scan))
    timed = queues.look_timeout != 0
    expired = timed & (age > queues.look_timeout)
    abandoned = timed & (age > Cat(0, queues.look_timeout))
    chk_ctx, chk_hit, chk_failed = Signal(cbits), Signal(), Signal()
    chk_zombie, chk_q = Signal(), Signal(8)
    racing = top.i_cqe.valid & (q_ctx == chk_ctx)
    chk_state = Mux(chk_zombie, _State.ZOMBIE, _State.SUBMITTED)
    give_up = chk_hit & (state[chk_ctx] == chk_state) & ~racing
    with m.If(give_up):
        m.d.comb += [fin_scan_w.valid.eq(1), fin_scan_w.payload.ctx.eq(chk_ctx),
                     fin_scan_w.payload.kind.eq(Mux(chk_zombie, _Kind.ZOMBIE,
                                                    _Kind.TIMEOUT)),
                     fin_scan_w.payload.failed.eq(chk_failed & ~chk_zombie)]
        with m.If(fin_scan_w.ready):
            m.d.sync += state[chk_ctx].eq(Mux(chk_zombie, _State.RETIRING,
                                              _State.TIMED_OUT))
            # the queue counts the command lost in this same cycle: a CQE for it from
            # now on no longer matches the context, and gives the CQ slot back
            m.d.comb += [queues.lose_en.eq(chk_zombie), queues.lose_q.eq(chk_q)]
    with m.If(~give_up | fin_scan_w.ready):
        m.d.sync += [chk_ctx.eq(scan), scan.eq(scan + 1),
                     chk_hit.eq(((state[scan] == _State.SUBMITTED)
                                 & (expired | queues.look_failed))
                                | ((state[scan] == _State.ZOMBIE) & abandoned)),
                     chk_zombie.eq(state[scan] == _State.ZOMBIE),
                     chk_q.eq(queues.look_q),
                     chk_failed.eq(queues.look_failed)]
