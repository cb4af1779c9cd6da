"""SQ writer: puts SQEs into backend NVMe submission rings and rings the SQ-tail doorbells.

Behaviour is specified in ``docs/backend.md`` (section "SQ writer"). One SQE
at a time goes out on the AXI4 write channels as a single INCR burst of
``64 / (data_width / 8)`` full beats at ``sq_addr + tail * 64``. While the SQE
waiting at the head of ``i_sqe`` is for the same queue, it is written too
(coalescing, at most ``max_batch`` SQEs and at most ``sq_entries - 1``); once
every write of the batch has answered, one 4-byte write of the new tail goes
to ``sq_db_addr``, and after its response ``o_done`` reports each SQE of the
batch, in order.

States of one batch (each takes one cycle unless it waits):

=========  ==================================================================
IDLE       wait for ``i_sqe``; read the queue's table entry and tail
LOOKUP     entry in: a usable queue starts the SQE write, any other SQE is
           consumed and reported failed (DONE)
SQE        the W beats of the SQE at the head of ``i_sqe`` (AW in parallel);
           the SQE is taken with its last beat
DECIDE     once the AW went out: the next SQE for the same queue joins the
           batch (SQE), otherwise DOORBELL
DOORBELL   wait until every SQE write answered, then issue the doorbell AW
DB_WRITE   the doorbell's W beat
DB_RESP    wait for the doorbell's B
DONE       one ``o_done`` record per SQE of the batch, then IDLE
=========  ==================================================================
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import SQE_BYTES, BackendQueueEntry, SqDone, SqRequest
from .params import EngineParams

__all__ = ["SqWriter", "AXI_BURST_INCR", "DOORBELL_SIZE"]

AXI_BURST_INCR = 1
DOORBELL_SIZE = 2        # AxSIZE of the doorbell write: 4 bytes
_SQE_SHIFT = 6           # log2(SQE_BYTES)
assert 1 << _SQE_SHIFT == SQE_BYTES


class SqWriter(wiring.Component):
    """Writes SQEs into backend SQ rings over AXI4 and rings the SQ-tail doorbells.

    Parameters
    ----------
    params : EngineParams
        ``data_width`` (AXI data width), ``backend_queues`` (queues whose tail
        this block keeps).
    max_batch : int
        Most SQEs written under one doorbell (1..255).

    Raises
    ------
    ValueError
        ``max_batch`` out of range.

    Interface attributes (one clock domain; every stream obeys the Amaranth stream rules)
    -------------------------------------------------------------------------------------
    i_sqe : In(stream.Signature(SqRequest))
        One SQE for backend queue ``queue``. The payload is read in place while
        the SQE is written (no copy is kept): ``ready`` pulses in the cycle the
        burst's last W beat is accepted (it then depends combinationally on
        ``m_axi_wready``), or, for a queue that is not usable, in the cycle
        after ``bq_rd_en``. The next SQE is examined for coalescing one cycle after
        that.
    bq_rd_addr, bq_rd_en : Out(8), Out(1)
        Backend queue table read: ``en`` is high with ``addr`` = the queue of
        the SQE at the head of ``i_sqe`` while the writer is idle.
    bq_rd_data : In(BackendQueueEntry)
        The entry, sampled the cycle after ``en`` (a synchronous table read
        port). Used: ``valid``, ``sq_addr``, ``sq_entries``, ``sq_db_addr``,
        ``sq_tail_init``. A queue is usable when ``valid``, the queue index is
        below ``backend_queues``, ``sq_addr`` is 64-byte and ``sq_db_addr``
        4-byte aligned, and its tail is below ``sq_entries``; an SQE for a
        queue that is not usable is consumed without any bus access and
        reported with ``ok = 0``.
    init_valid, init_queue : In(1), In(8)
        A one-cycle pulse: queue ``init_queue`` was (re)configured. Its tail
        restarts at ``sq_tail_init`` for the next batch whose lookup is issued
        at least one cycle later; a batch in progress for that queue ends
        after its current SQE. After reset every queue restarts this way.
    m_axi_aw* : AXI4 write address (master)
        ``awid`` = 0; ``awburst`` = INCR. SQE: ``awaddr`` = ``sq_addr + tail * 64``,
        ``awlen`` = beats - 1, ``awsize`` = log2(data_width / 8). Doorbell:
        ``awaddr`` = ``sq_db_addr``, ``awlen`` = 0, ``awsize`` = 2. ``awvalid``
        comes from a register (never depends on ``awready``).
    m_axi_w* : AXI4 write data (master)
        SQE: the 64 bytes little-endian, byte ``n`` in lane ``n % (data_width/8)``
        of beat ``n // (data_width/8)``, ``wstrb`` all ones. Doorbell: the new
        tail (zero-extended to 32 bits) in the four byte lanes of ``sq_db_addr``
        within the beat, ``wstrb`` selecting those four lanes, zeros elsewhere;
        ``wlast`` = 1. W beats may precede their AW.
    m_axi_b* : AXI4 write response (master)
        ``bready`` is always 1; ``bid`` is ignored. ``bresp`` SLVERR (2) or
        DECERR (3) marks the batch failed; OKAY and EXOKAY are success. The
        doorbell write is issued only after every SQE write of the batch has
        answered (so the SQEs are visible before the doorbell whatever the
        interconnect's ordering).
    o_done : Out(stream.Signature(SqDone))
        One record per SQE, in ``i_sqe`` order, after the batch's doorbell write
        has answered: ``queue``, ``ok`` = 0 when any write of the batch (an SQE
        or the doorbell) answered an error, or the queue was not usable. The
        doorbell is written even when an SQE write failed; the tail advances in
        either case. The next SQE's lookup starts after the last record is
        taken.
    busy : Out(1)
        Combinational: an SQE waits on ``i_sqe`` or a batch is in progress (any
        state but IDLE). Debug status (``USE_BUSY.sq_writer``).
    """

    def __init__(self, params=None, *, max_batch=8):
        self.params = params = params or EngineParams()
        if not (isinstance(max_batch, int) and 1 <= max_batch <= 255):
            raise ValueError(f"max_batch must be an integer in 1..255, not {max_batch!r}")
        self.max_batch = max_batch
        W = params.data_width
        super().__init__({
            "m_axi_awid": Out(1),
            "m_axi_awaddr": Out(64),
            "m_axi_awlen": Out(8),
            "m_axi_awsize": Out(3),
            "m_axi_awburst": Out(2),
            "m_axi_awvalid": Out(1),
            "m_axi_awready": In(1),
            "m_axi_wdata": Out(W),
            "m_axi_wstrb": Out(W // 8),
            "m_axi_wlast": Out(1),
            "m_axi_wvalid": Out(1),
            "m_axi_wready": In(1),
            "m_axi_bid": In(1),
            "m_axi_bresp": In(2),
            "m_axi_bvalid": In(1),
            "m_axi_bready": Out(1),
            "i_sqe": In(stream.Signature(SqRequest)),
            "bq_rd_addr": Out(8),
            "bq_rd_en": Out(1),
            "bq_rd_data": In(BackendQueueEntry),
            "init_valid": In(1),
            "init_queue": In(8),
            "o_done": Out(stream.Signature(SqDone)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W, B = p.data_width, p.beat_bytes
        nq = p.backend_queues
        beats = p.sqe_beats
        beat_size = (B - 1).bit_length()          # AxSIZE of a full beat
        max_batch = self.max_batch

        # --- per-queue state: tails (a small memory) and "restart from sq_tail_init" flags --
        m.submodules.tails = tails = memory.Memory(shape=16, depth=nq, init=[])
        tail_wr = tails.write_port()
        tail_rd = tails.read_port(transparent_for=(tail_wr,))
        needs_init = Signal(nq, init=(1 << nq) - 1)
        init_hit = Signal(nq)                     # the init pulse, one-hot by queue
        started = Signal(nq)                      # a batch took its tail from sq_tail_init
        for q in range(nq):
            m.d.comb += init_hit[q].eq(self.init_valid & (self.init_queue == q))
        m.d.sync += needs_init.eq((needs_init & ~started) | init_hit)

        # --- batch registers -------------------------------------------------------------
        queue = Signal(8)
        sq_addr = Signal(64)
        sq_db_addr = Signal(64)
        sq_entries = Signal(16)
        tail = Signal(16)
        count = Signal(range(max_batch + 1))     # SQEs in this batch (records left in DONE)
        err = Signal()
        beat = Signal(range(max(beats, 2)))

        # --- AW channel: one request register shared by SQE and doorbell writes -----------
        aw_req = Signal()
        aw_addr = Signal(64)
        aw_len = Signal(8)
        aw_size = Signal(3)
        aw_fire = aw_req & self.m_axi_awready
        b_fire = self.m_axi_bvalid            # bready is always 1
        outstanding = Signal(range(max_batch + 2))   # writes whose address went out, no B yet
        m.d.comb += [
            self.m_axi_awid.eq(0),
            self.m_axi_awvalid.eq(aw_req),
            self.m_axi_awaddr.eq(aw_addr),
            self.m_axi_awlen.eq(aw_len),
            self.m_axi_awsize.eq(aw_size),
            self.m_axi_awburst.eq(AXI_BURST_INCR),
            self.m_axi_bready.eq(1),
        ]
        with m.If(aw_fire):
            m.d.sync += aw_req.eq(0)
        m.d.sync += outstanding.eq(outstanding + aw_fire - b_fire)
        with m.If(b_fire & self.m_axi_bresp[1]):
            m.d.sync += err.eq(1)

        def issue_sqe(slot_tail, ring):
            m.d.sync += [
                aw_req.eq(1),
                aw_addr.eq(ring + Cat(Const(0, _SQE_SHIFT), slot_tail)),
                aw_len.eq(beats - 1),
                aw_size.eq(beat_size),
                beat.eq(0),
            ]

        req = self.i_sqe.payload
        sqe_bits = req.sqe.as_value()
        flag_of = (needs_init >> queue)[0]
        init_now = (init_hit >> queue)[0]
        next_tail = Mux(tail + 1 >= sq_entries, 0, tail + 1)
        m.d.comb += [
            self.bq_rd_addr.eq(req.queue),
            tail_rd.addr.eq(req.queue),
            self.o_done.payload.queue.eq(queue),
            self.o_done.payload.ok.eq(~err),
        ]

        # doorbell beat: the tail in the 4 lanes of sq_db_addr within the beat
        if B > 4:
            lane_word = sq_db_addr[2:beat_size]
            db_data = (Cat(tail, Const(0, 16)) << (lane_word * 32))[:W]
            db_strb = (Const(0xF, B) << (lane_word * 4))[:B]
        else:
            db_data, db_strb = Cat(tail, Const(0, 16)), Const(0xF, 4)

        with m.FSM(name="sq") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.bq_rd_en.eq(self.i_sqe.valid)
                with m.If(self.i_sqe.valid):
                    m.d.sync += queue.eq(req.queue)
                    m.next = "LOOKUP"

            with m.State("LOOKUP"):
                entry = self.bq_rd_data
                start_tail = Mux(flag_of, entry.sq_tail_init, tail_rd.data)
                usable = (entry.valid & (queue < nq) & (start_tail < entry.sq_entries)
                          & (entry.sq_addr[:_SQE_SHIFT] == 0) & (entry.sq_db_addr[:2] == 0))
                m.d.sync += [
                    sq_addr.eq(entry.sq_addr),
                    sq_db_addr.eq(entry.sq_db_addr),
                    sq_entries.eq(entry.sq_entries),
                    tail.eq(start_tail),
                    err.eq(0),
                ]
                with m.If(usable):
                    for q in range(nq):
                        m.d.comb += started[q].eq(queue == q)
                    m.d.sync += count.eq(0)
                    issue_sqe(start_tail, entry.sq_addr)
                    m.next = "SQE"
                with m.Else():
                    m.d.comb += self.i_sqe.ready.eq(1)
                    m.d.sync += [count.eq(1), err.eq(1)]
                    m.next = "DONE"

            with m.State("SQE"):
                last = beat == beats - 1
                m.d.comb += [
                    self.m_axi_wvalid.eq(1),
                    self.m_axi_wdata.eq(sqe_bits.word_select(beat, W)),
                    self.m_axi_wstrb.eq((1 << B) - 1),
                    self.m_axi_wlast.eq(last),
                ]
                with m.If(self.m_axi_wready):
                    with m.If(last):
                        m.d.comb += self.i_sqe.ready.eq(1)
                        m.d.sync += [tail.eq(next_tail), count.eq(count + 1)]
                        m.next = "DECIDE"
                    with m.Else():
                        m.d.sync += beat.eq(beat + 1)

            with m.State("DECIDE"):
                more = (self.i_sqe.valid & (req.queue == queue) & (count < max_batch)
                        & (count + 1 < sq_entries) & ~flag_of & ~init_now)
                with m.If(~aw_req):
                    with m.If(more):
                        issue_sqe(tail, sq_addr)
                        m.next = "SQE"
                    with m.Else():
                        m.next = "DOORBELL"

            with m.State("DOORBELL"):
                # every SQE write of the batch has answered: now the doorbell
                with m.If(outstanding == 0):
                    m.d.comb += [tail_wr.addr.eq(queue), tail_wr.data.eq(tail),
                                 tail_wr.en.eq(1)]
                    m.d.sync += [aw_req.eq(1), aw_addr.eq(sq_db_addr), aw_len.eq(0),
                                 aw_size.eq(DOORBELL_SIZE)]
                    m.next = "DB_WRITE"

            with m.State("DB_WRITE"):
                m.d.comb += [
                    self.m_axi_wvalid.eq(1),
                    self.m_axi_wdata.eq(db_data),
                    self.m_axi_wstrb.eq(db_strb),
                    self.m_axi_wlast.eq(1),
                ]
                with m.If(self.m_axi_wready):
                    m.next = "DB_RESP"

            with m.State("DB_RESP"):
                with m.If(~aw_req & (outstanding == 0)):
                    m.next = "DONE"

            with m.State("DONE"):
                m.d.comb += self.o_done.valid.eq(1)
                with m.If(self.o_done.ready):
                    m.d.sync += count.eq(count - 1)
                    with m.If(count == 1):
                        m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | self.i_sqe.valid)
        return m
