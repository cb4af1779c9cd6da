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

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .formats import StagingRead, StagingWrite, StreamBeat
from .params import EngineParams

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


class _WriteKind(enum.Enum, shape=2):
    STORE = 0       # inside the staging window: every beat is written
    MSIX = 1        # one beat at msix_addr: its low 32 bits go to o_msix
    DISCARD = 2     # anything else: beats accepted and dropped, SLVERR


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
    s_axi_p2p_aw* (awid awaddr awlen awsize awburst awvalid awready) : AXI4 write address
        ``awready`` is high while no write burst is in progress and in the
        cycle its last W beat is taken (so bursts follow back to back). The burst is
        classified from the AW beat alone: full-width (``awsize = log2 B``)
        INCR bursts lying wholly inside the staging window store; a one-beat
        full-width INCR burst at ``msix_addr`` posts an MSI-X message;
        everything else (outside, crossing either end of the window, another
        size or burst type, longer MSI-X writes) is discarded with SLVERR.
        The low ``log2 B`` address bits are ignored.
    s_axi_p2p_w* (wdata wstrb wlast wvalid wready) : AXI4 write data
        Beats are accepted from cycle 1, one a cycle: a storing beat writes
        the bytes ``wstrb`` selects (from a register) the cycle after its
        handshake; a read issued from that cycle on sees them. It needs
        the write port: ``wready`` is low while ``i_wr`` is valid, except
        when the AXI side holds the turn, which it gets by losing a tie, so
        the two alternate beat by beat. An MSI-X beat is taken when the
        message buffer (4 messages) has room; a discarded beat is taken at
        once. The beat count comes from ``awlen``; ``wlast`` is not checked.
    s_axi_p2p_b* (bid bresp bvalid bready) : AXI4 write response
        ``bvalid`` the cycle after the last beat's handshake (from a FIFO of
        four responses, in burst order), ``bid = awid``, ``bresp`` OKAY or
        SLVERR. While the FIFO is full, a burst's last W beat waits.
    s_axi_p2p_ar* (arid araddr arlen arsize arburst arvalid arready) : AXI4 read address
        ``arready`` is high while no beat of an earlier burst is left to
        enter the read pipeline (and in the cycle its last one enters), so a
        burst's R beats follow the previous burst's without a gap; classified
        like a write (there is no MSI-X read: ``msix_addr`` answers SLVERR).
    s_axi_p2p_r* (rid rdata rresp rlast rvalid rready) : AXI4 read data
        First beat ``rvalid`` at cycle 4 at the earliest (the read address is
        registered before the block RAM), then one beat a
        cycle while ``rready`` is high and the read port is won;
        ``rid = arid``; an error burst has ``rresp`` SLVERR and zero
        ``rdata`` on every beat. Bursts answer in AR order.
    o_msix : Out(stream.Signature(32))
        ``wdata[31:0]`` of each MSI-X write (``wstrb`` is not checked), in
        arrival order; ``valid`` the cycle after the W handshake at the
        earliest (four messages are buffered; a fifth waits in W). The B
        response goes out the cycle after the W handshake.
    i_wr : In(stream.Signature(StagingWrite(W)))
        ``{offset, data, keep}``: the bytes ``keep`` selects are written to
        the word at ``offset`` (beat-aligned; bits at and above
        ``log2 staging_bytes`` and below ``log2 B`` are ignored) from a register
        the cycle after the handshake; a read port access issued from the
        next cycle on sees them. ``ready`` is high except when the AXI write channel holds
        the write port's turn and presents a storing beat.
    i_rd : In(stream.Signature(StagingRead))
        ``{offset, beats}``: ``beats`` (0 reads nothing) words from
        word ``offset / B``, wrapping at the end of the memory. ``ready`` is
        high while no internal read is being issued, and in the cycle the
        current read issues its last word, so requests follow each other
        without a gap.
    o_rd : Out(stream.Signature(StreamBeat(W)))
        The words of each request in order, ``keep`` all ones, ``last`` on a
        request's final word; first beat ``valid`` at cycle 4 at the
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
        lane_bits = B.bit_length() - 1
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

        # ---- AXI write channels: AW -> W beats -> B ---------------------------------------------
        m.submodules.msix_fifo = msix_fifo = fifo.SyncFIFO(width=32, depth=4)
        wr_kind = Signal(_WriteKind)
        wr_word = Signal(word_bits)
        wr_left = Signal(8)               # beats still to come after the awaited one
        wr_id = Signal(P2P_ID_WIDTH)
        aw_inside, aw_word, aw_msix = window_check(
            p, ax("awaddr"), ax("awlen"), ax("awsize"), ax("awburst"))
        aw_inside = aw_inside & onchip

        # B responses wait in a FIFO, so that the next burst's AW is taken in the cycle of
        # the last W beat while the previous B is still pending
        m.submodules.b_fifo = b_fifo = fifo.SyncFIFO(width=P2P_ID_WIDTH + 2, depth=4)
        w_last_fire = Signal()            # the burst's last W beat is taken this cycle
        take_aw = Signal()
        with m.FSM(name="axi_write") as wr_fsm:
            with m.State("IDLE"):
                m.d.comb += [ax("awready").eq(1), take_aw.eq(ax("awvalid"))]
                with m.If(ax("awvalid")):
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(ax("wvalid") & ax("wready")):
                    m.d.sync += [wr_left.eq(wr_left - 1), wr_word.eq(wr_word + 1)]
                    with m.If(wr_left == 0):
                        m.d.comb += [w_last_fire.eq(1), ax("awready").eq(1),
                                     take_aw.eq(ax("awvalid"))]
                        with m.If(~ax("awvalid")):
                            m.next = "IDLE"
        with m.If(take_aw):
            m.d.sync += [wr_word.eq(aw_word), wr_left.eq(ax("awlen")), wr_id.eq(ax("awid"))]
            with m.If(aw_inside):
                m.d.sync += wr_kind.eq(_WriteKind.STORE)
            with m.Elif(aw_msix):
                m.d.sync += wr_kind.eq(_WriteKind.MSIX)
            with m.Else():
                m.d.sync += wr_kind.eq(_WriteKind.DISCARD)
        m.d.comb += [
            b_fifo.w_en.eq(w_last_fire),
            b_fifo.w_data.eq(Cat(wr_id, Mux(wr_kind == _WriteKind.DISCARD,
                                            AxiResp.SLVERR.value, AxiResp.OKAY.value))),
            ax("bvalid").eq(b_fifo.r_rdy),
            ax("bid").eq(b_fifo.r_data[:P2P_ID_WIDTH]),
            ax("bresp").eq(b_fifo.r_data[P2P_ID_WIDTH:]),
            b_fifo.r_en.eq(ax("bready")),
        ]

        in_data = wr_fsm.ongoing("DATA")
        wr_store = Signal()               # a storing burst waits for its beats
        m.d.comb += wr_store.eq(in_data & (wr_kind == _WriteKind.STORE))

        # write port: internal first; the AXI side takes the turn after losing a tie
        axi_w_turn = Signal()
        int_w_fire = Signal()
        axi_w_fire = Signal()
        m.d.comb += [
            i_wr.ready.eq(~(wr_store & ax("wvalid") & axi_w_turn)),
            int_w_fire.eq(i_wr.valid & i_wr.ready),
            axi_w_fire.eq(wr_store & ax("wvalid") & ax("wready")),
        ]
        b_room = (wr_left != 0) | b_fifo.w_rdy     # the last beat needs room for its B
        with m.Switch(wr_kind):
            with m.Case(_WriteKind.STORE):
                m.d.comb += ax("wready").eq(in_data & b_room & (axi_w_turn | ~i_wr.valid))
            with m.Case(_WriteKind.MSIX):
                m.d.comb += ax("wready").eq(in_data & b_room & msix_fifo.w_rdy)
            with m.Default():
                m.d.comb += ax("wready").eq(in_data & b_room)
        with m.If(axi_w_fire):
            m.d.sync += axi_w_turn.eq(0)
        with m.Elif(int_w_fire & wr_store & ax("wvalid")):
            m.d.sync += axi_w_turn.eq(1)

        # the write port is driven from registers (address, data and byte enables reach every
        # block RAM of the memory, spread over the die): a beat is stored a cycle after its
        # handshake, as a read's address is registered (below), so a read issued from the
        # next cycle on still sees it
        wq_addr, wq_data, wq_en = Signal(word_bits), Signal(W), Signal(B)
        m.d.comb += [wr_port.addr.eq(wq_addr), wr_port.data.eq(wq_data), wr_port.en.eq(wq_en)]
        m.d.sync += wq_en.eq(0)
        with m.If(int_w_fire):
            m.d.sync += [
                wq_addr.eq(i_wr.payload.offset[lane_bits:lane_bits + word_bits]),
                wq_data.eq(i_wr.payload.data),
                wq_en.eq(i_wr.payload.keep),
            ]
        with m.Elif(axi_w_fire):
            m.d.sync += [
                wq_addr.eq(wr_word),
                wq_data.eq(ax("wdata")),
                wq_en.eq(ax("wstrb")),
            ]

        m.d.comb += [
            msix_fifo.w_en.eq(in_data & (wr_kind == _WriteKind.MSIX)
                              & ax("wvalid") & ax("wready")),
            msix_fifo.w_data.eq(ax("wdata")[:32]),
            o_msix.valid.eq(msix_fifo.r_rdy),
            o_msix.payload.eq(msix_fifo.r_data),
            msix_fifo.r_en.eq(o_msix.ready),
        ]

        # ---- read buffers: one per reader, credit-checked so a read never overflows ------------
        m.submodules.r_fifo = r_fifo = fifo.SyncFIFO(width=W + 2 + P2P_ID_WIDTH, depth=_OUT_DEPTH)
        m.submodules.o_fifo = o_fifo = fifo.SyncFIFO(width=W + 1, depth=_OUT_DEPTH)
        # a word granted in cycle t has its address registered (s0_*), is read at the end of
        # t+1 and written into its buffer in cycle t+2 (s1_*)
        s0_axi, s0_axi_last, s0_axi_err = Signal(), Signal(), Signal()
        s0_axi_id = Signal(P2P_ID_WIDTH)
        s0_int, s0_int_last = Signal(), Signal()
        s1_axi, s1_axi_last, s1_axi_err = Signal(), Signal(), Signal()
        s1_axi_id = Signal(P2P_ID_WIDTH)
        s1_int, s1_int_last = Signal(), Signal()
        axi_room = (r_fifo.level + s0_axi + s1_axi) < _OUT_DEPTH
        int_room = (o_fifo.level + s0_int + s1_int) < _OUT_DEPTH

        # ---- AXI read channels: AR -> R beats ---------------------------------------------------
        rd_ok = Signal()                  # the burst reads memory (else SLVERR, zero data)
        rd_word = Signal(word_bits)
        rd_left = Signal(9)               # beats still to issue
        rd_id = Signal(P2P_ID_WIDTH)
        ar_inside, ar_word, _ = window_check(
            p, ax("araddr"), ax("arlen"), ax("arsize"), ax("arburst"))
        ar_inside = ar_inside & onchip
        # a new burst is taken once every beat of the previous one has entered the read
        # pipeline (its R beats may still be on their way): bursts follow back to back
        axi_issue = Signal()              # one beat of the AXI burst enters the pipeline
        m.d.comb += ax("arready").eq((rd_left == 0) | ((rd_left == 1) & axi_issue))
        with m.If(ax("arvalid") & ax("arready")):
            m.d.sync += [rd_ok.eq(ar_inside), rd_word.eq(ar_word),
                         rd_left.eq(ax("arlen") + 1), rd_id.eq(ax("arid"))]
        with m.Elif(axi_issue):
            m.d.sync += [rd_left.eq(rd_left - 1), rd_word.eq(rd_word + 1)]
        axi_wants = (rd_left != 0) & axi_room
        # ---- internal reads: i_rd -> o_rd --------------------------------------------------------
        int_word = Signal(word_bits)
        int_left = Signal.like(i_rd.payload.beats)   # words still to issue
        int_wants = (int_left != 0) & int_room

        # read port: internal first; the AXI side takes the turn after losing a tie
        axi_r_turn = Signal()
        int_grant = Signal()
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

        m.d.comb += i_rd.ready.eq((int_left == 0) | ((int_left == 1) & int_grant))
        with m.If(i_rd.valid & i_rd.ready):
            m.d.sync += [int_word.eq(i_rd.payload.offset[lane_bits:lane_bits + word_bits]),
                         int_left.eq(i_rd.payload.beats)]
        with m.Elif(int_grant):
            m.d.sync += [int_left.eq(int_left - 1), int_word.eq(int_word + 1)]

        m.d.sync += [
            s0_axi.eq(axi_issue), s0_axi_last.eq(rd_left == 1), s0_axi_err.eq(~rd_ok),
            s0_axi_id.eq(rd_id),
            s0_int.eq(int_grant), s0_int_last.eq(int_left == 1),
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
