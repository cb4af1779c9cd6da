"""Every NVMe / NVMe-oF format the engine touches, defined once.

The gateware uses these layouts as ``amaranth.lib.data`` views; the Python
reference models, device models, testbenches and documentation use the same
layouts through :func:`encode` / :func:`decode`, which go through
``Layout.const`` and ``data.Const`` and need no simulator. Fields are declared
LSB first, so declaring them in byte order makes bit ``8*n`` of a layout the
least significant bit of byte ``n`` (NVMe is little-endian throughout), and
``int.from_bytes(raw, "little")`` is the layout's bit pattern.

Sources: ``../shared/spec/nvme-facts.md`` (checked against Linux
``include/linux/nvme.h``).
"""

from amaranth.lib import data, enum

__all__ = [
    "Opcode", "FabricsType", "SglType", "SglSubtype", "Sct", "GenericSc", "NvmeStatus",
    "Prp", "SglKeyed", "SglData", "Dptr", "RwDwords", "DsmDwords", "CmdDwords", "Sqe",
    "CqeStatus", "Cqe", "DsmRange",
    "SQE_BYTES", "CQE_BYTES", "SGL_BYTES", "DSM_RANGE_BYTES", "CAPSULE_UNIT",
    "OpBit", "QP_OPS_ALL", "Action", "Reason", "ReadMode", "QpCapsuleAttrs", "ParsedCommand",
    "StreamBeat", "QPN_WIDTH",
    "Table", "CmdOp", "CmdError", "EventType", "SubsystemEntry", "QpEntry", "BackendQueueEntry",
    "NsIndexEntry", "NamespaceEntry", "NsCounters", "SubsystemCounters", "Event",
    "NsLookupStatus", "NsLookupRequest", "NsLookupResponse",
    "EngineResponse", "ExcSideband", "BackendCommand", "SqRequest", "SqDone", "CqCompletion",
    "StagingWrite", "StagingRead", "RdmaOp", "RdmaCommand", "RdmaStatus",
    "layout_bytes", "encode", "decode", "build_capsule", "icd_start",
]


# --- enumerations ----------------------------------------------------------------------------

class Opcode(enum.Enum, shape=8):
    """NVM command set and Fabrics opcodes the engine knows by name."""
    FLUSH = 0x00
    WRITE = 0x01
    READ = 0x02
    WRITE_ZEROES = 0x08
    DSM = 0x09
    FABRICS = 0x7F


class FabricsType(enum.Enum, shape=8):
    """``fctype`` at byte 4 of a Fabrics command (opcode 0x7F)."""
    PROPERTY_SET = 0x00
    CONNECT = 0x01
    PROPERTY_GET = 0x04
    AUTH_SEND = 0x05
    AUTH_RECV = 0x06


class SglType(enum.Enum, shape=4):
    """SGL descriptor type, byte 15 bits [7:4]."""
    DATA_BLOCK = 0x0
    KEYED_DATA_BLOCK = 0x4


class SglSubtype(enum.Enum, shape=4):
    """SGL descriptor subtype, byte 15 bits [3:0]."""
    ADDRESS = 0x0
    OFFSET = 0x1
    INVALIDATE = 0xF


class Sct(enum.Enum, shape=3):
    """Status Code Type."""
    GENERIC = 0
    COMMAND_SPECIFIC = 1
    MEDIA = 2
    PATH = 3


class GenericSc(enum.Enum, shape=8):
    """Generic command status codes (SCT 0) the engine returns or names."""
    SUCCESS = 0x00
    INVALID_OPCODE = 0x01
    INVALID_FIELD = 0x02
    CID_CONFLICT = 0x03
    DATA_TRANSFER_ERROR = 0x04
    INTERNAL_ERROR = 0x06
    ABORT_REQUESTED = 0x07
    ABORTED_SQ_DELETION = 0x08
    INVALID_NS_OR_FORMAT = 0x0B
    SGL_SEGMENT_DESC_INVALID = 0x0D
    SGL_DESC_COUNT_INVALID = 0x0E
    DATA_SGL_LENGTH_INVALID = 0x0F
    SGL_DESC_TYPE_INVALID = 0x11
    INVALID_PRP_OFFSET = 0x13
    SGL_OFFSET_INVALID = 0x16
    LBA_OUT_OF_RANGE = 0x80
    CAPACITY_EXCEEDED = 0x81
    NS_NOT_READY = 0x82


