"""The back end's retirement unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal

from ..formats import (
    EventType,
    NvmeStatus,
    Reason,
)
from .common import (
    _engine_status,
    _Finish,
    _Kind,
    _State,
)


def build(m, top, u):
    """Retirement, the job register: the retiring context's command, its response fields and
    its data-out numbers, read from the context store.

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (B, beat_shift, c_beats, c_stg, cbits, cm_ret, fin) = u.take(
        "B beat_shift c_beats c_stg cbits cm_ret fin")
    # --- retirement ------------------------------------------------------------------------
    job = Signal(_Finish)
    # In IDLE and RESPOND (``look_ahead``, a register set with each move to either) the
    # command memory's port reads the context of the finish record offered (the ``fin``
    # merge's register), taken or not, so that the take (o_resp.ready, the counters'
    # room) does not choose its address, which comes from flip-flops through one LUT. What
    # RESPOND and a release use of the command is kept in ``rkept``, loaded in every
    # other state; the other states read the job's own context (``rcmd``)
    look_ahead, responding = Signal(init=1), Signal()
    m.d.comb += [cm_ret.addr.eq(Mux(look_ahead, fin.payload.ctx, job.ctx)),
                 cm_ret.en.eq(1)]
    rcmd = cm_ret.data.cmd
    rkept = Signal.like(rcmd, name="rkept")
    with m.If(~responding):
        m.d.sync += rkept.eq(rcmd)
    rctx = job.ctx[:cbits]
    r_beats = c_beats.read(rctx)
    r_stg = c_stg.read(rctx)
    status = Signal(15)           # {DNR, M, CRD, SCT, SC}: the status field without P
    # the DECIDE of a CQE: whether the data goes out through the mover, from registers
    # (admission's flag in the command memory; the SSD's status compared as the job loads)
    job_ok = Signal()
    out_now = Signal()
    m.d.comb += out_now.eq(job_ok & cm_ret.data.read_out)

    resp = top.o_resp.payload
    m.d.comb += [
        resp.cqe.sqhd.eq(rkept.sqhd), resp.cqe.sqid.eq(rkept.sqid), resp.cqe.cid.eq(rkept.cid),
        resp.cqe.status.as_value()[1:].eq(status),
        resp.qpn.eq(rkept.qpn), resp.invalidate.eq(rkept.sgl_invalidate),
        resp.rkey.eq(Mux(rkept.sgl_invalidate, rkept.sgl_key, 0)),
    ]
    wr_keep = Signal(B)
    tail_bytes = Signal(beat_shift + 1)
    m.d.comb += tail_bytes.eq(Mux(rcmd.nbytes[:beat_shift] == 0, B,
                                  rcmd.nbytes[:beat_shift]))
    u.give(job=job, job_ok=job_ok, look_ahead=look_ahead, out_now=out_now, r_beats=r_beats,
           r_stg=r_stg, rcmd=rcmd, rctx=rctx, resp=resp, responding=responding, rkept=rkept,
           status=status, tail_bytes=tail_bytes, wr_keep=wr_keep)


