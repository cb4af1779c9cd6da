"""The back end's status unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal

from .common import (
    _Kind,
    _State,
)


def build(m, top, u):
    """RDMA status dispatcher

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (N, c_pick, cbits, fin_sts_w, rd_kill_ctx, rd_kill_v, rd_tail, state, sts_sub_room,
     stw_ctx, stw_v, submit_sts, wwr_ctx, wwr_v) = u.take(
        "N c_pick cbits fin_sts_w rd_kill_ctx rd_kill_v rd_tail state sts_sub_room stw_ctx "
        "stw_v submit_sts wwr_ctx wwr_v")
    # --- RDMA status dispatcher ----------------------------------------------------------
    # Two stages. The first takes a status and classifies it from its context's state
    # into a register (to submission: a READ's success; to retirement: a READ's failure,
    # a WRITE's outcome; dropped: a status for no descriptor). The second offers it and
    # writes the context's state when it is taken. Only this unit moves a context out of
    # WAIT_RD or WAIT_WR, so the state it classified is still the context's when the
    # second stage acts; a second status for a context held in the second stage is
    # dropped (its state is leaving WAIT_RD / WAIT_WR).
    # A status waits while the data's input slice holds a packet's last beat (it may be
    # the last beat of this status's packet, which came in before it: the status must
    # not make the command ready before its last beat is issued to staging, counted by
    # the submission fence). ``ready`` comes from registers: the second stage is empty or
    # its output has room (the merge's and the FIFO's flags).
    sb_v, sb_sub, sb_ctx, sb_kind = Signal(), Signal(), Signal(cbits), Signal(_Kind)
    sb_slot = Signal.like(submit_sts.payload.slot)     # the command's namespace slot
    sb_go = Signal()              # the second stage's status is taken
    m.d.comb += sb_go.eq(sb_v & Mux(sb_sub, sts_sub_room, fin_sts_w.ready))
    room = ~rd_tail & (~sb_v | sb_go)
    m.d.comb += top.i_rdma_sts.ready.eq(room)
    sts = top.i_rdma_sts.payload
    take = top.i_rdma_sts.valid & room
    s_ctx = sts.tag[:cbits]
    s_state = state[s_ctx]
    s_rd = s_state == _State.WAIT_RD
    # the second stage's state write is applied the cycle after it acts, from registers
    # (``stw_*``, so that the hand-shake ends at a few flip-flops instead of 32 contexts'
    # states; the RDMA READ data unit sees it too): a status for a context in either
    # cycle is dropped
    stw_sub = Signal()
    # (retirement's WAIT_WR is written the cycle after its decision, from registers it
    # drives, ``wwr_*``: a status for the context in that cycle sees it)
    s_wr = (s_state == _State.WAIT_WR) | (wwr_v & (wwr_ctx == s_ctx))
    s_known = ((sts.tag < N) & (s_rd | s_wr)
               & ~(sb_v & (sb_ctx == s_ctx)) & ~(stw_v & (stw_ctx == s_ctx)))
    # the READ data unit drops a waiting beat of the context from the next cycle on
    m.d.sync += [rd_kill_v.eq(take), rd_kill_ctx.eq(s_ctx)]
    with m.If(take):
        m.d.sync += [
            sb_v.eq(s_known), sb_ctx.eq(s_ctx), sb_sub.eq(s_rd & (sts.status == 0)),
            sb_slot.eq(c_pick.read(s_ctx).slot),
            sb_kind.eq(Mux(s_rd, _Kind.RD_ERR, Mux(sts.status == 0, _Kind.WR_OK,
                                                   _Kind.WR_ERR))),
        ]
    with m.Elif(sb_go):
        m.d.sync += sb_v.eq(0)
    m.d.comb += [
        submit_sts.valid.eq(sb_v & sb_sub), submit_sts.payload.ctx.eq(sb_ctx),
        submit_sts.payload.slot.eq(sb_slot),
        fin_sts_w.valid.eq(sb_v & ~sb_sub), fin_sts_w.payload.ctx.eq(sb_ctx),
        fin_sts_w.payload.kind.eq(sb_kind),
    ]
    m.d.sync += [stw_v.eq(sb_go), stw_ctx.eq(sb_ctx), stw_sub.eq(sb_sub)]
    with m.If(stw_v):
        m.d.sync += state[stw_ctx].eq(Mux(stw_sub, _State.READY, _State.RETIRING))
