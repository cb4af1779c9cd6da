"""The back end's data out unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import C, Cat, Mux, Signal
from amaranth.lib import data

from ..formats import (
    RdmaOp,
)
from ..pages import PAGE_SHIFT
from ..stream_util import RegisterSlice
from .common import (
    _fifo_stream,
)


def build(m, top, u):
    """A Read's data out: retirement queues (context, descriptor fields, beats); the
    mover issues the RDMA WRITE descriptor and a staging read per page, and streams the
    packet, while the next packet's descriptor and reads are issued

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (beat_shift, beat_w, cbits, page_beats, page_of, pb_bits, pt_bits, r_beats, rcmd, rctx,
     rdma_ret, tail_bytes) = u.take(
        "beat_shift beat_w cbits page_beats page_of pb_bits pt_bits r_beats rcmd rctx rdma_ret "
        "tail_bytes")
    # a Read's data out: retirement queues (context, descriptor fields, beats); the
    # mover issues the RDMA WRITE descriptor and a staging read per page, and streams
    # the packet, while the next packet's descriptor and reads are issued
    mv_layout = data.StructLayout({
        "ctx": cbits, "qpn": len(rcmd.qpn), "addr": 64, "rkey": 32, "length": 32,
        "beats": beat_w, "tail": beat_shift + 1})
    mov_w, mov_r = _fifo_stream(m, "mover_q", mv_layout, 4)
    m.d.comb += [
        mov_w.payload.ctx.eq(rctx), mov_w.payload.qpn.eq(rcmd.qpn),
        mov_w.payload.addr.eq(rcmd.sgl_address), mov_w.payload.rkey.eq(rcmd.sgl_key),
        mov_w.payload.length.eq(rcmd.nbytes),
        mov_w.payload.beats.eq(r_beats), mov_w.payload.tail.eq(tail_bytes),
    ]
    # (the packet's last beat index, ``beats - 1``, computed as it is queued, so that the
    # streamer finds its last beat with a compare, no carry chain before its output)
    strm_layout = data.StructLayout({"ctx": cbits, "last_n": beat_w, "tail": beat_shift + 1})
    strm_w, strm_r = _fifo_stream(m, "stream_q", strm_layout, 2)
    mv = mov_r.payload
    desc_done = Signal()           # the head's descriptor was taken
    mv_pg = Signal(pt_bits)        # the head's next page to read
    mv_left = Signal(beat_w + 1)
    m.d.comb += mv_left.eq(mv.beats - (mv_pg << pb_bits))
    mv_last = mv_left <= page_beats
    first_rd = mv_pg == 0          # the packet's first read also queues the packet
    # a staging read request leaves through a register slice (o_stg_rd from flip-flops);
    # the page table is read as the slice loads its output register, so that the page
    # is there with the request
    rd_layout = data.StructLayout({"ctx": cbits, "pg": pt_bits, "beats": 22})
    m.submodules.stg_rd_q = rd_q = RegisterSlice(rd_layout)
    rd_next = Signal(rd_layout)
    m.d.comb += rd_next.eq(Mux(rd_q.spare_valid, rd_q.spare, rd_q.i_data))
    rd_page = page_of(rd_next.ctx, rd_next.pg, en=~rd_q.o_valid | rd_q.o_ready)
    m.d.comb += [
        top.o_stg_rd.valid.eq(rd_q.o_valid), rd_q.o_ready.eq(top.o_stg_rd.ready),
        top.o_stg_rd.payload.offset.eq(Cat(C(0, PAGE_SHIFT), rd_page)),
        top.o_stg_rd.payload.beats.eq(rd_q.o_data.beats),
    ]
    m.d.comb += [
        rdma_ret.valid.eq(mov_r.valid & ~desc_done),
        rdma_ret.payload.op.eq(RdmaOp.WRITE),
        rdma_ret.payload.qpn.eq(mv.qpn),
        rdma_ret.payload.addr.eq(mv.addr),
        rdma_ret.payload.rkey.eq(mv.rkey),
        rdma_ret.payload.length.eq(mv.length),
        rdma_ret.payload.tag.eq(mv.ctx),
        rd_q.i_valid.eq(mov_r.valid & desc_done & (~first_rd | strm_w.ready)),
        rd_q.i_data.ctx.eq(mv.ctx), rd_q.i_data.pg.eq(mv_pg),
        rd_q.i_data.beats.eq(Mux(mv_last, mv_left, page_beats)),
        strm_w.payload.ctx.eq(mv.ctx), strm_w.payload.last_n.eq(mv.beats - 1),
        strm_w.payload.tail.eq(mv.tail),
        strm_w.valid.eq(mov_r.valid & desc_done & first_rd & rd_q.i_ready),
        mov_r.ready.eq(desc_done & rd_q.i_ready & mv_last
                       & (~first_rd | strm_w.ready)),
    ]
    with m.If(rdma_ret.valid & rdma_ret.ready):
        m.d.sync += desc_done.eq(1)
    with m.If(rd_q.i_valid & rd_q.i_ready):
        m.d.sync += mv_pg.eq(Mux(mv_last, 0, mv_pg + 1))
    with m.If(mov_r.valid & mov_r.ready):
        m.d.sync += desc_done.eq(0)
    u.give(mov_w=mov_w, strm_r=strm_r)
