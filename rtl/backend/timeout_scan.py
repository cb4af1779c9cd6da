"""The back end's timeout scan unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Cat, Mux, Signal

from .common import (
    _Kind,
    _State,
)


def build(m, top, u):
    """The timeout scanner, in three stages: the first reads context ``scan`` (state, queue,
    age, late-CQE flag, its queue's timeout) into registers, the second works out its
    verdict, the third gives the context up (a zombie's without counting it lost when its
    CQE came).

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (c_queue, c_start, cbits, fin_scan_w, late, now, q_ctx, queues, rel_ctx, rel_keep, rel_v,
     ret_ctx, ret_v, scan_ctx, scan_v, scan_zombie, state) = u.take(
        "c_queue c_start cbits fin_scan_w late now q_ctx queues rel_ctx rel_keep rel_v "
        "ret_ctx ret_v scan_ctx scan_v scan_zombie state")
    # --- timeout scanner -------------------------------------------------------------------
    # three stages: the first reads context ``scan`` (state, queue, late-CQE flag, its
    # age: the time since its submission) and its queue's timeout and failure into
    # registers, the second compares them into a verdict register, the third gives up
    # the context if it is still in the state read (the same submission: only submission
    # writes the time, and a context cannot be released, admitted and submitted again
    # within the two cycles) and no CQE for it arrives in that cycle
    scan = Signal(cbits)
    rd_ctx, rd_q, rd_age, rd_state = Signal(cbits), Signal(8), Signal(32), Signal(_State)
    rd_tmo, rd_failed = Signal(32), Signal()
    # a zombie whose CQE came in the very cycle retirement released it (the CQE found
    # it TIMED_OUT and set ``c_late``, one cycle too late for retirement's ``keep``): its
    # CQE will not come again, so it is freed when the scan reaches it (not after twice
    # the timeout) and its command is not counted lost
    rd_late, chk_late, scan_late = Signal(), Signal(), Signal()
    # (the age is taken a cycle before the verdict: ``>=`` here is ``>`` of the age then)
    # the context's queue is read a cycle ahead (at the next ``scan``) into a register,
    # so that its queue's timeout is looked up from a flip-flop, not behind the LUT-memory
    # read. It is never stale for a context the scanner acts on: only submission writes
    # it, as the context's SQE is taken, and the context's SUBMITTED is written the cycle
    # after, so the scanner reads READY in the cycle after the write
    s_q = Signal(8)
    m.d.sync += s_q.eq(c_queue.read((scan + 1)[:cbits]))
    m.d.comb += queues.look_q.eq(s_q)
    timed = rd_tmo != 0
    expired = timed & (rd_age >= rd_tmo)
    abandoned = timed & (rd_age >= Cat(0, rd_tmo))
    chk_ctx, chk_hit, chk_failed = Signal(cbits), Signal(), Signal()
    chk_zombie, chk_q = Signal(), Signal(8)
    # (a CQE for it now, or one taken in the cycle before, whose state write is pending)
    racing = ((top.i_cqe.valid & (q_ctx == chk_ctx))
              | (ret_v & (ret_ctx == chk_ctx)))
    chk_state = Mux(chk_zombie, _State.ZOMBIE, _State.SUBMITTED)
    # a give-up the retirement FIFO has no room for is not made: the scanner never
    # stalls (its stages' enables are constant), and the context is looked at again in
    # the next sweep, ``contexts`` cycles later
    give_up = ((chk_hit | (chk_zombie & chk_late)) & (state[chk_ctx] == chk_state) & ~racing
               & fin_scan_w.ready)
    # (the record's fields come from registers whether or not it is offered)
    m.d.comb += [fin_scan_w.valid.eq(give_up), fin_scan_w.payload.ctx.eq(chk_ctx),
                 fin_scan_w.payload.kind.eq(Mux(chk_zombie, _Kind.ZOMBIE, _Kind.TIMEOUT)),
                 fin_scan_w.payload.failed.eq(chk_failed & ~chk_zombie)]
    # the give-up's state write and the queue's lost count are applied the cycle after,
    # from registers; a CQE for the context in that cycle sees the state to be written
    # (completion forwards it), so that from then on it no longer matches the context
    # and gives the CQ slot back
    scan_q = Signal(8)
    m.d.sync += [scan_v.eq(give_up), scan_ctx.eq(chk_ctx),
                 scan_zombie.eq(chk_zombie), scan_q.eq(chk_q), scan_late.eq(chk_late)]
    with m.If(scan_v):
        m.d.sync += state[scan_ctx].eq(Mux(scan_zombie, _State.RETIRING, _State.TIMED_OUT))
        m.d.comb += [queues.lose_en.eq(scan_zombie & ~scan_late), queues.lose_q.eq(scan_q)]
    # (a release pending for the context is read as the state it writes, so that a
    # zombie made in the cycle before is seen in this sweep)
    s_state = Mux(rel_v & (rel_ctx == scan), Mux(rel_keep, _State.ZOMBIE, _State.FREE),
                  state[scan])
    m.d.sync += [rd_ctx.eq(scan), scan.eq(scan + 1), rd_q.eq(s_q),
                 rd_age.eq(now - c_start.read(scan)), rd_state.eq(s_state),
                 rd_tmo.eq(queues.look_timeout), rd_failed.eq(queues.look_failed),
                 rd_late.eq(late(scan)),
                 chk_ctx.eq(rd_ctx),
                 chk_hit.eq(((rd_state == _State.SUBMITTED)
                             & (expired | rd_failed))
                            | ((rd_state == _State.ZOMBIE) & abandoned)),
                 chk_late.eq(rd_late),
                 chk_zombie.eq(rd_state == _State.ZOMBIE),
                 chk_q.eq(rd_q),
                 chk_failed.eq(rd_failed)]
