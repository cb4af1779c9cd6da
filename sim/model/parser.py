"""Reference model of the capsule parser.

Written from ``docs/parser.md`` (the behavioural specification) and
``../shared/spec/nvme-facts.md`` only, never from the RTL: the testbench checks
the RTL against this model capsule by capsule. Rule numbers in the comments are
the rows of the decision tables of ``docs/parser.md``.

Every byte layout comes from :mod:`rtl.formats`; this module reads SQE fields
with ``decode(Sqe, ...)`` and states no byte offset of its own.
"""

from collections.abc import Mapping

from amaranth.lib import data

from rtl.formats import (
    CAPSULE_UNIT,
    QPN_WIDTH,
    SQE_BYTES,
    Action,
    NvmeStatus,
    OpBit,
    Opcode,
    ParsedCommand,
    QpCapsuleAttrs,
    Reason,
    SglSubtype,
    SglType,
    Sqe,
    decode,
    encode,
    icd_start,
)
from rtl.params import EngineParams

__all__ = [
    "SERVED_OPCODES", "HOST_TO_CONTROLLER_OPCODES", "DATA_MOVING_OPCODES", "NO_DATA_OPCODES",
    "SERVED_SGL_FORMS", "CAPSULE_LEN_MAX",
    "parse_capsule", "expected_descriptor_bytes",
]

# --- terms of docs/parser.md -----------------------------------------------------------------

SERVED_OPCODES = frozenset(op.value for op in (
    Opcode.FLUSH, Opcode.WRITE, Opcode.READ, Opcode.WRITE_ZEROES, Opcode.DSM))
HOST_TO_CONTROLLER_OPCODES = frozenset((Opcode.WRITE.value, Opcode.DSM.value))
DATA_MOVING_OPCODES = frozenset((Opcode.READ.value, Opcode.WRITE.value, Opcode.DSM.value))
NO_DATA_OPCODES = frozenset((Opcode.FLUSH.value, Opcode.WRITE_ZEROES.value))

# The bit of each served opcode in a QP's offload-ops mask.
_OP_BIT = {
    Opcode.FLUSH.value: OpBit.FLUSH,
    Opcode.WRITE.value: OpBit.WRITE,
    Opcode.READ.value: OpBit.READ,
    Opcode.WRITE_ZEROES.value: OpBit.WRITE_ZEROES,
    Opcode.DSM.value: OpBit.DSM,
}

_KEYED = SglType.KEYED_DATA_BLOCK.value
_DATA_BLOCK = SglType.DATA_BLOCK.value
_IN_CAPSULE_FORM = (_DATA_BLOCK, SglSubtype.OFFSET.value)
_INVALIDATE_FORM = (_KEYED, SglSubtype.INVALIDATE.value)
# (type, subtype) pairs the engine serves: keyed address, keyed invalidate, in-capsule offset.
SERVED_SGL_FORMS = frozenset(((_KEYED, SglSubtype.ADDRESS.value), _INVALIDATE_FORM,
                              _IN_CAPSULE_FORM))

CAPSULE_LEN_MAX = (1 << 16) - 1     # capsule_len saturates here
_DSM_RANGE_BYTES = 16

_ATTR_WIDTHS = {name: field.shape for name, field in data.Layout.cast(QpCapsuleAttrs)}


# --- input validation --------------------------------------------------------------------------

def _check_inputs(capsule, qpn, attrs, max_capsule_bytes):
    if not isinstance(capsule, (bytes, bytearray, memoryview)):
        raise ValueError(f"capsule must be bytes, not {type(capsule).__name__}")
    capsule = bytes(capsule)
    if not capsule:
        raise ValueError("capsule is empty: a received SEND carries at least one byte")
    if not isinstance(qpn, int) or isinstance(qpn, bool) or not 0 <= qpn < 1 << QPN_WIDTH:
        raise ValueError(f"qpn must be an integer in 0..{(1 << QPN_WIDTH) - 1}, not {qpn!r}")
    if not isinstance(attrs, Mapping):
        raise ValueError(f"attrs must be a mapping of QpCapsuleAttrs fields, not {attrs!r}")
    missing = sorted(set(_ATTR_WIDTHS) - set(attrs))
    if missing:
        raise ValueError(f"attrs lacks key(s) {', '.join(missing)}")
    unknown = sorted(set(attrs) - set(_ATTR_WIDTHS), key=str)
    if unknown:
        raise ValueError(f"attrs has unknown key(s) {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(_ATTR_WIDTHS)}")
    for name, width in _ATTR_WIDTHS.items():
        value = attrs[name]
        if not isinstance(value, int) or not 0 <= value < 1 << width:
            raise ValueError(
                f"attrs[{name!r}] must be an integer in 0..{(1 << width) - 1}, not {value!r}")
    # The same rule the elaboration parameters obey (a multiple of 16 in 64..65520).
    EngineParams(max_capsule_bytes=max_capsule_bytes)
    return capsule, {name: int(attrs[name]) for name in _ATTR_WIDTHS}


