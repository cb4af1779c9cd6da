"""The back end's rdma read unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Cat, Mux, Signal

from ..stream_util import RegisterSlice
from .common import (
    RdmaBeat,
    _State,
)


def build(m, top, u):
    """RDMA READ data into the context's pages

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    N, W, beat_w, c_rdm, cbits, state, stg_rdm, stg_rdm_room, stw_ctx, stw_v = u.take(
        "N W beat_w c_rdm cbits state stg_rdm stg_rdm_room stw_ctx stw_v")
    # --- RDMA READ data into the context's pages -------------------------------------------
    # the data enters through a register slice (i_rdma_rd.ready from a flip-flop, the
    # beat and its tag from flip-flops); the status unit holds a status back while a
    # packet's last beat is in it
    m.submodules.rd_in = rd_in = RegisterSlice(RdmaBeat(W))
    m.d.comb += [rd_in.i_valid.eq(top.i_rdma_rd.valid), top.i_rdma_rd.ready.eq(rd_in.i_ready),
                 rd_in.i_data.eq(top.i_rdma_rd.payload)]
    rd_tail = ((rd_in.o_valid & rd_in.o_data.last)
               | (rd_in.spare_valid & rd_in.spare.last))    # a last beat is in the slice
    # A beat is checked as it loads the slice's output register (from the spare entry or
    # the input, as the slice itself chooses), into registers beside it: ``rd_ok`` (its
    # context waits for READ data and the packet has not yet brought all of the command's
    # beats), and ``rd_count``, its index in the packet. The beat count's LUT-memory read
    # and its compare thus end in a flip-flop instead of driving the slice's enables.
    # While the beat waits, ``rd_ok`` falls when the status unit ends its context's READ
    # (``rd_kill``, registers the status unit sets in the cycle it takes the status; it
    # is the only unit that ends WAIT_RD). Under the transport's contract no beat of the
    # packet is left in the slice then (the status waits for the last one); if the
    # transport breaks it, at most the beat offered in the cycle after the status goes
    # through, counted by the staging-write fences like every beat before it.
    rd = rd_in.o_data
    rd_ctx = rd.tag[:cbits]
    nxt = Signal.like(rd_in.i_data)
    m.d.comb += nxt.eq(Mux(rd_in.spare_valid, rd_in.spare, rd_in.i_data))
    nxt_valid = rd_in.spare_valid | rd_in.i_valid
    load = ~rd_in.o_valid | rd_in.o_ready       # the output register takes ``nxt``
    # The beat count is compared once per packet: its first beat is checked against the
    # count being non-zero, and the count left (``pkt_left``, ``pkt_more``: registers
    # set at that beat) answers for the packet's later beats, which must carry the first
    # beat's tag (an AXI4-Stream packet has one TID; a beat with another is dropped).
    # So no carry chain lies between the beat count's LUT-memory read and ``rd_ok``.
    n_ctx = nxt.tag[:cbits]
    in_pkt = Signal(beat_w)                     # beats of the packet loaded so far
    pkt_first = Signal(init=1)                  # the beat before was a last (or none yet)
    pkt_ctx = Signal(cbits)                     # the packet's context (its first tag)
    pkt_left = Signal(beat_w)                   # its command's beats not yet brought ...
    pkt_more = Signal()                         # ... != 0
    rd_ok, rd_count = Signal(), Signal(beat_w)
    rd_kill_v, rd_kill_ctx = Signal(), Signal(cbits)   # driven by the status unit
    # (``stw_*``: its pending state write, a context leaving WAIT_RD the cycle after)
    beats = c_rdm.read(n_ctx)       # (the count's flags and less one, from admission)
    # which contexts wait for READ data: a flag per context, each from its state's
    # flip-flops, so that the beat's tag selects one bit (not a state to compare)
    waiting = Signal(N)
    m.d.comb += waiting.eq(Cat(state[i] == _State.WAIT_RD for i in range(N)))
    with m.If(load):
        m.d.sync += [rd_ok.eq((nxt.tag < N) & waiting.bit_select(n_ctx, 1)
                              & ~(stw_v & (stw_ctx == n_ctx))
                              & Mux(pkt_first, beats.nz,
                                    (n_ctx == pkt_ctx) & pkt_more)),
                     rd_count.eq(in_pkt)]
        with m.If(nxt_valid):
            m.d.sync += [in_pkt.eq(Mux(nxt.last, 0, in_pkt + 1)), pkt_first.eq(nxt.last)]
            with m.If(pkt_first):
                m.d.sync += [pkt_ctx.eq(n_ctx), pkt_left.eq(beats.left),
                             pkt_more.eq(beats.more)]
            with m.Else():
                m.d.sync += [pkt_left.eq(pkt_left - pkt_more),
                             pkt_more.eq(pkt_more & (pkt_left > 1))]
    with m.Else():
        m.d.sync += rd_ok.eq(rd_ok & ~(rd_kill_v & (rd_kill_ctx == rd_ctx)))
    m.d.comb += [
        stg_rdm.valid.eq(rd_in.o_valid & rd_ok),
        stg_rdm.payload.ctx.eq(rd_ctx), stg_rdm.payload.n.eq(rd_count),
        stg_rdm.payload.data.eq(rd.data),
        stg_rdm.payload.keep.eq(rd.keep),
        rd_in.o_ready.eq(Mux(rd_ok, stg_rdm_room, 1)),   # stray data is dropped
    ]
    u.give(rd_count=rd_count, rd_ctx=rd_ctx, rd_kill_ctx=rd_kill_ctx, rd_kill_v=rd_kill_v,
           rd_tail=rd_tail)