class NvmeStatus:
    """The statuses the engine originates itself: ``(sct, sc, dnr)`` by condition.

    One table, used by the parser, the lookup stage, the reference models and
    the docs (see ``nvme-facts.md``, "Status codes the engine returns itself").
    """
    INVALID_FIELD = (Sct.GENERIC, GenericSc.INVALID_FIELD, 1)
    SGL_OFFSET_INVALID = (Sct.GENERIC, GenericSc.SGL_OFFSET_INVALID, 1)
    DATA_SGL_LENGTH_INVALID = (Sct.GENERIC, GenericSc.DATA_SGL_LENGTH_INVALID, 1)
    SGL_DESC_TYPE_INVALID = (Sct.GENERIC, GenericSc.SGL_DESC_TYPE_INVALID, 1)
    LBA_OUT_OF_RANGE = (Sct.GENERIC, GenericSc.LBA_OUT_OF_RANGE, 1)
    NS_NOT_READY = (Sct.GENERIC, GenericSc.NS_NOT_READY, 0)
    INVALID_NS = (Sct.GENERIC, GenericSc.INVALID_NS_OR_FORMAT, 1)
    DATA_TRANSFER_ERROR = (Sct.GENERIC, GenericSc.DATA_TRANSFER_ERROR, 0)
    INTERNAL_ERROR = (Sct.GENERIC, GenericSc.INTERNAL_ERROR, 0)


# --- submission queue entry ------------------------------------------------------------------

class Prp(data.Struct):
    """DPTR as two PRP entries (PSDT = 0)."""
    prp1: 64
    prp2: 64


class SglKeyed(data.Struct):
    """Keyed SGL data block descriptor (type 0x4): remote memory by rkey."""
    address: 64
    length: 24
    key: 32
    subtype: 4
    type: 4


class SglData(data.Struct):
    """SGL data block descriptor (type 0x0); subtype 0x1 = offset into in-capsule data."""
    address: 64
    length: 32
    reserved: 24
    subtype: 4
    type: 4


class Dptr(data.Union):
    """Data pointer, bytes 24-39 of an SQE."""
    prp: Prp
    keyed: SglKeyed
    sgl: SglData


class RwDwords(data.Struct):
    """CDW10-15 of Read, Write and Write Zeroes."""
    slba: 64
    nlb: 16          # zero-based: 0 means one block
    cdw12_rsvd: 14
    fua: 1
    lr: 1
    dsm: 32          # CDW13 dataset management hints
    cdw14: 32
    cdw15: 32


class DsmDwords(data.Struct):
    """CDW10-15 of Dataset Management."""
    nr: 8            # number of ranges minus one
    cdw10_rsvd: 24
    idr: 1
    idw: 1
    ad: 1            # deallocate
    cdw11_rsvd: 29
    cdw12: 32
    cdw13: 32
    cdw14: 32
    cdw15: 32


class CmdDwords(data.Union):
    """CDW10-15, bytes 40-63 of an SQE."""
    raw: data.ArrayLayout(32, 6)
    rw: RwDwords
    dsm: DsmDwords


class Sqe(data.Struct):
    """Submission queue entry, 64 bytes; also the first 64 bytes of a command capsule."""
    opcode: 8
    fuse: 2
    reserved0: 4
    psdt: 2          # 0 = PRP, 1 = SGL (contiguous MPTR), 2 = SGL (MPTR segment)
    cid: 16
    nsid: 32         # Fabrics: byte 4 is fctype
    cdw2: 32
    cdw3: 32
    mptr: 64
    dptr: Dptr
    cdw: CmdDwords


# --- completion queue entry / response capsule ----------------------------------------------