# --- SQE and SGL fields (section "What comes out") -------------------------------------------

def _sgl_form(sqe):
    """(type, subtype) of the SGL; byte 15 of the descriptor is the same in every form."""
    sgl = sqe["dptr"]["sgl"]
    return sgl["type"], sgl["subtype"]


def _sgl_length(sqe):
    """24 bits for keyed descriptors (type 4), 32 bits (the data block reading) otherwise."""
    sgl_type, _ = _sgl_form(sqe)
    if sgl_type == _KEYED:
        return sqe["dptr"]["keyed"]["length"]
    return sqe["dptr"]["sgl"]["length"]


def _sqe_fields(sqe):
    """The ParsedCommand fields copied from the SQE; all zero for a runt (``sqe`` None)."""
    if sqe is None:
        return {
            "opcode": 0, "fuse": 0, "psdt": 0, "cid": 0, "nsid": 0,
            "sgl_keyed": 0, "sgl_invalidate": 0, "sgl_address": 0, "sgl_length": 0,
            "sgl_key": 0, "cdw": {"raw": [0] * 6},
        }
    form = _sgl_form(sqe)
    keyed = form[0] == _KEYED
    return {
        "opcode": sqe["opcode"],
        "fuse": sqe["fuse"],
        "psdt": sqe["psdt"],
        "cid": sqe["cid"],
        "nsid": sqe["nsid"],
        "sgl_keyed": int(keyed),
        "sgl_invalidate": int(form == _INVALIDATE_FORM),
        "sgl_address": sqe["dptr"]["keyed"]["address"],
        "sgl_length": _sgl_length(sqe),
        "sgl_key": sqe["dptr"]["keyed"]["key"] if keyed else 0,
        "cdw": {"raw": list(sqe["cdw"]["raw"])},
    }


# --- rules 1-7: route ---------------------------------------------------------------------------

def _route(length, limit, attrs, sqe):
    """Rules 1-7 (first that applies wins): ``(action, reason)``, or None to go on to 8-16."""
    if length > limit:                                      # rule 1
        return Action.QP_ERROR, Reason.OVERSIZE
    if length < SQE_BYTES:                                  # rule 2
        reason = Reason.RUNT
    elif not attrs["offload"]:                              # rule 3
        return Action.SOFTWARE, Reason.NOT_OFFLOADED
    else:
        reason = _software_reason(attrs, sqe)               # rules 4-7
        if reason is None:
            return None
    # offload_only turns a SOFTWARE outcome of rules 2 and 4-7 into QP_ERROR, but has
    # effect only on an offloaded QP.
    if attrs["offload"] and attrs["offload_only"]:
        return Action.QP_ERROR, reason
    return Action.SOFTWARE, reason


def _software_reason(attrs, sqe):
    """Rules 4-7 on an offloaded QP: the reason the SQE goes to software, or None."""
    opcode = sqe["opcode"]
    if opcode == Opcode.FABRICS.value:                      # rule 4
        return Reason.FABRICS
    if sqe["fuse"] != 0:                                    # rule 5
        return Reason.FUSED
    if opcode not in SERVED_OPCODES:                        # rule 6
        return Reason.OPCODE
    if not attrs["ops"] >> _OP_BIT[opcode] & 1:             # rule 7
        return Reason.OP_DISABLED
    return None


# --- rules 8-16: served opcode on an offloaded QP --------------------------------------------

def _command_status(length, icd, sqe):
    """Rules 8-15: the NvmeStatus entry to answer with, or None (rule 16, SERVE)."""
    return (_check_sgl_form(sqe)
            or _check_in_capsule(length, icd, sqe)
            or _check_length(sqe))


def _check_sgl_form(sqe):
    if sqe["psdt"] != 1:                                    # rule 8
        return NvmeStatus.INVALID_FIELD
    if _sgl_form(sqe) not in SERVED_SGL_FORMS:              # rule 9
        return NvmeStatus.SGL_DESC_TYPE_INVALID
    return None


