"""A functional PCIe NVMe SSD model, and the PCIe fabric it sits on.

Transaction level: no bus signals, no clock of its own, no asyncio. Whoever
drives it (the engine reference model, a replay, or later a cocotb
testbench) calls plain methods with the current time in clock cycles:

- the host writes doorbells (:meth:`NvmeSsd.bus_write`, or through the
  fabric); an invalid doorbell write raises :class:`ProtocolError`;
- :meth:`NvmeSsd.steps` ``(now)`` is everything due by ``now`` as a
  generator of bus operations: fetch the SQEs of the SQ-tail doorbells
  written since (in doorbell order; each command then completes
  ``latency_cycles`` later), execute the commands due (data moves by PRP,
  from and to wherever the PRPs point), post their CQEs with the phase tag,
  and send one MSI-X message per queue that got CQEs (none when polling).
  :meth:`NvmeSsd.advance` ``(now)`` runs those operations on a
  :class:`PcieFabric`; a cocotb testbench can run the same ones on its bus
  models (awaiting each), since the generator holds no asyncio;
- :meth:`NvmeSsd.next_event_time` says when something is due next.

Namespaces store blocks sparsely: a block never written, written with
zeroes or deallocated reads as zeroes. Faults: :meth:`NvmeSsd.inject`
(status, delay or "never completes" for the next commands fetched for a
namespace) and :attr:`NvmeSsd.fault_hook`. The SSD checks LBA ranges itself
(0x80) as a real controller does, whatever its host already checked.

:class:`PcieFabric` routes bus addresses to targets (ring memory, SSD BARs,
the engine's peer-to-peer target) and can fail chosen accesses
(``fail_next``), which is how PCIe errors are injected.
"""

import collections
import dataclasses
import enum
import heapq

from amaranth.lib import data

from rtl.formats import CQE_BYTES, SQE_BYTES, Cqe, DsmRange, Opcode, Sqe

__all__ = [
    "PAGE_BYTES", "PcieError", "ProtocolError", "SparseMemory", "PcieFabric", "SsdNamespace",
    "SsdFault", "IoQueue", "NvmeSsd", "status_fields", "drive", "Codec", "SQE", "CQE",
    "DSM_RANGE", "SUCCESS",
]

PAGE_BYTES = 4096                  # the memory page size (CC.MPS = 0) the model assumes
DOORBELL_BASE = 0x1000
NSID_BROADCAST = 0xFFFF_FFFF
U64 = (1 << 64) - 1

# (sct, sc, dnr) of the statuses the SSD model returns itself.
SUCCESS = (0, 0x00, 0)
INVALID_OPCODE = (0, 0x01, 1)
INVALID_FIELD = (0, 0x02, 1)
DATA_TRANSFER_ERROR = (0, 0x04, 0)
INVALID_NS = (0, 0x0B, 1)
INVALID_PRP_OFFSET = (0, 0x13, 1)
LBA_OUT_OF_RANGE = (0, 0x80, 1)


