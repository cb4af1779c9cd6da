"""The back end's rdma read unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal

from .common import (
    _State,
)


def build(m, top, u):
    """RDMA READ data into the context's pages

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    N, beat_w, c_beats, cbits, state, stg_rdm = u.take("N beat_w c_beats cbits state stg_rdm")
    # --- RDMA READ data into the context's pages -------------------------------------------
    rd = top.i_rdma_rd.payload
    rd_ctx = rd.tag[:cbits]
    rd_count = Signal(beat_w)
    rd_ok = ((rd.tag < N) & (state[rd_ctx] == _State.WAIT_RD)
             & (rd_count < c_beats.read(rd_ctx)))
    m.d.comb += [
        stg_rdm.valid.eq(top.i_rdma_rd.valid & rd_ok),
        stg_rdm.payload.ctx.eq(rd_ctx), stg_rdm.payload.n.eq(rd_count),
        stg_rdm.payload.data.eq(rd.data),
        stg_rdm.payload.keep.eq(rd.keep),
        top.i_rdma_rd.ready.eq(Mux(rd_ok, stg_rdm.ready, 1)),   # stray data is dropped
    ]
    with m.If(top.i_rdma_rd.valid & top.i_rdma_rd.ready):
        m.d.sync += rd_count.eq(Mux(rd.last, 0, rd_count + 1))
    u.give(rd_count=rd_count, rd_ctx=rd_ctx)
