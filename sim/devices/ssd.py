"""The NVMe SSD model: one controller, two faces.

:class:`NvmeSsd` is a PCIe NVMe controller with I/O queue pairs and namespaces,
written from ``shared/spec/nvme-facts.md``: doorbells (an invalid doorbell write
raises :class:`ProtocolError`), SQ fetch, command execution with the PRP walk (lists
and chained lists), namespaces stored sparsely (:class:`~sim.devices.namespace.
SsdNamespace`), CQ posting with the phase tag, MSI-X messages or polling, and faults
(:meth:`NvmeSsd.inject`: a status, a delay or "never completes" for the next commands
fetched for a namespace; :attr:`NvmeSsd.fault_hook`). It checks LBA ranges itself
(0x80) as a real controller does, whatever its host already checked.

Every memory access is a *bus operation* that its generators yield, so the same
controller runs wherever the caller can carry those out:

- ``("read", addr, length)``: send back the bytes; ``("read_prp_list", addr, length)``:
  the same, for entries of a PRP list; ``("write", addr, data)``: send back None;
- ``("read_batch", [(addr, length), ...])``: send back a list of bytes;
  ``("write_batch", [(addr, data), ...])``: send back None. A command's data moves
  in one batch, which a bus face may keep outstanding at once;
- throw :class:`~sim.devices.pcie.PcieError` into the generator for an access that
  failed: during a command's PRP walk or data it completes with Data Transfer Error;
  an SQ fetch or CQ posting that fails raises it out of the generator.

The pieces: :meth:`NvmeSsd.fetch_steps` (the SQEs of the SQ-tail doorbells written
since), :meth:`NvmeSsd.completion_steps` (execute one command, or take its fault),
:meth:`NvmeSsd.post_steps` (write a CQE at the CQ tail) and :meth:`NvmeSsd.interrupt`
(the MSI-X message of a queue). Two faces put them on a time line:

- the transaction face, here: :meth:`NvmeSsd.steps` ``(now)`` is everything due by
  ``now`` (each command completes ``latency_cycles`` after its fetch, plus its jitter
  and a fault's delay, or never; one MSI-X message per queue that got CQEs),
  :meth:`NvmeSsd.advance` runs it on a :class:`~sim.devices.pcie.PcieFabric`
  (:func:`drive`), :meth:`NvmeSsd.next_event_time` says when something is due next.
  The reference model and the model backend of ``replay`` use it;
- the bus face, :class:`sim.devices.ssd_bus.SsdDevice`: the same controller on the
  RTL's buses under cocotb (cocotbext-axi), with its own service timing.
"""

import collections
import dataclasses
import heapq

from rtl.formats import CQE_BYTES, SQE_BYTES, Opcode
from sim.codec import CQE, DSM_RANGE, SQE
from sim.devices.namespace import NSID_BROADCAST, SsdNamespace
from sim.devices.pcie import PAGE_BYTES, PcieError

__all__ = [
    "ProtocolError", "SsdFault", "IoQueue", "NvmeSsd", "status_fields", "drive", "SUCCESS",
    "DATA_TRANSFER_ERROR",
]

DOORBELL_BASE = 0x1000

# (sct, sc, dnr) of the statuses the SSD model returns itself.
SUCCESS = (0, 0x00, 0)
INVALID_OPCODE = (0, 0x01, 1)
INVALID_FIELD = (0, 0x02, 1)
DATA_TRANSFER_ERROR = (0, 0x04, 0)
INVALID_NS = (0, 0x0B, 1)
INVALID_PRP_OFFSET = (0, 0x13, 1)
LBA_OUT_OF_RANGE = (0, 0x80, 1)


def status_fields(sct=0, sc=0, dnr=0, crd=0, m=0):
    """A ``CqeStatus`` dict (phase 0)."""
    return {"p": 0, "sc": sc, "sct": sct, "crd": crd, "m": m, "dnr": dnr}


