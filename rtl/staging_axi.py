"""Staging in external memory: the back end's staging writes and reads as AXI4 bursts.

Behaviour is specified in ``docs/backend.md``, section "External staging
(m_axi_stg)". The back end offers one beat a write (byte offset, data, byte
enables) and one request a page of reads; this block turns them into bursts on the
AXI4 master ``m_axi_stg`` to memory the integrator provides (a DDR4/HBM
controller, or a PCIe bridge into host memory):

* **writes** are gathered store-and-forward: beats to consecutive words of one
  4 KiB page, arriving back to back, form a burst of up to :data:`MAX_WRITE_BURST`
  beats; the burst's AW is issued once its last beat is known, and its W beats
  only after that AW was taken. A gap in the input, a jump in the address, a page
  boundary or the length limit ends a burst.
* **reads** are split into bursts of at most :data:`MAX_READ_BURST` beats (a page
  at 64 bits is two bursts), several outstanding; their R beats return in order
  (every burst uses ID 0) and are passed on through a register slice.
* ``wr_done`` counts the beats whose write response has come back, in the order
  they were offered: a beat offered as the n-th since reset is in memory once
  ``wr_done - n`` is not negative (modulo 2**16). The back end waits for it before
  it rings a doorbell for the data (see ``rtl/backend/submission.py``, the submission fence).

Engine address = ``staging_axi_base`` | offset (the base is aligned to
``staging_bytes``, so no adder).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi_arbiter import axi4_master_ports
from .formats import PAGE_BYTES, StagingRead, StagingWrite, StreamBeat
from .params import EngineParams
from .stream_util import FlagFifo, RegisterSlice, ReplicatedEnable

__all__ = ["StagingAxi", "stg_ports", "STG_ID_WIDTH", "MAX_WRITE_BURST", "MAX_READ_BURST"]

#: Width of ``awid`` / ``bid`` / ``arid`` / ``rid`` on ``m_axi_stg``; every burst uses
#: ID 0, so responses come back in order.
STG_ID_WIDTH = 4
#: Longest write burst, beats (the store-and-forward buffer holds two).
MAX_WRITE_BURST = 16
#: Longest read burst, beats (AXI4's limit; a 4 KiB page at 64 bits is two).
MAX_READ_BURST = 256
#: Bursts outstanding per direction (write: AW taken, B not yet; read: AR taken, last R
#: beat not yet).
OUTSTANDING = 8

_INCR = 1


def stg_ports(params):
    """AXI4 members of ``m_axi_stg``: ``(name, direction seen from the engine, width)``."""
    return axi4_master_ports(params.data_width, STG_ID_WIDTH)


class StagingAxi(wiring.Component):
    """The back end's staging port on an AXI4 master (``m_axi_stg``).

    Parameters
    ----------
    params : EngineParams
        Uses ``data_width`` (``W``, ``B = W/8`` bytes a beat), ``staging_bytes`` and
        ``staging_axi_base``.

    Interface attributes (all synchronous to ``clk``; cycle 0 is a handshake)
    -------------------------------------------------------------------------
    i_wr : In(stream.Signature(StagingWrite(W)))
        ``{offset, data, keep}``, one beat a cycle. ``ready`` is a flip-flop, decided a
        cycle ahead: high when the write buffer has room this cycle and the AW queue had
        two entries free in the cycle before (it holds 8). The beat is registered with
        whether it continues the beat ahead of it (a compare of its offset against that
        beat's registered next word, the only logic on the input; cycle 1), then learns
        whether the next one continues it (cycle 2, where it enters the write buffer); a
        cycle without a beat ends a burst.
    m_axi_stg_aw* : AXI4 write address
        ``awvalid`` from the AW queue (registered), at the earliest in cycle 4 after
        the burst's last beat's handshake; ``awid`` 0, ``awsize`` log2 B, INCR; never crosses
        4 KiB. At most :data:`OUTSTANDING` bursts wait for their B.
    m_axi_stg_w* : AXI4 write data
        From the write buffer (registered); a burst's beats are offered once its AW
        was taken, ``wstrb`` the beat's ``keep``; ``wlast`` on its last beat.
    m_axi_stg_b* : AXI4 write response
        ``bready`` is always high; each response adds its burst's beats to
        ``wr_done`` in the next cycle. A response other than OKAY raises ``wr_error``
        for one cycle (the beats still count: the engine does not hang).
    wr_done : Out(16)
        Beats offered on ``i_wr`` whose burst's response has come back, modulo 2**16.
    i_rd : In(stream.Signature(StagingRead))
        ``{offset, beats}``: at most one page. ``ready`` (a register) while no earlier
        request still has bursts to issue: from the cycle after its last AR was loaded.
    m_axi_stg_ar* : AXI4 read address
        Registered; the first AR the cycle after ``i_rd``'s handshake, then one a
        cycle while ``arready`` and fewer than :data:`OUTSTANDING` bursts are out.
    m_axi_stg_r*, o_rd : Out(stream.Signature(StreamBeat(W)))
        R beats through a register slice (``rready`` is its registered ``ready``):
        ``o_rd`` one cycle after each R handshake, ``keep`` all ones, ``last`` on
        the last beat of each ``i_rd`` request. ``rd_error`` pulses for an R beat
        whose ``rresp`` is not OKAY (its data is passed on as it came).
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        W = params.data_width
        members = {
            "i_wr": In(stream.Signature(StagingWrite(W))),
            "i_rd": In(stream.Signature(StagingRead)),
            "o_rd": Out(stream.Signature(StreamBeat(W))),
            "wr_done": Out(16),
            "wr_error": Out(1),
            "rd_error": Out(1),
        }
        for name, direction, width in stg_ports(params):
            members[f"m_axi_stg_{name}"] = Out(width) if direction == "o" else In(width)
        super().__init__(members)

    def _axi(self, name):
        return getattr(self, f"m_axi_stg_{name}")

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W, B = p.data_width, p.beat_bytes
        lane_bits = B.bit_length() - 1
        word_bits = (p.staging_bytes // B).bit_length() - 1     # word index within staging
        page_words = PAGE_BYTES // B
        pw_bits = page_words.bit_length() - 1
        ax = self._axi
        base_words = p.staging_axi_base >> lane_bits

        def address(word):
            return Cat(Const(0, lane_bits), word,
                       Const(base_words >> word_bits, 64 - lane_bits - word_bits))

        # ---- writes: beats -> store-and-forward bursts ---------------------------------------
        wbeat = data.StructLayout({"data": W, "strb": B, "last": 1})
        # (two bursts and the output register: 32 entries of storage, so that its pointers
        # step without a compare; the AW queue's 8 let ``room`` use its two-free flag)
        m.submodules.w_buf = w_buf = FlagFifo(wbeat.size, 2 * MAX_WRITE_BURST + 1)
        aw_layout = data.StructLayout({"word": word_bits, "len": 8})
        m.submodules.aw_q = aw_q = FlagFifo(aw_layout.size, 9)

        # Two stages move together whenever the write buffer and the AW queue have room
        # (``room``, flip-flops: copies of the write buffer's next ``w_rdy`` and the AW
        # queue's two-free flag, each enabling part of the beat registers):
        # * ``pend`` takes the beat with whether it continues the beat ahead of it (one
        #   compare of the input's word against that beat's registered next word: the
        #   only logic on the input);
        # * ``out`` learns from ``pend`` whether it ends its burst: it does when ``pend``
        #   holds no beat, one that does not continue it, or when the burst is full.
        lanes = W + B                              # the bits of a beat each stage holds
        parts = ReplicatedEnable.copies_for(lanes)
        m.submodules.room = room_en = ReplicatedEnable(2 * parts + 1, name="room")
        m.d.comb += room_en.d.eq(w_buf.w_rdy_next & aw_q.w_rdy2)
        room = room_en.q[-1]

        def move(stage, dst, src, valid):
            """Copy the beat's ``lanes`` bits from ``src`` to ``dst`` in parts, each
            enabled by its own copy of ``room``."""
            for k in range(parts):
                lo, hi = k * lanes // parts, (k + 1) * lanes // parts
                with m.If(room_en.q[stage * parts + k] & valid):
                    m.d.sync += dst[lo:hi].eq(src[lo:hi])

        in_valid = self.i_wr.valid
        in_word = self.i_wr.payload.offset[lane_bits:lane_bits + word_bits]
        m.d.comb += self.i_wr.ready.eq(room)
        pend_v, pend_cont = Signal(), Signal()
        pend_word, pend = Signal(word_bits, reset_less=True), Signal(lanes, reset_less=True)
        # the word after pend's, its top bit set when there is none (pend empty, or its
        # beat ends a page): a register, so that whether the beat behind continues it is
        # one compare and nothing else
        expect = Signal(word_bits + 1, init=1 << word_bits)
        with m.If(room):
            m.d.sync += [pend_v.eq(in_valid),
                         pend_cont.eq(Cat(in_word, Const(0, 1)) == expect)]
            with m.If(in_valid):
                m.d.sync += [pend_word.eq(in_word),
                             expect.eq(Cat((in_word + 1)[:word_bits],
                                           in_word[:pw_bits] == page_words - 1))]
            with m.Else():
                m.d.sync += expect.eq(1 << word_bits)
        move(0, pend, Cat(self.i_wr.payload.data, self.i_wr.payload.keep), in_valid)

        out_v, out = Signal(), Signal(lanes, reset_less=True)
        run_word = Signal(word_bits)            # the open burst's first word
        run_len = Signal(range(MAX_WRITE_BURST + 1))   # its beats so far, with out's
        run_full = Signal()                     # run_len == MAX_WRITE_BURST
        ends = ~(pend_v & pend_cont) | run_full
        push = out_v & room
        m.d.comb += [
            w_buf.w_en.eq(push),
            w_buf.w_data.eq(Cat(out, ends)),
            aw_q.w_en.eq(push & ends),
            aw_q.w_data.eq(Cat(run_word, (run_len - 1)[:8])),
        ]
        with m.If(room):
            m.d.sync += out_v.eq(pend_v)
            with m.If(pend_v):
                with m.If(out_v & ~ends):
                    m.d.sync += [run_len.eq(run_len + 1),
                                 run_full.eq(run_len == MAX_WRITE_BURST - 1)]
                with m.Else():
                    m.d.sync += [run_word.eq(pend_word), run_len.eq(1),
                                 run_full.eq(MAX_WRITE_BURST == 1)]
        move(1, out, pend, pend_v)

        # AW from the queue; its burst's beats may go once it is taken (``opened`` counts them)
        aw = Signal(aw_layout)
        m.d.comb += aw.eq(aw_q.r_data)
        m.submodules.b_len = b_len = FlagFifo(9, OUTSTANDING, buffered=False)
        # bursts whose AW went and whose W beats have not all gone, as a thermometer code
        # (opened[k]: more than k), so that ``wvalid`` is an AND of two flip-flops
        opened = Signal(OUTSTANDING)
        aw_fire = Signal()
        w_last_fire = Signal()
        m.d.comb += [
            ax("awid").eq(0), ax("awaddr").eq(address(aw.word)), ax("awlen").eq(aw.len),
            ax("awsize").eq(lane_bits), ax("awburst").eq(_INCR),
            ax("awvalid").eq(aw_q.r_rdy & b_len.w_rdy),
            aw_fire.eq(ax("awvalid") & ax("awready")),
            aw_q.r_en.eq(aw_fire),
            b_len.w_en.eq(aw_fire), b_len.w_data.eq(aw.len + 1),
        ]
        wb = Signal(wbeat)
        m.d.comb += [
            wb.eq(w_buf.r_data),
            ax("wdata").eq(wb.data), ax("wstrb").eq(wb.strb), ax("wlast").eq(wb.last),
            ax("wvalid").eq(w_buf.r_rdy & opened[0]),
            w_buf.r_en.eq(ax("wvalid") & ax("wready")),
            w_last_fire.eq(ax("wvalid") & ax("wready") & wb.last),
        ]
        with m.If(aw_fire & ~w_last_fire):
            m.d.sync += opened.eq(Cat(Const(1, 1), opened[:-1]))
        with m.Elif(w_last_fire & ~aw_fire):
            m.d.sync += opened.eq(opened[1:])

        # B: every response gives its burst's beats to wr_done
        done = Signal(16)
        m.d.comb += [ax("bready").eq(1), b_len.r_en.eq(ax("bvalid")), self.wr_done.eq(done)]
        m.d.sync += self.wr_error.eq(0)
        with m.If(ax("bvalid") & b_len.r_rdy):
            m.d.sync += [done.eq(done + b_len.r_data), self.wr_error.eq(ax("bresp") != 0)]

        # ---- reads: requests -> bursts; R beats -> o_rd ----------------------------------------
        i_rd = self.i_rd
        rd_word = Signal(word_bits)
        # beats still to request (a request is at most a page)
        rd_left = Signal(range(page_words + 1))
        ar_v = Signal()
        ar_word = Signal(word_bits)
        ar_len = Signal(9)
        ar_end = Signal()                              # the request's last burst
        # each AR's "last burst of its request" bit, popped by its last R beat
        m.submodules.r_end = r_end = FlagFifo(1, OUTSTANDING, buffered=False)
        ar_fire = ax("arvalid") & ax("arready")
        # ``last``: the request's remaining beats fit one burst (a register, so that the
        # burst's length is one multiplexer)
        last = Signal()
        # the AR register reloads when empty or taken: from the request being split;
        # ``i_rd`` is taken only while no request is being split (``ready`` a register).
        # A request of no beats issues nothing: ``rd_none`` lets it go the cycle after.
        rd_idle, rd_none = Signal(init=1), Signal()
        load = (~ar_v | ar_fire) & ~rd_idle & ~rd_none
        m.d.comb += i_rd.ready.eq(rd_idle)
        with m.If(i_rd.valid & rd_idle):
            m.d.sync += [rd_word.eq(i_rd.payload.offset[lane_bits:lane_bits + word_bits]),
                         rd_left.eq(i_rd.payload.beats), rd_idle.eq(0),
                         rd_none.eq(i_rd.payload.beats == 0),
                         last.eq(i_rd.payload.beats <= MAX_READ_BURST)]
        with m.Elif(rd_none):
            m.d.sync += [rd_idle.eq(1), rd_none.eq(0)]
        with m.Elif(load):
            m.d.sync += [rd_left.eq(rd_left - MAX_READ_BURST),
                         rd_word.eq(rd_word + MAX_READ_BURST),
                         rd_idle.eq(last), last.eq(rd_left <= 2 * MAX_READ_BURST)]
        with m.If(load):
            m.d.sync += [ar_v.eq(1), ar_word.eq(rd_word),
                         ar_len.eq(Mux(last, rd_left, MAX_READ_BURST)), ar_end.eq(last)]
        with m.Elif(ar_fire):
            m.d.sync += ar_v.eq(0)
        m.d.comb += [
            ax("arid").eq(0), ax("araddr").eq(address(ar_word)), ax("arlen").eq(ar_len - 1),
            ax("arsize").eq(lane_bits), ax("arburst").eq(_INCR),
            ax("arvalid").eq(ar_v & r_end.w_rdy),
            r_end.w_en.eq(ar_fire), r_end.w_data.eq(ar_end),
        ]
        m.submodules.r_slice = r_slice = RegisterSlice(StreamBeat(W))
        r_fire = ax("rvalid") & ax("rready")
        m.d.comb += [
            ax("rready").eq(r_slice.i_ready),
            r_slice.i_valid.eq(ax("rvalid")),
            r_slice.i_data.data.eq(ax("rdata")),
            r_slice.i_data.keep.eq(Const((1 << B) - 1, B)),
            r_slice.i_data.last.eq(ax("rlast") & r_end.r_data),
            r_end.r_en.eq(r_fire & ax("rlast")),
            self.o_rd.valid.eq(r_slice.o_valid), self.o_rd.payload.eq(r_slice.o_data),
            r_slice.o_ready.eq(self.o_rd.ready),
        ]
        m.d.sync += self.rd_error.eq(r_fire & (ax("rresp") != 0))
        return m
