"""The back end's status unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux

from .common import (
    _Kind,
    _State,
)


def build(m, top, u):
    """RDMA status dispatcher

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    N, cbits, fin_sts_w, rd_kill_ctx, rd_kill_v, rd_tail, state, sts_sub_room, submit_sts = u.take(
        "N cbits fin_sts_w rd_kill_ctx rd_kill_v rd_tail state sts_sub_room submit_sts")
    # --- RDMA status dispatcher ----------------------------------------------------------
    # a status waits while the data's input slice holds a packet's last beat (it may be
    # the last beat of this status's packet, which came in before it: the status must
    # not make the command ready before its last beat is issued to staging, counted by
    # the submission fence). The status itself is taken as it comes (no slice): a
    # status a cycle later fails a QP a cycle later, and a capsule of that QP right
    # behind the failing one would then be served (the model discards it).
    # The status is taken when both of its outputs have room (from registers): its
    # ``ready`` depends on neither its tag nor its context's state. A status for no
    # descriptor is dropped.
    room = ~rd_tail & sts_sub_room & fin_sts_w.ready
    m.d.comb += top.i_rdma_sts.ready.eq(room)
    sts = top.i_rdma_sts.payload
    s_ctx = sts.tag[:cbits]
    s_state = state[s_ctx]
    s_known = (sts.tag < N) & ((s_state == _State.WAIT_RD) | (s_state == _State.WAIT_WR))
    # the READ data unit drops a waiting beat of the context from the next cycle on
    m.d.sync += [rd_kill_v.eq(top.i_rdma_sts.valid & room), rd_kill_ctx.eq(s_ctx)]
    with m.If(top.i_rdma_sts.valid & room & s_known):
        with m.If((s_state == _State.WAIT_RD) & (sts.status == 0)):
            m.d.comb += [submit_sts.valid.eq(1), submit_sts.payload.eq(s_ctx)]
            m.d.sync += state[s_ctx].eq(_State.READY)
        with m.Else():
            m.d.comb += [
                fin_sts_w.valid.eq(1), fin_sts_w.payload.ctx.eq(s_ctx),
                fin_sts_w.payload.kind.eq(Mux(s_state == _State.WAIT_RD, _Kind.RD_ERR,
                                              Mux(sts.status == 0, _Kind.WR_OK,
                                                  _Kind.WR_ERR))),
            ]
            m.d.sync += state[s_ctx].eq(_State.RETIRING)
