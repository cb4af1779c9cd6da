"""The back end's rdma read unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal

from ..stream_util import RegisterSlice
from .common import (
    RdmaBeat,
    _State,
)


def build(m, top, u):
    """RDMA READ data into the context's pages

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    N, W, beat_w, c_beats, cbits, state, stg_rdm = u.take(
        "N W beat_w c_beats cbits state stg_rdm")
    # --- RDMA READ data into the context's pages -------------------------------------------
    # the data enters through a register slice (i_rdma_rd.ready from a flip-flop, the
    # beat and its tag from flip-flops); the status unit holds a status back while a
    # packet's last beat is in it
    m.submodules.rd_in = rd_in = RegisterSlice(RdmaBeat(W))
    m.d.comb += [rd_in.i_valid.eq(top.i_rdma_rd.valid), top.i_rdma_rd.ready.eq(rd_in.i_ready),
                 rd_in.i_data.eq(top.i_rdma_rd.payload)]
    rd_tail = ((rd_in.o_valid & rd_in.o_data.last)
               | (rd_in.spare_valid & rd_in.spare.last))    # a last beat is in the slice
    rd = rd_in.o_data
    rd_ctx = rd.tag[:cbits]
    rd_count = Signal(beat_w)
    rd_ok = ((rd.tag < N) & (state[rd_ctx] == _State.WAIT_RD)
             & (rd_count < c_beats.read(rd_ctx)))
    m.d.comb += [
        stg_rdm.valid.eq(rd_in.o_valid & rd_ok),
        stg_rdm.payload.ctx.eq(rd_ctx), stg_rdm.payload.n.eq(rd_count),
        stg_rdm.payload.data.eq(rd.data),
        stg_rdm.payload.keep.eq(rd.keep),
        rd_in.o_ready.eq(Mux(rd_ok, stg_rdm.ready, 1)),   # stray data is dropped
    ]
    with m.If(rd_in.o_valid & rd_in.o_ready):
        m.d.sync += rd_count.eq(Mux(rd.last, 0, rd_count + 1))
    u.give(rd_count=rd_count, rd_ctx=rd_ctx, rd_tail=rd_tail)
