"""Staging memory and P2P target.

Behaviour is specified in ``docs/backend.md``, section "Staging memory and
P2P target". One memory of ``staging_bytes`` bytes, ``data_width`` bits a
word, with one byte-writable write port and one synchronous read port:

* the **write port** is shared by the internal write stream ``i_wr`` and the
  AXI write channel of ``s_axi_p2p``;
* the **read port** is shared by the internal read engine (``i_rd`` ->
  ``o_rd``) and the AXI read channel of ``s_axi_p2p``.

On each port the internal side wins a tie, and a side that lost a tie wins
the next one, so when both keep asking they alternate beat by beat. Reads
and writes never contend with each other. A read issued in the same cycle
as a write to the same word returns the word's old bytes.

AXI bursts are classified once, when their address is accepted (see
:func:`window_check`): a write either stores every beat (inside the staging
window), posts one MSI-X message (one beat at ``msix_addr``) or discards
every beat and answers SLVERR; a read either returns the memory's bytes or
returns zero data with SLVERR on every beat.
"""

from amaranth.hdl import C, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .formats import StagingRead, StagingWrite, StreamBeat
from .params import EngineParams
from .stream_util import FlagFifo, RegisterSlice

__all__ = ["StagingMemory", "AxiResp", "P2P_ID_WIDTH", "p2p_ports", "window_check"]

#: Width of ``awid`` / ``bid`` / ``arid`` / ``rid``. The IDs are only echoed
#: (one burst is outstanding per direction); a master without IDs ties them to 0.
P2P_ID_WIDTH = 4

_OUT_DEPTH = 4      # entries of each read-data buffer (R channel, o_rd)
_AXI_BURST_INCR = 1


class AxiResp(enum.Enum, shape=2):
    """``bresp`` / ``rresp`` values the target answers."""
    OKAY = 0
    SLVERR = 2