def build_retire_fsm(m, top, u):
    """Retirement, the decision: a Read's data goes to the data-out mover and its response
    waits for the RDMA WRITE's status; otherwise (or after it) the response, the
    counters and the events go out and the context is released.

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (c_dw0, c_queue, cnt_w, ev_ret, filling, fin, job, job_ok, look_ahead, mov_w, out_now,
     rcmd, rctx, release_now, resp, responding, state, status, wwr_ctx, wwr_v) = u.take(
        "c_dw0 c_queue cnt_w ev_ret filling fin job job_ok look_ahead mov_w out_now rcmd "
        "rctx release_now resp responding state status wwr_ctx wwr_v")
    # the context's WAIT_WR (its data handed to the mover) is written the cycle after,
    # from registers, so that the mover queue's room ends at a few flip-flops instead of
    # 32 contexts' states; the status unit sees the pending write (its RDMA WRITE is
    # issued from the mover queue, a cycle later at the earliest), and no other unit
    # acts on a context in RETIRING or WAIT_WR
    m.d.sync += [wwr_v.eq(0), wwr_ctx.eq(rctx)]
    with m.If(wwr_v):
        m.d.sync += state[wwr_ctx].eq(_State.WAIT_WR)

    def go(state):
        m.next = state
        m.d.sync += look_ahead.eq(state in ("IDLE", "RESPOND"))

    with m.FSM(name="retire"):
        with m.State("IDLE"):
            m.d.comb += fin.ready.eq(1)
            with m.If(fin.valid):
                m.d.sync += [job.eq(fin.payload), job_ok.eq(fin.payload.status == 0)]
                go("DECIDE")
        with m.State("DECIDE"):
            with m.Switch(job.kind):
                with m.Case(_Kind.CQE):
                    m.d.sync += status.eq(job.status)
                    with m.If(out_now):
                        # the data goes out through the mover; the response waits for
                        # the RDMA WRITE's status (WR_OK)
                        m.d.comb += mov_w.valid.eq(1)
                        with m.If(mov_w.ready):
                            m.d.sync += wwr_v.eq(1)
                            c_dw0.write(rctx, job.dw0)
                            go("IDLE")
                    with m.Else():
                        go("RESPOND")
                with m.Case(_Kind.WR_OK):
                    m.d.sync += status.eq(0)
                    go("RESPOND")
                with m.Case(_Kind.RD_ERR):
                    m.d.sync += status.eq(_engine_status(NvmeStatus.DATA_TRANSFER_ERROR))
                    go("EVENT_FATAL")
                with m.Case(_Kind.WR_ERR):
                    go("QP_ERROR")
                with m.Case(_Kind.TIMEOUT):
                    m.d.sync += status.eq(_engine_status(NvmeStatus.INTERNAL_ERROR))
                    with m.If(job.failed):
                        go("RESPOND")
                    with m.Else():
                        go("EVENT_TIMEOUT")
                with m.Case(_Kind.ZOMBIE):
                    go("FREE")
                with m.Case(_Kind.INTERNAL):
                    m.d.sync += status.eq(_engine_status(NvmeStatus.INTERNAL_ERROR))
                    go("RESPOND")
                with m.Case(_Kind.REFUSED):
                    m.d.sync += status.eq(job.status)
                    go("RESPOND")
        with m.State("EVENT_FATAL"):
            m.d.comb += [ev_ret.valid.eq(1), ev_ret.payload.kind.eq(EventType.QP_FATAL),
                         ev_ret.payload.object.eq(rcmd.qpn)]
            with m.If(ev_ret.ready):
                go("QP_FAIL_RD")
        with m.State("QP_FAIL_RD"):
            # the failed RDMA READ puts the QP in error (later capsules are discarded)
            m.d.comb += [top.o_qp_fail.valid.eq(1), top.o_qp_fail.payload.qpn.eq(rcmd.qpn)]
            with m.If(top.o_qp_fail.ready):
                go("RESPOND")
        with m.State("EVENT_TIMEOUT"):
            m.d.comb += [ev_ret.valid.eq(1), ev_ret.payload.kind.eq(EventType.NVME_TIMEOUT),
                         ev_ret.payload.object.eq(c_queue.read(rctx))]
            with m.If(ev_ret.ready):
                go("RESPOND")
        with m.State("QP_ERROR"):
            m.d.comb += [top.o_qp_error.valid.eq(1),
                         top.o_qp_error.payload.qpn.eq(rcmd.qpn),
                         top.o_qp_error.payload.reason.eq(Reason.RDMA_ERROR)]
            with m.If(top.o_qp_error.ready):
                go("QP_ERROR_EVENT")
        with m.State("QP_ERROR_EVENT"):
            m.d.comb += [ev_ret.valid.eq(1), ev_ret.payload.kind.eq(EventType.QP_FATAL),
                         ev_ret.payload.object.eq(rcmd.qpn)]
            with m.If(ev_ret.ready):
                go("QP_FAIL_WR")
        with m.State("QP_FAIL_WR"):
            m.d.comb += [top.o_qp_fail.valid.eq(1), top.o_qp_fail.payload.qpn.eq(rcmd.qpn)]
            with m.If(top.o_qp_fail.ready):
                go("FREE")
        with m.State("RESPOND"):
            # the response, the counters' record and the context's release in one cycle;
            # the next job is taken in the same cycle. The command is ``rkept`` here
            m.d.comb += responding.eq(1)
            m.d.comb += resp.cqe.dw0.eq(Mux(job.kind == _Kind.WR_OK, c_dw0.read(rctx),
                                            job.dw0))
            m.d.comb += top.o_resp.valid.eq(cnt_w.ready & ~filling)
            with m.If(top.o_resp.ready & cnt_w.ready & ~filling):
                m.d.comb += [cnt_w.valid.eq(1), release_now.eq(1)]
                m.d.comb += fin.ready.eq(1)
                with m.If(fin.valid):
                    m.d.sync += [job.eq(fin.payload), job_ok.eq(fin.payload.status == 0)]
                    go("DECIDE")
                with m.Else():
                    go("IDLE")
        with m.State("FREE"):
            # no response (a late CQE, a failed RDMA WRITE): release only
            with m.If(~filling):
                m.d.comb += release_now.eq(1)
                go("IDLE")
