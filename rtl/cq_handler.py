"""CQ handler: consumes backend NVMe completion queues over PCIe.

Behaviour is specified in ``docs/backend.md`` (section "CQ handler"); the CQE
format and the phase-tag rule are in ``nvme-facts.md``. One queue is served at
a time:

1. pick a queue: one whose MSI-X message is pending (round robin), or, when no
   MSI-X message is pending, one whose ``poll`` bit is set (round robin);
2. read its ``BackendQueueEntry`` (ring address, size, doorbell address);
3. read the CQE at the head; while its phase tag equals the expected phase,
   emit it, advance the head (the expected phase flips at the wrap) and read
   the next one;
4. when the phase does not match, write the new head to the CQ-head doorbell
   if any CQE was consumed.

Per queue the block keeps the head, the expected phase, a "fresh" bit (set by
reset and by ``init_valid``: the next service starts at ``cq_head_init`` with
phase 1) and the MSI-X pending bit.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import CQE_BYTES, BackendQueueEntry, CqCompletion, Cqe
from .params import EngineParams

__all__ = ["CqHandler", "CqError", "AXI_ADDR_WIDTH"]

AXI_ADDR_WIDTH = 64

#: payload of ``o_error``: the backend queue whose CQE read or doorbell write failed
CqError = data.StructLayout({"queue": 8})

_DOORBELL_SIZE = 2       # awsize of the doorbell write: 4 bytes


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
        At most one read burst and one write burst outstanding, never both at
        once; ``*id`` outputs are 0 and ``bid`` / ``rid`` are ignored (they
        exist so bus models attach by prefix).

        *Reads* (``ar*``, ``r*``) fetch one CQE each, INCR bursts of full-width
        beats: at 64 bits two beats at ``cq_addr + head * 16``; at 128 bits and
        wider one beat at that address rounded down to the beat, the CQE taken
        from its 16-byte lane. ``cq_addr`` must be 16-byte aligned (its low 4
        bits are ignored). ``rready`` is high only while the burst is expected.
        ``rresp`` SLVERR / DECERR on any beat makes the read an error.

        *Writes* (``aw*``, ``w*``, ``b*``) are CQ-head doorbells: one beat,
        ``awlen`` 0, ``awsize`` 2 (4 bytes), ``awaddr`` = ``cq_db_addr`` with
        bits [1:0] cleared, ``wdata`` = the new head (zero-extended to 32 bits)
        on every 4-byte lane, ``wstrb`` selecting the 4 bytes at ``awaddr``.
        ``awvalid`` and ``wvalid`` rise together; ``bresp`` SLVERR / DECERR is
        an error.
    i_msix : In(stream.Signature(32))
        MSI-X message data = backend queue index. Always ready (``ready`` is
        constantly 1). A valid index sets the queue's pending bit (messages
        for a queue already pending merge; one arriving while the queue is
        being drained makes it pending again, so a CQE posted late is read). A
        value at or above ``backend_queues`` is dropped and counted.
    poll : In(backend_queues)
        Level, one bit per queue: queues in polling mode with commands
        outstanding. Served round robin while no MSI-X message is pending,
        and only if their entry has ``polling`` = 1.
    bq_rd_addr, bq_rd_en : Out ; bq_rd_data : In(BackendQueueEntry)
        Table read port. ``en`` is a one-cycle pulse with the queue index on
        ``addr`` when a queue is picked; ``data`` is sampled the next cycle
        (the handler keeps the fields it needs, so ``data`` need not be held).
        A queue whose entry has ``valid`` = 0 or ``cq_entries`` = 0 is skipped.
    init_valid, init_queue : In
        One-cycle pulse: queue ``init_queue`` was (re)configured (its table
        entry already written). Its next service starts at the entry's
        ``cq_head_init`` with expected phase 1; a pending MSI-X message stays
        pending. A drain of that queue in progress ends without reading further
        CQEs or writing a doorbell: a CQE already offered on ``o_cqe`` is still
        transferred, a read or doorbell write already issued completes.
        Indices at or above ``backend_queues`` are ignored.
    o_cqe : Out(stream.Signature(CqCompletion))
        Each new CQE (all 16 bytes as read, phase tag included) with its
        queue, in CQ order per queue. Back-pressure holds the drain.
    o_error : Out(stream.Signature(CqError))
        The queue of a CQE read or doorbell write answered SLVERR / DECERR.
        After a read error the drain of that queue ends (the failed entry is
        not consumed: the next service reads it again) and the doorbell is
        still written if CQEs were consumed before it. A failed doorbell write
        is not retried; the next one carries the newer head.
    bad_msix : Out(16)
        Debug counter of dropped MSI-X messages (saturates at 0xFFFF; reset
        clears it).
    busy : Out(1)
        Combinational: an MSI-X message is pending, a polled queue has commands
        outstanding, or a drain is in progress (any state but IDLE). Debug
        status (``USE_BUSY.cq_handler``).
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

        # --- per-queue state ---------------------------------------------------------------
        heads = Array(Signal(16, name=f"head{i}") for i in range(N))
        phases = Signal(N, name="phases")                 # expected phase per queue
        fresh = Signal(N, init=(1 << N) - 1)              # next service starts from the entry
        pending = Signal(N)                               # MSI-X message pending

        # --- the queue being served ----------------------------------------------------------
        cur = Signal(8)
        from_poll = Signal()
        cancel = Signal()                                 # init_valid hit the queue in service
        head = Signal(16)
        phase = Signal()
        moved = Signal()                                  # a CQE was consumed in this service
        cq_addr = Signal(AXI_ADDR_WIDTH - 4)              # in 16-byte units
        cq_entries = Signal(16)
        db_addr = Signal(AXI_ADDR_WIDTH - 2)              # in 4-byte units
        cqe = Signal(Cqe)
        rd_err = Signal()
        err_db = Signal()                                 # the error being reported: doorbell
        lane = Signal(max(beat_log2 - 4, 0))              # 16-byte lane of the CQE in its beat
        rbeat = Signal()                                  # 64-bit bus: second beat expected
        aw_done = Signal()
        w_done = Signal()
        rr = Signal(8)                                    # last queue picked

        busy = Signal()
        init_hit = Signal()
        m.d.comb += init_hit.eq(busy & self.init_valid & (self.init_queue == cur))
        with m.If(init_hit):
            m.d.sync += cancel.eq(1)
        stop = cancel | init_hit

        # --- MSI-X intake ----------------------------------------------------------------------
        msix_ok = self.i_msix.payload < N
        m.d.comb += self.i_msix.ready.eq(1)
        with m.If(self.i_msix.valid & ~msix_ok & (self.bad_msix != 0xFFFF)):
            m.d.sync += self.bad_msix.eq(self.bad_msix + 1)

        # --- pick: MSI-X pending first, then polled queues; round robin after ``rr`` --------
        req = Signal(N)
        m.d.comb += req.eq(Mux(pending.any(), pending, self.poll))
        above = Cat(*(Const(i, 8) > rr for i in range(N)))
        hi = Signal(N)
        m.d.comb += hi.eq(req & above)
        pick_from = Signal(N)
        m.d.comb += pick_from.eq(Mux(hi.any(), hi, req))
        sel = Signal(8)
        for i in reversed(range(N)):        # the lowest set bit wins (last assignment)
            with m.If(pick_from[i]):
                m.d.comb += sel.eq(i)

        pend_clr = Signal(N)                # cleared this cycle (a pick of an MSI-X queue)
        fresh_clr = Signal(N)               # cleared this cycle (a service loaded the entry)

        # --- CQE address, beat lane, next head ------------------------------------------------
        cqe_unit = Signal(AXI_ADDR_WIDTH - 4)
        m.d.comb += cqe_unit.eq(cq_addr + head)
        cqe_addr = Cat(Const(0, 4), cqe_unit)
        wrap = (head + 1) == cq_entries
        next_head = Mux(wrap, 0, head + 1)

        axi = self
        m.d.comb += [
            axi.m_axi_arid.eq(0),
            axi.m_axi_arburst.eq(1),        # INCR
            axi.m_axi_arsize.eq(beat_log2),
            axi.m_axi_awid.eq(0),
            axi.m_axi_awburst.eq(1),
            axi.m_axi_awlen.eq(0),
            axi.m_axi_awsize.eq(_DOORBELL_SIZE),
            axi.m_axi_awaddr.eq(Cat(Const(0, 2), db_addr)),
            axi.m_axi_wdata.eq(Cat(*([Cat(head, Const(0, 16))] * (W // 32)))),
            axi.m_axi_wlast.eq(1),
            self.o_cqe.payload.queue.eq(cur),
            self.o_cqe.payload.cqe.eq(cqe),
            self.o_error.payload.queue.eq(cur),
        ]
        m.d.comb += axi.m_axi_wstrb.eq(Const(0xF, B) << Cat(Const(0, 2), db_addr[:beat_log2 - 2]))
        if B < CQE_BYTES:
            m.d.comb += [axi.m_axi_araddr.eq(cqe_addr),
                         axi.m_axi_arlen.eq(CQE_BYTES // B - 1)]
        else:
            m.d.comb += [axi.m_axi_araddr.eq(Cat(Const(0, beat_log2), cqe_addr[beat_log2:])),
                         axi.m_axi_arlen.eq(0)]

        entry = self.bq_rd_data

        with m.FSM(name="cq") as fsm:
            with m.State("IDLE"):
                m.d.comb += [self.bq_rd_addr.eq(sel), self.bq_rd_en.eq(req.any())]
                with m.If(req.any()):
                    m.d.sync += [cur.eq(sel), rr.eq(sel), from_poll.eq(~pending.any()),
                                 cancel.eq(0)]
                    with m.If(pending.any()):
                        for i in range(N):
                            with m.If(sel == i):
                                m.d.comb += pend_clr[i].eq(1)
                    m.next = "LOAD"

            with m.State("LOAD"):
                m.d.comb += busy.eq(1)
                skip = (~entry.valid | (entry.cq_entries == 0)
                        | (from_poll & ~entry.polling) | stop)
                m.d.sync += [
                    cq_addr.eq(entry.cq_addr[4:]),
                    cq_entries.eq(entry.cq_entries),
                    db_addr.eq(entry.cq_db_addr[2:]),
                    moved.eq(0),
                ]
                is_fresh = fresh.bit_select(cur, 1)
                with m.If(is_fresh):
                    m.d.sync += [head.eq(entry.cq_head_init), phase.eq(1)]
                with m.Else():
                    m.d.sync += [head.eq(heads[cur]), phase.eq(phases.bit_select(cur, 1))]
                with m.If(skip):
                    m.next = "IDLE"
                with m.Else():
                    for i in range(N):
                        with m.If(cur == i):
                            m.d.comb += fresh_clr[i].eq(1)
                    m.next = "READ_ADDR"

            with m.State("READ_ADDR"):
                m.d.comb += [busy.eq(1), axi.m_axi_arvalid.eq(1)]
                m.d.sync += [rd_err.eq(0), rbeat.eq(0)]
                if beat_log2 > 4:
                    m.d.sync += lane.eq(cqe_addr[4:beat_log2])
                with m.If(axi.m_axi_arready):
                    m.next = "READ_DATA"

            with m.State("READ_DATA"):
                m.d.comb += [busy.eq(1), axi.m_axi_rready.eq(1)]
                with m.If(axi.m_axi_rvalid):
                    with m.If(axi.m_axi_rresp[1]):
                        m.d.sync += rd_err.eq(1)
                    if B < CQE_BYTES:       # 64 bits: low half, then high half
                        m.d.sync += rbeat.eq(1)
                        with m.If(rbeat):
                            m.d.sync += cqe.as_value()[64:].eq(axi.m_axi_rdata)
                        with m.Else():
                            m.d.sync += cqe.as_value()[:64].eq(axi.m_axi_rdata)
                    elif B == CQE_BYTES:
                        m.d.sync += cqe.eq(axi.m_axi_rdata)
                    else:
                        m.d.sync += cqe.eq(axi.m_axi_rdata.word_select(lane, cqe_bits))
                    with m.If(axi.m_axi_rlast):
                        m.next = "CHECK"

            with m.State("CHECK"):
                m.d.comb += busy.eq(1)
                with m.If(rd_err):
                    m.d.sync += err_db.eq(0)
                    m.next = "ERROR"
                with m.Elif(stop):
                    m.next = "FINISH"
                with m.Elif(cqe.status.p == phase):
                    m.next = "EMIT"
                with m.Elif(moved):
                    m.next = "DOORBELL"
                with m.Else():
                    m.next = "FINISH"

            with m.State("EMIT"):
                m.d.comb += [busy.eq(1), self.o_cqe.valid.eq(1)]
                with m.If(self.o_cqe.ready):
                    m.d.sync += [head.eq(next_head), phase.eq(phase ^ wrap), moved.eq(1)]
                    with m.If(stop):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "READ_ADDR"

            with m.State("ERROR"):
                m.d.comb += [busy.eq(1), self.o_error.valid.eq(1)]
                with m.If(self.o_error.ready):
                    with m.If(~err_db & moved & ~stop):
                        m.next = "DOORBELL"
                    with m.Else():
                        m.next = "FINISH"

            with m.State("DOORBELL"):
                m.d.comb += [busy.eq(1),
                             axi.m_axi_awvalid.eq(~aw_done), axi.m_axi_wvalid.eq(~w_done)]
                aw_ok = aw_done | axi.m_axi_awready
                w_ok = w_done | axi.m_axi_wready
                with m.If(aw_ok & w_ok):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    m.next = "RESPONSE"
                with m.Else():
                    m.d.sync += [aw_done.eq(aw_ok), w_done.eq(w_ok)]

            with m.State("RESPONSE"):
                m.d.comb += [busy.eq(1), axi.m_axi_bready.eq(1)]
                with m.If(axi.m_axi_bvalid):
                    with m.If(axi.m_axi_bresp[1]):
                        m.d.sync += err_db.eq(1)
                        m.next = "ERROR"
                    with m.Else():
                        m.next = "FINISH"

            with m.State("FINISH"):
                m.d.comb += busy.eq(1)
                m.d.sync += heads[cur].eq(head)
                for i in range(N):
                    with m.If(cur == i):
                        m.d.sync += phases[i].eq(phase)
                m.next = "IDLE"

        # --- per-queue bit updates: a new message / init wins over a clear -------------------
        msix_set = Signal(N)
        init_set = Signal(N)
        for i in range(N):
            m.d.comb += [
                msix_set[i].eq(self.i_msix.valid & (self.i_msix.payload == i)),
                init_set[i].eq(self.init_valid & (self.init_queue == i)),
            ]
        m.d.sync += [
            pending.eq((pending & ~pend_clr) | msix_set),
            fresh.eq((fresh & ~fresh_clr) | init_set),
        ]
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | req.any())
        return m