class ProtocolError(Exception):
    """The host broke the NVMe queue protocol (e.g. an invalid doorbell write)."""


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
    dw0: int = 0            # the CQE's DW0 with ``status`` (command specific)


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

    def add_namespace(self, nsid, lba_data_size, nsze):
        """Add namespace ``nsid`` (``nsze`` blocks of ``lba_data_size`` bytes)."""
        if nsid in self.namespaces:
            raise ValueError(f"{self.name}: nsid {nsid} given twice")
        self.namespaces[nsid] = SsdNamespace(nsid, lba_data_size, nsze)
        return self.namespaces[nsid]

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

    def inject(self, nsid, *, status=None, delay=0, never=False, count=1, dw0=0):
        """The next ``count`` commands fetched for ``nsid`` get this fault.

        ``status`` is a ``CqeStatus``-like dict (``sct``, ``sc``, ``dnr``, ``crd``,
        ``m``; missing fields 0) or None, with ``dw0`` the CQE's DW0; ``delay`` extra
        cycles; ``never`` True: the command is fetched and never completed.
        """
        if not isinstance(dw0, int) or not 0 <= dw0 < 1 << 32:
            raise ValueError(f"dw0 must be a 32-bit unsigned integer, not {dw0!r}")
        if status is not None:
            status = status_fields(**status)
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        if not isinstance(delay, int) or delay < 0:
            raise ValueError(f"delay must be a non-negative integer, not {delay!r}")
        self._faults.append([nsid, SsdFault(status, delay, bool(never), dw0), count])

    def clear_faults(self):
        self._faults.clear()

    def post_unsolicited(self, qid, cid, *, sc=0, delay=0, accept=None):
        """A CQE on I/O queue ``qid`` for a command that was never submitted (CID
        ``cid``, status ``sc``, generic), as a broken or confused controller posts one:
        it goes through the normal completion path (service time plus ``delay`` cycles,
        CQ room, MSI-X).
        ``accept`` takes the command as :meth:`fetch_steps` would (the bus face);
        None schedules it on the transaction face."""
        if qid not in self.queues:
            raise ValueError(f"{self.name}: no I/O queue {qid}")
        if not isinstance(cid, int) or not 0 <= cid < 1 << 16:
            raise ValueError(f"cid must be a 16-bit unsigned integer, not {cid!r}")
        cmd = _Command(self._order, qid, b"", {"cid": cid, "nsid": 0, "opcode": None},
                       SsdFault(status=status_fields(sc=sc), delay=delay))
        self._order += 1
        (accept or self._schedule)(cmd)

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

    # --- the controller's steps (generators of bus operations; see the module) -------------

    def fetch_steps(self, accept):
        """Fetch the SQEs of every SQ-tail doorbell written since, in doorbell order;
        ``accept(command)`` is called with each fetched command (its fault already
        drawn). Returns how many were fetched."""
        fetched = 0
        while self._doorbells:
            q = self.queues[self._doorbells.popleft()]
            while q.sq_head != q.sq_tail:
                raw = yield ("read", q.sq_addr + q.sq_head * SQE_BYTES, SQE_BYTES)
                q.sq_head = (q.sq_head + 1) % q.sq_entries
                fields = SQE.decode(raw)
                self.fetched.append((q.qid, fields))
                cmd = _Command(self._order, q.qid, raw, fields, self._fault_for(q.qid, fields))
                self._order += 1
                fetched += 1
                accept(cmd)
        return fetched

    def completion_steps(self, cmd):
        """Execute a fetched command, or take the status of its fault: its CQE fields
        (without ``sqhd``, ``sqid`` and the phase, which :meth:`post_steps` adds)."""
        fields = cmd.fields
        if cmd.fault is not None and cmd.fault.status is not None:
            status, dw0 = cmd.fault.status, cmd.fault.dw0
        else:
            (sct, sc, dnr), dw0 = yield from self.execute_steps(fields)
            status = status_fields(sct, sc, dnr)
            opcode = fields["opcode"]
            self.executed[opcode] = self.executed.get(opcode, 0) + 1
        return {"dw0": dw0, "dw1": 0, "cid": fields["cid"], "status": status}

    def post_steps(self, qid, cqe):
        """Write ``cqe`` (from :meth:`completion_steps`) at the tail of CQ ``qid`` with the
        SQ head and the phase tag. The caller waits while :meth:`IoQueue.cq_full`."""
        q = self.queues[qid]
        if q.cq_full():
            raise ProtocolError(f"{self.name}: CQ {qid} is full (head {q.cq_head})")
        cqe = dict(cqe, sqhd=q.sq_head, sqid=q.qid)
        cqe["status"] = dict(cqe["status"], p=q.phase)
        yield ("write", q.cq_addr + q.cq_tail * CQE_BYTES, CQE.encode(cqe))
        q.cq_tail = (q.cq_tail + 1) % q.cq_entries
        if q.cq_tail == 0:
            q.phase ^= 1

    def interrupt(self, qid):
        """``(address, data)`` of queue ``qid``'s MSI-X message, or None when it is polled."""
        q = self.queues[qid]
        if q.msix_addr is None:
            return None
        return q.msix_addr, q.msix_data.to_bytes(4, "little")

    # --- the transaction face: time in cycles, no clock ----------------------------------------

    @property
    def fetch_pending(self):
        """An SQ-tail doorbell was written since the last :meth:`fetch_steps`."""
        return bool(self._doorbells)

    def next_event_time(self):
        """When the SSD next has work: now with SQEs to fetch, the next completion time,
        or None when nothing is scheduled (CQEs waiting for room in a full CQ wait for
        the host's CQ-head doorbell, not for a time)."""
        if self.fetch_pending:
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
        """Everything due by ``now``, as a generator of bus operations. Returns True if
        there was work. In order: fetch the SQEs of every SQ-tail doorbell written since
        (each command is due ``latency_cycles`` later, plus its jitter and fault delay),
        execute the commands due (time, then fetch order), post their CQEs while their
        CQ has room, then one MSI-X message per queue that got CQEs.
        """
        if now < self.now:
            raise ValueError(f"{self.name}: time goes backwards ({now} < {self.now})")
        self.now = now
        worked = bool((yield from self.fetch_steps(self._schedule)))
        while self._due and self._due[0][0] <= now:
            _, _, cmd = heapq.heappop(self._due)
            cqe = yield from self.completion_steps(cmd)
            self._ready.setdefault(cmd.qid, []).append(cqe)
            worked = True
        interrupts = []
        for qid in sorted(self._ready):
            q = self.queues[qid]
            pending = self._ready[qid]
            posted = 0
            while pending and not q.cq_full():
                yield from self.post_steps(qid, pending.pop(0))
                posted += 1
            if not pending:
                del self._ready[qid]
            if posted:
                worked = True
                if q.msix_addr is not None:
                    interrupts.append(qid)
        for qid in interrupts:
            yield ("write", *self.interrupt(qid))
        return worked

    def _schedule(self, cmd):
        if cmd.fault is not None and cmd.fault.never:
            self._stuck.append(cmd)
            return
        latency = self.latency_cycles
        if self.rng is not None and self.jitter_cycles:
            latency += self.rng.randint(0, self.jitter_cycles)
        if cmd.fault is not None:
            latency += cmd.fault.delay
        heapq.heappush(self._due, (self.now + latency, cmd.order, cmd))

    # --- command execution --------------------------------------------------------------------

    def execute(self, sqe):
        """Execute one command (an ``Sqe`` dict) now, DMA through :attr:`fabric`:
        ``((sct, sc, dnr), dw0)``."""
        return drive(self.execute_steps(sqe), self.fabric, self.name)

    def execute_steps(self, sqe):
        """:meth:`execute` as a generator of bus operations (see the module)."""
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
        # a Read takes its blocks when it starts: what it returns is the media at that time
        data = ns.read(slba, count) if opcode == Opcode.READ.value else None
        try:
            segments = yield from self._prp_segments(prp["prp1"], prp["prp2"], length)
            if segments is None:
                return INVALID_PRP_OFFSET, 0
            if opcode == Opcode.WRITE.value:
                parts = yield ("read_batch", segments)
                ns.write(slba, b"".join(parts))
            else:
                batch, pos = [], 0
                for addr, n in segments:
                    batch.append((addr, data[pos:pos + n]))
                    pos += n
                yield ("write_batch", batch)
        except PcieError:
            return DATA_TRANSFER_ERROR, 0
        return SUCCESS, 0

    def _dsm(self, ns, dsm, prp):
        ranges = dsm["nr"] + 1
        try:
            segments = yield from self._prp_segments(prp["prp1"], prp["prp2"], ranges * 16)
            if segments is None:
                return INVALID_PRP_OFFSET
            parts = yield ("read_batch", segments)
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
        A generator: PRP lists are read over the bus, only the entries needed (and the
        last entry of a full list page, which chains to the next list)."""
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
            need = pages - len(entries)
            n = need if need <= slots else slots
            raw = yield ("read_prp_list", list_addr, n * 8)
            values = [int.from_bytes(raw[i * 8:(i + 1) * 8], "little") for i in range(n)]
            if need <= slots:
                entries += values
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
    """Run a generator of bus operations (see the module) on a
    :class:`~sim.devices.pcie.PcieFabric`, one access after another; a failed access
    is thrown back into it as :class:`~sim.devices.pcie.PcieError` (a batch stops at
    its first failure). Returns the generator's value."""
    reply, error = None, None
    while True:
        try:
            op = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as stop:
            return stop.value
        reply, error = None, None
        kind, *args = op
        try:
            if kind in ("read", "read_prp_list"):
                reply = fabric.read(args[0], args[1], source=source)
            elif kind == "write":
                fabric.write(args[0], args[1], source=source)
            elif kind == "read_batch":
                reply = [fabric.read(addr, n, source=source) for addr, n in args[0]]
            elif kind == "write_batch":
                for addr, data in args[0]:
                    fabric.write(addr, data, source=source)
            else:
                raise ValueError(f"unknown bus operation {kind!r}")
        except PcieError as exc:
            error = exc
