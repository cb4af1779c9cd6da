"""Reference model of the control-plane hardware (the CSR block and its tables).

Written from ``docs/control-plane.md`` only, never from the RTL: testbenches
run the driver against this model and compare the RTL with it. Register
offsets and field positions come from the compiled register map
(:func:`rtl.regmap.register_map`), entry layouts from :mod:`rtl.formats`;
this module states neither an offset nor a bit position of its own.

Timing is abstracted away: a command runs to completion inside the ``CMD``
write, and reset is instantaneous, so ``CMD_STATUS.busy`` reads 0 unless a
test holds it with :meth:`CsrModel.hold_busy` (standing in for a command or
the reset clear still running in the hardware).
"""

from collections import deque

from amaranth.lib import data

from rtl.formats import (
    BackendQueueEntry,
    CmdError,
    CmdOp,
    Event,
    EventType,
    NamespaceEntry,
    NsCounters,
    NsIndexEntry,
    QpEntry,
    SubsystemCounters,
    SubsystemEntry,
    Table,
    decode,
)
from rtl.params import EngineParams
from rtl.regmap import register_map

__all__ = ["OKAY", "SLVERR", "ENTRY_LAYOUTS", "COUNTER_TABLES", "LOOKUP_STATUSES",
           "BusError", "CsrModel", "ModelRegs"]

OKAY = "OKAY"
SLVERR = "SLVERR"

ENTRY_LAYOUTS = {
    Table.SUBSYSTEM: SubsystemEntry,
    Table.QP: QpEntry,
    Table.BACKEND_QUEUE: BackendQueueEntry,
    Table.NS_INDEX: NsIndexEntry,
    Table.NAMESPACE: NamespaceEntry,
    Table.NS_COUNTERS: NsCounters,
    Table.SUBSYSTEM_COUNTERS: SubsystemCounters,
}
COUNTER_TABLES = frozenset((Table.NS_COUNTERS, Table.SUBSYSTEM_COUNTERS))
LOOKUP_STATUSES = ("HIT", "NOT_FOUND", "NOT_READY")

COUNTER_MAX = (1 << 48) - 1
_WORD_MASK = 0xFFFF_FFFF


def _width(layout):
    return data.Layout.cast(layout).size


class BusError(Exception):
    """An access answered SLVERR (raised by :class:`ModelRegs`)."""

    def __init__(self, kind, offset):
        super().__init__(f"{kind} of offset {offset:#05x} answered SLVERR")
        self.kind = kind
        self.offset = offset


