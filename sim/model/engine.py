# Over 700 lines: one reference model whose steps share the contexts, queues and staging
# state of docs/engine.md; its actors (SSD, fabric, initiator) live in sim/devices/.
"""Transaction-level reference model of the whole engine (``docs/engine.md``).

Written from ``docs/engine.md`` (with ``docs/parser.md`` through
:func:`sim.model.parser.parse_capsule` and ``docs/control-plane.md`` through
:class:`sim.model.csr.CsrModel`), never from the RTL. The model reads its whole
configuration from the control-plane model's tables (``csr.qp_entry``,
``csr.ns_lookup``, ``csr.decoded``) and reports through it (``csr.push_event``,
``csr.count``), exactly as the datapath does through its lookup, event and
counter ports.

Around the engine, the model drives the actors it talks to:

- the initiator (:class:`sim.devices.initiator.Initiator`): RDMA READ / WRITE;
- the PCIe fabric (:class:`sim.devices.pcie.PcieFabric`): SQE writes into the SQ
  rings, SQ-tail / CQ-head doorbells, CQE reads; the engine's own
  peer-to-peer window is mapped on it (the staging windows and the MSI-X
  message address), so the SSDs' DMA reaches the staging buffer through it;
- the SSDs (:class:`sim.devices.ssd.NvmeSsd`): the model advances their time.

Timing is abstract: the engine itself takes no time, the SSDs take their
service time, and :meth:`EngineModel.run_until_idle` jumps from one
scheduled event to the next. Outcomes do not depend on it (``docs/engine.md``
leaves timing out), except for timeouts, which compare a command's service
time with its queue's ``cmd_timeout``.

Every outcome is a result record as ``nvmf-offload replay`` writes it
(``docs/replay.md``), tagged with the capsule's ``seq``; :func:`result_key`
orders them. A broken invariant raises :class:`InvariantError`.
"""

import collections
import dataclasses

from amaranth.lib import data

from rtl.formats import (
    CQE_BYTES,
    DSM_RANGE_BYTES,
    SQE_BYTES,
    Action,
    CmdDwords,
    EventType,
    NsCounters,
    NvmeStatus,
    OpBit,
    Opcode,
    Reason,
    SubsystemCounters,
    Table,
)
from sim.codec import CQE, DSM_RANGE, SQE, Codec
from sim.devices.initiator import RdmaStatus
from sim.devices.pcie import PAGE_BYTES, PcieError
from sim.devices.ssd import ProtocolError
from sim.model.parser import parse_capsule

__all__ = ["InvariantError", "EngineModel", "result_key", "strip_seq", "OUTCOME_KINDS",
           "FAULT_KINDS", "PCI_ACCESSES", "DEFAULT_BUDGET_CYCLES",
           "prp_list_pages"]

OUTCOME_KINDS = ("response", "to_software", "qp_error")
FAULT_KINDS = ("ssd_status", "ssd_timeout", "rdma_error", "pci_error", "clear")
PCI_ACCESSES = ("sqe_write", "sq_doorbell", "cqe_read", "cq_doorbell")
DEFAULT_BUDGET_CYCLES = 10_000_000
CID_BITS = 16
PRP_ENTRIES_PER_PAGE = PAGE_BYTES // 8

_OP_BIT = {
    Opcode.FLUSH.value: OpBit.FLUSH,
    Opcode.WRITE.value: OpBit.WRITE,
    Opcode.READ.value: OpBit.READ,
    Opcode.WRITE_ZEROES.value: OpBit.WRITE_ZEROES,
    Opcode.DSM.value: OpBit.DSM,
}
_CDW = Codec(CmdDwords)
_NS_FIELD = {name: i for i, (name, _) in enumerate(data.Layout.cast(NsCounters))}
_SUB_FIELD = {name: i for i, (name, _) in enumerate(data.Layout.cast(SubsystemCounters))}


class InvariantError(Exception):
    """The engine broke an invariant of ``docs/engine.md`` (replay exit status 1)."""


def result_key(result):
    """Sort key of a tagged result: capsule ``seq``, then the outcome before its events, the
    events by type name, then object (``docs/replay.md``, "Ordering"). A ``control_error``
    tagged with the next capsule's ``seq`` comes before that capsule's records."""
    if "control_error" in result:               # before the next capsule's records
        return result["seq"], -1, "", result["control_error"]["line"]
    if any(k in result for k in OUTCOME_KINDS):
        return result["seq"], 0, "", 0
    event = result.get("event", {})
    return result["seq"], 1, event.get("type", ""), event.get("object", 0)


def strip_seq(result):
    """The result record without its ``seq`` tag (what replay writes)."""
    return {k: v for k, v in result.items() if k != "seq"}