class CqeStatus(data.Struct):
    """Bytes 14-15 of a CQE: phase tag and status field."""
    p: 1
    sc: 8
    sct: 3
    crd: 2
    m: 1
    dnr: 1


class Cqe(data.Struct):
    """Completion queue entry, 16 bytes; an NVMe-oF response capsule carries exactly this."""
    dw0: 32
    dw1: 32
    sqhd: 16
    sqid: 16
    cid: 16
    status: CqeStatus


class DsmRange(data.Struct):
    """One Dataset Management range entry, 16 bytes."""
    attributes: 32
    length: 32       # in logical blocks (not zero-based)
    slba: 64


SQE_BYTES = 64
CQE_BYTES = 16
SGL_BYTES = 16
DSM_RANGE_BYTES = 16
CAPSULE_UNIT = 16    # IOCCSZ, IORCSZ and ICDOFF are counted in 16-byte units
QPN_WIDTH = 24       # an RDMA queue pair number
PAGE_BYTES = 4096    # staging and PRP page size (the SSD's CC.MPS = 0)
PRP_LIST_ENTRIES = PAGE_BYTES // 8
#: The largest transfer one PRP list page describes: PRP1's page and one full list page.
#: The engine builds one list page per command and never chains, so this bounds max_io_size.
PRP_MAX_IO_BYTES = (1 + PRP_LIST_ENTRIES) * PAGE_BYTES


# --- engine-internal interfaces --------------------------------------------------------------

class OpBit(enum.IntEnum):
    """Bit positions of a subsystem's offload-ops mask."""
    FLUSH = 0
    WRITE = 1
    READ = 2
    WRITE_ZEROES = 3
    DSM = 4


QP_OPS_ALL = 0b11111


class Action(enum.Enum, shape=2):
    """What the engine does with a parsed capsule."""
    SERVE = 0        # served in hardware (namespace checks still follow)
    RESPOND = 1      # answered by the engine with the error status carried alongside
    SOFTWARE = 2     # handed to software, whole
    QP_ERROR = 3     # its QP goes to error; nothing is executed


class Reason(enum.Enum, shape=4):
    """Why a capsule goes to software or puts its QP in error (replay's short words)."""
    NONE = 0
    NOT_OFFLOADED = 1    # the QP is not enabled for offload
    RUNT = 2             # shorter than an SQE
    OVERSIZE = 3         # longer than the QP's IOCCSZ (an RC receive-length error)
    FABRICS = 4          # opcode 0x7F
    FUSED = 5            # FUSE != 0
    OPCODE = 6           # an opcode the engine does not serve
    OP_DISABLED = 7      # served opcode, not in the subsystem's (or namespace's) ops mask
    UNKNOWN_NSID = 8     # namespace not in the table (lookup stage)
    QP_IN_ERROR = 9      # the QP was already in error: the capsule is discarded
    RDMA_ERROR = 10      # an RDMA READ/WRITE of the command failed


class ReadMode(enum.Enum, shape=2):
    """What the parser's data stream carries for one stored capsule."""
    DROP = 0     # nothing
    PASS = 1     # every stored beat unchanged (software hand-off)
    CUT = 2      # the in-capsule data, realigned to byte 0


class QpCapsuleAttrs(data.Struct):
    """Per-QP attributes the capsule parser needs (from the QP and subsystem tables)."""
    offload: 1
    offload_only: 1
    ops: 5           # offload-ops mask, bit positions from OpBit
    ioccsz: 16       # 16-byte units, SQE included
    icdoff: 16       # 16-byte units after the SQE


class ParsedCommand(data.Struct):
    """One per accepted capsule, out of the capsule parser, in capsule order."""
    qpn: QPN_WIDTH
    action: Action
    reason: Reason
    status: CqeStatus        # for RESPOND (p = 0)
    has_data: 1              # a packet follows on the parser's data stream
    opcode: 8
    fuse: 2
    psdt: 2
    cid: 16
    nsid: 32
    sgl_keyed: 1             # keyed data block (RDMA); 0: in-capsule data block
    sgl_invalidate: 1        # keyed subtype 0xF: respond with SEND-with-invalidate
    sgl_address: 64          # remote address (keyed) or in-capsule offset
    sgl_length: 32
    sgl_key: 32
    cdw: CmdDwords
    capsule_len: 16          # bytes received in this capsule (saturating)
    data_len: 16             # bytes of the packet on the data stream (0 when has_data = 0)


