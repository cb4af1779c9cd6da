"""Control plane: CSR block, configuration tables, event queue, counters, lookups.

Behaviour is specified in ``docs/control-plane.md``; registers come from
``rtl/csr.rdl`` through :func:`rtl.regmap.register_map`, entries from
``rtl/formats.py``.
"""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .counters import CounterBank, CountRequest
from .csr_bank import AxiLiteBank
from .formats import (
    QPN_WIDTH,
    BackendQueueEntry,
    CmdError,
    CmdOp,
    Event,
    NamespaceEntry,
    NsCounters,
    NsIndexEntry,
    NsLookupRequest,
    NsLookupResponse,
    NsLookupStatus,
    QpEntry,
    SubsystemCounters,
    SubsystemEntry,
)
from .formats import Table as T
from .params import EngineParams
from .regmap import register_map
from .table import Table

__all__ = ["ControlPlane", "CSR_ADDR_WIDTH", "AXIL_PORTS"]

CSR_ADDR_WIDTH = 12
ARG_WORDS = 16

# AXI4-Lite members of s_axil_csr: (name, direction seen from the engine, width)
AXIL_PORTS = (
    ("awaddr", "i", CSR_ADDR_WIDTH), ("awvalid", "i", 1), ("awready", "o", 1),
    ("wdata", "i", 32), ("wstrb", "i", 4), ("wvalid", "i", 1), ("wready", "o", 1),
    ("bresp", "o", 2), ("bvalid", "o", 1), ("bready", "i", 1),
    ("araddr", "i", CSR_ADDR_WIDTH), ("arvalid", "i", 1), ("arready", "o", 1),
    ("rdata", "o", 32), ("rresp", "o", 2), ("rvalid", "o", 1), ("rready", "i", 1),
)


def _size(layout):
    return data.Layout.cast(layout).size


