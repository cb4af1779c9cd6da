# Over 700 lines: one object, NvmfDevice; every verbs call checks against the same record
# of what the driver created, which splitting the class would scatter.
"""The verbs-shaped driver of the control plane (``docs/control-plane.md``, "Driver").

:class:`NvmfDevice` runs over any register-access object with coroutines
``read(offset) -> int`` and ``write(offset, value)``: cocotbext-axi's
AXI4-Lite master against the RTL, or :class:`sim.model.csr.ModelRegs` against
the reference model. Every call is a coroutine; every error raises
:class:`NvmfError` (an :class:`OSError` with ``errno`` set) whose message names
the offending value.

The driver owns the device: it keeps its own record of the subsystems, backend
queues, namespaces and offloaded QPs it created, and decides EEXIST / ENOENT /
EBUSY / ENOSPC from that record. Table sizes and limits come from the
capability registers, never from the elaboration parameters, which only select
the register map (offsets and field positions, from ``rtl/csr.rdl``).
"""

import dataclasses
import enum
import errno
from typing import NamedTuple

from amaranth.lib import data

from rtl.formats import (
    PRP_LIST_ENTRIES,
    PRP_MAX_IO_BYTES,
    QP_OPS_ALL,
    BackendQueueEntry,
    CmdError,
    CmdOp,
    EventType,
    NamespaceEntry,
    NsCounters,
    NsIndexEntry,
    OpBit,
    QpEntry,
    SubsystemCounters,
    SubsystemEntry,
    Table,
    decode,
    encode,
)
from rtl.params import EngineParams
from rtl.regmap import register_map

__all__ = [
    "NvmfError", "OffloadType", "NvmfCaps", "SrqAttrs", "NvmeCtrlAttrs", "Srq", "NvmeCtrl",
    "Namespace", "EventBatch", "NvmfDevice", "ops_mask",
    "QUEUE_DEPTH_MIN", "QUEUE_DEPTH_MAX", "STAGING_ALIGN",
]

QUEUE_DEPTH_MIN = 2          # front-end queue depth bounds of create_srq
QUEUE_DEPTH_MAX = 65536
STAGING_ALIGN = 4096
SQE_BYTES = 64
CAPSULE_UNIT = 16
SQ_RING_ALIGN = 64
CQ_RING_ALIGN = 16
DOORBELL_ALIGN = 4
SQID_MAX = 65535
NVME_NSID_BROADCAST = 0xFFFF_FFFF
U16 = (1 << 16) - 1
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1

_ENTRY_LAYOUTS = {
    Table.SUBSYSTEM: SubsystemEntry,
    Table.QP: QpEntry,
    Table.BACKEND_QUEUE: BackendQueueEntry,
    Table.NS_INDEX: NsIndexEntry,
    Table.NAMESPACE: NamespaceEntry,
    Table.NS_COUNTERS: NsCounters,
    Table.SUBSYSTEM_COUNTERS: SubsystemCounters,
}


class NvmfError(OSError):
    """A driver call failed: ``errno`` says why, the message names the offending value."""

    def __init__(self, err, message):
        super().__init__(err, message)

    @property
    def message(self):
        return self.strerror


class OffloadType(enum.IntFlag):
    """``ibv_nvmf_offload_type`` (RFC) plus the reviewer's two additions."""
    WRITE = 1 << 0
    READ = 1 << 1
    READ_WRITE = 1 << 2
    READ_WRITE_FLUSH = 1 << 3
    WRITE_ZEROES = 1 << 4
    DSM = 1 << 5


# Which offload types make each offload-ops bit available.
_OP_NEEDS = {
    OpBit.FLUSH: OffloadType.READ_WRITE_FLUSH,
    OpBit.WRITE: OffloadType.WRITE | OffloadType.READ_WRITE | OffloadType.READ_WRITE_FLUSH,
    OpBit.READ: OffloadType.READ | OffloadType.READ_WRITE | OffloadType.READ_WRITE_FLUSH,
    OpBit.WRITE_ZEROES: OffloadType.WRITE_ZEROES,
    OpBit.DSM: OffloadType.DSM,
}


def ops_mask(*bits):
    """An offload-ops mask from :class:`OpBit` members: ``ops_mask(OpBit.READ, OpBit.WRITE)``."""
    mask = 0
    for bit in bits:
        mask |= 1 << OpBit(bit)
    return mask


