"""The back end's streamer unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Cat, Mux, Signal


def build(m, top, u):
    """The streamer: staging read data to m_axis_rdma_wr, one packet per queued read

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    B, beat_w, strm_r, wr_keep = u.take("B beat_w strm_r wr_keep")
    # the streamer: staging read data to m_axis_rdma_wr, one packet per queued read
    sent = Signal(beat_w)
    hd = strm_r.payload
    beat = top.i_stg_rd.payload
    last = sent == hd.last_n
    m.d.comb += [
        wr_keep.eq(Mux(last, Cat(*(hd.tail > i for i in range(B))), (1 << B) - 1)),
        top.o_rdma_wr.valid.eq(strm_r.valid & top.i_stg_rd.valid),
        top.o_rdma_wr.payload.data.eq(beat.data),
        top.o_rdma_wr.payload.keep.eq(wr_keep),
        top.o_rdma_wr.payload.last.eq(last),
        top.o_rdma_wr.payload.tag.eq(hd.ctx),
        top.i_stg_rd.ready.eq(strm_r.valid & top.o_rdma_wr.ready),
        strm_r.ready.eq(top.i_stg_rd.valid & top.o_rdma_wr.ready & last),
    ]
    with m.If(strm_r.valid & top.i_stg_rd.valid & top.o_rdma_wr.ready):
        m.d.sync += sent.eq(Mux(last, 0, sent + 1))