class _NsLookup(wiring.Component):
    """Namespace lookup pipeline: two reads (index, then entry), fixed latency 2.

    ``req`` accepted at cycle t gives ``resp`` valid at t+2 unless the output
    was back-pressured; the whole pipeline stalls while ``resp`` waits.
    """

    def __init__(self, params):
        self._p = params
        super().__init__({
            "req": In(stream.Signature(NsLookupRequest)),
            "resp": Out(stream.Signature(NsLookupResponse)),
            "idx_addr": Out(16), "idx_en": Out(1), "idx_data": In(NsIndexEntry),
            "ns_addr": Out(16), "ns_en": Out(1), "ns_data": In(NamespaceEntry),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._p
        advance = ~self.resp.valid | self.resp.ready
        v1 = Signal()
        ok1, ok2 = Signal(), Signal()
        tag1 = Signal(NsLookupRequest)
        tag2 = Signal(NsLookupRequest)
        slot2 = Signal(15)
        req = self.req.payload
        in_range = ((req.subsystem < p.subsystems) & (req.fe_nsid != 0)
                    & (req.fe_nsid <= p.srq_namespaces))
        n = p.srq_namespaces
        if n & (n - 1) == 0:
            # fe_nsid - 1 < n when in range: the sum is a concatenation, no carry chain
            # behind the QP table read that gives the subsystem (out of range: not used)
            k = (n - 1).bit_length()
            idx_addr = Cat((req.fe_nsid[:k] - 1)[:k], req.subsystem)
        else:
            idx_addr = req.subsystem * n + req.fe_nsid[:16] - 1
        m.d.comb += [
            self.req.ready.eq(advance),
            self.idx_addr.eq(idx_addr),
            self.idx_en.eq(advance),
            self.ns_addr.eq(self.idx_data.slot),
            self.ns_en.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += [
                v1.eq(self.req.valid), ok1.eq(in_range), tag1.eq(req),
                self.resp.valid.eq(v1),
                ok2.eq(ok1 & self.idx_data.valid & (self.idx_data.slot < p.namespaces)),
                tag2.eq(tag1),
            ]
            with m.If(self.idx_data.slot < p.namespaces):
                m.d.sync += slot2.eq(self.idx_data.slot)
            with m.Else():
                m.d.sync += slot2.eq(0)
        entry = self.ns_data
        match = (ok2 & entry.valid & (entry.subsystem == tag2.subsystem)
                 & (entry.fe_nsid == tag2.fe_nsid))
        with m.If(match & entry.ready):
            m.d.comb += [self.resp.payload.status.eq(NsLookupStatus.HIT),
                         self.resp.payload.slot.eq(slot2),
                         self.resp.payload.entry.eq(entry)]
        with m.Elif(match):
            m.d.comb += [self.resp.payload.status.eq(NsLookupStatus.NOT_READY),
                         self.resp.payload.slot.eq(slot2),
                         self.resp.payload.entry.eq(entry)]
        with m.Else():
            m.d.comb += self.resp.payload.status.eq(NsLookupStatus.NOT_FOUND)
        return m


class ControlPlane(wiring.Component):
    """The control plane.

    Interface attributes (one clock domain)
    ---------------------------------------
    s_axil_csr_* : AXI4-Lite slave (see ``AXIL_PORTS``), 32-bit, ``docs/registers.md``.
    irq : Out(1)
        High while IRQ_ENABLE.enable and the event queue is not empty.
    qp_rd_addr, qp_rd_en, qp_rd_data; qp2_rd_* : two QP lookups
        QPN in, ``QpEntry`` the cycle after ``en`` (zero for QPNs out of range).
    ss_rd_addr, ss_rd_en, ss_rd_data : subsystem lookup
        Index in, ``SubsystemEntry`` the cycle after ``en``.
    qp_cfg_valid, qp_cfg_qpn; bq_cfg_*; ss_cfg_* : Out
        Pulse, from a register, the cycle after the table takes a QP,
        backend-queue or subsystem entry (a table command, or the reset sweep
        for every index); the tables take writes through a register, so that is
        two cycles after the command writes: the datapath resets what it keeps
        for that object.
    bq_rd_*, bq2_rd_*, bq3_rd_*, ss2_rd_* : more table read ports for the back end.
    ns_req, ns_resp : namespace lookup streams
        ``NsLookupRequest`` in, ``NsLookupResponse`` out two cycles later.
    event : In(stream.Signature(Event))
        Always ready; an event finding the queue full is counted as lost.
    ns_count, subsystem_count : In(stream.Signature(CountRequest))
        Counter increments (``docs/control-plane.md``, Counters).
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        self.regmap = register_map(params)
        members = {}
        for name, direction, width in AXIL_PORTS:
            members[f"s_axil_csr_{name}"] = In(width) if direction == "i" else Out(width)
        members.update({
            "irq": Out(1),
            "qp_rd_addr": In(QPN_WIDTH), "qp_rd_en": In(1), "qp_rd_data": Out(QpEntry),
            "qp2_rd_addr": In(QPN_WIDTH), "qp2_rd_en": In(1), "qp2_rd_data": Out(QpEntry),
            "ss_rd_addr": In(8), "ss_rd_en": In(1), "ss_rd_data": Out(SubsystemEntry),
            "qp_cfg_valid": Out(1), "qp_cfg_qpn": Out(QPN_WIDTH),
            "bq_cfg_valid": Out(1), "bq_cfg_index": Out(8),
            "ss_cfg_valid": Out(1), "ss_cfg_index": Out(8),
            "bq_rd_addr": In(8), "bq_rd_en": In(1), "bq_rd_data": Out(BackendQueueEntry),
            "bq2_rd_addr": In(8), "bq2_rd_en": In(1), "bq2_rd_data": Out(BackendQueueEntry),
            "bq3_rd_addr": In(8), "bq3_rd_en": In(1), "bq3_rd_data": Out(BackendQueueEntry),
            "ss2_rd_addr": In(8), "ss2_rd_en": In(1), "ss2_rd_data": Out(SubsystemEntry),
            "ns_req": In(stream.Signature(NsLookupRequest)),
            "ns_resp": Out(stream.Signature(NsLookupResponse)),
            "event": In(stream.Signature(Event)),
            "ns_count": In(stream.Signature(CountRequest(16))),
            "subsystem_count": In(stream.Signature(CountRequest(16))),
        })
        super().__init__(members)
        # resource use shown in USE_CONTEXTS / USE_STAGING / USE_BUSY (register layout);
        # driven by the engine top, constant 0 in the stand-alone control plane
        self.use_contexts, self.use_staging, self.use_busy = Signal(32), Signal(32), Signal(32)
        # the command fence (FENCE): the epoch software set, and the count of commands of
        # the other epoch without an outcome (driven by the engine top, 0 stand-alone)
        self.fence_epoch, self.fence_other = Signal(), Signal(16)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        bank = m.submodules.bank = AxiLiteBank(self.regmap, CSR_ADDR_WIDTH)
        for name, direction, _ in AXIL_PORTS:
            port, inner = getattr(self, f"s_axil_csr_{name}"), getattr(bank, name)
            m.d.comb += (inner.eq(port) if direction == "i" else port.eq(inner))

        # --- tables ------------------------------------------------------------------------
        # every table takes its writes through a register (write_register): the command
        # state's choices end there, not at the write enables of a few hundred LUT-RAM cells
        wreg = {"write_register": True}
        tables = {
            T.SUBSYSTEM: Table(SubsystemEntry, p.subsystems, 16, read_ports=3, **wreg),
            T.QP: Table(QpEntry, p.qp_count, QPN_WIDTH, read_ports=3, **wreg),
            T.BACKEND_QUEUE: Table(BackendQueueEntry, p.backend_queues, 16, read_ports=4,
                                   **wreg),
            T.NS_INDEX: Table(NsIndexEntry, p.subsystems * p.srq_namespaces, 16, read_ports=2,
                              **wreg),
            T.NAMESPACE: Table(NamespaceEntry, p.namespaces, 16, read_ports=2, **wreg),
        }
        for kind, table in tables.items():
            m.submodules[f"table_{kind.name.lower()}"] = table
        counters = {
            T.NS_COUNTERS: CounterBank(NsCounters, p.namespaces),
            T.SUBSYSTEM_COUNTERS: CounterBank(SubsystemCounters, p.subsystems),
        }
        for kind, bank_ in counters.items():
            m.submodules[f"counters_{kind.name.lower()}"] = bank_
        wiring.connect(m, wiring.flipped(self.ns_count), counters[T.NS_COUNTERS].inc)
        wiring.connect(m, wiring.flipped(self.subsystem_count),
                       counters[T.SUBSYSTEM_COUNTERS].inc)

        # datapath lookups: read port 1 of QP, NS_INDEX, NAMESPACE
        qp = tables[T.QP]
        ss = tables[T.SUBSYSTEM]
        # The second QP lookup (the front end's) takes the subsystem from a copy of that
        # field in LUT RAM, read into a register: the namespace lookup starts from it in
        # the same cycle, and the QP table's block RAM (no output register, about 5.6 ns
        # clock to output on the ECP5) then reaches no table address. The copy takes every
        # write of the QP table (the reset sweep's too), in the same cycle, and is read in
        # the same cycle as the QP table's port: the two always agree.
        qp_ss = m.submodules.table_qp_subsystem = Table(
            data.Layout.cast(QpEntry)["subsystem"].shape, p.qp_count, QPN_WIDTH, block_ram=False,
            **wreg)
        m.d.comb += [qp_ss.wr_addr.eq(qp.wr_addr), qp_ss.wr_en.eq(qp.wr_en),
                     qp_ss.wr_data.eq(qp.wr_data.subsystem),
                     qp_ss.rd0_addr.eq(self.qp2_rd_addr), qp_ss.rd0_en.eq(self.qp2_rd_en)]
        m.d.comb += [qp.rd1_addr.eq(self.qp_rd_addr), qp.rd1_en.eq(self.qp_rd_en),
                     self.qp_rd_data.eq(qp.rd1_data),
                     qp.rd2_addr.eq(self.qp2_rd_addr), qp.rd2_en.eq(self.qp2_rd_en),
                     self.qp2_rd_data.eq(qp.rd2_data),
                     self.qp2_rd_data.subsystem.eq(qp_ss.rd0_data),
                     ss.rd1_addr.eq(self.ss_rd_addr), ss.rd1_en.eq(self.ss_rd_en),
                     self.ss_rd_data.eq(ss.rd1_data),
                     ss.rd2_addr.eq(self.ss2_rd_addr), ss.rd2_en.eq(self.ss2_rd_en),
                     self.ss2_rd_data.eq(ss.rd2_data)]
        bq = tables[T.BACKEND_QUEUE]
        for i, prefix in ((1, "bq"), (2, "bq2"), (3, "bq3")):
            addr, en, out = bq.rd(i)
            m.d.comb += [addr.eq(getattr(self, f"{prefix}_rd_addr")),
                         en.eq(getattr(self, f"{prefix}_rd_en")),
                         getattr(self, f"{prefix}_rd_data").eq(out)]
        m.submodules.ns_lookup = ns_lookup = _NsLookup(p)
        wiring.connect(m, wiring.flipped(self.ns_req), ns_lookup.req)
        wiring.connect(m, ns_lookup.resp, wiring.flipped(self.ns_resp))
        idx, ns = tables[T.NS_INDEX], tables[T.NAMESPACE]
        m.d.comb += [
            idx.rd1_addr.eq(ns_lookup.idx_addr), idx.rd1_en.eq(ns_lookup.idx_en),
            ns_lookup.idx_data.eq(idx.rd1_data),
            ns.rd1_addr.eq(ns_lookup.ns_addr), ns.rd1_en.eq(ns_lookup.ns_en),
            ns_lookup.ns_data.eq(ns.rd1_data),
        ]

        # --- table commands ------------------------------------------------------------------
        arg = Cat(*(bank.value[f"ARG[{i}]"] for i in range(ARG_WORDS)))
        # RESULT registers the OR of every table's command read register (rd0) and every
        # counter bank's csr_data: a READ loads the chosen one and zeroes the others
        # (through the registers' resets), so no multiplexer per bit. RESULT follows them
        # one cycle later, in the command's last busy cycle (READ, or the counter read's
        # csr_done)
        result = Signal(32 * ARG_WORDS)
        m.d.sync += result.eq(functools.reduce(operator.or_, (
            *(t.rd0_data.as_value() for t in tables.values()),
            *(c.csr_data.as_value() for c in counters.values()))))
        for i in range(ARG_WORDS):
            m.d.comb += bank.hw_in[f"RESULT[{i}]"].eq(result[32 * i:32 * (i + 1)])

        cmd_reg = self.regmap["CMD"]
        f_op, f_tbl, f_index = (cmd_reg.field(n) for n in ("op", "tbl", "index"))
        written = bank.written
        op = Signal(8)
        tbl = Signal(8)
        index = Signal(16)
        error = Signal(8)
        sweep = Signal(16)
        sweep_depth = max(p.qp_count, p.subsystems * p.srq_namespaces, p.namespaces,
                          p.backend_queues, p.subsystems, *(c.rows for c in counters.values()))

        sizes = {kind: t.depth for kind, t in tables.items()}
        sizes.update({kind: c.depth for kind, c in counters.items()})
        index_ok = Signal()
        m.d.comb += index_ok.eq(0)
        with m.Switch(tbl):
            for kind, size in sizes.items():
                with m.Case(kind.value):
                    m.d.comb += index_ok.eq(index < size)
        tbl_known = Signal()
        m.d.comb += tbl_known.eq(sum(tbl == k.value for k in sizes) != 0)
        is_counter = (tbl == T.NS_COUNTERS.value) | (tbl == T.SUBSYSTEM_COUNTERS.value)
        op_known = (op == CmdOp.WRITE.value) | (op == CmdOp.READ.value) | \
            (op == CmdOp.READ_CLEAR.value)

        # the command's table, one register a table (set with ``tbl``): the read registers'
        # enables and resets and the write enables come from registers, not from a compare
        sel = {kind: Signal(name=f"sel_{kind.name.lower()}") for kind in sizes}
        load_result = Signal()    # a READ or READ_CLEAR passed its checks (in ACT)
        sweeping = Signal()       # the reset sweep zeroes every read register (block RAM's too)
        for kind, table in tables.items():
            m.d.comb += [table.rd0_addr.eq(index), table.rd0_en.eq(load_result | sweeping),
                         table.rd0_zero.eq(sweeping | ~sel[kind])]
        for kind, c in counters.items():
            m.d.comb += c.csr_zero.eq(load_result & ~sel[kind])
        # what CHECK found, acted on in ACT
        chk_error = Signal(8)
        chk_counter, chk_write, chk_read = Signal(), Signal(), Signal()

        # one write data for every table: ARG, or zero in the reset sweep (not a gate per
        # bit and table)
        wr_data = Signal(len(arg))
        m.d.comb += wr_data.eq(Mux(sweeping, 0, arg))
        for table in tables.values():
            m.d.comb += table.wr_data.eq(wr_data[:_size(table.shape)])

        busy = Signal(init=1)      # the reset sweep runs first
        m.d.comb += [
            bank.hw_in["CMD_STATUS"].eq(Cat(busy, Const(0, 7), error)),
            bank.block["CMD"].eq(busy),
        ]

        # the configuration pulses leave through two registers: the table takes the write
        # through its own register, and the pulse comes the cycle after that, as a reader
        # triggered by it needs; the command checks behind them reach no datapath
        # hand-shake in the same cycle
        qp_cfg_valid, qp_cfg_qpn = Signal(), Signal.like(self.qp_cfg_qpn)
        bq_cfg_valid, bq_cfg_index = Signal(), Signal.like(self.bq_cfg_index)
        ss_cfg_valid, ss_cfg_index = Signal(), Signal.like(self.ss_cfg_index)
        pulses = [(self.qp_cfg_valid, qp_cfg_valid), (self.qp_cfg_qpn, qp_cfg_qpn),
                  (self.bq_cfg_valid, bq_cfg_valid), (self.bq_cfg_index, bq_cfg_index),
                  (self.ss_cfg_valid, ss_cfg_valid), (self.ss_cfg_index, ss_cfg_index)]
        for out, now in pulses:
            held = Signal.like(now, name=f"{now.name}_q")
            m.d.sync += [held.eq(now), out.eq(held)]

        with m.FSM(name="cmd"):
            with m.State("SWEEP"):
                m.d.comb += [busy.eq(1), sweeping.eq(1)]
                for table in tables.values():
                    m.d.comb += [table.wr_addr.eq(sweep), table.wr_en.eq(1)]
                for c in counters.values():
                    m.d.comb += [c.sweep_index.eq(sweep), c.sweep_en.eq(1)]
                m.d.comb += [qp_cfg_valid.eq(sweep < p.qp_count), qp_cfg_qpn.eq(sweep),
                             bq_cfg_valid.eq(sweep < p.backend_queues),
                             bq_cfg_index.eq(sweep),
                             ss_cfg_valid.eq(sweep < p.subsystems),
                             ss_cfg_index.eq(sweep)]
                m.d.sync += sweep.eq(sweep + 1)
                with m.If(sweep == sweep_depth - 1):
                    m.next = "LAND"
            with m.State("IDLE"):
                m.d.comb += busy.eq(0)
                with m.If(bank.wstb["CMD"]):
                    new_tbl = written[f_tbl.lsb:f_tbl.lsb + f_tbl.width]
                    m.d.sync += [
                        op.eq(written[f_op.lsb:f_op.lsb + f_op.width]),
                        tbl.eq(new_tbl),
                        index.eq(written[f_index.lsb:f_index.lsb + f_index.width]),
                    ]
                    for kind, bit in sel.items():
                        m.d.sync += bit.eq(new_tbl == kind.value)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += busy.eq(1)
                m.d.sync += [chk_error.eq(CmdError.NONE), chk_counter.eq(0), chk_write.eq(0),
                             chk_read.eq(0)]
                with m.If(~op_known):
                    m.d.sync += chk_error.eq(CmdError.BAD_OP)
                with m.Elif(~tbl_known):
                    m.d.sync += chk_error.eq(CmdError.BAD_TABLE)
                with m.Elif(~index_ok):
                    m.d.sync += chk_error.eq(CmdError.BAD_INDEX)
                with m.Elif(is_counter & (op == CmdOp.WRITE.value)):
                    m.d.sync += chk_error.eq(CmdError.READ_ONLY)
                with m.Elif(~is_counter & (op == CmdOp.READ_CLEAR.value)):
                    m.d.sync += chk_error.eq(CmdError.BAD_OP)
                with m.Elif(is_counter):
                    m.d.sync += chk_counter.eq(1)
                with m.Elif(op == CmdOp.WRITE.value):
                    m.d.sync += chk_write.eq(1)
                with m.Else():
                    m.d.sync += chk_read.eq(1)
                m.next = "ACT"
            with m.State("ACT"):
                m.d.comb += busy.eq(1)
                m.d.sync += error.eq(chk_error)
                with m.If(chk_counter):
                    m.d.comb += load_result.eq(1)
                    for kind, c in counters.items():
                        m.d.comb += [c.csr_index.eq(index), c.csr_start.eq(sel[kind]),
                                     c.csr_clear.eq(op == CmdOp.READ_CLEAR.value)]
                    m.next = "COUNTER_WAIT"
                with m.Elif(chk_write):
                    for kind, table in tables.items():
                        m.d.comb += [table.wr_addr.eq(index), table.wr_en.eq(sel[kind])]
                    m.d.comb += [qp_cfg_valid.eq(sel[T.QP]), qp_cfg_qpn.eq(index),
                                 bq_cfg_valid.eq(sel[T.BACKEND_QUEUE]), bq_cfg_index.eq(index),
                                 ss_cfg_valid.eq(sel[T.SUBSYSTEM]), ss_cfg_index.eq(index)]
                    m.next = "LAND"
                with m.Elif(chk_read):
                    m.d.comb += load_result.eq(1)
                    m.next = "READ"
                with m.Else():
                    m.next = "IDLE"
            with m.State("READ"):
                # rd0 sampled `index` in ACT; RESULT takes its data at the end of this cycle
                m.d.comb += busy.eq(1)
                m.next = "IDLE"
            with m.State("COUNTER_WAIT"):
                m.d.comb += busy.eq(1)
                with m.Switch(tbl):
                    for kind, c in counters.items():
                        with m.Case(kind.value):
                            with m.If(c.csr_done):
                                m.next = "IDLE"
            with m.State("LAND"):
                # the table takes the write from its register in this cycle; busy (its
                # init, 1, as no statement here assigns it) until then, so that a command
                # done is a command every lookup sees
                m.next = "IDLE"

        # --- event queue -----------------------------------------------------------------------
        m.submodules.events = events = fifo.SyncFIFOBuffered(width=_size(Event),
                                                             depth=p.event_depth)
        overflow = Signal()
        lost = Signal(32)
        level = Signal(16)
        m.d.comb += level.eq(events.level)
        ctrl = self.regmap["EVENT_CTRL"]
        pop_bit, clear_bit = ctrl.field("pop").lsb, ctrl.field("clear_overflow").lsb
        ctrl_write = bank.wstb["EVENT_CTRL"]
        m.d.comb += [
            self.event.ready.eq(1),
            events.w_data.eq(self.event.payload),
            events.w_en.eq(self.event.valid),
            events.r_en.eq(ctrl_write & written[pop_bit]),
            bank.hw_in["EVENT_STATUS"].eq(Cat(level, overflow)),
            bank.hw_in["EVENT_HEAD"].eq(Mux(events.r_rdy, events.r_data, 0)),
            bank.hw_in["EVENT_LOST"].eq(lost),
            bank.hw_in["USE_CONTEXTS"].eq(self.use_contexts),
            bank.hw_in["USE_STAGING"].eq(self.use_staging),
            bank.hw_in["USE_BUSY"].eq(self.use_busy),
            bank.hw_in["FENCE"].eq(self.fence_other << self.regmap["FENCE"].field("other").lsb),
            self.fence_epoch.eq(bank.value["FENCE"][self.regmap["FENCE"].field("epoch").lsb]),
            self.irq.eq(bank.value["IRQ_ENABLE"][0] & events.r_rdy),
        ]
        with m.If(self.event.valid & ~events.w_rdy):
            m.d.sync += overflow.eq(1)
            with m.If(lost != 0xFFFF_FFFF):
                m.d.sync += lost.eq(lost + 1)
        with m.Elif(ctrl_write & written[clear_bit]):
            m.d.sync += overflow.eq(0)
        return m