class Codec:
    """Fast :func:`rtl.formats.encode` / :func:`rtl.formats.decode` for one layout.

    The field offsets and widths are read once from the ``amaranth.lib.data``
    layout of :mod:`rtl.formats` (the single source); encoding and decoding are
    then plain shifts and masks, with the same results as the generic functions
    (nested dicts, lists for arrays, enum members for enum fields; unnamed fields
    encode as zero). The models encode and decode an SQE or a CQE per command,
    where the generic functions would dominate the run time.
    """

    def __init__(self, layout):
        self.layout = data.Layout.cast(layout)
        self.nbytes = (self.layout.size + 7) // 8
        self._tree = self._build(self.layout)

    @classmethod
    def _build(cls, layout, base=0):
        if isinstance(layout, data.ArrayLayout):
            shape = layout.elem_shape
            width = data.Layout.cast(shape).size if cls._is_layout(shape) else \
                data.Layout.cast(data.StructLayout({"x": shape})).size
            return ("array", [cls._node(shape, base + i * width, width)
                              for i in range(layout.length)])
        return ("struct", {name: cls._node(f.shape, base + f.offset, f.width)
                           for name, f in layout})

    @classmethod
    def _node(cls, shape, offset, width):
        if cls._is_layout(shape):
            return cls._build(data.Layout.cast(shape), offset)
        if isinstance(shape, type) and issubclass(shape, enum.Enum):
            return ("enum", offset, (1 << width) - 1, shape)
        return ("int", offset, (1 << width) - 1, None)

    @staticmethod
    def _is_layout(shape):
        return isinstance(shape, data.Layout) or (
            isinstance(shape, type) and issubclass(shape, (data.Struct, data.Union)))

    def decode(self, raw):
        """Bytes (exactly the layout's size) or an int -> nested dict."""
        if isinstance(raw, (bytes, bytearray)):
            if len(raw) != self.nbytes:
                raise ValueError(f"{len(raw)} bytes given to decode a {self.nbytes}-byte "
                                 f"layout")
            raw = int.from_bytes(raw, "little")
        return self._decode(self._tree, raw)

    def _decode(self, node, raw):
        kind = node[0]
        if kind == "struct":
            return {name: self._decode(sub, raw) for name, sub in node[1].items()}
        if kind == "array":
            return [self._decode(sub, raw) for sub in node[1]]
        _, offset, mask, enum_type = node
        value = raw >> offset & mask
        return enum_type(value) if enum_type is not None else value

    def encode(self, fields):
        """Nested dict (missing fields zero; one view of a union) -> bytes."""
        return self._encode(self._tree, fields, "").to_bytes(self.nbytes, "little")

    def _encode(self, node, value, path):
        kind = node[0]
        if kind == "struct":
            if not isinstance(value, dict):
                raise ValueError(f"{path}: expected a dict of fields, got {value!r}")
            out = 0
            for name, sub in value.items():
                if name not in node[1]:
                    raise ValueError(f"{path}: unknown field {name}")
                out |= self._encode(node[1][name], sub, f"{path}.{name}" if path else name)
            return out
        if kind == "array":
            if not isinstance(value, (list, tuple)) or len(value) != len(node[1]):
                raise ValueError(f"{path}: expected {len(node[1])} elements, got {value!r}")
            out = 0
            for i, (sub, element) in enumerate(zip(node[1], value, strict=True)):
                out |= self._encode(sub, element, f"{path}[{i}]")
            return out
        _, offset, mask, _ = node
        value = int(getattr(value, "value", value))
        if not 0 <= value <= mask:
            raise ValueError(f"{path}: {value!r} does not fit in {mask.bit_length()} bits")
        return value << offset


SQE = Codec(Sqe)
CQE = Codec(Cqe)
DSM_RANGE = Codec(DsmRange)


def status_fields(sct=0, sc=0, dnr=0, crd=0, m=0):
    """A ``CqeStatus`` dict (phase 0)."""
    return {"p": 0, "sc": sc, "sct": sct, "crd": crd, "m": m, "dnr": dnr}


class PcieError(Exception):
    """A PCIe access answered with an error (an unmapped address, or an injected fault)."""

    def __init__(self, kind, addr, length, why):
        super().__init__(f"PCIe {kind} of {length} bytes at {addr:#x}: {why}")
        self.kind = kind
        self.addr = addr
        self.length = length


class ProtocolError(Exception):
    """The host broke the NVMe queue protocol (e.g. an invalid doorbell write)."""


# --- memory and fabric --------------------------------------------------------------------------

class SparseMemory:
    """Plain memory as a bus target: bytes never written read as zero."""

    def __init__(self, name="memory"):
        self.name = name
        self._pages = {}

    def bus_read(self, offset, length):
        out = bytearray()
        while length:
            page, off = divmod(offset, PAGE_BYTES)
            n = min(length, PAGE_BYTES - off)
            buf = self._pages.get(page)
            out += buf[off:off + n] if buf is not None else bytes(n)
            offset += n
            length -= n
        return bytes(out)

    def bus_write(self, offset, data):
        data = memoryview(bytes(data))
        while data:
            page, off = divmod(offset, PAGE_BYTES)
            n = min(len(data), PAGE_BYTES - off)
            buf = self._pages.get(page)
            if buf is None:
                buf = self._pages[page] = bytearray(PAGE_BYTES)
            buf[off:off + n] = data[:n]
            offset += n
            data = data[n:]


