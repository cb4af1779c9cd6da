"""CQ handler: consumes backend NVMe completion queues over PCIe.

Behaviour is specified in ``docs/backend.md`` (section "CQ handler"); the CQE
format and the phase-tag rule are in ``nvme-facts.md``. One queue is served at
a time:

1. pick a queue: one whose MSI-X message is pending (round robin), or, when no
   MSI-X message is pending, one whose ``poll`` bit is set (round robin). The
   choice is made a cycle ahead into registers: from the pending bits, a message
   arriving in that cycle (chosen directly when none was pending before it; else it
   joins the round robin from the next choice on) and ``poll``;
2. read its ``BackendQueueEntry`` (ring address, size, doorbell address);
3. read the CQEs from the head in bursts of up to 64 bytes (never past the
   ring end or a 4 KiB boundary; after the ring end the next burst starts at
   slot 0 with the phase flipped), a second burst issued while the first is
   in flight once two entries of the run matched; emit each entry whose phase
   tag equals the expected phase, advance the head;
4. at the first entry that does not match, the run ends (the later beats in
   flight are dropped); if a new message for this queue came in and no other
   queue's message is pending, a new run starts at that entry at once;
   otherwise the drain ends. The new head goes to the CQ-head doorbell if
   CQEs were consumed: the write is handed to a doorbell engine that works
   beside the reads (the next drain starts while its response is awaited).

Per queue the block keeps the head and the expected phase (a LUT memory, read
as the queue is picked, written as its drain ends), a "fresh" bit (set by reset
and by ``init_valid``: the next service starts at ``cq_head_init`` with phase 1)
and the MSI-X pending bit. The reader keeps its next slot with the slot's page
offset and its distance to the ring end, the checker its slot likewise, so the
burst sizing and the wrap start from registers.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import CQE_BYTES, BackendQueueEntry, CqCompletion, Cqe
from .params import EngineParams
from .stream_util import round_robin_onehot

__all__ = ["CqHandler", "CqError", "AXI_ADDR_WIDTH"]

AXI_ADDR_WIDTH = 64

#: payload of ``o_error``: the backend queue whose CQE read or doorbell write failed
CqError = data.StructLayout({"queue": 8})

_DOORBELL_SIZE = 2       # awsize of the doorbell write: 4 bytes

#: CQEs a read burst covers at most (64 bytes)
BURST_CQES = 4


def burst_beats(data_width):
    """Beats of a full read burst (64 bytes, at least one beat)."""
    return max(1, BURST_CQES * CQE_BYTES // (data_width // 8))


def _axi_members(data_width):
    """The ``m_axi_*`` members (direction as seen from the handler)."""
    W, A = data_width, AXI_ADDR_WIDTH
    return {
        # write address / data / response: CQ-head doorbells
        "m_axi_awid": Out(1), "m_axi_awaddr": Out(A), "m_axi_awlen": Out(8),
        "m_axi_awsize": Out(3), "m_axi_awburst": Out(2),
        "m_axi_awvalid": Out(1), "m_axi_awready": In(1),
        "m_axi_wdata": Out(W), "m_axi_wstrb": Out(W // 8), "m_axi_wlast": Out(1),
        "m_axi_wvalid": Out(1), "m_axi_wready": In(1),
        "m_axi_bid": In(1), "m_axi_bresp": In(2), "m_axi_bvalid": In(1), "m_axi_bready": Out(1),
        # read address / data: CQEs
        "m_axi_arid": Out(1), "m_axi_araddr": Out(A), "m_axi_arlen": Out(8),
        "m_axi_arsize": Out(3), "m_axi_arburst": Out(2),
        "m_axi_arvalid": Out(1), "m_axi_arready": In(1),
        "m_axi_rid": In(1), "m_axi_rdata": In(W), "m_axi_rresp": In(2), "m_axi_rlast": In(1),
        "m_axi_rvalid": In(1), "m_axi_rready": Out(1),
    }


class CqHandler(wiring.Component):
    """Reads new CQEs of the backend completion queues and rings their head doorbells.

    Parameters
    ----------
    params : EngineParams
        Uses ``data_width`` (the AXI data width) and ``backend_queues``.

    Interface attributes (one clock domain, ``clk`` / ``rst``)
    ---------------------------------------------------------
    m_axi_* : AXI4 master, ``data_width`` data bits, 64 address bits
        ``*id`` outputs are 0 and ``bid`` / ``rid`` are ignored (they exist so
        bus models attach by prefix). Reads and writes are independent.

        *Reads* (``ar*``, ``r*``) fetch CQEs: INCR bursts of full-width beats
        (``arsize`` = the bus width) covering the consecutive entries from a
        slot to the end of their 64-byte group (four CQEs; at 256 bits and
        wider counted from the beat holding the slot), cut at the ring end and
        at a 4 KiB boundary: at 64 bits up to 8 beats (two per CQE) at
        ``cq_addr + slot * 16``, at 128 bits up to 4 beats, at 256 up to 2,
        at 512 one beat; at 256 bits and wider the address is rounded down to
        the beat and each CQE taken from its 16-byte lane. ``cq_addr`` must be
        16-byte aligned (its low 4 bits are ignored). Up to two bursts (plus
        one in the ``ar`` channel) are outstanding; beats come back in order
        (``rlast`` is not looked at, the handler counts beats). The first
        burst of a run is issued on its own; the next one when two entries of
        the run matched and at most one burst's beats are still due, or when
        every beat issued has matched. ``araddr`` / ``arlen`` stay stable
        while ``arvalid`` waits for ``arready``. ``rready`` is 1 while beats
        to be dropped are due; for beats of the current run it is 1 when the
        CQE can enter the ``o_cqe`` register (at 256 bits and wider on the
        beat's last entry only; always for the entry that ends the run).
        ``rresp`` SLVERR / DECERR on a beat of a CQE makes that CQE's read an
        error (the entries before it are emitted).

        *Writes* (``aw*``, ``w*``, ``b*``) are CQ-head doorbells, one at a
        time: one beat, ``awlen`` 0, ``awsize`` 2 (4 bytes), ``awaddr`` =
        ``cq_db_addr`` with bits [1:0] cleared, ``wdata`` = the new head
        (zero-extended to 32 bits) on every 4-byte lane, ``wstrb`` selecting
        the 4 bytes at ``awaddr``. ``awvalid`` and ``wvalid`` rise together
        the cycle after the request is taken; ``bresp`` SLVERR / DECERR is an
        error. A request for a queue whose write is still waiting (not yet on
        the bus) replaces its value (one write carries both heads).
    i_msix : In(stream.Signature(32))
        The backend queue an MSI-X message names (in the engine: the index
        ``MsixMatch`` found for the message's data value). Always ready (``ready`` is
        constantly 1). A valid index sets the queue's pending bit (messages
        for a queue already pending merge; one arriving while the queue is
        being drained makes it pending again, so a CQE posted late is read:
        when the drain reaches an entry that does not match while only that
        queue is pending, the pending bit is cleared and the entry is read
        again at once, without a new pick). A value at or above
        ``backend_queues`` is dropped and counted.
    poll : In(backend_queues)
        Level, one bit per queue: queues in polling mode with commands
        outstanding. Served round robin while no MSI-X message is pending,
        and only if their entry has ``polling`` = 1. Sampled into the
        registered choice: a bit that rises is picked from the next cycle on.
    bq_rd_addr, bq_rd_en : Out ; bq_rd_data : In(BackendQueueEntry)
        Table read port. ``en`` is a one-cycle pulse with the queue index on
        ``addr`` (from a register) when a queue is picked (in IDLE, or the last cycle of the
        previous drain); ``data`` is sampled the next cycle (the handler keeps
        the fields it needs, so ``data`` need not be held) and the first
        ``arvalid`` follows one cycle later. A queue whose entry has ``valid``
        = 0 or ``cq_entries`` = 0 is skipped.
    init_valid, init_queue : In
        One-cycle pulse: queue ``init_queue`` was (re)configured (its table
        entry already written). Its next service starts at the entry's
        ``cq_head_init`` with expected phase 1; a pending MSI-X message stays
        pending. A drain of that queue in progress ends without taking further
        CQEs or writing a doorbell: a CQE already offered on ``o_cqe`` is still
        transferred, reads already issued complete (their data is dropped), a
        doorbell write already on the bus completes, one still waiting for the
        doorbell engine is dropped. Indices at or above ``backend_queues`` are
        ignored.
    o_cqe : Out(stream.Signature(CqCompletion))
        Each new CQE (all 16 bytes as read, phase tag included) with its
        queue, in CQ order per queue, from a register: ``valid`` the cycle
        after the CQE's (last) beat arrives; with ``ready`` held high, one CQE
        a cycle. Back-pressure holds ``rready`` (the drain waits).
    o_error : Out(stream.Signature(CqError))
        The queue of a CQE read or doorbell write answered SLVERR / DECERR,
        from a register (one error at a time; a read error goes first).
        After a read error the drain of that queue ends (the failed entry and
        the later ones are not consumed: the next service reads them again),
        the doorbell is still written if CQEs were consumed before it, and
        the next drain starts once the error is in the register. A failed
        doorbell write is not retried (the next one carries the newer head);
        the doorbell engine takes no further write until its error is in the
        register, reads go on meanwhile.
    bad_msix : Out(16)
        Debug counter of dropped MSI-X messages (saturates at 0xFFFF; reset
        clears it).
    busy : Out(1)
        Combinational: an MSI-X message is pending, a polled queue has commands
        outstanding, a drain is in progress (any state but IDLE), read beats
        to drop are due, a doorbell write is waiting or in progress, or an
        error is offered on ``o_error``. Debug status (``USE_BUSY.cq_handler``).
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        members = _axi_members(params.data_width)
        members.update({
            "i_msix": In(stream.Signature(32)),
            "poll": In(params.backend_queues),
            "bq_rd_addr": Out(8), "bq_rd_en": Out(1), "bq_rd_data": In(BackendQueueEntry),
            "init_valid": In(1), "init_queue": In(8),
            "o_cqe": Out(stream.Signature(CqCompletion)),
            "o_error": Out(stream.Signature(CqError)),
            "bad_msix": Out(16),
            "busy": Out(1),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        N = p.backend_queues
        W = p.data_width
        B = W // 8
        beat_log2 = (B - 1).bit_length()
        cqe_bits = CQE_BYTES * 8
        epb = max(1, B // CQE_BYTES)                      # CQEs per beat
        epb_log2 = (epb - 1).bit_length()
        bpe = max(1, CQE_BYTES // B)                      # beats per CQE
        kb = burst_beats(W)                               # beats of a burst from a beat start
        axi = self

        # --- per-queue state ---------------------------------------------------------------
        # head and expected phase per queue (LUT RAM, read through its output register)
        m.submodules.heads = heads = memory.Memory(
            shape=data.StructLayout({"head": 16, "phase": 1}), depth=N, init=[])
        head_wr = heads.write_port()
        head_rd = heads.read_port()
        fresh = Signal(N, init=(1 << N) - 1)              # next service starts from the entry
        pending = Signal(N)                               # MSI-X message pending

        # --- the queue in service ----------------------------------------------------------
        cur = Signal(8)
        from_poll = Signal()
        cancel = Signal()                                 # init_valid hit the queue in service
        cq_addr = Signal(AXI_ADDR_WIDTH - 4)              # in 16-byte units
        cq_entries = Signal(16)
        db_addr = Signal(AXI_ADDR_WIDTH - 2)              # in 4-byte units
        above = Signal(N, init=((1 << N) - 1) & ~1)       # the queues after the last picked
        # reader (AR side)
        ar_slot = Signal(16)                              # first slot of the next burst
        ar_lo = Signal(8)                                 # ... its page offset (16-byte units)
        ar_left = Signal(16)                              # ... slots from it to the ring end
        run_issued = Signal()                             # a burst was issued in this run
        ar_held = Signal()                                # arvalid up, not yet accepted
        ar_addr_r = Signal(AXI_ADDR_WIDTH)
        ar_len_r = Signal(8)
        live = Signal(8)                                  # beats due to the checker
        due = Signal(8)                                   # beats due in all (live + dropped)
        # checker (R side)
        chk_slot = Signal(16)                             # slot of the entry awaited = head
        chk_lo = Signal(8)                                # ... its page offset (16-byte units)
        chk_left = Signal(16)                             # ... slots from it to the ring end
        chk_phase = Signal()                              # its expected phase
        matched = Signal(2)                               # entries taken in this run (saturating)
        lo = Signal(64)                                   # 64-bit bus: first half of the CQE
        lo_err = Signal()
        rbeat = Signal()                                  # 64-bit bus: second half expected
        obuf_v = Signal()                                 # o_cqe register
        obuf = Signal(Cqe)
        moved = Signal()                                  # CQEs taken, not yet in a doorbell
        db_arm = Signal()                                 # a run ended: doorbell due if moved
        rd_err_p = Signal()                               # a read error to report
        # doorbell request slot and write engine
        dbq_v = Signal()
        dbq_q = Signal(8)
        dbq_mine = Signal()                               # dbq_q == cur, kept as a register
        dbq_addr = Signal(AXI_ADDR_WIDTH - 2)
        dbq_val = Signal(16)
        wq = Signal(8)
        w_addr = Signal(AXI_ADDR_WIDTH - 2)
        w_val = Signal(16)
        aw_done = Signal()
        w_done = Signal()
        # o_error register
        oerr_v = Signal()
        oerr_q = Signal(8)

        in_service = Signal()
        init_hit = Signal()
        m.d.comb += init_hit.eq(in_service & self.init_valid & (self.init_queue == cur))
        with m.If(init_hit):
            m.d.sync += cancel.eq(1)
        stop_c = cancel | init_hit

        # --- MSI-X intake ----------------------------------------------------------------------
        msix_ok = self.i_msix.payload < N
        m.d.comb += self.i_msix.ready.eq(1)
        with m.If(self.i_msix.valid & ~msix_ok & (self.bad_msix != 0xFFFF)):
            m.d.sync += self.bad_msix.eq(self.bad_msix + 1)

        # --- pick: MSI-X pending first, then polled queues; round robin after the last -----
        # The choice is made a cycle ahead into registers, from the pending bits, this
        # cycle's message (chosen when no message was pending before it) and this cycle's
        # ``poll``. A clear happens only on a pick (the next state is LOAD) or a restart (the
        # next state is RUN): neither state picks, so a stale choice is never used.
        msix_set = Signal(N)
        init_set = Signal(N)
        for i in range(N):
            m.d.comb += [
                msix_set[i].eq(self.i_msix.valid & (self.i_msix.payload == i)),
                init_set[i].eq(self.init_valid & (self.init_queue == i)),
            ]
        pick_bit = Signal(N)
        with m.If(pending.any()):
            m.d.comb += pick_bit.eq(round_robin_onehot(m, pending, above, "pending"))
        with m.Elif(msix_set.any()):
            m.d.comb += pick_bit.eq(msix_set)
        with m.Else():
            m.d.comb += pick_bit.eq(round_robin_onehot(m, self.poll, above, "poll"))
        pk_bit = Signal(N)                  # the registered choice, one-hot
        pk_any = Signal()                   # a queue is to be served
        pk_msix = Signal()                  # ... for its MSI-X message (else polled)
        m.d.sync += [pk_bit.eq(pick_bit),
                     pk_any.eq(pending.any() | msix_set.any() | self.poll.any()),
                     pk_msix.eq(pending.any() | msix_set.any())]
        pk_sel = Signal(8)                  # ... its index
        for i in range(N):
            with m.If(pk_bit[i]):
                m.d.comb += pk_sel.eq(i)
        cur_bit = Signal(N)
        m.d.comb += cur_bit.eq(Const(1, N) << cur[:max(1, (N - 1).bit_length())])

        pend_clr = Signal(N)                # cleared this cycle (a pick or a resumed drain)
        fresh_clr = Signal(N)               # cleared this cycle (a service loaded the entry)
        pick = Signal()                     # pick ``pk_sel`` this cycle (only when ``pk_any``)
        in_idle = Signal()
        # the picked queue's head and phase, read as it is picked; when a drain ends and picks
        # its own queue again, the memory is written in that cycle and the drain's own values
        # (unchanged until LOAD) are used instead
        reuse = Signal()
        m.d.comb += [head_rd.addr.eq(pk_sel), head_rd.en.eq(pick), head_wr.addr.eq(cur),
                     head_wr.data.head.eq(chk_slot), head_wr.data.phase.eq(chk_phase)]
        pk_head = Mux(reuse, chk_slot, head_rd.data.head)
        pk_phase = Mux(reuse, chk_phase, head_rd.data.phase)
        m.d.comb += self.bq_rd_addr.eq(pk_sel)
        with m.If(pick):
            m.d.comb += self.bq_rd_en.eq(1)
            m.d.sync += [cur.eq(pk_sel), above.eq(~(pk_bit | (pk_bit - 1))),
                         from_poll.eq(~pk_msix), cancel.eq(0),
                         reuse.eq(~in_idle & (pk_bit & cur_bit).any())]
            with m.If(pk_msix):
                m.d.comb += pend_clr.eq(pk_bit)

        # --- the next burst: from its slot to the end of its 64-byte group, the ring or the
        #     4 KiB page, whichever comes first. Beside the slot the reader keeps its page
        #     offset (``ar_lo``) and its distance to the ring end (``ar_left``), so the choice
        #     starts from registers; the full address is summed beside it.
        unit = Signal(AXI_ADDR_WIDTH - 4)
        m.d.comb += unit.eq(cq_addr + ar_slot)
        lane0 = ar_lo[:epb_log2] if epb > 1 else Const(0, 1)
        n_grp = Signal(3)                   # to the end of the 64-byte group: 1 to 4
        m.d.comb += n_grp.eq(BURST_CQES - lane0)
        # to the 4 KiB page end: fewer than 4 slots only in the page's last 64 bytes
        n_gp = Signal(3)
        m.d.comb += n_gp.eq(n_grp)
        with m.If(ar_lo[2:].all() & ((BURST_CQES - ar_lo[:2]) < n_grp)):
            m.d.comb += n_gp.eq(BURST_CQES - ar_lo[:2])
        n_ring = ar_left
        ring_le = Signal()                  # the ring ends within the burst
        m.d.comb += ring_le.eq((n_ring[3:] == 0) & (n_ring[:3] <= n_gp))
        n = Signal(3)
        m.d.comb += n.eq(Mux(ring_le, n_ring[:3], n_gp))
        beats = Signal(8)
        if bpe > 1:
            m.d.comb += beats.eq(n * bpe)
            nb_addr = Cat(Const(0, 4), unit)
        elif epb > 1:
            m.d.comb += beats.eq((lane0 + n + (epb - 1)) >> epb_log2)
            nb_addr = Cat(Const(0, beat_log2), unit[epb_log2:])
        else:
            m.d.comb += beats.eq(n)
            nb_addr = Cat(Const(0, 4), unit)
        ar_wrap = ring_le
        fsm_run = Signal()
        issue = Signal()
        m.d.comb += issue.eq(fsm_run & ~cancel & ~ar_held
                             & (~run_issued | (live == 0) | (matched[1] & (live <= kb))))
        m.d.comb += [
            axi.m_axi_arid.eq(0),
            axi.m_axi_arburst.eq(1),        # INCR
            axi.m_axi_arsize.eq(beat_log2),
            axi.m_axi_arvalid.eq(ar_held | issue),
            axi.m_axi_araddr.eq(Mux(ar_held, ar_addr_r, nb_addr)),
            axi.m_axi_arlen.eq(Mux(ar_held, ar_len_r, beats - 1)),
        ]
        with m.If(issue):
            m.d.sync += [ar_slot.eq(Mux(ar_wrap, 0, ar_slot + n)),
                         ar_lo.eq(Mux(ar_wrap, cq_addr[:8], ar_lo + n)),
                         ar_left.eq(Mux(ar_wrap, cq_entries, ar_left - n)), run_issued.eq(1)]
            with m.If(~axi.m_axi_arready):
                m.d.sync += ar_held.eq(1)
        with m.If(~ar_held):                # kept for a burst that waits for ``arready``
            m.d.sync += [ar_addr_r.eq(nb_addr), ar_len_r.eq(beats - 1)]
        with m.If(ar_held & axi.m_axi_arready):
            m.d.sync += ar_held.eq(0)

        # --- checker: one CQE a cycle from the R beats ------------------------------------------
        if epb > 1:
            chk_lane = chk_lo[:epb_log2]
            ent = axi.m_axi_rdata.word_select(chk_lane, cqe_bits)
            beat_end = (chk_lane == epb - 1) | (chk_left == 1)
        elif bpe > 1:
            ent = Cat(lo, axi.m_axi_rdata)
            beat_end = Const(1)
        else:
            ent = axi.m_axi_rdata
            beat_end = Const(1)
        ent_cqe = Cqe(ent)
        ent_err = axi.m_axi_rresp[1] | (lo_err if bpe > 1 else 0)
        wrap = chk_left == 1
        restart_ok = (pending.bit_select(cur, 1) & ~(pending & ~cur_bit).any() & ~stop_c)

        r_fire = axi.m_axi_rvalid & axi.m_axi_rready
        stop = Signal()                     # the run ends this cycle (its later beats dropped)
        take = Signal()                     # the CQE goes into the o_cqe register
        restart = Signal()                  # ... and the drain resumes at the same entry
        to_end = Signal()
        dropping = due != live              # beats of ended runs still due
        with m.If(dropping):
            m.d.comb += axi.m_axi_rready.eq(1)
        with m.Elif(fsm_run & (live != 0) & ~stop_c):
            with m.If(axi.m_axi_rvalid):
                if bpe > 1:
                    with m.If(~rbeat):
                        m.d.comb += axi.m_axi_rready.eq(1)
                        m.d.sync += [lo.eq(axi.m_axi_rdata), lo_err.eq(axi.m_axi_rresp[1]),
                                     rbeat.eq(1)]
                complete = rbeat if bpe > 1 else Const(1)
                with m.If(complete):
                    with m.If(ent_err):
                        m.d.comb += [axi.m_axi_rready.eq(1), stop.eq(1), to_end.eq(1)]
                        m.d.sync += [rd_err_p.eq(1), db_arm.eq(1)]
                    with m.Elif(ent_cqe.status.p != chk_phase):
                        m.d.comb += [axi.m_axi_rready.eq(1), stop.eq(1)]
                        m.d.sync += db_arm.eq(1)
                        with m.If(restart_ok):
                            m.d.comb += restart.eq(1)
                        with m.Else():
                            m.d.comb += to_end.eq(1)
                    with m.Elif(~obuf_v | self.o_cqe.ready):
                        m.d.comb += [axi.m_axi_rready.eq(beat_end), take.eq(1)]
        with m.If(fsm_run & init_hit):
            m.d.comb += [stop.eq(1), to_end.eq(1)]

        # beat accounting
        live_dec = r_fire & ~dropping
        add = Mux(issue, beats, 0)
        m.d.sync += due.eq(due - r_fire + add)
        with m.If(stop):                    # the run's beats still due are dropped
            m.d.sync += [live.eq(0), rbeat.eq(0)]
        with m.Else():
            m.d.sync += live.eq(live - live_dec + add)

        # o_cqe register
        m.d.comb += [self.o_cqe.valid.eq(obuf_v), self.o_cqe.payload.queue.eq(cur),
                     self.o_cqe.payload.cqe.eq(obuf)]
        with m.If(self.o_cqe.ready):
            m.d.sync += obuf_v.eq(0)

        # --- doorbell request: once a run ended, for the CQEs taken (all transferred) ----------
        w_take = Signal()
        slot_ok = ~dbq_v | (dbq_mine & ~w_take)
        db_place = Signal()
        m.d.comb += db_place.eq(db_arm & moved & ~stop_c & ~obuf_v & slot_ok)
        with m.If(db_arm & (~moved | stop_c)):
            m.d.sync += db_arm.eq(0)
        with m.If(db_place):
            m.d.sync += [dbq_v.eq(1), dbq_q.eq(cur), dbq_mine.eq(1),
                         dbq_addr.eq(db_addr), dbq_val.eq(chk_slot),
                         moved.eq(0), db_arm.eq(0)]
        with m.If(stop_c):
            m.d.sync += moved.eq(0)
        with m.If(pick):                    # the slot's queue against the one picked
            m.d.sync += dbq_mine.eq(Mux(db_place, (pk_bit & cur_bit).any(), dbq_q == pk_sel))

        with m.If(take):
            m.d.sync += [obuf.eq(ent), obuf_v.eq(1), moved.eq(1), rbeat.eq(0),
                         chk_slot.eq(Mux(wrap, 0, chk_slot + 1)), chk_phase.eq(chk_phase ^ wrap),
                         chk_lo.eq(Mux(wrap, cq_addr[:8], chk_lo + 1)),
                         chk_left.eq(Mux(wrap, cq_entries, chk_left - 1)),
                         matched.eq(Mux(matched == 3, 3, matched + 1))]
        with m.If(restart):
            m.d.comb += pend_clr.eq(cur_bit)
        with m.If(stop):                    # the next run (if any) starts at the entry awaited
            m.d.sync += [ar_slot.eq(chk_slot), ar_lo.eq(chk_lo), ar_left.eq(chk_left),
                         run_issued.eq(0), matched.eq(0)]

        # --- session FSM ---------------------------------------------------------------------
        entry = self.bq_rd_data
        rd_load = Signal()
        with m.FSM(name="cq") as fsm:
            with m.State("IDLE"):
                m.d.comb += [pick.eq(pk_any), in_idle.eq(1)]
                with m.If(pk_any):
                    m.next = "LOAD"

            with m.State("LOAD"):
                m.d.comb += in_service.eq(1)
                skip = (~entry.valid | (entry.cq_entries == 0)
                        | (from_poll & ~entry.polling) | stop_c)
                is_fresh = fresh.bit_select(cur, 1)
                head = Mux(is_fresh, entry.cq_head_init, pk_head)
                first_left = (entry.cq_entries - head)[:16]
                first_lo = (entry.cq_addr[4:12] + head[:8])[:8]
                m.d.sync += [
                    cq_addr.eq(entry.cq_addr[4:]),
                    cq_entries.eq(entry.cq_entries),
                    db_addr.eq(entry.cq_db_addr[2:]),
                    chk_slot.eq(head), chk_lo.eq(first_lo), chk_left.eq(first_left),
                    ar_slot.eq(head), ar_lo.eq(first_lo), ar_left.eq(first_left),
                    chk_phase.eq(is_fresh | pk_phase),
                    run_issued.eq(0), matched.eq(0), moved.eq(0), db_arm.eq(0), rbeat.eq(0),
                ]
                with m.If(skip):
                    m.next = "IDLE"
                with m.Else():
                    for i in range(N):
                        with m.If(cur == i):
                            m.d.comb += fresh_clr[i].eq(1)
                    m.next = "RUN"

            with m.State("RUN"):
                m.d.comb += [in_service.eq(1), fsm_run.eq(1)]
                with m.If(to_end):
                    m.next = "END"

            with m.State("END"):
                m.d.comb += in_service.eq(1)
                m.d.comb += rd_load.eq(rd_err_p & ~oerr_v)
                # (a doorbell due waits for the request slot; once the drain is cancelled,
                # ``db_arm`` is cleared and the drain ends the cycle after)
                done = (~obuf_v & (~rd_err_p | rd_load)
                        & (~db_arm | ~moved | cancel | slot_ok))
                with m.If(done):
                    m.d.comb += head_wr.en.eq(1)
                    m.d.comb += pick.eq(pk_any)
                    with m.If(pk_any):
                        m.next = "LOAD"
                    with m.Else():
                        m.next = "IDLE"

        # --- o_error: a read error (first) or a doorbell error -------------------------------
        m.d.comb += [self.o_error.valid.eq(oerr_v), self.o_error.payload.queue.eq(oerr_q)]
        with m.If(self.o_error.ready):
            m.d.sync += oerr_v.eq(0)
        with m.If(rd_load):
            m.d.sync += [oerr_v.eq(1), oerr_q.eq(cur), rd_err_p.eq(0)]

        # --- doorbell write engine: one write at a time --------------------------------------
        m.d.comb += [
            axi.m_axi_awid.eq(0),
            axi.m_axi_awburst.eq(1),
            axi.m_axi_awlen.eq(0),
            axi.m_axi_awsize.eq(_DOORBELL_SIZE),
            axi.m_axi_awaddr.eq(Cat(Const(0, 2), w_addr)),
            axi.m_axi_wdata.eq(Cat(*([Cat(w_val, Const(0, 16))] * (W // 32)))),
            axi.m_axi_wlast.eq(1),
            axi.m_axi_wstrb.eq(Const(0xF, B) << Cat(Const(0, 2), w_addr[:beat_log2 - 2])),
        ]
        with m.FSM(name="db") as wfsm:
            with m.State("IDLE"):
                m.d.comb += w_take.eq(dbq_v)
                with m.If(dbq_v):
                    m.d.sync += [wq.eq(dbq_q), w_addr.eq(dbq_addr), w_val.eq(dbq_val),
                                 dbq_v.eq(0), aw_done.eq(0), w_done.eq(0)]
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [axi.m_axi_awvalid.eq(~aw_done), axi.m_axi_wvalid.eq(~w_done)]
                aw_ok = aw_done | axi.m_axi_awready
                w_ok = w_done | axi.m_axi_wready
                m.d.sync += [aw_done.eq(aw_ok), w_done.eq(w_ok)]
                with m.If(aw_ok & w_ok):
                    m.next = "RESPONSE"
            with m.State("RESPONSE"):
                m.d.comb += axi.m_axi_bready.eq(1)
                with m.If(axi.m_axi_bvalid):
                    with m.If(axi.m_axi_bresp[1]):
                        m.next = "ERROR"
                    with m.Else():
                        m.next = "IDLE"
            with m.State("ERROR"):
                with m.If(~oerr_v & ~rd_load):
                    m.d.sync += [oerr_v.eq(1), oerr_q.eq(wq)]
                    m.next = "IDLE"

        # a doorbell not yet on the bus for a queue being (re)configured is dropped
        with m.If(self.init_valid & (self.init_queue == dbq_q) & ~w_take):
            m.d.sync += dbq_v.eq(0)

        # --- per-queue bit updates: a new message / init wins over a clear -------------------
        m.d.sync += [
            pending.eq((pending & ~pend_clr) | msix_set),
            fresh.eq((fresh & ~fresh_clr) | init_set),
        ]
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | pending.any() | self.poll.any()
                                 | ~wfsm.ongoing("IDLE") | dbq_v | dropping | oerr_v)
        return m