@dataclasses.dataclass(frozen=True)
class NvmfCaps:
    """The device capabilities (``ibv_nvmf_caps`` names, plus the reviewer's additions)."""
    offload_type: OffloadType
    max_backend_ctrls_total: int
    max_srq_backend_ctrls: int
    max_srq_namespaces: int
    min_staging_buf_size: int
    max_io_sz: int
    max_nvme_queue_depth: int
    min_nvme_queue_depth: int
    max_ioccsz: int
    min_ioccsz: int
    max_icdoff: int
    lba_data_size_supported: int       # bit n set: 2**n bytes supported
    max_namespaces: int
    supports_non_offloaded_ops: bool
    max_srqs: int
    max_qps: int
    event_depth: int
    msix_addr: int                     # where an SSD's MSI-X table entry must point
    external_staging: bool             # staging is integrator memory on m_axi_stg
    staging_align: int                 # a staging region's addresses and length align to it
    staging_bus: int                   # bus address (PRPs) of the staging space
    staging_engine: int                # its address on m_axi_stg (on chip: = staging_bus)
    staging_size: int                  # bytes of the staging space

    def lba_data_sizes(self):
        """The supported ``lba_data_size`` values in bytes, ascending."""
        bitmap = self.lba_data_size_supported
        return tuple(1 << n for n in range(bitmap.bit_length()) if bitmap >> n & 1)

    def supports_lba_data_size(self, size):
        return (isinstance(size, int) and not isinstance(size, bool) and size > 0
                and size & (size - 1) == 0 and bool(self.lba_data_size_supported >> (
                    size.bit_length() - 1) & 1))

    def offloadable_ops(self):
        """The offload-ops mask (:class:`OpBit` positions) that ``offload_type`` allows."""
        return sum(1 << bit for bit, needs in _OP_NEEDS.items() if self.offload_type & needs)


@dataclasses.dataclass
class SrqAttrs:
    """``create_srq`` attributes: one NVMe-oF subsystem."""
    ops: int                  # offload-ops mask, OpBit positions (see ops_mask)
    max_namespaces: int
    ioccsz: int               # 16-byte units, SQE included
    icdoff: int               # 16-byte units
    max_io_size: int          # bytes
    queue_depth: int          # front-end queue depth
    staging_addr: int         # staging buffer bus address (what the SSDs' PRPs name)
    staging_len: int          # bytes
    # where the engine reaches the same buffer on m_axi_stg; None: caps.staging_engine plus
    # the buffer's offset in the staging space (the only value the engine can use)
    staging_engine_addr: int | None = None


@dataclasses.dataclass
class NvmeCtrlAttrs:
    """``create_nvme_ctrl`` attributes: one backend NVMe I/O queue pair.

    ``msix_data=None`` means polling. ``polling`` may be given explicitly;
    ``None`` derives it from ``msix_data``.
    """
    sq_addr: int
    sq_entries: int
    cq_addr: int
    cq_entries: int
    sq_db_addr: int
    cq_db_addr: int
    sq_tail_init: int = 0
    cq_head_init: int = 0
    cmd_timeout: int = 0      # clock cycles, 0 = none
    msix_data: int | None = None
    polling: bool | None = None


@dataclasses.dataclass(eq=False)
class Srq:
    """A subsystem created by :meth:`NvmfDevice.create_srq` (index into the SUBSYSTEM table)."""
    index: int
    attrs: SrqAttrs
    ctrls: dict = dataclasses.field(default_factory=dict)        # index -> NvmeCtrl
    namespaces: dict = dataclasses.field(default_factory=dict)   # fe_nsid -> Namespace
    qps: set = dataclasses.field(default_factory=set)            # offloaded QPNs

    def __repr__(self):
        return f"Srq(index={self.index})"


@dataclasses.dataclass(eq=False)
class NvmeCtrl:
    """A backend queue created by :meth:`NvmfDevice.create_nvme_ctrl`.

    ``msix_addr`` / ``msix_data``: what software programs into the SSD's MSI-X table
    entry for this queue's CQ (the message the engine recognises by its data value);
    both None for a polled queue."""
    index: int
    srq: Srq
    attrs: NvmeCtrlAttrs
    msix_addr: int | None = None
    msix_data: int | None = None
    namespaces: set = dataclasses.field(default_factory=set)     # fe_nsids it serves

    def __repr__(self):
        return f"NvmeCtrl(index={self.index}, srq={self.srq.index})"


@dataclasses.dataclass(eq=False)
class Namespace:
    """A mapping made by :meth:`NvmfDevice.map_nvmf_nsid` (``slot`` in the NAMESPACE table)."""
    srq: Srq
    fe_nsid: int
    slot: int
    ctrls: tuple
    lba_data_size: int
    nvme_nsid: int
    nsze: int
    ops: int

    def __repr__(self):
        return f"Namespace(srq={self.srq.index}, fe_nsid={self.fe_nsid}, slot={self.slot})"


class EventBatch(NamedTuple):
    """What :meth:`NvmfDevice.read_events` returns: the events, and whether any was lost."""
    events: list
    lost: bool


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _count16(value):
    """A 1..65536 count in a 16-bit entry field (65536 is stored as 0)."""
    return value & U16