# --- control-plane tables (moved through the CSR ARG / RESULT windows) ------------------------

class Table(enum.Enum, shape=8):
    """``CMD.tbl`` values: the tables software reaches through the CSR block."""
    SUBSYSTEM = 0
    QP = 1
    BACKEND_QUEUE = 2
    NS_INDEX = 3
    NAMESPACE = 4
    NS_COUNTERS = 5
    SUBSYSTEM_COUNTERS = 6


class CmdOp(enum.Enum, shape=8):
    """``CMD.op`` values."""
    WRITE = 1
    READ = 2
    READ_CLEAR = 3


class CmdError(enum.Enum, shape=8):
    """``CMD_STATUS.error`` values."""
    NONE = 0
    BAD_OP = 1
    BAD_TABLE = 2
    BAD_INDEX = 3
    READ_ONLY = 4


class EventType(enum.Enum, shape=8):
    """``EVENT_HEAD.kind`` values."""
    NVME_TIMEOUT = 1          # object: backend queue index
    NVME_PCI_ERR = 2          # object: backend queue index
    UNSUPPORTED_NVMF_OP = 3   # object: QPN
    QP_FATAL = 4              # object: QPN


class SubsystemEntry(data.Struct):
    """A subsystem (an SRQ with NVMe-oF attributes), index 0 .. subsystems-1."""
    valid: 1
    ops: 5               # offload-ops mask, OpBit positions
    reserved0: 2
    max_namespaces: 16
    ioccsz: 16           # 16-byte units
    icdoff: 16           # 16-byte units
    queue_depth: 16      # front-end queue depth
    max_io_size: 32      # bytes
    staging_addr: 64     # staging buffer {addr, len}, bus address
    staging_len: 32


class QpEntry(data.Struct):
    """A QP's offload state, index = QPN. ``attrs`` is what the capsule parser reads."""
    attrs: QpCapsuleAttrs    # offload, offload_only, ops, ioccsz, icdoff (from the subsystem)
    subsystem: 8
    sqsize: 16               # front-end SQ entries
    sqid: 16


class BackendQueueEntry(data.Struct):
    """A backend NVMe I/O queue pair (one ``create_nvme_ctrl``), index 0 .. backend_queues-1."""
    valid: 1
    polling: 1               # 1: no MSI-X, the engine polls the CQ
    reserved0: 6
    subsystem: 8
    sq_entries: 16
    cq_entries: 16
    sq_addr: 64              # bus addresses of the rings
    cq_addr: 64
    sq_db_addr: 64           # SQ-tail / CQ-head doorbell bus addresses
    cq_db_addr: 64
    sq_tail_init: 16         # initial doorbell values
    cq_head_init: 16
    cmd_timeout: 32          # clock cycles; 0 = no timeout
    msix_data: 32            # MSI-X message data value that identifies this queue


class NsIndexEntry(data.Struct):
    """(subsystem, fe_nsid) -> namespace slot; index = subsystem * srq_namespaces + fe_nsid - 1."""
    valid: 1
    slot: 15


class NamespaceEntry(data.Struct):
    """A mapped namespace, index = slot 0 .. namespaces-1.

    ``subsystem`` and ``fe_nsid`` tag the entry: a lookup returns it only when
    both match, so a stale index entry can never reach another namespace.
    """
    valid: 1
    ready: 1                 # 0 with valid = 1: being unmapped, answers Namespace Not Ready
    ops: 5                   # enabled ops, OpBit positions
    lba_shift: 5             # lba_data_size = 1 << lba_shift
    reserved0: 4
    subsystem: 8
    reserved1: 8
    fe_nsid: 32
    backend_nsid: 32
    nsze: 64                 # namespace size in blocks
    queues: 32               # bitmap of backend queue indices that serve it