def _check_in_capsule(length, icd, sqe):
    in_capsule = _sgl_form(sqe) == _IN_CAPSULE_FORM
    if sqe["opcode"] not in HOST_TO_CONTROLLER_OPCODES and (
            length > SQE_BYTES or in_capsule):              # rule 10
        return NvmeStatus.INVALID_FIELD
    if in_capsule:
        offset = sqe["dptr"]["sgl"]["address"]
        if offset > icd:                                    # rule 11
            return NvmeStatus.SGL_OFFSET_INVALID
        if offset + _sgl_length(sqe) > icd:                 # rule 12
            return NvmeStatus.DATA_SGL_LENGTH_INVALID
    return None


def _check_length(sqe):
    opcode = sqe["opcode"]
    sgl_length = _sgl_length(sqe)
    if opcode in DATA_MOVING_OPCODES and sgl_length == 0:   # rule 13
        return NvmeStatus.DATA_SGL_LENGTH_INVALID
    if opcode in NO_DATA_OPCODES and sgl_length != 0:       # rule 14
        return NvmeStatus.DATA_SGL_LENGTH_INVALID
    if opcode == Opcode.DSM.value:                          # rule 15
        ranges = sqe["cdw"]["dsm"]["nr"] + 1
        if sgl_length < ranges * _DSM_RANGE_BYTES:
            return NvmeStatus.DATA_SGL_LENGTH_INVALID
    return None


# --- the data packet ----------------------------------------------------------------------------

def _packet(action, capsule, ds, sqe):
    """The o_data packet: in-capsule data realigned to byte 0, the whole capsule, or None."""
    if action is Action.SOFTWARE:
        return capsule
    if action is Action.SERVE and _sgl_form(sqe) == _IN_CAPSULE_FORM:
        start = ds + sqe["dptr"]["sgl"]["address"]
        return capsule[start:start + _sgl_length(sqe)]
    # SERVE with a keyed SGL: bytes after the SQE are not data and are discarded.
    return None


def _status_fields(status):
    if status is None:
        return {"sc": 0, "sct": 0, "dnr": 0}
    sct, sc, dnr = status
    return {"sc": sc.value, "sct": sct.value, "dnr": dnr}


# --- public API ---------------------------------------------------------------------------------

def parse_capsule(capsule, qpn, attrs, max_capsule_bytes):
    """Decide what the parser does with one capsule.

    Parameters
    ----------
    capsule : bytes
        The received SEND, at least one byte.
    qpn : int
        Its queue pair number (24 bits).
    attrs : dict
        The QP's ``QpCapsuleAttrs`` fields: offload, offload_only, ops, ioccsz, icdoff.
    max_capsule_bytes : int
        The engine's ``EngineParams.max_capsule_bytes``.

    Returns
    -------
    (fields, packet)
        ``fields`` gives every ``ParsedCommand`` field (``encode(ParsedCommand, fields)``
        accepts it); ``packet`` is the bytes of the ``o_data`` packet, None when
        ``has_data`` is 0.

    Raises
    ------
    ValueError
        An argument out of range, naming the bad value.
    """
    capsule, attrs = _check_inputs(capsule, qpn, attrs, max_capsule_bytes)
    length = len(capsule)
    # Terms: an offloaded QP's capsules are bounded by its IOCCSZ, any other's only by
    # what the engine can store
    if attrs["offload"]:
        limit = min(attrs["ioccsz"] * CAPSULE_UNIT, max_capsule_bytes)
    else:
        limit = max_capsule_bytes
    ds = icd_start(attrs["icdoff"])
    icd = max(0, length - ds)
    sqe = decode(Sqe, capsule[:SQE_BYTES]) if length >= SQE_BYTES else None

    status = None
    route = _route(length, limit, attrs, sqe)
    if route is not None:                                   # rules 1-7
        action, reason = route
    else:
        reason = Reason.NONE
        status = _command_status(length, icd, sqe)          # rules 8-15
        action = Action.SERVE if status is None else Action.RESPOND  # rule 16

    packet = _packet(action, capsule, ds, sqe)
    fields = {
        "qpn": qpn,
        "action": action,
        "reason": reason,
        "status": _status_fields(status),
        "has_data": int(packet is not None),
        **_sqe_fields(sqe),
        "capsule_len": min(length, CAPSULE_LEN_MAX),
        "data_len": 0 if packet is None else len(packet),
    }
    return fields, packet


def expected_descriptor_bytes(fields):
    """The ``o_cmd`` payload the parser must produce for ``fields``, as bytes."""
    return encode(ParsedCommand, fields)