class CsrModel:
    """The control plane as docs/control-plane.md describes it.

    Register side: :meth:`read` / :meth:`write` answer ``(value, resp)`` /
    ``resp`` like the AXI4-Lite slave. Datapath side: :meth:`push_event`,
    :meth:`count`, :meth:`qp_entry`, :meth:`ns_lookup` and :attr:`irq`.
    ``tables`` maps each :class:`Table` to a list of entry bit patterns.

    The command fence (``FENCE``): :attr:`fence_epoch` is the epoch software set;
    ``FENCE.other`` reads :attr:`fence_source` ``(epoch)``, the commands of that epoch
    without an outcome, which the engine model provides (and may advance its time
    in, as the hardware works while software polls); none (0) without one.
    """

    def __init__(self, params: EngineParams | None = None):
        if params is None:
            params = EngineParams()
        self.params = params
        self.regmap = register_map(params)
        self._by_offset = self.regmap.by_offset()
        self.sizes = {
            Table.SUBSYSTEM: params.subsystems,
            Table.QP: params.qp_count,
            Table.BACKEND_QUEUE: params.backend_queues,
            Table.NS_INDEX: params.subsystems * params.srq_namespaces,
            Table.NAMESPACE: params.namespaces,
            Table.NS_COUNTERS: params.namespaces,
            Table.SUBSYSTEM_COUNTERS: params.subsystems,
        }
        self.widths = {table: _width(layout) for table, layout in ENTRY_LAYOUTS.items()}
        cmd = self.regmap["CMD"]
        self._cmd_fields = {f.name: f for f in cmd.fields}
        self._arg_index = {f"ARG[{i}]": i for i in range(16)}
        self._result_index = {f"RESULT[{i}]": i for i in range(16)}
        self._lost_max = (1 << self.regmap["EVENT_LOST"].field("count").width) - 1
        self._object_max = (1 << data.Layout.cast(Event)["object"].width) - 1
        self._busy_held = False
        self.fence_source = None
        self.reset()

    # --- state ------------------------------------------------------------------------------

    def reset(self):
        """Reset: tables cleared, ARG / RESULT / IRQ_ENABLE / status / event queue to 0."""
        self.tables = {table: [0] * size for table, size in self.sizes.items()}
        self.arg = [0] * 16
        self.result = [0] * 16
        self.irq_enable = 0
        self.cmd_error = CmdError.NONE
        self.events = deque()
        self.event_overflow = 0
        self.event_lost = 0
        self._busy_held = False
        self.fence_epoch = 0

    def hold_busy(self, busy=True):
        """Test hook: make ``CMD_STATUS.busy`` read ``busy`` (as while the hardware works)."""
        self._busy_held = bool(busy)

    @property
    def busy(self):
        return int(self._busy_held)

    @property
    def irq(self):
        """High while ``IRQ_ENABLE.enable = 1`` and the event queue is not empty."""
        return bool(self.irq_enable and self.events)

    def entry(self, table, index):
        """The bit pattern of one table entry."""
        return self.tables[Table(table)][index]

    def set_entry(self, table, index, value):
        """Back door: store an entry bit pattern directly (truncated to the entry width)."""
        table = Table(table)
        self.tables[table][index] = value & ((1 << self.widths[table]) - 1)

    def decoded(self, table, index):
        """One table entry decoded with its layout."""
        table = Table(table)
        return decode(ENTRY_LAYOUTS[table], self.tables[table][index])

    # --- register access --------------------------------------------------------------------

    def _register(self, offset):
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
        return self._by_offset.get(offset & ~0x3)

    def read(self, offset):
        """One AXI4-Lite read: ``(value, "OKAY")`` or ``(0, "SLVERR")``."""
        reg = self._register(offset)
        if reg is None or not reg.readable:
            return 0, SLVERR
        value = 0
        for f in reg.fields:
            if "r" in f.sw:
                value |= (self._field_value(reg, f) & ((1 << f.width) - 1)) << f.lsb
        return value, OKAY

    def _field_value(self, reg, f):
        name = reg.name
        if f.hw == "na":                       # constants: ID, VERSION, capabilities
            return f.reset
        if name == "CMD_STATUS":
            return {"busy": self.busy, "error": self.cmd_error.value}[f.name]
        if name == "IRQ_ENABLE":
            return self.irq_enable
        if name == "EVENT_STATUS":
            return {"count": len(self.events), "overflow": self.event_overflow}[f.name]
        if name == "EVENT_HEAD":
            if not self.events:
                return 0
            kind, obj = self.events[0]
            return {"kind": kind.value, "object": obj}[f.name]
        if name == "EVENT_LOST":
            return self.event_lost
        if name in ("USE_CONTEXTS", "USE_STAGING", "USE_BUSY"):
            return 0                           # the control plane alone holds no I/O
        if name == "FENCE":
            if f.name == "epoch":
                return self.fence_epoch
            return 0 if self.fence_source is None else self.fence_source(self.fence_epoch ^ 1)
        if name in self._arg_index:
            return self.arg[self._arg_index[name]]
        if name in self._result_index:
            return self.result[self._result_index[name]]
        raise NotImplementedError(f"the model does not know register {name} field {f.name}")

    def write(self, offset, value, strobe=0xF):
        """One AXI4-Lite write: ``"OKAY"`` (took effect) or ``"SLVERR"`` (changed nothing)."""
        if not isinstance(value, int) or not 0 <= value <= _WORD_MASK:
            raise ValueError(f"value must be a 32-bit unsigned integer, not {value!r}")
        if not isinstance(strobe, int) or not 0 <= strobe <= 0xF:
            raise ValueError(f"strobe must be a 4-bit integer, not {strobe!r}")
        reg = self._register(offset)
        if reg is None:
            return SLVERR
        writable = [f for f in reg.fields if "w" in f.sw]
        if not writable or strobe != 0xF:
            return SLVERR
        fields = {f.name: (value >> f.lsb) & ((1 << f.width) - 1) for f in writable}
        name = reg.name
        if name == "CMD":
            if self.busy:
                return SLVERR
            self._command(fields["op"], fields["tbl"], fields["index"])
        elif name == "IRQ_ENABLE":
            self.irq_enable = fields["enable"]
        elif name == "FENCE":
            self.fence_epoch = fields["epoch"]
        elif name == "EVENT_CTRL":
            if fields["pop"] and self.events:
                self.events.popleft()
            if fields["clear_overflow"]:
                self.event_overflow = 0
        elif name in self._arg_index:
            self.arg[self._arg_index[name]] = fields["value"]
        else:
            raise NotImplementedError(f"the model does not know writable register {name}")
        return OKAY

    # --- table commands ---------------------------------------------------------------------

    def _command(self, op, tbl, index):
        """Run one command to completion; the checks are those of the spec, in its order."""
        if op not in {o.value for o in CmdOp}:
            self.cmd_error = CmdError.BAD_OP
            return
        op = CmdOp(op)
        if tbl not in {t.value for t in Table}:
            self.cmd_error = CmdError.BAD_TABLE
            return
        table = Table(tbl)
        if index >= self.sizes[table]:
            self.cmd_error = CmdError.BAD_INDEX
            return
        if op == CmdOp.WRITE and table in COUNTER_TABLES:
            self.cmd_error = CmdError.READ_ONLY
            return
        if op == CmdOp.READ_CLEAR and table not in COUNTER_TABLES:
            self.cmd_error = CmdError.BAD_OP
            return
        entries = self.tables[table]
        if op == CmdOp.WRITE:
            window = sum(word << (32 * i) for i, word in enumerate(self.arg))
            entries[index] = window & ((1 << self.widths[table]) - 1)
        else:
            value = entries[index]
            self.result = [(value >> (32 * i)) & _WORD_MASK for i in range(16)]
            if op == CmdOp.READ_CLEAR:
                entries[index] = 0
        self.cmd_error = CmdError.NONE

    # --- datapath side: events, counters, lookups -------------------------------------------

    def push_event(self, kind: EventType, obj: int):
        """Queue an event; at a full queue drop it, set overflow, count it lost.

        Returns True when the event was queued.
        """
        kind = EventType(kind)
        if not isinstance(obj, int) or not 0 <= obj <= self._object_max:
            raise ValueError(f"event object {obj!r} does not fit the 24-bit object field")
        if len(self.events) >= self.params.event_depth:
            self.event_overflow = 1
            self.event_lost = min(self.event_lost + 1, self._lost_max)
            return False
        self.events.append((kind, obj))
        return True

    def count(self, table: Table, index: int, field_number: int, amount: int):
        """The increment port: add ``amount`` to one counter, saturating at 2**48 - 1."""
        table = Table(table)
        if table not in COUNTER_TABLES:
            raise ValueError(f"{table.name} is not a counter table")
        if not isinstance(index, int) or not 0 <= index < self.sizes[table]:
            raise ValueError(f"counter index {index!r} is not below {self.sizes[table]}")
        fields = list(data.Layout.cast(ENTRY_LAYOUTS[table]))
        if not isinstance(field_number, int) or not 0 <= field_number < len(fields):
            raise ValueError(f"field number {field_number!r} is not below {len(fields)}")
        if not isinstance(amount, int) or amount < 0:
            raise ValueError(f"amount {amount!r} is not a non-negative integer")
        _, f = fields[field_number]
        mask = (1 << f.width) - 1
        entry = self.tables[table][index]
        current = (entry >> f.offset) & mask
        new = min(current + amount, COUNTER_MAX, mask)
        self.tables[table][index] = (entry & ~(mask << f.offset)) | (new << f.offset)

    def counters(self, table, index):
        """Counter entry as a dict (no side effect)."""
        return self.decoded(table, index)

    def qp_entry(self, qpn):
        """The QP table read port: the decoded ``QpEntry``; zero at or above ``qp_count``."""
        if not isinstance(qpn, int) or qpn < 0:
            raise ValueError(f"qpn must be a non-negative integer, not {qpn!r}")
        raw = self.tables[Table.QP][qpn] if qpn < self.sizes[Table.QP] else 0
        return decode(QpEntry, raw)

    def ns_lookup(self, subsystem, fe_nsid):
        """The namespace lookup: ``(status, slot, entry)``; NOT_FOUND gives slot 0, zero entry."""
        not_found = ("NOT_FOUND", 0, decode(NamespaceEntry, 0))
        p = self.params
        if not 0 <= subsystem < p.subsystems or not 1 <= fe_nsid <= p.srq_namespaces:
            return not_found
        index = decode(NsIndexEntry,
                       self.tables[Table.NS_INDEX][subsystem * p.srq_namespaces + fe_nsid - 1])
        if not index["valid"]:
            return not_found
        slot = index["slot"]
        if slot >= self.sizes[Table.NAMESPACE]:
            return not_found
        entry = decode(NamespaceEntry, self.tables[Table.NAMESPACE][slot])
        if not entry["valid"] or entry["subsystem"] != subsystem or entry["fe_nsid"] != fe_nsid:
            return not_found
        if not entry["ready"]:
            return "NOT_READY", slot, entry
        return "HIT", slot, entry


class ModelRegs:
    """The driver's register-access interface over a :class:`CsrModel`.

    ``read`` / ``write`` are coroutines; an access answered SLVERR raises
    :class:`BusError`. ``log`` records every access as ``(kind, offset, value)``.
    """

    def __init__(self, model: CsrModel):
        self.model = model
        self.log = []

    async def read(self, offset):
        value, resp = self.model.read(offset)
        self.log.append(("read", offset, value))
        if resp != OKAY:
            raise BusError("read", offset)
        return value

    async def write(self, offset, value):
        resp = self.model.write(offset, value)
        self.log.append(("write", offset, value))
        if resp != OKAY:
            raise BusError("write", offset)