class NsCounters(data.Struct):
    """Per-namespace counters (saturating), index = slot."""
    read_cmds: 48
    write_cmds: 48
    read_blocks: 48
    write_blocks: 48
    icd_writes: 48
    flushes: 48
    write_zeroes: 48
    dsm: 48
    errors: 48
    backend_errors: 48


class SubsystemCounters(data.Struct):
    """Per-subsystem counters (saturating), index = subsystem."""
    unknown_ns: 48


class Event(data.Struct):
    """An event queue entry (the EVENT_HEAD register)."""
    kind: EventType
    object: 24


class NsLookupStatus(enum.Enum, shape=2):
    """Outcome of a namespace lookup."""
    NOT_FOUND = 0
    HIT = 1
    NOT_READY = 2     # mapped, being unmapped: Namespace Not Ready


class NsLookupRequest(data.Struct):
    """A namespace lookup: which subsystem's QP asks for which front-end NSID."""
    subsystem: 8
    fe_nsid: 32


class NsLookupResponse(data.Struct):
    """The answer to a ``NsLookupRequest``, in request order."""
    status: NsLookupStatus
    slot: 15
    entry: NamespaceEntry


class EngineResponse(data.Struct):
    """A response capsule leaving the engine, with what the transport needs to send it."""
    cqe: Cqe
    qpn: QPN_WIDTH
    invalidate: 1            # send with invalidate of ``rkey`` (keyed SGL subtype 0xF)
    rkey: 32


class ExcSideband(data.Struct):
    """``tuser`` of a capsule handed to software, and of a QP error report."""
    qpn: QPN_WIDTH
    reason: Reason


class BackendCommand(data.Struct):
    """A command the front classified as served, for the execution back end."""
    qpn: QPN_WIDTH
    cid: 16
    sqhd: 16
    sqid: 16
    opcode: 8
    subsystem: 8
    slot: 15                 # namespace table slot
    lba_shift: 5
    backend_nsid: 32
    queues: 32               # backend queues serving the namespace
    cdw: CmdDwords
    sgl_keyed: 1
    sgl_invalidate: 1
    sgl_address: 64
    sgl_length: 32
    sgl_key: 32
    nbytes: 32               # data bytes the command moves (0 for Flush / Write Zeroes)
    icd: 1                   # the data follows in the capsule (on the back-end data stream)
    epoch: 1                 # the command fence's epoch at its lookup (FENCE register)
    nsze: 64                 # namespace size in blocks (DSM ranges are checked against it)


class SqRequest(data.Struct):
    """An SQE for the SQ writer."""
    queue: 8                 # backend queue index
    sqe: Sqe


class SqDone(data.Struct):
    """The SQ writer's report for one SQE (after its doorbell write)."""
    queue: 8
    ok: 1


class CqCompletion(data.Struct):
    """A new CQE the CQ handler read from a backend CQ."""
    queue: 8
    cqe: Cqe


class RdmaOp(enum.Enum, shape=1):
    READ = 0                 # from the initiator's memory into staging
    WRITE = 1                # from staging to the initiator's memory


class RdmaCommand(data.Struct):
    """A descriptor for the RDMA transport (``m_axis_rdma_cmd``)."""
    op: RdmaOp
    qpn: QPN_WIDTH
    addr: 64
    rkey: 32
    length: 32
    tag: 16


class RdmaStatus(data.Struct):
    """The transport's completion of one descriptor (``s_axis_rdma_sts``); status 0 = success."""
    tag: 16
    status: 8