class NvmfDevice:
    """The control plane of one engine, driven through its registers.

    ``regs`` has coroutines ``read(offset)`` and ``write(offset, value)``.
    ``params`` selects the register map only (default :class:`EngineParams`).
    ``reset_poll_limit`` bounds the wait of :meth:`open` for the reset clear
    (default: the total table entries reported by the capabilities, plus a
    margin); ``cmd_poll_limit`` bounds the wait for one command, ``fence_poll_limit``
    the wait of :meth:`fence` (polls of ``FENCE``).
    """

    def __init__(self, regs, params=None, *, reset_poll_limit=None, cmd_poll_limit=256,
                 fence_poll_limit=1 << 22):
        if params is None:
            params = EngineParams()
        if not isinstance(params, EngineParams):
            raise NvmfError(errno.EINVAL, f"params must be EngineParams, not {params!r}")
        self.regs = regs
        self.params = params
        self.regmap = register_map(params)
        self.reset_poll_limit = reset_poll_limit
        self.fence_poll_limit = fence_poll_limit
        self.cmd_poll_limit = cmd_poll_limit
        self.caps = None
        self.sizes = None
        self._srqs = {}          # index -> Srq
        self._ctrls = {}         # index -> NvmeCtrl
        self._slots = {}         # namespace slot -> Namespace
        self._qps = {}           # qpn -> Srq

    # --- register helpers -------------------------------------------------------------------

    def _offset(self, name):
        return self.regmap[name].offset

    async def _read_fields(self, name):
        reg = self.regmap[name]
        value = await self.regs.read(reg.offset)
        return {f.name: (value >> f.lsb) & ((1 << f.width) - 1) for f in reg.fields}

    async def _write_fields(self, name, **fields):
        reg = self.regmap[name]
        value = 0
        for fname, fvalue in fields.items():
            f = reg.field(fname)
            value |= (fvalue & ((1 << f.width) - 1)) << f.lsb
        await self.regs.write(reg.offset, value)

    def _require_open(self):
        if self.caps is None:
            raise NvmfError(errno.EBADF, "the device is not open: await open() first")

    # --- open and capabilities --------------------------------------------------------------

    async def open(self):
        """Check the identity, read the capabilities, wait for the reset clear to end."""
        ident = await self._read_fields("ID")
        want = self.regmap["ID"].field("magic").reset
        if ident["magic"] != want:
            raise NvmfError(errno.ENODEV, f"ID reads {ident['magic']:#010x}, "
                                          f"not the magic {want:#010x}")
        version = await self._read_fields("VERSION")
        want = self.regmap["VERSION"].field("major").reset
        if version["major"] != want:
            raise NvmfError(errno.ENODEV, f"register-map major version {version['major']} "
                                          f"is not the driver's {want}")
        caps = await self.query_caps()
        sizes = {
            Table.SUBSYSTEM: caps.max_srqs,
            Table.QP: caps.max_qps,
            Table.BACKEND_QUEUE: caps.max_backend_ctrls_total,
            Table.NS_INDEX: caps.max_srqs * caps.max_srq_namespaces,
            Table.NAMESPACE: caps.max_namespaces,
            Table.NS_COUNTERS: caps.max_namespaces,
            Table.SUBSYSTEM_COUNTERS: caps.max_srqs,
        }
        limit = self.reset_poll_limit
        if limit is None:
            limit = sum(sizes.values()) + 64
        for _ in range(limit):
            status = await self._read_fields("CMD_STATUS")
            if not status["busy"]:
                break
        else:
            raise NvmfError(errno.ETIMEDOUT, f"CMD_STATUS.busy still 1 after {limit} polls "
                                             f"waiting for the reset clear")
        self.caps = caps
        self.sizes = sizes
        return self

    async def query_caps(self):
        """Read the capability registers into :class:`NvmfCaps`."""
        offload = 0
        reg = self.regmap["CAP_OFFLOAD_TYPES"]
        raw = await self.regs.read(reg.offset)
        for f in reg.fields:
            if (raw >> f.lsb) & 1:
                offload |= OffloadType[f.name.upper()]

        async def value(name):
            return (await self._read_fields(name))["value"]

        depth = await self._read_fields("CAP_NVME_QUEUE_DEPTH")
        flags = await self._read_fields("CAP_FLAGS")
        lba = await self._read_fields("CAP_LBA_DATA_SIZE_SUPPORTED")
        return NvmfCaps(
            offload_type=OffloadType(offload),
            max_backend_ctrls_total=await value("CAP_MAX_BACKEND_CTRLS_TOTAL"),
            max_srq_backend_ctrls=await value("CAP_MAX_SRQ_BACKEND_CTRLS"),
            max_srq_namespaces=await value("CAP_MAX_SRQ_NAMESPACES"),
            min_staging_buf_size=await value("CAP_MIN_STAGING_BUF_SIZE"),
            max_io_sz=await value("CAP_MAX_IO_SZ"),
            max_nvme_queue_depth=depth["max"],
            min_nvme_queue_depth=depth["min"],
            max_ioccsz=await value("CAP_MAX_IOCCSZ"),
            min_ioccsz=await value("CAP_MIN_IOCCSZ"),
            max_icdoff=await value("CAP_MAX_ICDOFF"),
            lba_data_size_supported=lba["bitmap"],
            max_namespaces=await value("CAP_MAX_NAMESPACES"),
            supports_non_offloaded_ops=bool(flags["supports_non_offloaded_ops"]),
            max_srqs=await value("CAP_MAX_SRQS"),
            max_qps=await value("CAP_MAX_QPS"),
            event_depth=await value("CAP_EVENT_DEPTH"),
            msix_addr=await value("CAP_MSIX_ADDR_LO") | await value("CAP_MSIX_ADDR_HI") << 32,
            external_staging=bool(flags["external_staging"]),
            staging_align=await value("CAP_STAGING_ALIGN"),
            staging_bus=await value("CAP_STAGING_BUS_LO") | await value("CAP_STAGING_BUS_HI") << 32,
            staging_engine=(await value("CAP_STAGING_ENGINE_LO")
                            | await value("CAP_STAGING_ENGINE_HI") << 32),
            staging_size=await value("CAP_STAGING_SIZE"),
        )

    # --- table commands ---------------------------------------------------------------------

    async def _command(self, op, table, index, entry=0):
        """Run one table command; returns the RESULT entry (an int) for READ / READ_CLEAR."""
        name = f"{op.name} {table.name}[{index}]"
        width = data.Layout.cast(_ENTRY_LAYOUTS[table]).size
        words = -(-width // 32)
        cmd = self.regmap["CMD"]
        if index >= 1 << cmd.field("index").width:
            raise NvmfError(errno.EINVAL, f"{name}: index {index} does not fit CMD.index")
        if op == CmdOp.WRITE:
            for i in range(words):
                await self.regs.write(self._offset(f"ARG[{i}]"), (entry >> (32 * i)) & U32)
        await self._write_fields("CMD", op=op.value, tbl=table.value, index=index)
        for _ in range(self.cmd_poll_limit):
            status = await self._read_fields("CMD_STATUS")
            if not status["busy"]:
                break
        else:
            raise NvmfError(errno.ETIMEDOUT, f"{name}: CMD_STATUS.busy still 1 after "
                                             f"{self.cmd_poll_limit} polls")
        if status["error"] != CmdError.NONE.value:
            try:
                reason = CmdError(status["error"]).name
            except ValueError:
                reason = "unknown"
            raise NvmfError(errno.EIO, f"{name} failed with CMD_STATUS.error "
                                       f"{status['error']} ({reason})")
        if op == CmdOp.WRITE:
            return None
        value = 0
        for i in range(words):
            value |= await self.regs.read(self._offset(f"RESULT[{i}]")) << (32 * i)
        return value & ((1 << width) - 1)

    async def _write_entry(self, table, index, fields):
        await self._command(CmdOp.WRITE, table, index,
                            int.from_bytes(encode(_ENTRY_LAYOUTS[table], fields), "little"))

    async def _read_entry(self, table, index, clear=False):
        op = CmdOp.READ_CLEAR if clear else CmdOp.READ
        return decode(_ENTRY_LAYOUTS[table], await self._command(op, table, index))

    # --- argument checks --------------------------------------------------------------------

    @staticmethod
    def _int(name, value, lo, hi, err=errno.EINVAL, fmt="d"):
        if not _is_int(value):
            raise NvmfError(errno.EINVAL, f"{name} must be an integer, not {value!r}")
        if not lo <= value <= hi:
            raise NvmfError(err, f"{name} {value:{fmt}} is out of range "
                                 f"{lo:{fmt}}..{hi:{fmt}}")
        return value

    @staticmethod
    def _aligned(name, value, align):
        if value % align:
            raise NvmfError(errno.EINVAL, f"{name} {value:#x} is not {align}-byte aligned")

    @staticmethod
    def _flag(name, value):
        if not isinstance(value, bool):
            raise NvmfError(errno.EINVAL, f"{name} must be True or False, not {value!r}")
        return value

    @staticmethod
    def _ops(name, value):
        if isinstance(value, OpBit):
            raise NvmfError(errno.EINVAL, f"{name} must be a bit mask (e.g. ops_mask(OpBit."
                                          f"{value.name})), not the bit position "
                                          f"OpBit.{value.name}")
        if not _is_int(value):
            raise NvmfError(errno.EINVAL, f"{name} must be an integer bit mask, not {value!r}")
        return value

    def _srq(self, srq, what="srq"):
        """The created Srq or ENOENT; EINVAL for something that is not an Srq."""
        if not isinstance(srq, Srq):
            raise NvmfError(errno.EINVAL, f"{what} must be an Srq, not {srq!r}")
        if self._srqs.get(srq.index) is not srq:
            raise NvmfError(errno.ENOENT, f"{what} {srq!r} was not created on this device "
                                          f"(or was destroyed)")
        return srq

    # --- subsystems -------------------------------------------------------------------------

    async def create_srq(self, attrs):
        """Create a subsystem (an SRQ with NVMe-oF attributes)."""
        self._require_open()
        caps = self.caps
        if not isinstance(attrs, SrqAttrs):
            raise NvmfError(errno.EINVAL, f"attrs must be SrqAttrs, not {attrs!r}")
        ops = self._ops("ops", attrs.ops)
        if ops == 0:
            raise NvmfError(errno.EINVAL, "ops 0x0 is empty: enable at least one operation")
        if ops & ~QP_OPS_ALL or ops < 0:
            raise NvmfError(errno.EINVAL, f"ops {ops:#x} has unknown bits "
                                          f"(known: {QP_OPS_ALL:#x})")
        missing = ops & ~caps.offloadable_ops()
        if missing:
            names = ", ".join(b.name for b in OpBit if missing >> b & 1)
            raise NvmfError(errno.EINVAL, f"ops {ops:#x} asks for {names}, which offload_type "
                                          f"{caps.offload_type.value:#x} does not offer")
        self._int("max_namespaces", attrs.max_namespaces, 1, min(caps.max_srq_namespaces, U16))
        ioccsz = self._int("ioccsz", attrs.ioccsz, caps.min_ioccsz, min(caps.max_ioccsz, U16))
        icdoff = self._int("icdoff", attrs.icdoff, 0, caps.max_icdoff)
        if SQE_BYTES + icdoff * CAPSULE_UNIT > ioccsz * CAPSULE_UNIT:
            raise NvmfError(errno.EINVAL, f"icdoff {icdoff} leaves no room for the SQE in "
                                          f"ioccsz {ioccsz} (64 + icdoff*16 > ioccsz*16)")
        if _is_int(attrs.max_io_size) and attrs.max_io_size > PRP_MAX_IO_BYTES:
            raise NvmfError(errno.EINVAL, f"max_io_size {attrs.max_io_size} needs more PRP "
                                          f"entries than one PRP list page holds: at most "
                                          f"{PRP_MAX_IO_BYTES} bytes (PRP1 and "
                                          f"{PRP_LIST_ENTRIES} list entries)")
        self._int("max_io_size", attrs.max_io_size, 1, min(caps.max_io_sz, U32))
        self._int("queue_depth", attrs.queue_depth, QUEUE_DEPTH_MIN, QUEUE_DEPTH_MAX)
        addr = self._int("staging_addr", attrs.staging_addr, 0, U64, fmt="#x")
        if not _is_int(attrs.staging_len):
            raise NvmfError(errno.EINVAL,
                            f"staging_len must be an integer, not {attrs.staging_len!r}")
        length = attrs.staging_len
        if length < caps.min_staging_buf_size:
            raise NvmfError(errno.EINVAL, f"staging_len {length} is shorter than "
                                          f"min_staging_buf_size {caps.min_staging_buf_size}")
        if length > U32:
            raise NvmfError(errno.EINVAL, f"staging_len {length} does not fit 32 bits")
        self._aligned("staging_addr", addr, caps.staging_align)
        if addr + length > 1 << 64:
            raise NvmfError(errno.EINVAL, f"staging buffer {addr:#x} + {length} wraps "
                                          f"the 64-bit address space")
        if attrs.staging_engine_addr is not None:
            # the engine reaches bus address staging_bus + k at staging_engine + k
            given = self._int("staging_engine_addr", attrs.staging_engine_addr, 0, U64,
                              fmt="#x")
            engine = (caps.staging_engine + addr - caps.staging_bus) % (1 << 64)
            if given != engine:
                raise NvmfError(errno.EINVAL, f"staging_engine_addr {given:#x} is not where the "
                                              f"engine reaches bus address {addr:#x}: "
                                              f"{engine:#x} (CAP_STAGING_ENGINE + offset)")
        free = [i for i in range(caps.max_srqs) if i not in self._srqs]
        if not free:
            raise NvmfError(errno.ENOSPC, f"no free subsystem: all {caps.max_srqs} in use")
        index = free[0]
        await self._command(CmdOp.READ_CLEAR, Table.SUBSYSTEM_COUNTERS, index)
        await self._write_entry(Table.SUBSYSTEM, index, {
            "valid": 1, "ops": ops, "max_namespaces": attrs.max_namespaces,
            "ioccsz": ioccsz, "icdoff": icdoff, "queue_depth": _count16(attrs.queue_depth),
            "max_io_size": attrs.max_io_size, "staging_addr": addr, "staging_len": length,
        })
        srq = Srq(index=index, attrs=dataclasses.replace(attrs))
        self._srqs[index] = srq
        return srq

    async def destroy_srq(self, srq):
        """Clear a subsystem's entry; it must have no backend queue, namespace or QP."""
        self._require_open()
        self._srq(srq)
        if srq.ctrls or srq.namespaces or srq.qps:
            raise NvmfError(errno.EBUSY, f"srq {srq.index} is still in use: backend ctrls "
                                         f"{sorted(srq.ctrls)}, fe_nsids "
                                         f"{sorted(srq.namespaces)}, QPNs {sorted(srq.qps)}")
        await self._write_entry(Table.SUBSYSTEM, srq.index, {})
        del self._srqs[srq.index]

    # --- backend queues ---------------------------------------------------------------------

    async def create_nvme_ctrl(self, srq, attrs):
        """Create a backend NVMe queue pair serving ``srq``."""
        self._require_open()
        caps = self.caps
        self._srq(srq)
        if not isinstance(attrs, NvmeCtrlAttrs):
            raise NvmfError(errno.EINVAL, f"attrs must be NvmeCtrlAttrs, not {attrs!r}")
        lo, hi = caps.min_nvme_queue_depth, min(caps.max_nvme_queue_depth, 1 << 16)
        sq_entries = self._int("sq_entries", attrs.sq_entries, lo, hi)
        cq_entries = self._int("cq_entries", attrs.cq_entries, lo, hi)
        for name, align in (("sq_addr", SQ_RING_ALIGN), ("cq_addr", CQ_RING_ALIGN),
                            ("sq_db_addr", DOORBELL_ALIGN), ("cq_db_addr", DOORBELL_ALIGN)):
            self._aligned(name, self._int(name, getattr(attrs, name), 0, U64, fmt="#x"), align)
        self._int("sq_tail_init", attrs.sq_tail_init, 0, sq_entries - 1)
        self._int("cq_head_init", attrs.cq_head_init, 0, cq_entries - 1)
        self._int("cmd_timeout", attrs.cmd_timeout, 0, U32)
        if attrs.msix_data is not None:
            self._int("msix_data", attrs.msix_data, 0, U32, fmt="#x")
        polling = attrs.polling
        if polling is None:
            polling = attrs.msix_data is None
        self._flag("polling", polling)
        if polling and attrs.msix_data is not None:
            raise NvmfError(errno.EINVAL, f"msix_data {attrs.msix_data:#x} given with polling")
        if not polling and attrs.msix_data is None:
            raise NvmfError(errno.EINVAL, "msix_data None without polling: interrupts need "
                                          "an MSI-X data value")
        queues = min(caps.max_backend_ctrls_total, 32)      # NamespaceEntry.queues is 32 bits
        free = [i for i in range(queues) if i not in self._ctrls]
        if not free:
            raise NvmfError(errno.ENOSPC, f"no free backend queue: all {queues} in use")
        if len(srq.ctrls) >= caps.max_srq_backend_ctrls:
            raise NvmfError(errno.ENOSPC, f"srq {srq.index} already has "
                                          f"max_srq_backend_ctrls {caps.max_srq_backend_ctrls}")
        index = free[0]
        await self._write_entry(Table.BACKEND_QUEUE, index, {
            "valid": 1, "polling": int(polling), "subsystem": srq.index,
            "sq_entries": _count16(sq_entries), "cq_entries": _count16(cq_entries),
            "sq_addr": attrs.sq_addr, "cq_addr": attrs.cq_addr,
            "sq_db_addr": attrs.sq_db_addr, "cq_db_addr": attrs.cq_db_addr,
            "sq_tail_init": attrs.sq_tail_init, "cq_head_init": attrs.cq_head_init,
            "cmd_timeout": attrs.cmd_timeout,
            "msix_data": 0 if attrs.msix_data is None else attrs.msix_data,
        })
        ctrl = NvmeCtrl(index=index, srq=srq, attrs=dataclasses.replace(attrs, polling=polling),
                        msix_addr=None if polling else caps.msix_addr,
                        msix_data=None if polling else attrs.msix_data)
        self._ctrls[index] = ctrl
        srq.ctrls[index] = ctrl
        return ctrl

    def _ctrl(self, ctrl, what="ctrl", err=errno.ENOENT):
        if not isinstance(ctrl, NvmeCtrl):
            raise NvmfError(errno.EINVAL, f"{what} must be an NvmeCtrl, not {ctrl!r}")
        if self._ctrls.get(ctrl.index) is not ctrl:
            raise NvmfError(err, f"{what} {ctrl!r} was not created on this device "
                                 f"(or was destroyed)")
        return ctrl

    async def destroy_nvme_ctrl(self, ctrl):
        """Clear a backend queue's entry; no namespace may be served by it."""
        self._require_open()
        self._ctrl(ctrl)
        if ctrl.namespaces:
            raise NvmfError(errno.EBUSY, f"backend ctrl {ctrl.index} still serves fe_nsids "
                                         f"{sorted(ctrl.namespaces)} of srq {ctrl.srq.index}")
        await self._write_entry(Table.BACKEND_QUEUE, ctrl.index, {})
        del self._ctrls[ctrl.index]
        del ctrl.srq.ctrls[ctrl.index]

    # --- namespaces -------------------------------------------------------------------------

    def _fe_nsid(self, fe_nsid):
        return self._int("fe_nsid", fe_nsid, 1, self.caps.max_srq_namespaces)

    async def map_nvmf_nsid(self, ctrls, fe_nsid, lba_data_size, nvme_nsid, nsze, ops=None):
        """Map front-end ``fe_nsid`` of the ctrls' subsystem to backend namespace ``nvme_nsid``.

        ``ctrls``: the backend queues that serve it (an NvmeCtrl or a sequence of them).
        ``ops``: the enabled operations (default: the subsystem's).
        """
        self._require_open()
        caps = self.caps
        if isinstance(ctrls, NvmeCtrl):
            ctrls = (ctrls,)
        if not isinstance(ctrls, (list, tuple)):
            raise NvmfError(errno.EINVAL, f"ctrls must be an NvmeCtrl or a list of them, "
                                          f"not {ctrls!r}")
        if not ctrls:
            raise NvmfError(errno.EINVAL, f"ctrls {ctrls!r} is empty")
        for ctrl in ctrls:
            self._ctrl(ctrl, "ctrls entry", err=errno.EINVAL)
        srq = ctrls[0].srq
        for ctrl in ctrls:
            if ctrl.srq is not srq:
                raise NvmfError(errno.EINVAL, f"ctrls mix subsystems: {ctrl!r} is not of "
                                              f"srq {srq.index}")
        fe_nsid = self._fe_nsid(fe_nsid)
        self._int("nvme_nsid", nvme_nsid, 1, NVME_NSID_BROADCAST - 1, fmt="#x")
        self._int("nsze", nsze, 1, U64)
        if ops is None:
            ops = srq.attrs.ops
        self._ops("ops", ops)
        if ops < 0 or ops & ~srq.attrs.ops:
            raise NvmfError(errno.EINVAL, f"ops {ops:#x} has bits outside srq {srq.index}'s "
                                          f"ops {srq.attrs.ops:#x}")
        if not _is_int(lba_data_size):
            raise NvmfError(errno.EINVAL,
                            f"lba_data_size must be an integer, not {lba_data_size!r}")
        if not caps.supports_lba_data_size(lba_data_size):
            raise NvmfError(errno.ENOTSUP, f"lba_data_size {lba_data_size} is not supported "
                                           f"(supported: {list(caps.lba_data_sizes())})")
        if fe_nsid in srq.namespaces:
            raise NvmfError(errno.EEXIST, f"fe_nsid {fe_nsid} is already mapped in "
                                          f"srq {srq.index}")
        if len(srq.namespaces) >= srq.attrs.max_namespaces:
            raise NvmfError(errno.ENOSPC, f"srq {srq.index} already has its max_namespaces "
                                          f"{srq.attrs.max_namespaces}; fe_nsid {fe_nsid} "
                                          f"does not fit")
        free = [s for s in range(caps.max_namespaces) if s not in self._slots]
        if not free:
            raise NvmfError(errno.ENOSPC, f"no free namespace slot for fe_nsid {fe_nsid}: "
                                          f"all {caps.max_namespaces} in use")
        slot = free[0]
        unique = tuple({c.index: c for c in ctrls}.values())
        await self._command(CmdOp.READ_CLEAR, Table.NS_COUNTERS, slot)
        await self._write_entry(Table.NAMESPACE, slot, self._ns_fields(
            srq, fe_nsid, nvme_nsid, nsze, ops, lba_data_size, unique, ready=1))
        await self._write_entry(Table.NS_INDEX, self._ns_index(srq, fe_nsid),
                                {"valid": 1, "slot": slot})
        ns = Namespace(srq=srq, fe_nsid=fe_nsid, slot=slot, ctrls=unique,
                       lba_data_size=lba_data_size, nvme_nsid=nvme_nsid, nsze=nsze, ops=ops)
        self._slots[slot] = ns
        srq.namespaces[fe_nsid] = ns
        for ctrl in unique:
            ctrl.namespaces.add(fe_nsid)
        return ns

    @staticmethod
    def _ns_fields(srq, fe_nsid, nvme_nsid, nsze, ops, lba_data_size, ctrls, ready):
        return {
            "valid": 1, "ready": ready, "ops": ops,
            "lba_shift": lba_data_size.bit_length() - 1, "subsystem": srq.index,
            "fe_nsid": fe_nsid, "backend_nsid": nvme_nsid, "nsze": nsze,
            "queues": sum(1 << c.index for c in ctrls),
        }

    def _ns_index(self, srq, fe_nsid):
        return srq.index * self.caps.max_srq_namespaces + fe_nsid - 1

    async def unmap_nvmf_nsid(self, srq, fe_nsid):
        """Unmap: clear ``ready`` (NOT_READY), then the NS_INDEX entry; wait on the command
        fence (:meth:`fence`) for every command that looked the namespace up; then clear the
        NAMESPACE entry and free its slot (a later map may reuse it, counters from zero)."""
        self._require_open()
        fe_nsid = self._fe_nsid(fe_nsid)
        self._srq(srq)
        ns = srq.namespaces.get(fe_nsid)
        if ns is None:
            raise NvmfError(errno.ENOENT, f"fe_nsid {fe_nsid} is not mapped in srq {srq.index}")
        await self._write_entry(Table.NAMESPACE, ns.slot, self._ns_fields(
            srq, fe_nsid, ns.nvme_nsid, ns.nsze, ns.ops, ns.lba_data_size, ns.ctrls, ready=0))
        await self._write_entry(Table.NS_INDEX, self._ns_index(srq, fe_nsid), {})
        await self.fence()
        await self._write_entry(Table.NAMESPACE, ns.slot, {})
        del self._slots[ns.slot]
        del srq.namespaces[fe_nsid]
        for ctrl in ns.ctrls:
            ctrl.namespaces.discard(fe_nsid)

    async def fence(self):
        """Wait until every command that sent its namespace lookup before this call has its
        outcome (FENCE register): flip ``FENCE.epoch``, then poll until ``FENCE.other``
        is 0. Commands finish within their queue's ``cmd_timeout`` (an SSD that never
        answers gets the timeout's response); ETIMEDOUT after ``fence_poll_limit`` polls
        (none with ``cmd_timeout`` 0 and a silent SSD is the one way to reach it)."""
        self._require_open()
        epoch = (await self._read_fields("FENCE"))["epoch"]
        await self._write_fields("FENCE", epoch=epoch ^ 1)
        for _ in range(self.fence_poll_limit):
            other = (await self._read_fields("FENCE"))["other"]
            if other == 0:
                return
        raise NvmfError(errno.ETIMEDOUT, f"FENCE.other still {other} after "
                                         f"{self.fence_poll_limit} polls: commands looked up "
                                         f"before epoch {epoch ^ 1} have no outcome")

    # --- QPs --------------------------------------------------------------------------------

    async def qp_set_nvmf(self, qpn, srq, offload=True, offload_only=False, sqsize=None,
                          sqid=None):
        """Enable (or, with ``srq=None`` or ``offload=False``, disable) offload on a QP.

        ``sqsize`` (front-end SQ entries) and ``sqid`` are required when enabling.
        """
        self._require_open()
        caps = self.caps
        self._int("qpn", qpn, 0, caps.max_qps - 1)
        self._flag("offload", offload)
        self._flag("offload_only", offload_only)
        if srq is not None and not isinstance(srq, Srq):
            raise NvmfError(errno.EINVAL, f"srq must be an Srq or None, not {srq!r}")
        enable = srq is not None and offload
        if offload_only and not enable:
            raise NvmfError(errno.EINVAL, f"offload_only {offload_only} without offload "
                                          f"(offload {offload}, srq {srq!r})")
        if sqsize is not None:
            self._int("sqsize", sqsize, 1, QUEUE_DEPTH_MAX)
        if sqid is not None:
            self._int("sqid", sqid, 1, SQID_MAX)
        if not enable:
            await self._write_entry(Table.QP, qpn, {})
            old = self._qps.pop(qpn, None)
            if old is not None:
                old.qps.discard(qpn)
            return
        self._srq(srq)
        if sqsize is None:
            raise NvmfError(errno.EINVAL, f"sqsize {sqsize} must be given to enable offload")
        if sqid is None:
            raise NvmfError(errno.EINVAL, f"sqid {sqid} must be given to enable offload "
                                          f"(the admin queue 0 is never offloaded)")
        self._int("sqsize", sqsize, 1, srq.attrs.queue_depth)
        if not offload_only and not caps.supports_non_offloaded_ops:
            raise NvmfError(errno.EINVAL, f"offload_only {offload_only}: the device does not "
                                          f"support non-offloaded ops on an offloaded QP")
        a = srq.attrs
        await self._write_entry(Table.QP, qpn, {
            "attrs": {"offload": 1, "offload_only": int(offload_only), "ops": a.ops,
                      "ioccsz": a.ioccsz, "icdoff": a.icdoff},
            "subsystem": srq.index, "sqsize": _count16(sqsize), "sqid": sqid,
        })
        old = self._qps.get(qpn)
        if old is not None:
            old.qps.discard(qpn)
        self._qps[qpn] = srq
        srq.qps.add(qpn)

    # --- events and counters ----------------------------------------------------------------

    async def read_events(self):
        """Pop every queued event: ``EventBatch(events=[(EventType, object)], lost=bool)``.

        ``lost`` says whether the overflow flag was set (it is cleared here, before
        popping, so a loss after this read is reported by the next call).
        """
        self._require_open()
        status = await self._read_fields("EVENT_STATUS")
        lost = bool(status["overflow"])
        if lost:
            await self._write_fields("EVENT_CTRL", clear_overflow=1)
        events = []
        limit = 4 * self.caps.event_depth + 4
        for _ in range(limit):
            if status["count"] == 0:
                break
            for _ in range(status["count"]):
                head = await self._read_fields("EVENT_HEAD")
                try:
                    kind = EventType(head["kind"])
                except ValueError:
                    raise NvmfError(errno.EIO, f"EVENT_HEAD.kind {head['kind']} is not an "
                                               f"EventType") from None
                events.append((kind, head["object"]))
                await self._write_fields("EVENT_CTRL", pop=1)
            status = await self._read_fields("EVENT_STATUS")
        return EventBatch(events=events, lost=lost)

    async def resource_use(self):
        """What the engine holds now (``USE_*`` registers), as one dict: ``live`` and
        ``zombies`` contexts, staging ``pages`` and ``zombie_pages``, and the busy flags
        ``backend_queues``, ``sq_writer``, ``cq_handler``."""
        self._require_open()
        use = {}
        for name in ("USE_CONTEXTS", "USE_STAGING", "USE_BUSY"):
            use.update(await self._read_fields(name))
        return use

    async def leaks(self):
        """Call at quiescence (nothing in flight): a list of what is still held that
        should not be, each a sentence naming the value; empty when nothing leaked.

        Zombie contexts (commands given up whose late CQE has not come yet, until
        twice their queue's ``cmd_timeout``) legitimately keep their staging pages and
        their queue's CQ credit.
        """
        use = await self.resource_use()
        found = []
        if use["live"]:
            found.append(f"{use['live']} context(s) still hold a command")
        if use["pages"] != use["zombie_pages"]:
            found.append(f"{use['pages']} staging page(s) in use, {use['zombie_pages']} of "
                         f"them kept by zombie context(s)")
        if use["backend_queues"] and not use["zombies"]:
            found.append("a backend queue still owes SQ consumption or CQEs")
        for unit in ("sq_writer", "cq_handler"):
            if use[unit] and not (unit == "cq_handler" and use["zombies"]):
                found.append(f"the {unit.replace('_', ' ')} is still busy")
        return found

    async def ns_counters(self, ns, clear=False):
        """A namespace's counters as a dict (READ, or READ_CLEAR with ``clear``)."""
        self._require_open()
        if not isinstance(ns, Namespace):
            raise NvmfError(errno.EINVAL, f"ns must be a Namespace, not {ns!r}")
        self._flag("clear", clear)
        if self._slots.get(ns.slot) is not ns:
            raise NvmfError(errno.ENOENT, f"namespace {ns!r} is not mapped")
        return await self._read_entry(Table.NS_COUNTERS, ns.slot, clear)

    async def srq_counters(self, srq, clear=False):
        """A subsystem's counters as a dict (READ, or READ_CLEAR with ``clear``)."""
        self._require_open()
        self._srq(srq)
        self._flag("clear", clear)
        return await self._read_entry(Table.SUBSYSTEM_COUNTERS, srq.index, clear)