@dataclasses.dataclass
class _Mapping:
    base: int
    size: int
    target: object
    name: str


class PcieFabric:
    """Address routing between PCIe agents.

    ``map(base, size, target, name)`` gives ``[base, base + size)`` to a target
    with ``bus_read(offset, length) -> bytes`` and ``bus_write(offset, data)``
    (``offset`` from ``base``). An access that does not fall wholly inside one
    mapping, or that an armed :meth:`fail_next` matches, raises
    :class:`PcieError`. ``log``, when a list, records ``(source, kind, addr,
    length)`` of every access.
    """

    def __init__(self):
        self._maps = []
        self._faults = []            # [kind, base, size, remaining]
        self.log = None

    def map(self, base, size, target, name):
        if not (isinstance(base, int) and isinstance(size, int) and size > 0
                and 0 <= base and base + size <= 1 << 64):
            raise ValueError(f"{name}: bad window {base!r} + {size!r}")
        for m in self._maps:
            if base < m.base + m.size and m.base < base + size:
                raise ValueError(f"{name} [{base:#x}, {base + size:#x}) overlaps {m.name} "
                                 f"[{m.base:#x}, {m.base + m.size:#x})")
        self._maps.append(_Mapping(base, size, target, name))
        self._maps.sort(key=lambda m: m.base)

    def mapping(self, addr):
        """``(name, base, size)`` of the mapping that holds ``addr``, or None."""
        for m in self._maps:
            if m.base <= addr < m.base + m.size:
                return m.name, m.base, m.size
        return None

    def fail_next(self, base, size, kind, count=1):
        """Answer the next ``count`` ``kind`` ("read"/"write") accesses touching the range
        with an error."""
        if kind not in ("read", "write"):
            raise ValueError(f"kind must be 'read' or 'write', not {kind!r}")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        self._faults.append([kind, base, size, count])

    def clear_faults(self):
        self._faults.clear()

    @property
    def pending_faults(self):
        return [tuple(f) for f in self._faults]

    def _route(self, kind, addr, length, source):
        if self.log is not None:
            self.log.append((source, kind, addr, length))
        for fault in self._faults:
            f_kind, base, size, _ = fault
            if f_kind == kind and addr < base + size and base < addr + max(length, 1):
                fault[3] -= 1
                if fault[3] == 0:
                    self._faults.remove(fault)
                raise PcieError(kind, addr, length, "injected error response")
        for m in self._maps:
            if m.base <= addr and addr + length <= m.base + m.size:
                return m
        raise PcieError(kind, addr, length, "no target decodes this address range (DECERR)")

    def read(self, addr, length, source="?"):
        m = self._route("read", addr, length, source)
        return m.target.bus_read(addr - m.base, length)

    def write(self, addr, data, source="?"):
        data = bytes(data)
        m = self._route("write", addr, len(data), source)
        m.target.bus_write(addr - m.base, data)


# --- namespaces ---------------------------------------------------------------------------------