def StagingWrite(data_width):
    """An internal write of one beat into staging memory (byte offset, beat-aligned)."""
    return data.StructLayout({"offset": 32, "data": data_width, "keep": data_width // 8})


class StagingRead(data.Struct):
    """An internal read request: ``beats`` beats from byte offset ``offset`` (beat-aligned).

    ``beats`` covers the largest transfer (``max_io_size`` up to 16 MiB, 2**21 beats
    of 64 bits)."""
    offset: 32
    beats: 22


def StreamBeat(data_width):
    """A packet beat: ``data`` (little-endian bytes), ``keep`` (one bit a byte), ``last``."""
    return data.StructLayout({
        "data": data_width,
        "keep": data_width // 8,
        "last": 1,
    })


# --- plain-Python encoders / decoders --------------------------------------------------------

def layout_bytes(layout):
    """Size of a layout in bytes, rounded up (a stream carrying it pads to whole bytes)."""
    return (data.Layout.cast(layout).size + 7) // 8


def _check_fields(layout, value, path):
    """Raise ValueError naming the field when ``value`` does not fit ``layout``."""
    if isinstance(layout, data.ArrayLayout):
        if not isinstance(value, (list, tuple)) or len(value) != layout.length:
            raise ValueError(f"{path}: expected {layout.length} elements, got {value!r}")
        for i, element in enumerate(value):
            _check_fields(data.Layout.cast(layout.elem_shape) if _is_layout(layout.elem_shape)
                          else layout.elem_shape, element, f"{path}[{i}]")
        return
    if isinstance(layout, data.Layout):
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a dict of fields, got {value!r}")
        names = {name for name, _ in layout}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)}")
        if isinstance(layout, data.UnionLayout) and len(value) > 1:
            raise ValueError(f"{path}: a union takes at most one view, got {sorted(value)}")
        for name, field_value in value.items():
            shape = layout[name].shape
            sub = data.Layout.cast(shape) if _is_layout(shape) else shape
            _check_fields(sub, field_value, f"{path}.{name}" if path else name)
        return
    if isinstance(layout, type) and issubclass(layout, enum.Enum):
        if isinstance(value, layout):
            return
        if value not in {member.value for member in layout}:
            raise ValueError(f"{path}: {value!r} is not a valid {layout.__name__}")
        return
    width = data.Layout.cast(data.StructLayout({"x": layout})).size
    if not isinstance(value, int) or isinstance(value, bool) and width != 1:
        raise ValueError(f"{path}: expected an integer, got {value!r}")
    if not 0 <= value < (1 << width):
        raise ValueError(f"{path}: {value!r} does not fit in {width} bits")


def _is_layout(shape):
    return isinstance(shape, data.Layout) or (
        isinstance(shape, type) and issubclass(shape, (data.Struct, data.Union)))


def encode(layout, fields=None, **kwargs):
    """Encode ``fields`` (a nested dict; unnamed fields are zero) into little-endian bytes.

    Raises ValueError, naming the field, for an unknown field, a value that
    does not fit its field, or a value that is not a member of its enum.
    """
    init = dict(fields or {})
    init.update(kwargs)
    _check_fields(data.Layout.cast(layout), init, "")
    bits = data.Layout.cast(layout).const(init).as_bits()
    return bits.to_bytes(layout_bytes(layout), "little")


def _to_python(value):
    if isinstance(value, data.Const):
        layout = value.shape()
        if isinstance(layout, data.ArrayLayout):
            return [_to_python(value[i]) for i in range(layout.length)]
        return {name: _to_python(value[name]) for name, _ in layout}
    if isinstance(value, enum.Enum):
        return value
    return int(value)


def decode(layout, raw):
    """Decode bytes (or an int bit pattern) into a nested dict of ints and enum members."""
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) != layout_bytes(layout):
            raise ValueError(
                f"{len(raw)} bytes given to decode a {layout_bytes(layout)}-byte layout")
        raw = int.from_bytes(raw, "little")
    return _to_python(data.Const(data.Layout.cast(layout), raw))


def icd_start(icdoff):
    """Byte offset in a capsule where in-capsule data starts, for ICDOFF in 16-byte units."""
    return SQE_BYTES + icdoff * CAPSULE_UNIT


def build_capsule(sqe, in_capsule=b"", icdoff=0):
    """Frame a command capsule: the 64-byte SQE, ICDOFF*16 pad bytes, then in-capsule data."""
    if len(sqe) != SQE_BYTES:
        raise ValueError(f"an SQE is {SQE_BYTES} bytes, got {len(sqe)}")
    pad = bytes(icdoff * CAPSULE_UNIT) if in_capsule else b""
    return bytes(sqe) + pad + bytes(in_capsule)