def prp_list_pages(data_pages):
    """PRP list pages a transfer of ``data_pages`` pages needs (chained lists of 512 entries)."""
    entries = data_pages - 1
    if entries <= 1:
        return 0
    return -(-(entries - 1) // (PRP_ENTRIES_PER_PAGE - 1))


def _status(entry):
    """``NvmeStatus`` tuple -> ``CqeStatus`` dict (P = 0)."""
    sct, sc, dnr = entry
    return {"p": 0, "sc": sc.value, "sct": sct.value, "crd": 0, "m": 0, "dnr": dnr}


def _cdw(fields):
    """CDW10-15 of a ParsedCommand in every reading: ``raw``, ``rw`` and ``dsm``."""
    raw = sum(word << (32 * i) for i, word in enumerate(fields["cdw"]["raw"]))
    return _CDW.decode(raw)


def _entries(value):
    """A 16-bit count field where 0 stands for 65536."""
    return value or 1 << 16


# --- state ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Qp:
    raw: int
    sq_head: int = 0
    in_error: bool = False


@dataclasses.dataclass
class _Front:
    """The front-end identity of an accepted capsule: what its response needs."""
    seq: int
    qpn: int
    sqid: int
    sqhd: int
    cid: int
    invalidate: int | None


@dataclasses.dataclass
class _Pending:
    """A served command waiting for staging, a context and an SQ slot (in capsule order)."""
    front: _Front
    fields: dict
    packet: bytes | None
    subsystem: int
    slot: int
    ns: dict
    opcode: int
    blocks: int                 # n = NLB + 1 (Read / Write / Write Zeroes)
    length: int                 # bytes moved through staging
    data_pages: int
    list_pages: int


@dataclasses.dataclass
class _Context:
    index: int
    gen: int
    cmd: _Pending
    queue: int
    pages: list                 # staging page numbers: data pages, then PRP list pages
    backend_cid: int
    state: str = "submitted"    # submitted | given_up | abandoned
    submit_time: int = 0
    deadline: int | None = None
    reclaim_at: int | None = None   # given up: when it is reclaimed without its CQE


@dataclasses.dataclass
class _Queue:
    index: int
    raw: int
    entry: dict
    sq_entries: int
    cq_entries: int
    sq_tail: int
    sq_head: int                # last SQHD seen in a CQE
    cq_head: int
    phase: int = 1
    dead: bool = False
    msix_pending: bool = False
    contexts: set = dataclasses.field(default_factory=set)
    lost: int = 0               # commands reclaimed without their CQE (docs/backend.md)

    def used_slots(self):
        return (self.sq_tail - self.sq_head) % self.sq_entries

    def free_slots(self):
        return self.sq_entries - 1 - self.used_slots()


@dataclasses.dataclass
class _Pool:
    """A subsystem's staging window in 4 KiB pages."""
    raw: int
    entry: dict                 # the decoded SubsystemEntry
    base: int
    pages: int
    free: list                  # free page numbers, ascending
    owner: dict = dataclasses.field(default_factory=dict)     # page -> context index
    mem: dict = dataclasses.field(default_factory=dict)       # page -> bytearray

    def addr(self, page):
        return self.base + page * PAGE_BYTES


class _P2pWindow:
    """The engine's peer-to-peer target window on the fabric (staging + MSI-X)."""

    def __init__(self, engine, base):
        self.engine = engine
        self.base = base

    def bus_read(self, offset, length):
        return self.engine._p2p_access("read", self.base + offset, length, None)

    def bus_write(self, offset, data):
        self.engine._p2p_access("write", self.base + offset, len(data), data)


# --- the model -----------------------------------------------------------------------------------

class EngineModel:
    """The engine at transaction level.

    Parameters
    ----------
    csr : CsrModel
        The control plane (configured through :class:`sim.driver.NvmfDevice`).
    fabric : PcieFabric
        Where the rings, doorbells and SSD BARs are; the model maps its own
        peer-to-peer target on it (``s_axi_p2p``, ``docs/backend.md``): the
        staging memory ``[staging_base, staging_base + staging_bytes)`` and the
        MSI-X message address ``msix_addr`` (``EngineParams``). Every subsystem's
        staging window lies in the staging memory.
    initiator : Initiator
    ssds : dict name -> NvmeSsd (or a sequence)
        The devices whose time the model advances (and faults it injects).
    contexts : int
        Outstanding-command contexts (a power of two; backend CID = index plus a
        generation count in the upper bits); default ``EngineParams.contexts``.
    drain_events : bool
        Pop each event from the CSR queue as soon as it is queued (software that
        services ``irq`` at once, as replay does); False leaves them queued.
    """

    def __init__(self, csr, fabric, initiator, ssds=(), *, contexts=None, drain_events=True):
        if contexts is None:
            contexts = csr.params.contexts
        if not isinstance(contexts, int) or contexts < 1 or contexts & (contexts - 1) \
                or contexts > 1 << (CID_BITS - 1):
            raise ValueError(f"contexts must be a power of two in 1..32768, not {contexts!r}")
        self.csr = csr
        self.params = csr.params
        self.fabric = fabric
        self.initiator = initiator
        if isinstance(ssds, dict):
            self.ssds = dict(ssds)
        else:
            self.ssds = {ssd.name: ssd for ssd in ssds}
        p = self.params
        self.staging_base = p.staging_base
        self.staging_bytes = p.staging_bytes
        self.msix_addr = p.msix_addr
        fabric.map(p.staging_base, p.staging_bytes, _P2pWindow(self, p.staging_base),
                   "engine staging memory (s_axi_p2p)")
        fabric.map(p.msix_addr, 4, _P2pWindow(self, p.msix_addr), "engine MSI-X (s_axi_p2p)")
        self.drain_events = drain_events
        self.now = 0
        self.n_contexts = contexts
        self._idx_bits = (contexts - 1).bit_length()
        self._gens = [0] * contexts
        self._contexts = [None] * contexts
        self._free_contexts = list(range(contexts))
        self._qps = {}
        self._queues = {}
        self._pools = {}
        self._rr = {}                                # namespace slot -> last queue used
        self._pending = collections.deque()
        self._results = []
        self._outcomes = {}                          # seq -> outcome kind
        self._awaiting = set()                       # seqs accepted without an outcome yet
        self._last_seq = None
        self.stats = collections.Counter()
        self._fenced = {}                            # seq of a served command -> its epoch
        self._fence_live = [0, 0]                    # served commands without outcome, by epoch
        csr.fence_source = self._fence_poll

    # --- public API ---------------------------------------------------------------------------

    def qp_enabled(self, qpn):
        """Software (re-)enabled ``qpn`` with ``qp_set_nvmf``: ``sq_head`` = 0, error cleared."""
        self._qps.pop(qpn, None)

    def deliver(self, capsule, qpn, seq):
        """Accept one received SEND on ``qpn``; ``seq`` (increasing) names it in the results."""
        capsule = bytes(capsule)
        if not capsule:
            raise ValueError("capsule is empty: a received SEND carries at least one byte")
        if not isinstance(seq, int) or (self._last_seq is not None and seq <= self._last_seq):
            raise ValueError(f"seq must be an integer above the last one "
                             f"({self._last_seq}), not {seq!r}")
        self._last_seq = seq
        self._awaiting.add(seq)
        self.stats["capsules"] += 1
        try:
            self._accept(capsule, qpn, seq)
            self._settle()
        except (ProtocolError, PcieError) as exc:
            raise InvariantError(f"seq {seq}: {exc}") from exc

    def run_until_idle(self, budget_cycles=DEFAULT_BUDGET_CYCLES):
        """Run until nothing is outstanding anywhere; returns the cycles it took.

        Raises :class:`InvariantError` when work remains with nothing scheduled, or
        when the engine is not idle ``budget_cycles`` after the call (a hang), and
        when an idle-time invariant fails (a leak, a capsule without an outcome).
        """
        start = self.now
        try:
            self._settle()
            while not self.idle:
                self._step(start, budget_cycles)
        except (ProtocolError, PcieError) as exc:
            raise InvariantError(str(exc)) from exc
        self.check_quiescent()
        return self.now - start

    def _step(self, start, budget_cycles):
        """Advance to the next scheduled event and do what it allows."""
        times = [t for t in (ssd.next_event_time() for ssd in self.ssds.values())
                 if t is not None]
        times += [c.deadline for c in self._live_contexts()
                  if c.state == "submitted" and c.deadline is not None]
        times += [c.reclaim_at for c in self._live_contexts()
                  if c.state == "given_up" and c.reclaim_at is not None]
        if not times:
            raise InvariantError(f"hang at cycle {self.now}: {self._busy_report()}, "
                                 f"and nothing is scheduled to make progress")
        t = min(times)
        if t <= self.now:
            raise InvariantError(f"no progress at cycle {self.now}: {self._busy_report()}")
        if t - start > budget_cycles:
            raise InvariantError(f"hang: not idle within the budget of {budget_cycles}"
                                 f" cycles ({self._busy_report()})")
        self.now = t
        self._settle()

    def _fence_poll(self, epoch):
        """``FENCE.other`` as software polls it: the served commands of ``epoch`` without an
        outcome. While there are some, the engine works on (to its next event) between
        two polls, as the hardware does while the driver waits."""
        if self._fence_live[epoch]:
            try:
                self._settle()
                if self._fence_live[epoch]:
                    self._step(self.now, DEFAULT_BUDGET_CYCLES)
            except (ProtocolError, PcieError) as exc:
                raise InvariantError(str(exc)) from exc
        return self._fence_live[epoch]

    def take_results(self):
        """The results since the last call: records of ``docs/replay.md`` tagged with ``seq``,
        in the order they happened (sort with :func:`result_key`)."""
        out, self._results = self._results, []
        return out

    @property
    def idle(self):
        """Nothing outstanding: no command waiting or in service, no SSD work scheduled."""
        return not self._busy_reasons()

    def inject_fault(self, kind, **args):
        """Arm a fault (``docs/replay.md``, "Faults").

        - ``ssd_status``: ``ssd``, ``nsid``, ``sc``, optional ``sct``, ``dnr``, ``crd``,
          ``m``, ``dw0``, ``count`` -- the SSD completes the next ``count`` commands on
          that namespace with this status (and DW0), without executing them;
        - ``ssd_timeout``: ``ssd``, ``nsid``, ``mode`` "never" or "late", ``delay``
          (cycles, for late), ``count``;
        - ``rdma_error``: ``rkey``, ``op`` "read" or "write", ``count``;
        - ``pci_error``: ``queue`` (backend queue index), ``access`` (one of
          :data:`PCI_ACCESSES`), ``count``;
        - ``clear``: disarm every fault not fired yet.
        """
        count = args.pop("count", 1)
        if kind == "ssd_status":
            ssd = self._ssd(args.pop("ssd"))
            nsid = args.pop("nsid")
            status = {k: args.pop(k) for k in ("sct", "sc", "dnr", "crd", "m") if k in args}
            if "sc" not in status:
                raise ValueError("ssd_status needs sc")
            ssd.inject(nsid, status=status, count=count, dw0=args.pop("dw0", 0))
        elif kind == "ssd_timeout":
            ssd = self._ssd(args.pop("ssd"))
            nsid = args.pop("nsid")
            mode = args.pop("mode")
            delay = args.pop("delay", 0)
            if mode not in ("never", "late"):
                raise ValueError(f"mode must be 'never' or 'late', not {mode!r}")
            ssd.inject(nsid, never=mode == "never", delay=delay if mode == "late" else 0,
                       count=count)
        elif kind == "rdma_error":
            self.initiator.inject_error(args.pop("rkey"), args.pop("op"), count=count)
        elif kind == "pci_error":
            q = self._queue(args.pop("queue"))
            access = args.pop("access")
            e = q.entry
            ranges = {
                "sqe_write": (e["sq_addr"], q.sq_entries * SQE_BYTES, "write"),
                "sq_doorbell": (e["sq_db_addr"], 4, "write"),
                "cqe_read": (e["cq_addr"], q.cq_entries * CQE_BYTES, "read"),
                "cq_doorbell": (e["cq_db_addr"], 4, "write"),
            }
            if access not in ranges:
                raise ValueError(f"access must be one of {', '.join(PCI_ACCESSES)}, "
                                 f"not {access!r}")
            base, size, rw = ranges[access]
            self.fabric.fail_next(base, size, rw, count=count)
        elif kind == "clear":
            for ssd in self.ssds.values():
                ssd.clear_faults()
            self.initiator.clear_faults()
            self.fabric.clear_faults()
        else:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if args:
            raise ValueError(f"{kind}: unknown argument(s) {', '.join(sorted(args))}")

    def leaks(self):
        """What is still held: ``{"staging_pages", "contexts", "sq_slots", "abandoned"}``."""
        held = [c for c in self._contexts if c is not None]
        return {
            "staging_pages": sum(len(p.owner) for p in self._pools.values()),
            "contexts": len(held),
            "abandoned": sum(1 for c in held if c.state != "submitted"),
            "sq_slots": {i: q.used_slots() for i, q in sorted(self._queues.items())
                         if q.used_slots()},
        }

    def check_quiescent(self):
        """The invariants at quiescence (``docs/engine.md``, end); raises InvariantError."""
        if self._awaiting:
            missing = sorted(self._awaiting)[:8]
            raise InvariantError(f"capsule(s) seq {missing} accepted without an outcome")
        given_up_queues = set()
        for ctx in self._contexts:
            if ctx is None:
                continue
            if ctx.state == "submitted":
                raise InvariantError(f"idle with context {ctx.index} (seq {ctx.cmd.front.seq})"
                                     f" still submitted")
            given_up_queues.add(ctx.queue)
        for sub, pool in self._pools.items():
            for page, owner in pool.owner.items():
                if self._contexts[owner] is None:
                    raise InvariantError(f"staging page {page} of subsystem {sub} leaked "
                                         f"(owner context {owner} is free)")
            if len(pool.free) + len(pool.owner) != pool.pages:
                raise InvariantError(f"staging accounting of subsystem {sub}: "
                                     f"{len(pool.free)} free + {len(pool.owner)} owned "
                                     f"!= {pool.pages} pages")
        for index, q in self._queues.items():
            if q.dead or index in given_up_queues or q.lost:
                continue
            if q.used_slots():
                raise InvariantError(f"backend queue {index}: {q.used_slots()} SQ slot(s) "
                                     f"still taken at idle")
            if q.msix_pending:
                raise InvariantError(f"backend queue {index}: MSI-X not serviced at idle")

    # --- acceptance (docs/engine.md section 2) ---------------------------------------------

    def _qp(self, qpn, raw):
        qp = self._qps.get(qpn)
        if qp is None or qp.raw != raw:
            qp = self._qps[qpn] = _Qp(raw)
        return qp

    def _accept(self, capsule, qpn, seq):
        entry = self.csr.qp_entry(qpn)
        raw = self.csr.entry(Table.QP, qpn) if qpn < self.csr.sizes[Table.QP] else 0
        attrs = entry["attrs"]
        qp = self._qp(qpn, raw) if raw else None
        if not attrs["offload"]:
            # The transport hands a QP that is not offloaded to software whole: the
            # parser's capsule limit is an offloaded QP's (its IOCCSZ).
            self._to_software(seq, qpn, capsule, Reason.NOT_OFFLOADED)
            return
        qp.sq_head = (qp.sq_head + 1) % _entries(entry["sqsize"])
        if qp.in_error:                                                     # 2.1
            self._qp_error(seq, qpn, Reason.QP_IN_ERROR, event=None)
            return
        fields, packet = parse_capsule(capsule, qpn, attrs, self.params.max_capsule_bytes)
        front = _Front(seq, qpn, entry["sqid"], qp.sq_head, fields["cid"],
                       fields["sgl_key"] if fields["sgl_invalidate"] else None)
        action = fields["action"]
        reason = fields["reason"]
        if action is Action.SOFTWARE:                                       # 2.2
            self._to_software(seq, qpn, capsule, reason)
            return
        if action is Action.QP_ERROR:
            qp.in_error = True
            kind = EventType.QP_FATAL if reason is Reason.OVERSIZE else \
                EventType.UNSUPPORTED_NVMF_OP
            self._qp_error(seq, qpn, reason, event=kind)
            return
        if action is Action.RESPOND:
            self._respond(front, fields["status"])
            return
        self._serve(front, qp, entry, attrs, fields, packet, capsule)

    def _serve(self, front, qp, entry, attrs, fields, packet, capsule):
        sub = entry["subsystem"]
        status, slot, ns = self.csr.ns_lookup(sub, fields["nsid"])            # 2.3
        if status == "NOT_FOUND":
            self.csr.count(Table.SUBSYSTEM_COUNTERS, sub, _SUB_FIELD["unknown_ns"], 1)
            if attrs["offload_only"]:
                self._respond(front, _status(NvmeStatus.INVALID_NS))
            else:
                self._to_software(front.seq, front.qpn, capsule, Reason.UNKNOWN_NSID)
            return
        if status == "NOT_READY":
            self._count(slot, "errors")
            self._respond(front, _status(NvmeStatus.NS_NOT_READY))
            return
        opcode = fields["opcode"]
        if not ns["ops"] >> _OP_BIT[opcode] & 1:
            if attrs["offload_only"]:
                qp.in_error = True
                self._qp_error(front.seq, front.qpn, Reason.OP_DISABLED,
                               event=EventType.UNSUPPORTED_NVMF_OP)
            else:
                self._to_software(front.seq, front.qpn, capsule, Reason.OP_DISABLED)
            return
        sub_entry = self._pool(sub).entry
        cdw = _cdw(fields)
        blocks = cdw["rw"]["nlb"] + 1 if opcode != Opcode.DSM.value else 0
        nbytes = blocks << ns["lba_shift"]
        check = None                                                        # 2.4
        if opcode in (Opcode.READ.value, Opcode.WRITE.value, Opcode.WRITE_ZEROES.value):
            if cdw["rw"]["slba"] + blocks > ns["nsze"]:
                check = NvmeStatus.LBA_OUT_OF_RANGE
            elif opcode != Opcode.WRITE_ZEROES.value and nbytes > sub_entry["max_io_size"]:
                check = NvmeStatus.INVALID_FIELD
            elif opcode != Opcode.WRITE_ZEROES.value and fields["sgl_length"] != nbytes:
                check = NvmeStatus.DATA_SGL_LENGTH_INVALID
        elif opcode == Opcode.DSM.value and fields["sgl_length"] > sub_entry["max_io_size"]:
            check = NvmeStatus.INVALID_FIELD
        if check is not None:
            self._count(slot, "errors")
            self._respond(front, _status(check))
            return
        if opcode in (Opcode.READ.value, Opcode.WRITE.value):
            length = nbytes
        elif opcode == Opcode.DSM.value:
            length = fields["sgl_length"]          # at least the range list (parser rule 15)
        else:
            length = 0
        data_pages = -(-length // PAGE_BYTES)
        cmd = _Pending(front, fields, packet, sub, slot, ns, opcode, blocks, length,
                       data_pages, prp_list_pages(data_pages))
        self._pending.append(cmd)
        epoch = self.csr.fence_epoch                 # the command fence (FENCE register)
        self._fenced[front.seq] = epoch
        self._fence_live[epoch] += 1

    # --- dispatch (section 3) --------------------------------------------------------------

    def _pool(self, sub):
        raw = self.csr.entry(Table.SUBSYSTEM, sub)
        pool = self._pools.get(sub)
        if pool is None or pool.raw != raw:
            if pool is not None and pool.owner:
                raise InvariantError(f"subsystem {sub} re-created with staging pages in use")
            e = self.csr.decoded(Table.SUBSYSTEM, sub)
            lo, hi = e["staging_addr"], e["staging_addr"] + e["staging_len"]
            if lo < self.staging_base or hi > self.staging_base + self.staging_bytes:
                raise InvariantError(f"subsystem {sub}'s staging window [{lo:#x}, {hi:#x}) is "
                                     f"not inside the engine's staging memory")
            pages = e["staging_len"] // PAGE_BYTES
            pool = self._pools[sub] = _Pool(raw, e, lo, pages, list(range(pages)))
        return pool

    def _queue(self, index):
        raw = self.csr.entry(Table.BACKEND_QUEUE, index)
        q = self._queues.get(index)
        if q is None or q.raw != raw:
            if q is not None and q.contexts and any(
                    self._contexts[c].state == "submitted" for c in q.contexts):
                raise InvariantError(f"backend queue {index} re-created with commands "
                                     f"outstanding")
            e = self.csr.decoded(Table.BACKEND_QUEUE, index)
            if not e["valid"]:
                raise InvariantError(f"backend queue {index} is not valid")
            q = self._queues[index] = _Queue(
                index, raw, e, _entries(e["sq_entries"]), _entries(e["cq_entries"]),
                e["sq_tail_init"], e["sq_tail_init"], e["cq_head_init"])
        return q

    def _ns_queues(self, ns):
        return [i for i in range(32) if ns["queues"] >> i & 1]

    def _choose_queue(self, cmd):
        """Round robin from after the last queue used (by backend queue index, whether or
        not that queue still serves the namespace), first live one with a free SQ slot."""
        indices = self._ns_queues(cmd.ns)
        last = self._rr.get(cmd.slot, -1)
        for index in [i for i in indices if i > last] + [i for i in indices if i <= last]:
            q = self._queue(index)
            if not q.dead and q.free_slots() > 0:
                return q
        return None

    def _pump(self):
        worked = False
        while self._pending:
            cmd = self._pending[0]
            if all(self._queue(i).dead for i in self._ns_queues(cmd.ns)):
                # Every backend queue of the namespace failed: the namespace is unusable.
                self._pending.popleft()
                self._count(cmd.slot, "errors")
                self._respond(cmd.front, _status(NvmeStatus.NS_NOT_READY))
                worked = True
                continue
            pool = self._pool(cmd.subsystem)
            need = cmd.data_pages + cmd.list_pages
            if len(pool.free) < need:
                self.stats["waits_for_staging"] += 1
                break
            if not self._free_contexts:
                self.stats["waits_for_context"] += 1
                break
            q = self._choose_queue(cmd)
            if q is None:
                self.stats["waits_for_sq_slot"] += 1
                break
            self._pending.popleft()
            worked = True
            self._dispatch(cmd, pool, q, need)
        return worked

    def _dispatch(self, cmd, pool, q, need):
        pages = pool.free[:need]
        del pool.free[:need]
        index = self._free_contexts.pop(0)
        self._gens[index] = (self._gens[index] + 1) % (1 << (CID_BITS - self._idx_bits))
        ctx = _Context(index, self._gens[index], cmd, q.index, pages,
                       self._gens[index] << self._idx_bits | index)
        self._contexts[index] = ctx
        for page in pages:
            pool.owner[page] = index
        front, fields = cmd.front, cmd.fields
        # Data in (Write, DSM): one RDMA READ of the data, or the in-capsule bytes.
        if cmd.opcode in (Opcode.WRITE.value, Opcode.DSM.value):
            if fields["sgl_keyed"]:
                res = self.initiator.rdma_read(fields["sgl_key"], fields["sgl_address"],
                                               cmd.length)
                if res.status != RdmaStatus.OK:
                    self._release(ctx)
                    self._rdma_failed(front)
                    self._respond(front, _status(NvmeStatus.DATA_TRANSFER_ERROR))
                    self._count(cmd.slot, "errors")
                    return
                payload = res.data
            else:
                payload = cmd.packet[:cmd.length]
            self._staging_put(pool, pages[:cmd.data_pages], payload)
        if cmd.opcode == Opcode.DSM.value:
            ranges = _cdw(fields)["dsm"]["nr"] + 1
            raw = self._staging_get(pool, pages[:cmd.data_pages], ranges * DSM_RANGE_BYTES)
            for i in range(ranges):
                r = DSM_RANGE.decode(raw[i * DSM_RANGE_BYTES:(i + 1) * DSM_RANGE_BYTES])
                if r["slba"] + r["length"] > cmd.ns["nsze"]:
                    self._release(ctx)
                    self._count(cmd.slot, "errors")
                    self._respond(front, _status(NvmeStatus.LBA_OUT_OF_RANGE))
                    return
        prp1, prp2 = self._build_prps(pool, pages, cmd.data_pages)
        sqe = SQE.encode({
            "opcode": cmd.opcode, "cid": ctx.backend_cid, "nsid": cmd.ns["backend_nsid"],
            "psdt": 0, "dptr": {"prp": {"prp1": prp1, "prp2": prp2}},
            "cdw": {"raw": list(fields["cdw"]["raw"])},
        })
        self._rr[cmd.slot] = q.index
        q.contexts.add(index)
        ctx.submit_time = self.now
        timeout = q.entry["cmd_timeout"]
        ctx.deadline = self.now + timeout + 1 if timeout else None
        addr = q.entry["sq_addr"] + q.sq_tail * SQE_BYTES
        try:
            self.fabric.write(addr, sqe, source="engine")
        except PcieError:
            self._pci_error(q, front.seq)
            return
        q.sq_tail = (q.sq_tail + 1) % q.sq_entries
        try:
            self.fabric.write(q.entry["sq_db_addr"], q.sq_tail.to_bytes(4, "little"),
                              source="engine")
        except PcieError:
            self._pci_error(q, front.seq)

    def _build_prps(self, pool, pages, data_pages):
        """PRP1 / PRP2 for the data pages; a PRP list (chained) in the list pages."""
        if data_pages == 0:
            return 0, 0
        data_addrs = [pool.addr(p) for p in pages[:data_pages]]
        if data_pages == 1:
            return data_addrs[0], 0
        if data_pages == 2:
            return data_addrs[0], data_addrs[1]
        list_pages = pages[data_pages:]
        entries = data_addrs[1:]
        for i, page in enumerate(list_pages):
            last = i == len(list_pages) - 1
            take = len(entries) if last else PRP_ENTRIES_PER_PAGE - 1
            chunk, entries = entries[:take], entries[take:]
            if not last:
                chunk.append(pool.addr(list_pages[i + 1]))
            if len(chunk) > PRP_ENTRIES_PER_PAGE:
                raise InvariantError("PRP list page overflow")
            self._staging_put(pool, [page], b"".join(a.to_bytes(8, "little") for a in chunk))
        return data_addrs[0], pool.addr(list_pages[0])

    # --- completion (sections 3, 4, 5) -------------------------------------------------------

    def _service(self):
        worked = False
        for index in sorted(self._queues):
            q = self._queues[index]
            if q.dead:
                q.msix_pending = False
                continue
            polled = q.entry["polling"] and any(
                self._contexts[c].state != "abandoned" for c in q.contexts)
            if q.msix_pending or polled:
                q.msix_pending = False
                worked |= self._drain_cq(q)
        return worked

    def _drain_cq(self, q):
        consumed = 0
        first_seq = None                # the first command this batch retired
        while True:
            try:
                raw = self.fabric.read(q.entry["cq_addr"] + q.cq_head * CQE_BYTES, CQE_BYTES,
                                       source="engine")
            except PcieError:
                self._pci_error(q, first_seq)
                return True
            cqe = CQE.decode(raw)
            if cqe["status"]["p"] != q.phase:
                break
            q.cq_head = (q.cq_head + 1) % q.cq_entries
            if q.cq_head == 0:
                q.phase ^= 1
            consumed += 1
            seq = self._retire(q, cqe)
            if first_seq is None:
                first_seq = seq
        if consumed:
            try:
                self.fabric.write(q.entry["cq_db_addr"], q.cq_head.to_bytes(4, "little"),
                                  source="engine")
            except PcieError:
                self._pci_error(q, first_seq)
        return consumed > 0

    def _retire(self, q, cqe):
        """Consume one CQE; returns the seq of the capsule it belonged to (None: it
        belonged to no command and was dropped)."""
        sqhd = cqe["sqhd"]
        if sqhd >= q.sq_entries or (sqhd - q.sq_head) % q.sq_entries > q.used_slots():
            raise InvariantError(f"backend queue {q.index}: CQE SQHD {sqhd} outside the "
                                 f"submitted entries (head {q.sq_head}, tail {q.sq_tail})")
        q.sq_head = sqhd
        cid = cqe["cid"]
        index, gen = cid & ((1 << self._idx_bits) - 1), cid >> self._idx_bits
        ctx = self._contexts[index] if index < self.n_contexts else None
        if ctx is None or ctx.gen != gen or ctx.queue != q.index:
            # a CQE for no command of this queue (docs/backend.md, "Completion"): dropped;
            # one for a command reclaimed without its CQE gives that CQ slot back
            if q.lost:
                q.lost -= 1
                self.stats["lost_cqes_dropped"] += 1
            else:
                self.stats["unknown_cqes_dropped"] += 1
            return None
        if ctx.state == "given_up":
            self.stats["late_cqes_dropped"] += 1
            self._release(ctx)
            return ctx.cmd.front.seq
        cmd = ctx.cmd
        status = dict(cqe["status"], p=0)
        ok = status["sct"] == 0 and status["sc"] == 0
        if ok and cmd.opcode == Opcode.READ.value:
            pool = self._pools[cmd.subsystem]
            payload = self._staging_get(pool, ctx.pages[:cmd.data_pages], cmd.length)
            self._release(ctx)
            result = self.initiator.rdma_write(cmd.fields["sgl_key"],
                                               cmd.fields["sgl_address"], payload)
            if result != RdmaStatus.OK:
                self._rdma_failed(cmd.front, outcome=True)     # no response: not counted
            else:
                self._count_executed(cmd, ok)
                self._respond(cmd.front, status, dw0=cqe["dw0"])
            return cmd.front.seq
        self._release(ctx)
        self._count_executed(cmd, ok)
        self._respond(cmd.front, status, dw0=cqe["dw0"])
        return cmd.front.seq

    def _timeouts(self):
        worked = False
        late = sorted((c for c in self._live_contexts()
                       if c.state == "submitted" and c.deadline is not None
                       and self.now >= c.deadline), key=lambda c: c.cmd.front.seq)
        for ctx in late:
            ctx.state = "given_up"
            ctx.reclaim_at = ctx.deadline + self._queues[ctx.queue].entry["cmd_timeout"]
            self._count(ctx.cmd.slot, "errors")
            self._respond(ctx.cmd.front, _status(NvmeStatus.INTERNAL_ERROR))
            self._event(EventType.NVME_TIMEOUT, ctx.queue, ctx.cmd.front.seq)
            worked = True
        # twice the timeout after submission a command given up is reclaimed: its context
        # and staging are freed, its queue counts it lost (the CQ slot stays reserved)
        gone = sorted((c for c in self._live_contexts()
                       if c.state == "given_up" and c.reclaim_at is not None
                       and self.now >= c.reclaim_at), key=lambda c: c.cmd.front.seq)
        for ctx in gone:
            q = self._queues.get(ctx.queue)
            if q is not None:
                q.lost += 1
            self.stats["reclaimed"] += 1
            self._release(ctx)
            worked = True
        return worked

    def _pci_error(self, q, seq):
        """NVME_PCI_ERR: answer every command outstanding on ``q``; the queue is dead."""
        q.dead = True
        q.msix_pending = False
        victims = sorted((self._contexts[c] for c in q.contexts
                          if self._contexts[c].state == "submitted"),
                         key=lambda c: c.cmd.front.seq)
        for ctx in victims:
            ctx.state = "abandoned"
            self._count(ctx.cmd.slot, "errors")
            self._respond(ctx.cmd.front, _status(NvmeStatus.INTERNAL_ERROR))
        for c in q.contexts:
            self._contexts[c].state = "abandoned"
        if victims:
            seq = victims[0].cmd.front.seq
        if seq is None:                 # (not reached by the accesses the model makes)
            seq = self._last_seq if self._last_seq is not None else 0
        self._event(EventType.NVME_PCI_ERR, q.index, seq)

    def _rdma_failed(self, front, outcome=False):
        """An RDMA descriptor failed: QP_FATAL, the QP goes to error."""
        qp = self._qps.get(front.qpn)
        if qp is not None:
            qp.in_error = True
        if outcome:
            self._qp_error(front.seq, front.qpn, Reason.RDMA_ERROR, event=EventType.QP_FATAL)
        else:
            self._event(EventType.QP_FATAL, front.qpn, front.seq)

    # --- resources ---------------------------------------------------------------------------

    def _live_contexts(self):
        return [c for c in self._contexts if c is not None]

    def _release(self, ctx):
        pool = self._pools[ctx.cmd.subsystem]
        for page in ctx.pages:
            if pool.owner.pop(page, None) != ctx.index:
                raise InvariantError(f"staging page {page} freed twice or by another context")
            pool.free.append(page)
        pool.free.sort()
        q = self._queues.get(ctx.queue)
        if q is not None:
            q.contexts.discard(ctx.index)
        self._contexts[ctx.index] = None
        self._free_contexts.append(ctx.index)
        self._free_contexts.sort()

    def _staging_put(self, pool, pages, payload):
        for i, page in enumerate(pages):
            chunk = payload[i * PAGE_BYTES:(i + 1) * PAGE_BYTES]
            if not chunk:
                break
            buf = pool.mem.setdefault(page, bytearray(PAGE_BYTES))
            buf[:len(chunk)] = chunk

    def _staging_get(self, pool, pages, length):
        out = bytearray()
        for page in pages:
            n = min(PAGE_BYTES, length - len(out))
            out += pool.mem.get(page, bytes(PAGE_BYTES))[:n]
        return bytes(out)

    def _p2p_access(self, kind, addr, length, payload):
        """An SSD's access to the engine's window: MSI-X, or staging pages a command owns."""
        if kind == "write" and addr == self.msix_addr and length == 4:
            value = int.from_bytes(payload, "little")
            # every configured queue, also one no command has used yet (an SSD may post
            # a CQE nobody asked for on it)
            hits = []
            for index in range(self.csr.sizes[Table.BACKEND_QUEUE]):
                e = self.csr.decoded(Table.BACKEND_QUEUE, index)
                if e["valid"] and not e["polling"] and e["msix_data"] == value:
                    hits.append(self._queue(index))
            if not hits:
                raise InvariantError(f"MSI-X message data {value:#x} names no backend queue")
            for q in hits:
                q.msix_pending = True
            return None
        for sub in range(self.csr.sizes[Table.SUBSYSTEM]):
            if not self.csr.entry(Table.SUBSYSTEM, sub):
                continue                        # never created (or destroyed)
            pool = self._pool(sub)
            end = pool.base + pool.pages * PAGE_BYTES
            if pool.base <= addr and addr + length <= end:
                first = (addr - pool.base) // PAGE_BYTES
                last = (addr + max(length, 1) - 1 - pool.base) // PAGE_BYTES
                for page in range(first, last + 1):
                    if page not in pool.owner:
                        raise InvariantError(
                            f"P2P {kind} of {length} bytes at {addr:#x}: staging page {page} "
                            f"of subsystem {sub} belongs to no command")
                off = addr - pool.base
                if kind == "read":
                    out = bytearray()
                    while len(out) < length:
                        page, o = divmod(off + len(out), PAGE_BYTES)
                        n = min(length - len(out), PAGE_BYTES - o)
                        out += pool.mem.get(page, bytes(PAGE_BYTES))[o:o + n]
                    return bytes(out)
                pos = 0
                while pos < length:
                    page, o = divmod(off + pos, PAGE_BYTES)
                    n = min(length - pos, PAGE_BYTES - o)
                    buf = pool.mem.setdefault(page, bytearray(PAGE_BYTES))
                    buf[o:o + n] = payload[pos:pos + n]
                    pos += n
                return None
        raise InvariantError(f"P2P {kind} of {length} bytes at {addr:#x}: outside every "
                             f"staging window (memory written outside a window)")

    # --- outcomes ----------------------------------------------------------------------------

    def _outcome(self, seq, kind, record):
        if seq in self._outcomes:
            raise InvariantError(f"capsule seq {seq} got a second outcome ({kind} after "
                                 f"{self._outcomes[seq]})")
        self._outcomes[seq] = kind
        self._awaiting.discard(seq)
        epoch = self._fenced.pop(seq, None)
        if epoch is not None:
            self._fence_live[epoch] -= 1
        self.stats[kind] += 1
        self._results.append({"seq": seq, kind: record})

    def _respond(self, front, status, dw0=0):
        cqe = CQE.encode({"dw0": dw0, "dw1": 0, "sqhd": front.sqhd, "sqid": front.sqid,
                           "cid": front.cid, "status": dict(status, p=0)})
        self._outcome(front.seq, "response", {"qpn": front.qpn, "cqe": cqe.hex(),
                                              "invalidate_rkey": front.invalidate})

    def _to_software(self, seq, qpn, capsule, reason):
        self._outcome(seq, "to_software", {"qpn": qpn, "capsule": capsule.hex(),
                                           "reason": reason.name.lower()})

    def _qp_error(self, seq, qpn, reason, event):
        self._outcome(seq, "qp_error", {"qpn": qpn, "reason": reason.name.lower()})
        if event is not None:
            self._event(event, qpn, seq)

    def _event(self, kind, obj, seq):
        if self.csr.push_event(kind, obj):
            self._results.append({"seq": seq, "event": {"type": kind.name, "object": obj}})
            if self.drain_events:
                self.csr.events.popleft()

    def _count(self, slot, name, amount=1):
        self.csr.count(Table.NS_COUNTERS, slot, _NS_FIELD[name], amount)

    def _count_executed(self, cmd, ok):
        """A response from the SSD's completion (docs/engine.md, the namespace counters):
        the command's kind; its blocks (and an in-capsule Write) when it succeeded, else
        a backend error."""
        op = cmd.opcode
        if not ok:
            self._count(cmd.slot, "backend_errors")
        if op == Opcode.READ.value:
            self._count(cmd.slot, "read_cmds")
            if ok:
                self._count(cmd.slot, "read_blocks", cmd.blocks)
        elif op == Opcode.WRITE.value:
            self._count(cmd.slot, "write_cmds")
            if ok:
                self._count(cmd.slot, "write_blocks", cmd.blocks)
            if ok and not cmd.fields["sgl_keyed"]:
                self._count(cmd.slot, "icd_writes")
        elif op == Opcode.FLUSH.value:
            self._count(cmd.slot, "flushes")
        elif op == Opcode.WRITE_ZEROES.value:
            self._count(cmd.slot, "write_zeroes")
        else:
            self._count(cmd.slot, "dsm")

    # --- the event loop ----------------------------------------------------------------------

    def _settle(self):
        """Do every piece of work possible at the current time."""
        for _ in range(1_000_000):
            worked = False
            for ssd in self.ssds.values():
                worked |= ssd.advance(self.now)
            worked |= self._service()
            worked |= self._timeouts()
            worked |= self._pump()
            if not worked:
                return
        raise InvariantError(f"livelock at cycle {self.now}")

    def _busy_reasons(self):
        reasons = []
        if self._pending:
            cmd = self._pending[0]
            need = cmd.data_pages + cmd.list_pages
            pool = self._pools.get(cmd.subsystem)
            why = ""
            if pool is not None and need > pool.pages:
                why = (f" (it needs {need} staging pages; subsystem {cmd.subsystem}'s window "
                       f"has {pool.pages})")
            reasons.append(f"{len(self._pending)} command(s) waiting to be dispatched, first "
                           f"seq {cmd.front.seq}{why}")
        live = [c for c in self._live_contexts() if c.state == "submitted"]
        if live:
            first = min(live, key=lambda c: c.cmd.front.seq)
            timeout = self._queues[first.queue].entry["cmd_timeout"]
            reasons.append(f"{len(live)} command(s) outstanding on backend queues, first seq "
                           f"{first.cmd.front.seq} on queue {first.queue} (cmd_timeout "
                           f"{timeout or 'none'})")
        for name, ssd in self.ssds.items():
            if ssd.next_event_time() is not None:
                reasons.append(f"{name} has commands in service")
        if any(q.msix_pending and not q.dead for q in self._queues.values()):
            reasons.append("an MSI-X message not serviced")
        return reasons

    def _busy_report(self):
        return "; ".join(self._busy_reasons()) or "idle"

    def _ssd(self, ssd):
        if isinstance(ssd, str):
            try:
                return self.ssds[ssd]
            except KeyError:
                raise ValueError(f"no SSD named {ssd!r}") from None
        return ssd