def p2p_ports(params):
    """AXI4 members of ``s_axi_p2p``: ``(name, direction seen from the target, width)``."""
    W = params.data_width
    # docs/backend.md names ``pcie_addr_width`` (default 64); EngineParams may not carry it yet
    A = getattr(params, "pcie_addr_width", 64)
    return (
        ("awid", "i", P2P_ID_WIDTH), ("awaddr", "i", A), ("awlen", "i", 8), ("awsize", "i", 3),
        ("awburst", "i", 2), ("awvalid", "i", 1), ("awready", "o", 1),
        ("wdata", "i", W), ("wstrb", "i", W // 8), ("wlast", "i", 1), ("wvalid", "i", 1),
        ("wready", "o", 1),
        ("bid", "o", P2P_ID_WIDTH), ("bresp", "o", 2), ("bvalid", "o", 1), ("bready", "i", 1),
        ("arid", "i", P2P_ID_WIDTH), ("araddr", "i", A), ("arlen", "i", 8), ("arsize", "i", 3),
        ("arburst", "i", 2), ("arvalid", "i", 1), ("arready", "o", 1),
        ("rid", "o", P2P_ID_WIDTH), ("rdata", "o", W), ("rresp", "o", 2), ("rlast", "o", 1),
        ("rvalid", "o", 1), ("rready", "i", 1),
    )


def window_check(params, addr, length, size, burst):
    """Classify an AXI burst (combinational): ``(inside, word, msix)``.

    ``inside``: a full-width INCR burst whose every beat lies in
    ``[staging_base, staging_base + staging_bytes)``; ``word``: the memory
    word of its first beat (the byte-lane bits of ``addr`` are ignored, the
    master's strobes select the lanes); ``msix``: a one-beat full-width INCR
    burst at exactly ``msix_addr``.
    """
    B = params.beat_bytes
    lane_bits = B.bit_length() - 1
    offset_bits = params.staging_bytes.bit_length() - 1
    depth = params.staging_bytes // B
    lo, hi = params.staging_base, params.staging_base + params.staging_bytes
    shape_ok = (size == lane_bits) & (burst == _AXI_BURST_INCR)
    word = (addr - lo)[lane_bits:offset_bits]
    inside = shape_ok & (addr >= lo) & (addr < hi) & (word + length < depth)
    msix = shape_ok & (addr == params.msix_addr) & (length == 0)
    return inside, word, msix


class StagingMemory(wiring.Component):
    """Staging memory with its P2P AXI4 target, internal write and read ports.

    Parameters
    ----------
    params : EngineParams
        Uses ``data_width`` (``W``; ``B = W/8`` bytes a beat), ``staging_base``,
        ``staging_bytes``, ``msix_addr`` and ``pcie_addr_width`` (the AXI
        address width; 64 when the parameters do not carry it).

    Interface attributes (all synchronous to ``clk``; cycle 0 is a handshake)
    -------------------------------------------------------------------------
    Every input stream enters through a register slice
    (:class:`rtl.stream_util.RegisterSlice`: AW, AR, ``i_wr``, ``i_rd``) or, for W, a
    FIFO of four beats whose flags are flip-flops (:class:`rtl.stream_util.FlagFifo`):
    ``awready``, ``wready``, ``arready`` and the ``ready`` of ``i_wr`` and ``i_rd`` come
    from flip-flops, high while the slice or FIFO has room, whatever the rest of the
    block does; an item leaves its slice or FIFO the cycle after its handshake at the
    earliest. Every output comes from flip-flops
    or from a small FIFO read at a registered pointer: no input reaches an output in
    the same cycle.

    s_axi_p2p_aw* (awid awaddr awlen awsize awburst awvalid awready) : AXI4 write address
        A burst starts in the cycle its AW leaves the slice, when no write burst is in
        progress or in the cycle the previous burst's last W beat is taken (so bursts
        follow back to back). The burst is
        classified from the AW beat alone: full-width (``awsize = log2 B``)
        INCR bursts lying wholly inside the staging window store; a one-beat
        full-width INCR burst at ``msix_addr`` posts an MSI-X message;
        everything else (outside, crossing either end of the window, another
        size or burst type, longer MSI-X writes) is discarded with SLVERR.
        The low ``log2 B`` address bits are ignored. The pieces of the
        classification (address compares, the burst's fit in the window) are
        computed as the AW is taken and held in its slice.
    s_axi_p2p_w* (wdata wstrb wlast wvalid wready) : AXI4 write data
        Beats leave their FIFO one a cycle from the cycle after their burst starts
        (the cycle after their own handshake at the earliest), so W flows without a
        gap from the first beat when it comes with its AW:
        a storing beat writes the bytes ``wstrb`` selects (from a register) the
        cycle after it leaves; a read granted from that cycle on sees them. It needs
        the write port: it waits while ``i_wr``'s slice offers a beat, except
        when the AXI side holds the turn, which it gets by losing a tie, so
        the two alternate beat by beat. An MSI-X beat is taken when the
        message buffer (4 messages) has room; a discarded beat is taken at
        once. The beat count comes from ``awlen``; ``wlast`` is not checked.
    s_axi_p2p_b* (bid bresp bvalid bready) : AXI4 write response
        ``bvalid`` the cycle after the last beat leaves the W FIFO (two cycles after
        its handshake at the earliest; from a FIFO of four responses, in burst
        order), ``bid = awid``, ``bresp`` OKAY or SLVERR. While the FIFO is full, a
        burst's last W beat waits.
    s_axi_p2p_ar* (arid araddr arlen arsize arburst arvalid arready) : AXI4 read address
        A burst starts in the cycle its AR leaves the slice, when no beat of an
        earlier burst is left to enter the read pipeline or in the cycle its last one
        enters, so a burst's R beats follow the previous burst's without a gap;
        classified like a write (there is no MSI-X read: ``msix_addr`` answers
        SLVERR).
    s_axi_p2p_r* (rid rdata rresp rlast rvalid rready) : AXI4 read data
        First beat ``rvalid`` at cycle 5 at the earliest (the AR slice, then the
        read address registered before the block RAM), then one beat a
        cycle while ``rready`` is high and the read port is won;
        ``rid = arid``; an error burst has ``rresp`` SLVERR and zero
        ``rdata`` on every beat. Bursts answer in AR order.
    o_msix : Out(stream.Signature(32))
        ``wdata[31:0]`` of each MSI-X write (``wstrb`` is not checked), in
        arrival order; ``valid`` the cycle after the W beat leaves the W FIFO (three
        cycles after the AW handshake at the earliest, when W comes with it; four
        messages are buffered, then four more wait in the W FIFO). The B response
        goes out in the same cycle as ``valid``.
    i_wr : In(stream.Signature(StagingWrite(W)))
        ``{offset, data, keep}``: the bytes ``keep`` selects are written to
        the word at ``offset`` (beat-aligned; bits at and above
        ``log2 staging_bytes`` and below ``log2 B`` are ignored) from a register
        the cycle after the beat leaves its slice (two cycles after the handshake
        at the earliest); a read granted from that cycle on sees them. A beat
        leaves its slice unless the AXI write channel holds the write port's turn
        and offers a storing beat.
    i_rd : In(stream.Signature(StagingRead))
        ``{offset, beats}``: ``beats`` (0 reads nothing) words from
        word ``offset / B``, wrapping at the end of the memory. A request leaves
        its slice while no internal read is being issued, and in the cycle the
        current read issues its last word, so requests follow each other
        without a gap.
    o_rd : Out(stream.Signature(StreamBeat(W)))
        The words of each request in order, ``keep`` all ones, ``last`` on a
        request's final word; first beat ``valid`` at cycle 5 at the
        earliest after ``i_rd``'s handshake, then one a cycle while
        ``ready`` is high and the read port is won.
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        W = params.data_width
        members = {}
        for name, direction, width in p2p_ports(params):
            members[f"s_axi_p2p_{name}"] = In(width) if direction == "i" else Out(width)
        members.update({
            "o_msix": Out(stream.Signature(32)),
            "i_wr": In(stream.Signature(StagingWrite(W))),
            "i_rd": In(stream.Signature(StagingRead)),
            "o_rd": Out(stream.Signature(StreamBeat(W))),
        })
        super().__init__(members)

    def _axi(self, name):
        return getattr(self, f"s_axi_p2p_{name}")

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W, B = p.data_width, p.beat_bytes
        depth = p.staging_bytes // B
        word_bits = depth.bit_length() - 1
        ax = self._axi
        i_wr, i_rd, o_rd, o_msix = self.i_wr, self.i_rd, self.o_rd, self.o_msix

        onchip = p.onchip_staging
        if onchip:
            m.submodules.mem = mem = Memory(shape=W, depth=depth, init=[])
            wr_port = mem.write_port(granularity=8)
            rd_port = mem.read_port()  # synchronous, not transparent: old data on a collision
        else:
            # external staging (m_axi_stg, rtl/staging_axi.py): no memory here; only the
            # MSI-X window is served, everything else answers SLVERR
            wr_port = wiring.Signature({"addr": Out(word_bits), "data": Out(W),
                                        "en": Out(B)}).create()
            rd_port = wiring.Signature({"addr": Out(word_bits), "en": Out(1),
                                        "data": Out(W)}).create()

        # ---- every input stream through a register slice (ready from a flip-flop) --------------
        # the address channels carry their burst's classification, computed in pieces as
        # the address is taken (_classify): the pieces are combined when the burst starts
        def slice_in(name, layout, valid, ready, fields):
            sl = m.submodules[name] = RegisterSlice(layout)
            m.d.comb += [sl.i_valid.eq(valid), ready.eq(sl.i_ready)]
            m.d.comb += [sl.i_data[k].eq(v) for k, v in fields.items()]
            return sl

        addr_layout = _addr_layout(word_bits)
        aw = slice_in("aw_in", addr_layout, ax("awvalid"), ax("awready"),
                      _classify(p, ax("awid"), ax("awaddr"), ax("awlen"), ax("awsize"),
                                ax("awburst")))
        # W beats into a FIFO of four (``wready`` its registered room; the head read from
        # LUT RAM at a registered pointer): a burst starts two cycles after its AW
        # handshake, and the beats that came with it wait there without holding W back
        w_fifo = m.submodules.w_fifo = FlagFifo(W + B, 4, buffered=False)
        w_in = _FifoView(w_fifo, data.StructLayout({"data": W, "strb": B}))
        m.d.comb += [w_fifo.w_en.eq(ax("wvalid")), ax("wready").eq(w_fifo.w_rdy),
                     w_fifo.w_data.eq(Cat(ax("wdata"), ax("wstrb")))]
        ar = slice_in("ar_in", addr_layout, ax("arvalid"), ax("arready"),
                      _classify(p, ax("arid"), ax("araddr"), ax("arlen"), ax("arsize"),
                                ax("arburst")))
        iw = slice_in("wr_in", StagingWrite(W), i_wr.valid, i_wr.ready,
                      {"offset": i_wr.payload.offset, "data": i_wr.payload.data,
                       "keep": i_wr.payload.keep})
        beats = i_rd.payload.beats
        ir = slice_in("rd_in", data.StructLayout({"word": word_bits, "cnt": len(beats) + 1,
                                                  "zero": 1}),
                      i_rd.valid, i_rd.ready,
                      {"word": i_rd.payload.offset[self._lane_bits():][:word_bits],
                       "cnt": beats - 2, "zero": beats == 0})

        # ---- AXI write: AW -> W beats -> B ------------------------------------------------------
        m.submodules.msix_fifo = msix_fifo = FlagFifo(32, 4, buffered=False)
        m.submodules.b_fifo = b_fifo = FlagFifo(P2P_ID_WIDTH + 2, 4, buffered=False)
        in_data = Signal()                # a burst is in progress (its AW taken)
        k_store, k_msix, k_discard = Signal(), Signal(), Signal()   # its kind, one-hot
        wr_word = Signal(word_bits)
        wr_cnt = Signal(signed(9))        # beats after the awaited one, minus 1
        wr_last = wr_cnt[-1]              # the awaited beat is the burst's last
        wr_id = Signal(P2P_ID_WIDTH)
        a = aw.o_data
        # write port: internal first; the AXI side takes the turn after losing a tie
        axi_w_turn = Signal()
        store_wants = in_data & k_store & w_in.o_valid
        b_room = ~wr_last | b_fifo.w_rdy       # the last beat needs room for its B
        w_go = Signal()                   # an AXI W beat is taken this cycle
        m.d.comb += w_go.eq(in_data & w_in.o_valid & b_room & (
            (k_store & (axi_w_turn | ~iw.o_valid)) | (k_msix & msix_fifo.w_rdy) | k_discard))
        take_aw = aw.o_valid & (~in_data | (w_go & wr_last))
        m.d.comb += [w_in.o_ready.eq(w_go), aw.o_ready.eq(take_aw)]
        with m.If(take_aw):
            store = a.incr & a.ge & a.lt & a.fits if onchip else C(0, 1)
            msix = a.incr & a.m_lo & a.m_hi
            m.d.sync += [in_data.eq(1), wr_word.eq(a.word), wr_cnt.eq(a.cnt), wr_id.eq(a.id),
                         k_store.eq(store), k_msix.eq(msix), k_discard.eq(~store & ~msix)]
        with m.Elif(w_go):
            m.d.sync += [wr_cnt.eq(wr_cnt - 1), wr_word.eq(wr_word + 1)]
            with m.If(wr_last):
                m.d.sync += in_data.eq(0)
        m.d.comb += [
            b_fifo.w_en.eq(w_go & wr_last),
            b_fifo.w_data.eq(Cat(wr_id, Mux(k_discard, AxiResp.SLVERR.value,
                                            AxiResp.OKAY.value))),
            ax("bvalid").eq(b_fifo.r_rdy),
            ax("bid").eq(b_fifo.r_data[:P2P_ID_WIDTH]),
            ax("bresp").eq(b_fifo.r_data[P2P_ID_WIDTH:]),
            b_fifo.r_en.eq(ax("bready")),
            msix_fifo.w_en.eq(w_go & k_msix),
            msix_fifo.w_data.eq(w_in.o_data.data[:32]),
            o_msix.valid.eq(msix_fifo.r_rdy),
            o_msix.payload.eq(msix_fifo.r_data),
            msix_fifo.r_en.eq(o_msix.ready),
        ]
        int_w_fire = Signal()
        axi_w_fire = w_go & k_store
        m.d.comb += [iw.o_ready.eq(~(store_wants & axi_w_turn)),
                     int_w_fire.eq(iw.o_valid & iw.o_ready)]
        with m.If(axi_w_fire):
            m.d.sync += axi_w_turn.eq(0)
        with m.Elif(int_w_fire & store_wants):
            m.d.sync += axi_w_turn.eq(1)
        # the write port is driven from registers (address, data and byte enables reach every
        # block RAM of the memory, spread over the die): a beat is stored a cycle after it is
        # taken from its slice or FIFO, as a read's address is registered (below), so a read issued
        # from the next cycle on still sees it
        wq_addr, wq_data, wq_en = Signal(word_bits), Signal(W), Signal(B)
        m.d.comb += [wr_port.addr.eq(wq_addr), wr_port.data.eq(wq_data), wr_port.en.eq(wq_en)]
        # (address and data load every cycle, without an enable: only the byte enables say
        # whether a beat is stored)
        m.d.sync += [
            wq_addr.eq(Mux(int_w_fire, iw.o_data.offset[self._lane_bits():][:word_bits],
                           wr_word)),
            wq_data.eq(Mux(int_w_fire, iw.o_data.data, w_in.o_data.data)),
            wq_en.eq(Mux(int_w_fire, iw.o_data.keep, Mux(axi_w_fire, w_in.o_data.strb, 0))),
        ]

        # ---- read buffers: one per reader; a credit for each entry, taken when a word is
        # granted and given back when its buffer entry is read, so a read never overflows
        m.submodules.r_fifo = r_fifo = FlagFifo(W + 2 + P2P_ID_WIDTH, _OUT_DEPTH, buffered=False)
        m.submodules.o_fifo = o_fifo = FlagFifo(W + 1, _OUT_DEPTH, buffered=False)
        axi_issue = Signal()              # one beat of the AXI burst enters the pipeline
        int_grant = Signal()
        axi_room = _credits(m, "axi_credit", take=axi_issue,
                            give=r_fifo.r_rdy & ax("rready"))
        int_room = _credits(m, "int_credit", take=int_grant, give=o_fifo.r_rdy & o_rd.ready)
        # a word granted in cycle t has its address registered (s0_*), is read at the end of
        # t+1 and written into its buffer in cycle t+2 (s1_*)
        s0_axi, s0_axi_last, s0_axi_err = Signal(), Signal(), Signal()
        s0_axi_id = Signal(P2P_ID_WIDTH)
        s0_int, s0_int_last = Signal(), Signal()
        s1_axi, s1_axi_last, s1_axi_err = Signal(), Signal(), Signal()
        s1_axi_id = Signal(P2P_ID_WIDTH)
        s1_int, s1_int_last = Signal(), Signal()

        # ---- AXI read: AR -> R beats ------------------------------------------------------------
        rd_busy = Signal()                # a burst has beats left to issue
        rd_ok = Signal()                  # the burst reads memory (else SLVERR, zero data)
        rd_word = Signal(word_bits)
        rd_cnt = Signal(signed(9))        # beats left to issue, minus 2
        rd_last = rd_cnt[-1]              # the next beat is the burst's last
        rd_id = Signal(P2P_ID_WIDTH)
        r = ar.o_data
        # a new burst is taken once every beat of the previous one has entered the read
        # pipeline (its R beats may still be on their way): bursts follow back to back
        take_ar = ar.o_valid & (~rd_busy | (axi_issue & rd_last))
        m.d.comb += ar.o_ready.eq(take_ar)
        with m.If(take_ar):
            m.d.sync += [rd_busy.eq(1), rd_ok.eq((r.incr & r.ge & r.lt & r.fits)
                                                 if onchip else 0),
                         rd_word.eq(r.word), rd_cnt.eq(r.cnt), rd_id.eq(r.id)]
        with m.Elif(axi_issue):
            m.d.sync += [rd_cnt.eq(rd_cnt - 1), rd_word.eq(rd_word + 1)]
            with m.If(rd_last):
                m.d.sync += rd_busy.eq(0)
        axi_wants = rd_busy & axi_room
        # ---- internal reads: i_rd -> o_rd ------------------------------------------------------
        int_busy = Signal()
        int_word = Signal(word_bits)
        int_cnt = Signal(signed(len(beats) + 1))   # words left to issue, minus 2
        int_last = int_cnt[-1]
        int_wants = int_busy & int_room

        # read port: internal first; the AXI side takes the turn after losing a tie
        axi_r_turn = Signal()
        axi_grant = Signal()
        m.d.comb += [
            int_grant.eq(int_wants & ~(axi_r_turn & axi_wants & rd_ok)),
            axi_grant.eq(axi_wants & rd_ok & ~int_grant),
            axi_issue.eq(axi_grant | (axi_wants & ~rd_ok)),
        ]
        rq_en, rq_addr = Signal(), Signal(word_bits)
        m.d.sync += [rq_en.eq(int_grant | axi_grant),
                     rq_addr.eq(Mux(int_grant, int_word, rd_word))]
        m.d.comb += [rd_port.en.eq(rq_en), rd_port.addr.eq(rq_addr)]
        with m.If(axi_grant):
            m.d.sync += axi_r_turn.eq(0)
        with m.Elif(int_grant & axi_wants & rd_ok):
            m.d.sync += axi_r_turn.eq(1)

        take_rd = ir.o_valid & (~int_busy | (int_grant & int_last))
        m.d.comb += ir.o_ready.eq(take_rd)
        with m.If(take_rd):
            m.d.sync += [int_busy.eq(~ir.o_data.zero), int_word.eq(ir.o_data.word),
                         int_cnt.eq(ir.o_data.cnt)]
        with m.Elif(int_grant):
            m.d.sync += [int_cnt.eq(int_cnt - 1), int_word.eq(int_word + 1)]
            with m.If(int_last):
                m.d.sync += int_busy.eq(0)

        m.d.sync += [
            s0_axi.eq(axi_issue), s0_axi_last.eq(rd_last), s0_axi_err.eq(~rd_ok),
            s0_axi_id.eq(rd_id),
            s0_int.eq(int_grant), s0_int_last.eq(int_last),
            s1_axi.eq(s0_axi), s1_axi_last.eq(s0_axi_last), s1_axi_err.eq(s0_axi_err),
            s1_axi_id.eq(s0_axi_id),
            s1_int.eq(s0_int), s1_int_last.eq(s0_int_last),
        ]
        m.d.comb += [
            r_fifo.w_en.eq(s1_axi),
            r_fifo.w_data.eq(Cat(Mux(s1_axi_err, 0, rd_port.data), s1_axi_last, s1_axi_err,
                                 s1_axi_id)),
            o_fifo.w_en.eq(s1_int),
            o_fifo.w_data.eq(Cat(rd_port.data, s1_int_last)),

            ax("rvalid").eq(r_fifo.r_rdy),
            ax("rdata").eq(r_fifo.r_data[:W]),
            ax("rlast").eq(r_fifo.r_data[W]),
            ax("rresp").eq(Mux(r_fifo.r_data[W + 1], AxiResp.SLVERR.value, AxiResp.OKAY.value)),
            ax("rid").eq(r_fifo.r_data[W + 2:]),
            r_fifo.r_en.eq(ax("rready")),

            o_rd.valid.eq(o_fifo.r_rdy),
            o_rd.payload.data.eq(o_fifo.r_data[:W]),
            o_rd.payload.keep.eq(Const((1 << B) - 1, B)),
            o_rd.payload.last.eq(o_fifo.r_data[W]),
            o_fifo.r_en.eq(o_rd.ready),
        ]
        return m

    def _lane_bits(self):
        return self.params.beat_bytes.bit_length() - 1


class _FifoView:
    """The read side of a :class:`FlagFifo` under the names of a register slice's output
    (``o_valid``, ``o_ready``, ``o_data`` as a view of ``layout``)."""

    def __init__(self, f, layout):
        self.o_valid, self.o_ready = f.r_rdy, f.r_en
        self.o_data = data.View(layout, f.r_data)


def _addr_layout(word_bits):
    """An AW or AR beat as its slice holds it: the ID, the burst's first word, its beat
    count less two (signed) and the pieces of its classification (:func:`_classify`)."""
    return data.StructLayout({"id": P2P_ID_WIDTH, "word": word_bits, "cnt": signed(9),
                              "incr": 1, "ge": 1, "lt": 1, "fits": 1, "m_lo": 1, "m_hi": 1})


def _classify(params, id_, addr, length, size, burst):
    """The fields of :func:`_addr_layout` for an address beat, each a few levels of logic
    (the slice registers them; :func:`window_check` is their conjunction)."""
    B = params.beat_bytes
    lane_bits = B.bit_length() - 1
    offset_bits = params.staging_bytes.bit_length() - 1
    depth = params.staging_bytes // B
    lo, hi = params.staging_base, params.staging_base + params.staging_bytes
    # the window's offset of the first beat, modulo its size (its low bits only)
    word = (addr[:offset_bits] - (lo % params.staging_bytes))[lane_bits:offset_bits]
    msix = params.msix_addr
    return {
        "id": id_, "word": word, "cnt": length - 1,
        "incr": (size == lane_bits) & (burst == _AXI_BURST_INCR),
        "ge": addr >= lo, "lt": addr < hi,
        "fits": Cat(word, C(0, 1)) + length < depth,
        "m_lo": addr[:32] == (msix & 0xFFFF_FFFF),
        "m_hi": (addr[32:] == (msix >> 32)) & (length == 0),
    }


def _credits(m, name, *, take, give):
    """A credit counter of :data:`_OUT_DEPTH` credits as a thermometer code (one flip-flop
    each): returns whether one is left (a flip-flop). ``take`` spends one (only when one is
    left), ``give`` returns one."""
    cred = Signal(_OUT_DEPTH, name=name, init=(1 << _OUT_DEPTH) - 1)
    up = Cat(C(1, 1), cred[:-1])
    down = Cat(cred[1:], C(0, 1))
    with m.If(give & ~take):
        m.d.sync += cred.eq(up)
    with m.Elif(take & ~give):
        m.d.sync += cred.eq(down)
    return cred[0]