class SsdNamespace:
    """One namespace: ``nsze`` blocks of ``lba_data_size`` bytes, stored sparsely."""

    def __init__(self, nsid, lba_data_size, nsze):
        if not isinstance(nsid, int) or not 1 <= nsid < NSID_BROADCAST:
            raise ValueError(f"nsid must be in 1..0xfffffffe, not {nsid!r}")
        if (not isinstance(lba_data_size, int) or lba_data_size < 512
                or lba_data_size & (lba_data_size - 1)):
            raise ValueError(f"lba_data_size must be a power of two >= 512, "
                             f"not {lba_data_size!r}")
        if not isinstance(nsze, int) or not 1 <= nsze <= U64:
            raise ValueError(f"nsze must be in 1..2**64-1, not {nsze!r}")
        self.nsid = nsid
        self.lba_data_size = lba_data_size
        self.nsze = nsze
        self._blocks = {}           # lba -> bytes (never all zero)

    @property
    def lba_shift(self):
        return self.lba_data_size.bit_length() - 1

    def in_range(self, slba, count):
        """True when blocks ``slba .. slba + count - 1`` exist (no wrap-around)."""
        return 0 <= slba and slba + count <= self.nsze

    def _check(self, slba, count):
        if not isinstance(slba, int) or not isinstance(count, int) or count < 0:
            raise ValueError(f"bad block range {slba!r} + {count!r}")
        if not self.in_range(slba, count):
            raise ValueError(f"blocks {slba} + {count} are beyond nsze {self.nsze} "
                             f"of nsid {self.nsid}")

    def read(self, slba, count):
        """``count`` blocks from ``slba`` (unwritten blocks read as zeroes)."""
        self._check(slba, count)
        size = self.lba_data_size
        zero = bytes(size)
        return b"".join(self._blocks.get(lba, zero) for lba in range(slba, slba + count))

    def write(self, slba, data):
        """Store whole blocks from ``slba``."""
        data = bytes(data)
        size = self.lba_data_size
        if len(data) % size:
            raise ValueError(f"{len(data)} bytes are not a whole number of {size}-byte blocks")
        self._check(slba, len(data) // size)
        for i in range(len(data) // size):
            block = data[i * size:(i + 1) * size]
            if block.count(0) == size:
                self._blocks.pop(slba + i, None)
            else:
                self._blocks[slba + i] = block

    def _forget(self, slba, count):
        if count > len(self._blocks):
            for lba in [lba for lba in self._blocks if slba <= lba < slba + count]:
                del self._blocks[lba]
        else:
            for lba in range(slba, slba + count):
                self._blocks.pop(lba, None)

    def write_zeroes(self, slba, count):
        self._check(slba, count)
        self._forget(slba, count)

    def deallocate(self, slba, count):
        """Deallocated blocks read as zeroes (DLFEAT "read zeroes")."""
        self._check(slba, count)
        self._forget(slba, count)

    @property
    def written_blocks(self):
        """LBAs that currently hold nonzero data, ascending."""
        return sorted(self._blocks)


# --- queues and faults --------------------------------------------------------------------------

@dataclasses.dataclass
class SsdFault:
    """What happens to one command instead of the normal service.

    ``status``: complete with this ``CqeStatus`` dict (phase ignored) without
    executing the command; ``delay``: extra cycles before completing;
    ``never``: fetched but never completed.
    """
    status: dict | None = None
    delay: int = 0
    never: bool = False


@dataclasses.dataclass
class IoQueue:
    """One I/O queue pair as the controller sees it."""
    qid: int
    sq_addr: int
    sq_entries: int
    cq_addr: int
    cq_entries: int
    msix_addr: int | None = None
    msix_data: int | None = None
    sq_head: int = 0         # next SQE the controller fetches
    sq_tail: int = 0         # last SQ-tail doorbell value
    cq_tail: int = 0         # next CQ slot the controller writes
    cq_head: int = 0         # last CQ-head doorbell value
    phase: int = 1           # phase tag of the CQEs being written

    def cq_full(self):
        return (self.cq_tail + 1) % self.cq_entries == self.cq_head


@dataclasses.dataclass
class _Command:
    order: int
    qid: int
    sqe: bytes
    fields: dict
    fault: SsdFault | None


class NvmeSsd:
    """A PCIe NVMe controller with I/O queue pairs and namespaces.

    Parameters
    ----------
    name : str
    namespaces : iterable of SsdNamespace (or ``(nsid, lba_data_size, nsze)``)
    io_queues : int
        I/O queue pairs it offers (qid 1 .. io_queues).
    max_queue_entries : int
        The largest SQ / CQ it accepts (CAP.MQES + 1).
    latency_cycles : int
        Service time of every command, fetch to completion.
    jitter_cycles, rng
        With an ``rng`` (``random.Random``), each command takes up to
        ``jitter_cycles`` more, drawn from it.
    dstrd : int
        CAP.DSTRD: doorbell stride ``4 << dstrd`` bytes.
    """

    def __init__(self, name, namespaces=(), *, io_queues=1, max_queue_entries=65536,
                 latency_cycles=0, jitter_cycles=0, rng=None, dstrd=0):
        self.name = name
        self.namespaces = {}
        for ns in namespaces:
            if not isinstance(ns, SsdNamespace):
                ns = SsdNamespace(*ns)
            if ns.nsid in self.namespaces:
                raise ValueError(f"{name}: nsid {ns.nsid} given twice")
            self.namespaces[ns.nsid] = ns
        if not isinstance(io_queues, int) or not 1 <= io_queues <= 65535:
            raise ValueError(f"io_queues must be in 1..65535, not {io_queues!r}")
        if not isinstance(latency_cycles, int) or latency_cycles < 0:
            raise ValueError(f"latency_cycles must be >= 0, not {latency_cycles!r}")
        self.io_queues = io_queues
        self.max_queue_entries = max_queue_entries
        self.latency_cycles = latency_cycles
        self.jitter_cycles = jitter_cycles
        self.rng = rng
        self.dstrd = dstrd
        self.queues = {}                 # qid -> IoQueue
        self.fabric = None
        self.bar_base = None
        self.now = 0
        self.fault_hook = None           # callable(qid, sqe_fields) -> SsdFault | None
        self._faults = []                # [nsid, SsdFault template, remaining]
        self._due = []                   # heap of (time, order, _Command)
        self._ready = {}                 # qid -> [_Command] completed, waiting for CQ space
        self._stuck = []                 # commands that never complete
        self._order = 0
        self._doorbells = collections.deque()   # qids whose SQ-tail doorbell was written
        self.fetched = []                # (qid, sqe fields) of every fetched command
        self.executed = {}               # opcode -> count of commands executed

    # --- wiring -------------------------------------------------------------------------------

    @property
    def doorbell_stride(self):
        return 4 << self.dstrd

    @property
    def bar_size(self):
        end = DOORBELL_BASE + 2 * (self.io_queues + 1) * self.doorbell_stride
        return -(-end // PAGE_BYTES) * PAGE_BYTES

    def sq_doorbell_offset(self, qid):
        return DOORBELL_BASE + 2 * qid * self.doorbell_stride

    def cq_doorbell_offset(self, qid):
        return DOORBELL_BASE + (2 * qid + 1) * self.doorbell_stride

    def attach(self, fabric, bar_base):
        """Map BAR0 (the doorbells) at ``bar_base`` and do DMA through ``fabric``."""
        fabric.map(bar_base, self.bar_size, self, f"{self.name} BAR0")
        self.fabric = fabric
        self.bar_base = bar_base

    def namespace(self, nsid):
        try:
            return self.namespaces[nsid]
        except KeyError:
            raise ValueError(f"{self.name} has no namespace {nsid!r}") from None

    def create_io_queue(self, qid, *, sq_addr, sq_entries, cq_addr, cq_entries,
                        msix_addr=None, msix_data=None, sq_tail=0, cq_head=0):
        """What Create I/O CQ + Create I/O SQ would set up (admin queue not modelled)."""
        if not 1 <= qid <= self.io_queues:
            raise ValueError(f"{self.name}: qid {qid} is not in 1..{self.io_queues}")
        if qid in self.queues:
            raise ValueError(f"{self.name}: queue {qid} already exists")
        for what, n in (("sq_entries", sq_entries), ("cq_entries", cq_entries)):
            if not 2 <= n <= self.max_queue_entries:
                raise ValueError(f"{self.name}: {what} {n} is not in "
                                 f"2..{self.max_queue_entries}")
        if (msix_addr is None) != (msix_data is None):
            raise ValueError("msix_addr and msix_data go together")
        self.queues[qid] = IoQueue(qid, sq_addr, sq_entries, cq_addr, cq_entries, msix_addr,
                                   msix_data, sq_head=sq_tail, sq_tail=sq_tail,
                                   cq_tail=cq_head, cq_head=cq_head)
        return self.queues[qid]

    # --- faults -------------------------------------------------------------------------------

    def inject(self, nsid, *, status=None, delay=0, never=False, count=1):
        """The next ``count`` commands fetched for ``nsid`` get this fault.

        ``status`` is a ``CqeStatus``-like dict (``sct``, ``sc``, ``dnr``, ``crd``,
        ``m``; missing fields 0) or None; ``delay`` extra cycles; ``never`` True: the
        command is fetched and never completed.
        """
        if status is not None:
            status = status_fields(**status)
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        if not isinstance(delay, int) or delay < 0:
            raise ValueError(f"delay must be a non-negative integer, not {delay!r}")
        self._faults.append([nsid, SsdFault(status, delay, bool(never)), count])

    def clear_faults(self):
        self._faults.clear()

    @property
    def pending_faults(self):
        return [(nsid, fault, n) for nsid, fault, n in self._faults]

    def _fault_for(self, qid, fields):
        if self.fault_hook is not None:
            fault = self.fault_hook(qid, fields)
            if fault is not None:
                return fault
        for entry in self._faults:
            if entry[0] == fields["nsid"]:
                entry[2] -= 1
                if entry[2] == 0:
                    self._faults.remove(entry)
                return dataclasses.replace(entry[1])
        return None

    # --- register side (BAR0) -----------------------------------------------------------------

    def bus_read(self, offset, length):
        return bytes(length)          # registers are not modelled: doorbells read as zero

    def bus_write(self, offset, data):
        if len(data) != 4 or offset % 4:
            raise ProtocolError(f"{self.name}: doorbell write of {len(data)} bytes at BAR "
                                f"offset {offset:#x} (doorbells are 32-bit, aligned)")
        value = int.from_bytes(data, "little")
        rel = offset - DOORBELL_BASE
        if rel < 0 or rel % self.doorbell_stride:
            raise ProtocolError(f"{self.name}: write to unmodelled register {offset:#x}")
        index = rel // self.doorbell_stride
        qid, is_cq = divmod(index, 2)
        q = self.queues.get(qid)
        if q is None:
            raise ProtocolError(f"{self.name}: doorbell of queue {qid}, which does not exist")
        if is_cq:
            self._cq_doorbell(q, value)
        else:
            self._sq_doorbell(q, value)

    def _sq_doorbell(self, q, value):
        if value >= q.sq_entries:
            raise ProtocolError(f"{self.name}: SQ {q.qid} tail doorbell {value} is not below "
                                f"its {q.sq_entries} entries (invalid doorbell write)")
        q.sq_tail = value
        self._doorbells.append(q.qid)       # fetched by the next steps(), in doorbell order

    def _cq_doorbell(self, q, value):
        if value >= q.cq_entries:
            raise ProtocolError(f"{self.name}: CQ {q.qid} head doorbell {value} is not below "
                                f"its {q.cq_entries} entries (invalid doorbell write)")
        posted = (q.cq_tail - q.cq_head) % q.cq_entries
        if (value - q.cq_head) % q.cq_entries > posted:
            raise ProtocolError(f"{self.name}: CQ {q.qid} head doorbell {value} consumes "
                                f"entries not posted (head {q.cq_head}, tail {q.cq_tail}; "
                                f"invalid doorbell write)")
        q.cq_head = value

    # --- time ---------------------------------------------------------------------------------

    def next_event_time(self):
        """When the SSD next has work: now with SQEs to fetch, the next completion time,
        or None when nothing is scheduled."""
        if self._doorbells:
            return self.now
        return self._due[0][0] if self._due else None

    @property
    def outstanding(self):
        """Commands fetched and not yet in the CQ (scheduled, waiting for CQ room, stuck)."""
        return len(self._due) + sum(map(len, self._ready.values())) + len(self._stuck)

    @property
    def stuck(self):
        """Commands that never complete (an injected fault)."""
        return len(self._stuck)

    def advance(self, now):
        """Do everything due by ``now`` through :attr:`fabric`; True if there was work."""
        return drive(self.steps(now), self.fabric, self.name)

    def steps(self, now):
        """Everything due by ``now``, as a generator of bus operations.

        Yields ``("read", addr, length)`` (send back the bytes) and ``("write",
        addr, data)`` (send back None); throw :class:`PcieError` into it for an
        access that failed. Returns True if there was work. :meth:`advance` runs
        it on the fabric; a cocotb testbench runs the same operations on its buses.
        In order: fetch the SQEs of every SQ-tail doorbell written since (in
        doorbell order), execute the commands due (time, then fetch order), post
        their CQEs, then one MSI-X message per queue that got CQEs.
        """
        if now < self.now:
            raise ValueError(f"{self.name}: time goes backwards ({now} < {self.now})")
        self.now = now
        worked = False
        while self._doorbells:
            q = self.queues[self._doorbells.popleft()]
            while q.sq_head != q.sq_tail:
                raw = yield ("read", q.sq_addr + q.sq_head * SQE_BYTES, SQE_BYTES)
                q.sq_head = (q.sq_head + 1) % q.sq_entries
                self._fetch(q, raw)
                worked = True
        while self._due and self._due[0][0] <= now:
            _, _, cmd = heapq.heappop(self._due)
            cqe = yield from self._complete(cmd)
            self._ready.setdefault(cmd.qid, []).append(cqe)
            worked = True
        interrupts = []
        for qid in sorted(self._ready):
            q = self.queues[qid]
            pending = self._ready[qid]
            posted = 0
            while pending and not q.cq_full():
                cqe = dict(pending.pop(0), sqhd=q.sq_head, sqid=q.qid)
                cqe["status"] = dict(cqe["status"], p=q.phase)
                yield ("write", q.cq_addr + q.cq_tail * CQE_BYTES, CQE.encode(cqe))
                q.cq_tail = (q.cq_tail + 1) % q.cq_entries
                if q.cq_tail == 0:
                    q.phase ^= 1
                posted += 1
            if not pending:
                del self._ready[qid]
            if posted:
                worked = True
                if q.msix_addr is not None:
                    interrupts.append(q)
        for q in interrupts:
            yield ("write", q.msix_addr, q.msix_data.to_bytes(4, "little"))
        return worked

    def _fetch(self, q, raw):
        fields = SQE.decode(raw)
        self.fetched.append((q.qid, fields))
        cmd = _Command(self._order, q.qid, raw, fields, self._fault_for(q.qid, fields))
        self._order += 1
        if cmd.fault is not None and cmd.fault.never:
            self._stuck.append(cmd)
            return
        latency = self.latency_cycles
        if self.rng is not None and self.jitter_cycles:
            latency += self.rng.randint(0, self.jitter_cycles)
        if cmd.fault is not None:
            latency += cmd.fault.delay
        heapq.heappush(self._due, (self.now + latency, cmd.order, cmd))

    def _complete(self, cmd):
        fields = cmd.fields
        if cmd.fault is not None and cmd.fault.status is not None:
            status, dw0 = cmd.fault.status, 0
        else:
            (sct, sc, dnr), dw0 = yield from self.execute_steps(fields)
            status = status_fields(sct, sc, dnr)
            opcode = fields["opcode"]
            self.executed[opcode] = self.executed.get(opcode, 0) + 1
        return {"dw0": dw0, "dw1": 0, "cid": fields["cid"], "status": status}

    # --- command execution --------------------------------------------------------------------

    def execute(self, sqe):
        """Execute one command (an ``Sqe`` dict) now, DMA through :attr:`fabric`:
        ``((sct, sc, dnr), dw0)``."""
        return drive(self.execute_steps(sqe), self.fabric, self.name)

    def execute_steps(self, sqe):
        """:meth:`execute` as a generator of bus operations (see :meth:`steps`)."""
        opcode = sqe["opcode"]
        if sqe["psdt"] != 0 or sqe["fuse"] != 0:
            return INVALID_FIELD, 0          # this controller supports PRPs and no fusing
        nsid = sqe["nsid"]
        if opcode == Opcode.FLUSH.value:
            if nsid == NSID_BROADCAST or nsid in self.namespaces:
                return SUCCESS, 0
            return INVALID_NS, 0
        if opcode not in (Opcode.READ.value, Opcode.WRITE.value, Opcode.WRITE_ZEROES.value,
                          Opcode.DSM.value):
            return INVALID_OPCODE, 0
        ns = self.namespaces.get(nsid)
        if ns is None:
            return INVALID_NS, 0
        prp = sqe["dptr"]["prp"]
        if opcode == Opcode.DSM.value:
            status = yield from self._dsm(ns, sqe["cdw"]["dsm"], prp)
            return status, 0
        rw = sqe["cdw"]["rw"]
        slba, count = rw["slba"], rw["nlb"] + 1
        if not ns.in_range(slba, count):
            return LBA_OUT_OF_RANGE, 0
        if opcode == Opcode.WRITE_ZEROES.value:
            ns.write_zeroes(slba, count)
            return SUCCESS, 0
        length = count << ns.lba_shift
        try:
            segments = yield from self._prp_segments(prp["prp1"], prp["prp2"], length)
            if segments is None:
                return INVALID_PRP_OFFSET, 0
            if opcode == Opcode.WRITE.value:
                parts = []
                for addr, n in segments:
                    parts.append((yield ("read", addr, n)))
                ns.write(slba, b"".join(parts))
            else:
                data = ns.read(slba, count)
                pos = 0
                for addr, n in segments:
                    yield ("write", addr, data[pos:pos + n])
                    pos += n
        except PcieError:
            return DATA_TRANSFER_ERROR, 0
        return SUCCESS, 0

    def _dsm(self, ns, dsm, prp):
        ranges = dsm["nr"] + 1
        try:
            segments = yield from self._prp_segments(prp["prp1"], prp["prp2"], ranges * 16)
            if segments is None:
                return INVALID_PRP_OFFSET
            parts = []
            for addr, n in segments:
                parts.append((yield ("read", addr, n)))
        except PcieError:
            return DATA_TRANSFER_ERROR
        raw = b"".join(parts)
        entries = [DSM_RANGE.decode(raw[i * 16:(i + 1) * 16]) for i in range(ranges)]
        if any(not ns.in_range(r["slba"], r["length"]) for r in entries):
            return LBA_OUT_OF_RANGE
        if dsm["ad"]:
            for r in entries:
                ns.deallocate(r["slba"], r["length"])
        return SUCCESS

    def _prp_segments(self, prp1, prp2, length):
        """``[(addr, bytes)]`` the PRPs describe for ``length`` bytes; None: bad PRP offset.
        A generator: PRP lists are read over the bus."""
        first = min(length, PAGE_BYTES - prp1 % PAGE_BYTES)
        segments = [(prp1, first)]
        rest = length - first
        if rest == 0:
            return segments
        if rest <= PAGE_BYTES:
            if prp2 % PAGE_BYTES:
                return None
            return segments + [(prp2, rest)]
        if prp2 % 8:
            return None
        pages = -(-rest // PAGE_BYTES)
        entries = []
        list_addr = prp2
        while len(entries) < pages:
            slots = (PAGE_BYTES - list_addr % PAGE_BYTES) // 8
            raw = yield ("read", list_addr, slots * 8)
            values = [int.from_bytes(raw[i * 8:(i + 1) * 8], "little") for i in range(slots)]
            need = pages - len(entries)
            if need <= slots:
                entries += values[:need]
                break
            entries += values[:slots - 1]
            list_addr = values[slots - 1]            # the last entry chains to the next list
            if list_addr % 8:
                return None
        for addr in entries:
            if addr % PAGE_BYTES:
                return None
            n = min(rest, PAGE_BYTES)
            segments.append((addr, n))
            rest -= n
        return segments


def drive(steps, fabric, source="?"):
    """Run a generator of bus operations (:meth:`NvmeSsd.steps`) on a :class:`PcieFabric`;
    a failed access is thrown back into it as :class:`PcieError`. Returns its value."""
    reply, error = None, None
    while True:
        try:
            op = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as stop:
            return stop.value
        reply, error = None, None
        kind, addr, arg = op
        try:
            if kind == "read":
                reply = fabric.read(addr, arg, source=source)
            else:
                fabric.write(addr, arg, source=source)
        except PcieError as exc:
            error = exc
