"""SQ writer: puts SQEs into backend NVMe submission rings and rings the SQ-tail doorbells.

Behaviour is specified in ``docs/backend.md`` (section "SQ writer"). The writer
is a pipeline; every stage works on a different SQE or doorbell:

===========  ================================================================
input        ``i_sqe`` is written into a free slot of a four-slot ring (the SQE
             into a LUT RAM, its queue into a register; at most two SQEs held);
             the oldest, ``s1``, has its queue's table entry and tail read
check        the entry's checks (usable, the tail's wrap, the ring slot
             address, the batch limit) are registered once; an SQE starts
             from them, at the earliest two cycles after it entered ``s1``;
             meanwhile the table and tail are read for the next SQE
start        the SQE gets its ring slot (the queue's tail advances) and its
             batch: it joins the *open* batch of its queue, wherever that
             batch is in the doorbell FIFO (found from its queue compared with
             each batch's a cycle ahead, masked with the batches' current
             state), or opens a new one; an SQE for a queue that is not usable
             gets no slot and no bus access
write        one write at a time on W (an SQE burst of ``64 / B`` beats read from
             its slot, which is free once its last beat is taken, or a
             doorbell beat), its AW through a register slice (offered from the
             cycle after the write starts; a second AW waits in the slice's spare
             entry while the first is not taken); the next write starts in the
             cycle the last W beat of the previous one is taken, so W carries no
             bubbles
responses    a FIFO of expected B responses (kind, batch); each SQE response
             counts its batch's writes down, a doorbell response completes
             its batch
doorbells    a FIFO of batches {queue, tail, SQE writes outstanding, error,
             records}, in the order they were opened; the oldest batch not
             yet rung is rung when its SQE writes have all answered and the
             batch is *closed* (full: ``max_batch`` SQEs or ``sq_entries - 1``;
             its queue re-initialised; registered with the batches' ages of that
             cycle and applied from the next, in which no SQE can start and the
             doorbell decision sees it) or a later batch is closed or no SQE is
             ready to be written (the writer would otherwise leave W
             idle)
done         a FIFO of one record per SQE in ``i_sqe`` order; the head record
             is given out once its batch's doorbell answered (at once for an
             unusable queue); a batch leaves the doorbell FIFO when its last
             record is out
===========  ================================================================

A batch is therefore a run of consecutive SQEs *of one queue* (consecutive slots
of its ring), which need not be adjacent in ``i_sqe``: SQEs spread round robin
over several queues are coalesced as long as the writer is busy, and a doorbell
is rung as soon as W would otherwise be idle, so a lone SQE waits for nothing.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import SQE_BYTES, BackendQueueEntry, SqDone, SqRequest
from .params import EngineParams
from .stream_util import RegisterSlice

__all__ = ["SqWriter", "AXI_BURST_INCR", "DOORBELL_SIZE"]

AXI_BURST_INCR = 1
DOORBELL_SIZE = 2        # AxSIZE of the doorbell write: 4 bytes
_SLOTS = 4               # SQE slots of the ring (a power of two) ...
_HELD = 2                # ... of which at most this many hold SQEs (waiting or on W)
_SQE_SHIFT = 6           # log2(SQE_BYTES)
assert 1 << _SQE_SHIFT == SQE_BYTES


def _pow2(name, value, lo, hi):
    if not (isinstance(value, int) and lo <= value <= hi and value & (value - 1) == 0):
        raise ValueError(f"{name} must be a power of two in {lo}..{hi}, not {value!r}")


class SqWriter(wiring.Component):
    """Writes SQEs into backend SQ rings over AXI4 and rings the SQ-tail doorbells.

    Parameters
    ----------
    params : EngineParams
        ``data_width`` (AXI data width), ``backend_queues`` (queues whose tail
        this block keeps).
    max_batch : int
        Most SQEs written under one doorbell (1..255).
    batches : int
        Depth of the doorbell FIFO: batches open or waiting for their doorbell
        or their records (a power of two, 2..32).
    max_writes : int
        Most writes (SQE bursts and doorbells) whose B response is outstanding
        (a power of two, 2..64).
    records : int
        Depth of the ``o_done`` record FIFO: SQEs taken and not yet reported
        (a power of two, 4..1024). An SQE starts only while the FIFO holds at
        most ``records - 3`` records (its room is a register, from a level a
        cycle old), so the FIFO never holds more than ``records - 2``.

    Raises
    ------
    ValueError
        A parameter out of range.

    Interface attributes (one clock domain; every stream obeys the Amaranth stream rules)
    -------------------------------------------------------------------------------------
    i_sqe : In(stream.Signature(SqRequest))
        One SQE for backend queue ``queue``, written into a free slot when taken.
        ``ready`` is a flip-flop: high while the writer will hold fewer than two
        SQEs (those taken and not yet started or reported, and the one whose
        beats W is sending). An SQE taken in cycle t into an empty ring is ``s1``
        from t+1; in
        steady state one SQE is taken per ``max(2, 64 / (data_width / 8))``
        cycles (the check stage).
    bq_rd_addr, bq_rd_en : Out(8), Out(1)
        Backend queue table read: ``en`` is high with ``addr`` = the queue of
        the SQE in ``s1`` until its checks are registered (re-read every cycle
        until then), and otherwise of the next SQE (in the second slot, else
        the one offered on ``i_sqe``), so that the SQE after ``s1`` finds its
        entry read. ``addr`` comes from registers and ``i_sqe.payload.queue``.
    bq_rd_data : In(BackendQueueEntry)
        The entry, sampled the cycle after ``en`` (a synchronous table read
        port). Used: ``valid``, ``sq_addr``, ``sq_entries``, ``sq_db_addr``,
        ``sq_tail_init``. A queue is usable when ``valid``, the queue index is
        below ``backend_queues``, ``sq_addr`` is 64-byte and ``sq_db_addr``
        4-byte aligned, and its tail is below ``sq_entries``; an SQE for a
        queue that is not usable is consumed without any bus access and
        reported with ``ok = 0`` (in order).
    init_valid, init_queue : In(1), In(8)
        A one-cycle pulse: queue ``init_queue`` was (re)configured. Its tail
        restarts at ``sq_tail_init`` for the next SQE that starts at least one
        cycle later (an SQE starting in the pulse's cycle still uses the old
        tail and entry); the queue's open batch is closed (it keeps its
        doorbell address and rings the old tail). After reset every queue
        restarts this way.
    m_axi_aw* : AXI4 write address (master)
        ``awid`` = 0; ``awburst`` = INCR. SQE: ``awaddr`` = ``sq_addr + tail * 64``,
        ``awlen`` = beats - 1, ``awsize`` = log2(data_width / 8). Doorbell:
        ``awaddr`` = ``sq_db_addr``, ``awlen`` = 0, ``awsize`` = 2. AW leaves a
        register slice: ``awvalid`` and the address come from flip-flops, and
        ``awready`` reaches only the slice. A write's AW is offered from the cycle
        its first W beat becomes valid, unless the previous AW is still waiting:
        then it waits in the slice behind it (its W beats may go first, after
        the previous write's). A write starts only while the slice has room, so
        at most two AWs wait and the start decision never sees ``awready``.
    m_axi_w* : AXI4 write data (master)
        Beats in the order of the AWs: the SQE's slot RAM read at registered
        addresses (slot, beat), or the doorbell beat built from registers. SQE: the 64 bytes
        little-endian, byte ``n`` in lane ``n % (data_width/8)`` of beat
        ``n // (data_width/8)``, ``wstrb`` all ones. Doorbell: the new tail
        (zero-extended to 32 bits) in the four byte lanes of ``sq_db_addr``
        within the beat, ``wstrb`` selecting those four lanes, zeros
        elsewhere; ``wlast`` = 1. A write's first beat follows the previous
        write's last beat with no idle cycle when the next write is ready.
    m_axi_b* : AXI4 write response (master)
        ``bready`` is always 1; ``bid`` is ignored; responses arrive in AW
        order (one ID). ``bresp`` SLVERR (2) or DECERR (3) marks the batch of
        the write failed; OKAY and EXOKAY are success. A batch's doorbell write
        is issued only after every SQE write of the batch has answered, and
        after every earlier doorbell (so the SQEs up to the rung tail are
        visible before the doorbell whatever the interconnect's ordering). At
        most ``max_writes`` writes are outstanding.
    o_done : Out(stream.Signature(SqDone))
        One record per SQE, in ``i_sqe`` order, after the doorbell write of its
        batch has answered: ``queue``, ``ok`` = 0 when any write of the batch
        (an SQE or the doorbell) answered an error, or the queue was not
        usable. The doorbell is written even when an SQE write failed; the tail
        advances in either case. ``valid`` comes from registers.
    busy : Out(1)
        Combinational: an SQE waits on ``i_sqe`` or anything is in progress
        (an SQE, a write, a batch or a record). Debug status
        (``USE_BUSY.sq_writer``).
    """

    def __init__(self, params=None, *, max_batch=8, batches=8, max_writes=16, records=64):
        self.params = params = params or EngineParams()
        if not (isinstance(max_batch, int) and 1 <= max_batch <= 255):
            raise ValueError(f"max_batch must be an integer in 1..255, not {max_batch!r}")
        _pow2("batches", batches, 2, 32)
        _pow2("max_writes", max_writes, 2, 64)
        _pow2("records", records, 4, 1024)
        self.max_batch = max_batch
        self.batches = batches
        self.max_writes = max_writes
        self.records = records
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
        D = self.batches
        sw = (D - 1).bit_length()                 # batch index width

        # --- per-queue state: tails (a small memory) and "restart from sq_tail_init" flags --
        m.submodules.tails = tails = memory.Memory(shape=16, depth=nq, init=[])
        tail_wr = tails.write_port()
        tail_rd = tails.read_port(transparent_for=(tail_wr,))
        needs_init = Signal(nq, init=(1 << nq) - 1)
        init_hit = Signal(nq)                     # the init pulse, one-hot by queue
        started = Signal(nq)                      # an SQE took its tail from sq_tail_init
        for q in range(nq):
            m.d.comb += init_hit[q].eq(self.init_valid & (self.init_queue == q))
        m.d.sync += needs_init.eq((needs_init & ~started) | init_hit)

        # --- input: a ring of SQE slots -----------------------------------------------------
        # An SQE is written into a free slot when taken (its 64 bytes into a LUT RAM, its
        # queue into a register) and stays there until its last W beat is taken (or, for a
        # queue that is not usable, until it is reported). The head slot is ``s1``: the SQE
        # whose checks are read and registered. ``ready`` is a flip-flop, and neither the
        # RAM's write enable nor the 512-bit data depends on when the head leaves (that
        # decision runs through the batches and the AXI write channels).
        N = _SLOTS
        nb = (N - 1).bit_length()
        m.submodules.sqes = sqes = memory.Memory(shape=SQE_BYTES * 8, depth=N, init=[])
        sqe_wr = sqes.write_port()
        sqe_rd = sqes.read_port(domain="comb")
        slot_queue = Array(Signal(8, name=f"slot_queue{i}") for i in range(N))
        wr_ptr = Signal(nb)                       # the slot the next SQE taken goes to
        hd_ptr = Signal(nb)                       # the head slot (s1)
        count = Signal(range(N + 1))              # SQEs in slots hd_ptr .. wr_ptr - 1
        s1_valid = Signal()                       # count != 0, a register
        q1 = Signal(8)                            # slot_queue[hd_ptr], a register
        s1_go = Signal()                          # s1 leaves (started or reported unusable)
        in_ready = Signal(init=1)
        take = Signal()
        m.d.comb += [
            self.i_sqe.ready.eq(in_ready),
            take.eq(self.i_sqe.valid & in_ready),
            sqe_wr.addr.eq(wr_ptr), sqe_wr.data.eq(self.i_sqe.payload.sqe.as_value()),
            sqe_wr.en.eq(take),
        ]
        count_n = Signal(range(N + 1))
        hd_n = Signal(nb)
        m.d.comb += [count_n.eq(count + take - s1_go), hd_n.eq(hd_ptr + s1_go)]
        with m.If(take):
            m.d.sync += [slot_queue[wr_ptr].eq(self.i_sqe.payload.queue), wr_ptr.eq(wr_ptr + 1)]
        m.d.sync += [
            count.eq(count_n), hd_ptr.eq(hd_n), s1_valid.eq(count_n != 0),
            # the new head's queue with ``s1_go`` as the last select (it comes from the
            # start decision): the candidates come from registers and the input
            q1.eq(Mux(s1_go,
                      Mux(take & (count == 1), self.i_sqe.payload.queue,
                          slot_queue[(hd_ptr + 1)[:nb]]),
                      Mux(take & (count == 0), self.i_sqe.payload.queue,
                          slot_queue[hd_ptr]))),
        ]
        # the table entry and tail are read for the SQE in s1 until its checks are registered,
        # else for the next SQE (the second slot, or the one offered), so that the SQE that
        # follows s1 finds its entry read
        chk_valid = Signal()
        nxt_queue = Mux(count >= 2, slot_queue[(hd_ptr + 1)[:nb]], self.i_sqe.payload.queue)
        rd_queue = Mux(s1_valid & ~chk_valid, q1, nxt_queue)
        rd_queue_r = Signal(8)
        m.d.sync += rd_queue_r.eq(rd_queue)
        m.d.comb += [
            self.bq_rd_addr.eq(rd_queue),
            self.bq_rd_en.eq(self.i_sqe.valid | s1_valid),
            tail_rd.addr.eq(rd_queue),
        ]

        entry = self.bq_rd_data
        flag_of = (needs_init >> q1)[0]
        start_tail = Mux(flag_of, entry.sq_tail_init, tail_rd.data)
        usable = (entry.valid & (q1 < nq) & (start_tail < entry.sq_entries)
                  & (entry.sq_addr[:_SQE_SHIFT] == 0) & (entry.sq_db_addr[:2] == 0))
        next_tail = Mux(start_tail + 1 >= entry.sq_entries, 0, start_tail + 1)
        slot_addr = entry.sq_addr + Cat(Const(0, _SQE_SHIFT), start_tail)
        # a batch is full at min(max_batch, sq_entries - 1) SQEs
        limit = Signal(17)
        m.d.comb += limit.eq(Mux(entry.sq_entries - 1 < max_batch, entry.sq_entries - 1,
                                 max_batch))

        # --- checks: the entry's verdict and the values an SQE starts with, registered once
        # from the SQE's own entry and tail (``chk_valid``), so the start decision works from
        # flip-flops. They hold until the SQE leaves or a queue is reconfigured (its tail
        # changes only when it starts), and meanwhile the table port reads the next SQE's
        # entry: an SQE starts two cycles after it enters s1 at the earliest.
        # The values load whenever the checks are taken, which the start decision never
        # gates: an SQE leaves s1 (``s1_go``) only with its checks registered, and then no
        # load is due. So the wide registers' enable is a compare of flip-flops and the
        # init pulse, and only ``chk_valid`` waits for the decision.
        chk_usable, chk_open_full = Signal(), Signal()
        chk_next_tail, chk_limit = Signal(16), Signal(17)
        chk_slot_addr, chk_db_addr = Signal(64), Signal(64)
        chk_load = s1_valid & ~chk_valid & (rd_queue_r == q1) & ~self.init_valid
        with m.If(chk_load):
            m.d.sync += [
                chk_usable.eq(usable), chk_next_tail.eq(next_tail), chk_limit.eq(limit),
                chk_open_full.eq(limit <= 1),
                chk_slot_addr.eq(slot_addr), chk_db_addr.eq(entry.sq_db_addr),
            ]
        with m.If(s1_go | self.init_valid):
            m.d.sync += chk_valid.eq(0)
        with m.Elif(chk_load):
            m.d.sync += chk_valid.eq(1)

        # --- the doorbell FIFO: batches, oldest first --------------------------------------
        b_alloc = Signal(D)                       # slot holds a batch
        b_closed = Signal(D)                      # no more SQEs join it
        b_rung = Signal(D)                        # its doorbell write was issued
        b_answered = Signal(D)                    # ... and answered
        b_err = Signal(D)
        b_queue = Array(Signal(8, name=f"b_queue{i}") for i in range(D))
        b_tail = Array(Signal(16, name=f"b_tail{i}") for i in range(D))
        b_count = Array(Signal(8, name=f"b_count{i}") for i in range(D))   # SQEs, then records
        b_outst = Array(Signal(range(max_batch + 1), name=f"b_outst{i}") for i in range(D))
        b_quiet = Signal(D, init=(1 << D) - 1)    # b_outst == 0, kept as a register
        # SQEs it still takes before it is full: min(max_batch, sq_entries - 1) - count
        b_left = [Signal(8, name=f"b_left{i}") for i in range(D)]
        m.submodules.db_addrs = db_addrs = memory.Memory(shape=64, depth=D, init=[])
        db_addr_wr = db_addrs.write_port()
        db_addr_rd = db_addrs.read_port(domain="comb")
        alloc_ptr = Signal(sw)                    # next slot to open
        ring_ptr = Signal(sw)                     # oldest batch not yet rung
        free_ptr = Signal(sw)                     # oldest batch

        # the open batch of s1's queue, found a cycle ahead: the queue compare is registered
        # (``match_q``) and masked with the batches' current state. It is never a cycle
        # stale for the SQE that starts: a batch opens only when an SQE starts, and the SQE
        # after it starts two cycles after it enters s1 at the earliest.
        match_q = Signal(D)
        for i in range(D):
            m.d.sync += match_q[i].eq(b_queue[i] == q1)
        match = Signal(D)
        m.d.comb += match.eq(match_q & b_alloc & ~b_closed)
        join = match.any()
        join_idx = Signal(sw)
        for i in range(D):
            with m.If(match[i]):
                m.d.comb += join_idx.eq(i)
        can_open = ~b_alloc.bit_select(alloc_ptr, 1)
        target = Mux(join, join_idx, alloc_ptr)

        # --- B responses expected, records to give out -----------------------------------
        m.submodules.bfifo = bfifo = fifo.SyncFIFO(width=1 + sw, depth=self.max_writes)
        m.submodules.rfifo = rfifo = fifo.SyncFIFOBuffered(width=1 + 8 + sw, depth=self.records)
        # room in both, as registers: exact for the B FIFO (worked out from its next level),
        # two entries short for the record FIFO (its level a cycle old: it grows by one a
        # cycle at most, and its inner level, which sets ``w_rdy``, is at most its level)
        bq_room = Signal(init=1)
        rec_room = Signal(init=1)
        m.d.sync += [
            bq_room.eq(bfifo.r_en | Mux(bfifo.w_en, bfifo.level < self.max_writes - 1, bq_room)),
            rec_room.eq(rfifo.level < self.records - 2),
        ]

        # --- write unit: one write at a time on W, AW from a register ----------------------
        cw_busy = Signal()
        cw_db = Signal()
        cw_beat = Signal(range(max(beats, 2)))
        cw_slot = Signal(nb)                      # the SQE's slot
        cw_tail = Signal(16)                      # the doorbell's tail ...
        cw_lane = Signal(max(1, beat_size - 2))   # ... and its 32-bit lane in the beat
        # the doorbell beat: the tail in the 4 byte lanes of sq_db_addr within the beat
        if B > 4:
            db_word = (Cat(cw_tail, Const(0, 16)) << (cw_lane * 32))[:W]
            db_strb = (Const(0xF, B) << (cw_lane * 4))[:B]
        else:
            db_word, db_strb = Cat(cw_tail, Const(0, 16)), Const(0xF, 4)
        # AW leaves through a register slice: a write's AW waits there (in the spare entry
        # while the one before it is still offered), so the start decision needs only the
        # slice's registered room, never ``awready``
        m.submodules.aw_q = aw_q = RegisterSlice(data.StructLayout(
            {"addr": 64, "len": 8, "size": 3}))
        w_fire = cw_busy & self.m_axi_wready
        cw_last = cw_db | (cw_beat == beats - 1)
        m.d.comb += [
            self.m_axi_awid.eq(0),
            self.m_axi_awvalid.eq(aw_q.o_valid), aw_q.o_ready.eq(self.m_axi_awready),
            self.m_axi_awaddr.eq(aw_q.o_data.addr),
            self.m_axi_awlen.eq(aw_q.o_data.len),
            self.m_axi_awsize.eq(aw_q.o_data.size),
            self.m_axi_awburst.eq(AXI_BURST_INCR),
            self.m_axi_wvalid.eq(cw_busy),
            sqe_rd.addr.eq(cw_slot),
            self.m_axi_wdata.eq(Mux(cw_db, db_word, sqe_rd.data.word_select(cw_beat, W))),
            self.m_axi_wstrb.eq(Mux(cw_db, db_strb, (1 << B) - 1)),
            self.m_axi_wlast.eq(cw_last),
            self.m_axi_bready.eq(1),
        ]
        with m.If(w_fire):
            m.d.sync += cw_beat.eq(cw_beat + 1)
            with m.If(cw_last):
                m.d.sync += cw_busy.eq(0)
        can_start = (~cw_busy | (w_fire & cw_last)) & aw_q.i_ready & bq_room

        # the SQE in s1 is ready to start / to be reported; the oldest unrung batch is ready
        checking = s1_valid & ~chk_valid
        sqe_ready = s1_valid & chk_valid & chk_usable & (join | can_open) & rec_room
        bad_ready = s1_valid & chk_valid & ~chk_usable & rec_room
        # (``sqe_hit``: an SQE joined or opened the batch in the cycle before, and its write
        # is not yet counted in ``b_outst``)
        sqe_hit = Signal(D)
        ring_ok = (b_alloc & ~b_rung & b_quiet & ~sqe_hit).bit_select(ring_ptr, 1)
        # a closed batch's doorbell goes before a ready SQE, except when an SQE is one beat
        # (512 bits): the next SQE then spends a cycle in its checks, and the doorbell takes
        # that idle cycle of W instead of delaying the SQE
        closing = Signal(D)                       # closes registered the cycle before (below)
        closed_first = ((b_closed | closing).bit_select(ring_ptr, 1)
                        & (~sqe_ready if beats == 1 else 1))
        db_go = can_start & ring_ok & (closed_first | ~(sqe_ready | checking))
        sqe_go = can_start & ~db_go & sqe_ready
        m.d.comb += s1_go.eq(sqe_go | bad_ready)

        # the doorbell address of batch ``ring_ptr``, a register, so that the AW slice and
        # the doorbell lane take it from a flip-flop, not through the LUT RAM's read. It is
        # loaded when the doorbell is rung, from the RAM read at the next batch (an address
        # register, ``ring_nxt``), and when a batch opens at ``ring_ptr`` (every batch rung),
        # from the checks' register that the RAM is written from in that cycle. ``db_go``
        # and ``sqe_go`` are exclusive, so the RAM is never written while it is read here.
        ring_db_addr = Signal(64)
        ring_nxt = Signal(sw, init=1)             # ring_ptr + 1
        m.d.comb += db_addr_rd.addr.eq(ring_nxt)
        with m.If(db_go):
            m.d.sync += [ring_db_addr.eq(db_addr_rd.data), ring_nxt.eq(ring_nxt + 1)]
        with m.Elif(sqe_go & ~join & (alloc_ptr == ring_ptr)):
            m.d.sync += ring_db_addr.eq(chk_db_addr)

        m.d.comb += [
            aw_q.i_valid.eq(db_go | sqe_go),
            aw_q.i_data.addr.eq(Mux(db_go, ring_db_addr, chk_slot_addr)),
            aw_q.i_data.len.eq(Mux(db_go, 0, beats - 1)),
            aw_q.i_data.size.eq(Mux(db_go, DOORBELL_SIZE, beat_size)),
        ]
        with m.If(db_go | sqe_go):
            m.d.sync += [cw_busy.eq(1), cw_beat.eq(0), cw_db.eq(db_go)]
        with m.If(db_go):
            m.d.sync += [cw_tail.eq(b_tail[ring_ptr]), ring_ptr.eq(ring_ptr + 1)]
            if B > 4:
                m.d.sync += cw_lane.eq(ring_db_addr[2:beat_size])
        with m.If(sqe_go):
            m.d.sync += cw_slot.eq(hd_ptr)
            m.d.comb += [tail_wr.addr.eq(q1), tail_wr.data.eq(chk_next_tail), tail_wr.en.eq(1)]
            for q in range(nq):
                m.d.comb += started[q].eq(q1 == q)
            with m.If(~join):
                m.d.sync += alloc_ptr.eq(alloc_ptr + 1)
                m.d.comb += [db_addr_wr.addr.eq(alloc_ptr), db_addr_wr.data.eq(chk_db_addr),
                             db_addr_wr.en.eq(1)]
        # the writer holds at most ``_HELD`` SQEs (in s1 .. wr_ptr - 1, or on W): more
        # would let batches grow under load, and every command waits for its batch's
        # doorbell (at 512 bits four slots took Flush from 0.333 to 0.3308 commands a
        # cycle). The slot taken next must not be the one W still reads: SQEs for an
        # unusable queue pass W while it stalls and move the ring round to it. ``ready``
        # is worked out for the next cycle from next values, both ways, with the start
        # decision (``sqe_go``, deep) as the last select: when an SQE starts, it leaves
        # s1 and holds W (``count + take - 1`` waiting, W reading slot ``hd_ptr``);
        # otherwise s1 leaves only when reported unusable (``bad_ready``)
        w_holds = cw_busy & ~cw_db
        wr_n = (wr_ptr + take)[:nb]
        rdy_go = (count + take < _HELD) & (hd_ptr != wr_n)
        w_holds_s = Signal()
        m.d.comb += w_holds_s.eq(w_holds & ~(w_fire & cw_last))
        count_s = (count + take - bad_ready)[:len(count)]
        rdy_stay = ((count_s + w_holds_s < _HELD) & ~(w_holds_s & (cw_slot == wr_n)))
        m.d.sync += in_ready.eq(Mux(sqe_go, rdy_go, rdy_stay))

        m.d.comb += [
            bfifo.w_en.eq(db_go | sqe_go),
            bfifo.w_data.eq(Cat(db_go, Mux(db_go, ring_ptr, target))),
            rfifo.w_en.eq(sqe_go | bad_ready),
            # (an SQE reported unusable is ``bad_ready``, never ``sqe_go``: no decision in
            # the record's data)
            rfifo.w_data.eq(Cat(bad_ready, q1, target)),
        ]

        # B responses, in AW order
        b_fire = self.m_axi_bvalid
        b_is_db = bfifo.r_data[0]
        b_idx = bfifo.r_data[1:]
        m.d.comb += bfifo.r_en.eq(b_fire)

        # records
        r_bad = rfifo.r_data[0]
        r_queue = rfifo.r_data[1:9]
        r_idx = rfifo.r_data[9:]
        m.d.comb += [
            self.o_done.valid.eq(rfifo.r_rdy & (r_bad | b_answered.bit_select(r_idx, 1))),
            self.o_done.payload.queue.eq(r_queue),
            self.o_done.payload.ok.eq(~r_bad & ~b_err.bit_select(r_idx, 1)),
            rfifo.r_en.eq(self.o_done.ready & self.o_done.valid),
        ]
        rec_out = self.o_done.valid & self.o_done.ready & ~r_bad

        # per-batch state. A batch closes when it is full or its queue is re-initialised,
        # and with it every older batch (they ring before it anyway): which SQEs share a
        # doorbell then depends only on the SQE sequence, unless W would go idle.
        # A batch leaves once answered with its last record out: ``b_none`` (its count is
        # zero) is a register kept with the count, so the oldest batch's verdict is one
        # 1-bit choice, not a count chosen and compared
        b_none = Signal(D, init=(1 << D) - 1)
        free_go = (b_alloc & b_answered & b_none).bit_select(free_ptr, 1)
        with m.If(free_go):
            m.d.sync += free_ptr.eq(free_ptr + 1)
        init_q1 = self.init_valid & (self.init_queue == q1)
        # a batch is full at min(max_batch, sq_entries - 1) SQEs: worked out when it opens
        # (from the table entry) and counted down per SQE, so that whether this SQE fills
        # its batch is a register compare, not an add and two compares after the join
        hit = Signal(D)                           # the SQE that starts goes to batch i
        full = Signal(D)                          # ... and fills it
        for i in range(D):
            m.d.comb += [
                hit[i].eq(sqe_go & Mux(join, match[i], alloc_ptr == i)),
                full[i].eq(Mux(join, b_left[i] == 1, chk_open_full)),
            ]
        # A close is registered (``ev_r``) and applied from the next cycle, in which no SQE
        # can start (a close comes from an SQE starting or an ``init_valid``, each of which
        # clears ``chk_valid``); the doorbell decision sees it in that cycle through
        # ``closing``, as it saw ``b_closed`` before. Which batches are older is registered
        # with it, from ``free_ptr`` of the close's cycle: ``older[(i, k)]`` (i < k) says
        # that batch i is older than batch k, so ``closing`` is an AND-OR of flip-flops.
        ev = Signal(D)                            # batch i closes, and every older one
        ev_r = Signal(D)
        m.d.sync += ev_r.eq(ev)
        older = {}
        for i in range(D):
            for k in range(i + 1, D):
                older[i, k] = Signal(name=f"b_older{i}_{k}")
                m.d.sync += older[i, k].eq((i - free_ptr)[:sw] < (k - free_ptr)[:sw])

        def older_eq(i, k):                       # batch i is batch k or older
            return Const(1) if i == k else older[i, k] if i < k else ~older[k, i]
        for i in range(D):
            m.d.comb += [
                ev[i].eq((hit[i] & (full[i] | init_q1))
                         | (b_alloc[i] & self.init_valid & (self.init_queue == b_queue[i]))),
                closing[i].eq(Cat(ev_r[k] & older_eq(i, k) for k in range(D)).any()),
            ]
        m.d.sync += sqe_hit.eq(hit)
        for i in range(D):
            hit_sqe = hit[i]
            b_sqe_i = b_fire & ~b_is_db & (b_idx == i)
            b_db_i = b_fire & b_is_db & (b_idx == i)
            # an SQE's write is counted the cycle after it starts, from ``sqe_hit`` (its
            # B response comes later still: its AW leaves a slice, its W beats start then)
            outst_n = (b_outst[i] + sqe_hit[i] - b_sqe_i)[:len(b_outst[i])]
            m.d.sync += [b_outst[i].eq(outst_n), b_quiet[i].eq(outst_n == 0)]
            with m.If(b_fire & (b_idx == i) & self.m_axi_bresp[1]):
                m.d.sync += b_err[i].eq(1)
            with m.If(b_db_i):
                m.d.sync += b_answered[i].eq(1)
            with m.If(rec_out & (r_idx == i)):
                m.d.sync += [b_count[i].eq(b_count[i] - 1), b_none[i].eq(b_count[i] == 1)]
            with m.If(free_go & (free_ptr == i)):
                m.d.sync += b_alloc[i].eq(0)
            with m.If(closing[i] | (db_go & (ring_ptr == i))):
                m.d.sync += b_closed[i].eq(1)
            with m.If(db_go & (ring_ptr == i)):
                m.d.sync += b_rung[i].eq(1)
            with m.If(hit_sqe):
                m.d.sync += [b_tail[i].eq(chk_next_tail), b_none[i].eq(0)]
                with m.If(join):
                    m.d.sync += [b_count[i].eq(b_count[i] + 1), b_left[i].eq(b_left[i] - 1)]
                with m.Else():
                    m.d.sync += [
                        b_count[i].eq(1), b_left[i].eq(chk_limit - 1),
                        b_alloc[i].eq(1), b_queue[i].eq(q1), b_err[i].eq(0),
                        b_rung[i].eq(0), b_answered[i].eq(0), b_closed[i].eq(0),
                    ]

        m.d.comb += self.busy.eq(self.i_sqe.valid | s1_valid | cw_busy | aw_q.o_valid
                                 | b_alloc.any() | rfifo.r_rdy | rfifo.level.any())
        return m
