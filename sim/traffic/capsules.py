"""Command capsules for tests and demos: SQE builders and a seeded random generator.

Every byte comes from the layouts of :mod:`rtl.formats` (``encode(Sqe, ...)``,
``encode(DsmRange, ...)``, ``build_capsule``). :class:`CapsuleGen` draws
capsules of named kinds, valid and malformed, for a QP's ``QpCapsuleAttrs``;
the kind is only a label saying what was built: the reference model
(:mod:`sim.model.parser`) decides the outcome.
"""

import random

from amaranth.lib import data

from rtl.formats import (
    CAPSULE_UNIT,
    DSM_RANGE_BYTES,
    QP_OPS_ALL,
    SQE_BYTES,
    DsmRange,
    FabricsType,
    OpBit,
    Opcode,
    QpCapsuleAttrs,
    SglSubtype,
    SglType,
    Sqe,
    build_capsule,
    encode,
    icd_start,
)
from rtl.params import EngineParams

__all__ = [
    "make_sqe", "make_fabrics_sqe", "keyed_sgl", "icd_sgl", "sgl_descriptor", "prp_dptr",
    "dsm_ranges", "VALID_KINDS", "MALFORMED_KINDS", "KINDS", "DEFAULT_WEIGHTS", "CapsuleGen",
]

_KEYED_LENGTH_MAX = (1 << 24) - 1
_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1


def _check_uint(name, value, width):
    if not isinstance(value, int) or not 0 <= value < 1 << width:
        raise ValueError(f"{name} must be an integer in 0..{(1 << width) - 1}, not {value!r}")
    return int(value)


def _opcode_value(opcode):
    if isinstance(opcode, Opcode):
        return opcode.value
    return _check_uint("opcode", opcode, 8)


# --- data pointer builders (the ``dptr`` member of an Sqe) -------------------------------------

def sgl_descriptor(sgl_type, subtype, address=0, length=0, key=0):
    """Any SGL descriptor in the keyed reading (24-bit length, key), by raw type and subtype.

    For descriptors the engine does not serve; :func:`keyed_sgl` and :func:`icd_sgl`
    build the served ones.
    """
    return {"keyed": {
        "address": _check_uint("address", address, 64),
        "length": _check_uint("length", length, 24),
        "key": _check_uint("key", key, 32),
        "subtype": _check_uint("subtype", int(getattr(subtype, "value", subtype)), 4),
        "type": _check_uint("type", int(getattr(sgl_type, "value", sgl_type)), 4),
    }}


def keyed_sgl(addr, length, key, invalidate=False):
    """Keyed data block: ``length`` bytes (24 bits) of host memory at ``addr`` under ``key``."""
    subtype = SglSubtype.INVALIDATE if invalidate else SglSubtype.ADDRESS
    return sgl_descriptor(SglType.KEYED_DATA_BLOCK, subtype, addr, length, key)


def icd_sgl(offset, length):
    """In-capsule data block: ``length`` bytes (32 bits) at ``offset`` in the capsule data."""
    return {"sgl": {
        "address": _check_uint("offset", offset, 64),
        "length": _check_uint("length", length, 32),
        "subtype": SglSubtype.OFFSET.value,
        "type": SglType.DATA_BLOCK.value,
    }}


def prp_dptr(prp1, prp2=0):
    """DPTR as two PRP entries (what PSDT = 0 means)."""
    return {"prp": {"prp1": _check_uint("prp1", prp1, 64), "prp2": _check_uint("prp2", prp2, 64)}}


def dsm_ranges(ranges):
    """Dataset Management data: ``ranges`` is an iterable of (slba, length, attributes)."""
    return b"".join(
        encode(DsmRange, {"slba": _check_uint("slba", slba, 64),
                          "length": _check_uint("length", length, 32),
                          "attributes": _check_uint("attributes", attributes, 32)})
        for slba, length, attributes in ranges)


# --- SQE builders ------------------------------------------------------------------------------

def make_sqe(opcode, cid, nsid, psdt=1, fuse=0, sgl=None, slba=0, nlb=0, fua=0, lr=0, nr=0,
             ad=0, dsm_hints=0, cdw=None, mptr=0):
    """A 64-byte SQE.

    ``sgl`` is a ``dptr`` dict (:func:`keyed_sgl`, :func:`icd_sgl`, :func:`prp_dptr`,
    :func:`sgl_descriptor`); None gives the null keyed SGL (address, length and key 0)
    that hosts send with Flush and Write Zeroes. CDW10-15 come from ``nr``/``ad`` for
    Dataset Management and from ``slba``/``nlb`` (zero-based)/``fua``/``lr``/``dsm_hints``
    for every other opcode, or from ``cdw`` (six raw dwords), which excludes them.
    """
    opcode = _opcode_value(opcode)
    if sgl is None:
        sgl = keyed_sgl(0, 0, 0)
    command_args = {"slba": slba, "nlb": nlb, "fua": fua, "lr": lr, "nr": nr, "ad": ad,
                    "dsm_hints": dsm_hints}
    if cdw is not None:
        given = sorted(name for name, value in command_args.items() if value)
        if given:
            raise ValueError(f"cdw={cdw!r} excludes {', '.join(given)}")
        if len(cdw) != 6:
            raise ValueError(f"cdw must be six dwords (CDW10-15), not {cdw!r}")
        dwords = {"raw": [_check_uint(f"cdw[{i}]", v, 32) for i, v in enumerate(cdw)]}
    elif opcode == Opcode.DSM.value:
        dwords = {"dsm": {"nr": _check_uint("nr", nr, 8), "ad": _check_uint("ad", ad, 1)}}
    else:
        dwords = {"rw": {
            "slba": _check_uint("slba", slba, 64),
            "nlb": _check_uint("nlb", nlb, 16),
            "fua": _check_uint("fua", fua, 1),
            "lr": _check_uint("lr", lr, 1),
            "dsm": _check_uint("dsm_hints", dsm_hints, 32),
        }}
    return encode(Sqe, {
        "opcode": opcode,
        "fuse": _check_uint("fuse", fuse, 2),
        "psdt": _check_uint("psdt", psdt, 2),
        "cid": _check_uint("cid", cid, 16),
        "nsid": _check_uint("nsid", nsid, 32),
        "mptr": _check_uint("mptr", mptr, 64),
        "dptr": sgl,
        "cdw": dwords,
    })


def make_fabrics_sqe(fctype, cid, sgl=None):
    """A Fabrics command (opcode 0x7F); ``fctype`` sits where the NSID's low byte is."""
    fctype = int(getattr(fctype, "value", fctype))
    return make_sqe(Opcode.FABRICS, cid, _check_uint("fctype", fctype, 8), sgl=sgl)


# --- kinds --------------------------------------------------------------------------------------

VALID_KINDS = (
    "read",            # keyed SGL, (NLB+1) x block size
    "write",           # keyed SGL; sometimes trailing bytes after the SQE (discarded)
    "flush",           # null keyed SGL
    "write_zeroes",    # null keyed SGL
    "dsm",             # keyed SGL, (NR+1) x 16 bytes
    "write_icd",       # in-capsule data at a random offset, random length
    "dsm_icd",         # in-capsule range entries
)
MALFORMED_KINDS = (
    "oversize",                 # rule 1: longer than the QP's limit
    "runt",                     # rule 2: shorter than an SQE
    "fabrics",                  # rule 4: opcode 0x7F
    "fused",                    # rule 5: FUSE != 0
    "unknown_opcode",           # rule 6: opcode not served
    "op_disabled",              # rule 7: served opcode whose ops bit is clear
    "psdt_not_sgl",             # rule 8: PSDT 0, 2 or 3
    "bad_sgl_type",             # rule 9: SGL type/subtype not served
    "icd_on_no_data",           # rule 10: in-capsule data on Read, Flush or Write Zeroes
    "icd_offset_beyond",        # rule 11: in-capsule offset beyond the data received
    "icd_length_beyond",        # rule 12: offset + length beyond the data received
    "zero_length",              # rule 13: SGL length 0 on Read, Write or DSM
    "nonzero_length_no_data",   # rule 14: SGL length != 0 on Flush or Write Zeroes
    "dsm_too_short",            # rule 15: DSM SGL shorter than its ranges
)
KINDS = VALID_KINDS + MALFORMED_KINDS

# Default mix: about seven capsules in ten are valid.
DEFAULT_WEIGHTS = {
    "read": 18, "write": 16, "flush": 4, "write_zeroes": 4, "dsm": 4,
    "write_icd": 14, "dsm_icd": 4,
    "oversize": 2, "runt": 2, "fabrics": 3, "fused": 2, "unknown_opcode": 2,
    "op_disabled": 2, "psdt_not_sgl": 2, "bad_sgl_type": 3, "icd_on_no_data": 3,
    "icd_offset_beyond": 3, "icd_length_beyond": 3, "zero_length": 3,
    "nonzero_length_no_data": 3, "dsm_too_short": 3,
}
if set(DEFAULT_WEIGHTS) != set(KINDS):
    raise AssertionError("DEFAULT_WEIGHTS must weigh every kind")

_SERVED = (Opcode.FLUSH, Opcode.WRITE, Opcode.READ, Opcode.WRITE_ZEROES, Opcode.DSM)
_SERVED_VALUES = frozenset(op.value for op in _SERVED)
_OP_BIT = {Opcode.FLUSH: OpBit.FLUSH, Opcode.WRITE: OpBit.WRITE, Opcode.READ: OpBit.READ,
           Opcode.WRITE_ZEROES: OpBit.WRITE_ZEROES, Opcode.DSM: OpBit.DSM}
_KEYED_KIND = {Opcode.READ: "read", Opcode.WRITE: "write", Opcode.FLUSH: "flush",
               Opcode.WRITE_ZEROES: "write_zeroes", Opcode.DSM: "dsm"}
# SGL (type, subtype) pairs the engine does not serve, named ones first.
_UNSERVED_SGL_FORMS = (
    (0x0, 0x0),   # data block, address (not in-capsule)
    (0x1, 0x0),   # bit bucket
    (0x2, 0x0),   # segment
    (0x3, 0x0),   # last segment
    (0x4, 0x1),   # keyed data block, offset subtype
    (0x5, 0x0),   # transport SGL data block
    (0x0, 0xF),
)
_ATTR_KEYS = tuple(name for name, _ in data.Layout.cast(QpCapsuleAttrs))


class CapsuleGen:
    """Seeded random capsules for a QP's attributes.

    Parameters
    ----------
    rng : random.Random
        The only source of randomness: the same seed gives the same capsules.
    max_capsule_bytes : int
        The engine's ``EngineParams.max_capsule_bytes``.

    A requested kind that the QP's attributes leave no room for (in-capsule data on a
    QP whose IOCCSZ allows none, ``op_disabled`` with every op enabled) is built as
    the nearest valid kind instead; the returned name always says what was built.
    """

    def __init__(self, rng, max_capsule_bytes):
        if not isinstance(rng, random.Random):
            raise ValueError(f"rng must be a random.Random, not {rng!r}")
        EngineParams(max_capsule_bytes=max_capsule_bytes)
        self.rng = rng
        self.max_capsule_bytes = max_capsule_bytes

    # --- QP attributes -------------------------------------------------------------------------

    def qp_attrs(self, **overrides):
        """Random, realistic ``QpCapsuleAttrs`` fields; keyword arguments override."""
        rng = self.rng
        offload = int(rng.random() < 0.85)
        # offload_only matters only when offloaded; set it now and then on both.
        offload_only = int(rng.random() < (0.15 if offload else 0.1))
        ops = QP_OPS_ALL if rng.random() < 0.8 else rng.randrange(QP_OPS_ALL + 1)
        max_units = self.max_capsule_bytes // CAPSULE_UNIT
        roll = rng.random()
        if roll < 0.4:
            ioccsz = max_units
        elif roll < 0.55:
            ioccsz = SQE_BYTES // CAPSULE_UNIT
        else:
            ioccsz = rng.randint(SQE_BYTES // CAPSULE_UNIT, max_units)
        icdoff = 0 if rng.random() < 0.8 else rng.randint(1, 4)
        attrs = {"offload": offload, "offload_only": offload_only, "ops": ops,
                 "ioccsz": ioccsz, "icdoff": icdoff}
        unknown = sorted(set(overrides) - set(attrs))
        if unknown:
            raise ValueError(f"unknown QpCapsuleAttrs field(s) {', '.join(unknown)}")
        attrs.update(overrides)
        return attrs

    # --- capsules ------------------------------------------------------------------------------

    def capsule(self, attrs, kind=None):
        """One capsule for a QP with ``attrs``: ``(kind, bytes)``.

        ``kind`` is one of :data:`KINDS`, or None for a draw from :data:`DEFAULT_WEIGHTS`.
        """
        missing = [key for key in _ATTR_KEYS if key not in attrs]
        if missing:
            raise ValueError(f"attrs lacks key(s) {', '.join(missing)}")
        if kind is None:
            kind = self.rng.choices(KINDS, weights=[DEFAULT_WEIGHTS[k] for k in KINDS])[0]
        if kind not in KINDS:
            raise ValueError(f"unknown capsule kind {kind!r}; known: {', '.join(KINDS)}")
        return getattr(self, "_" + kind)(_Qp(attrs, self.max_capsule_bytes))

    # --- random field values -------------------------------------------------------------------

    def _cid(self):
        return self.rng.randrange(1 << 16)

    def _nsid(self):
        return self.rng.randint(1, 8) if self.rng.random() < 0.9 else self.rng.randrange(1 << 32)

    def _address(self):
        if self.rng.random() < 0.3:
            return self.rng.randrange(1 << 64)
        return self.rng.randrange(1 << 48) & ~0xFFF

    def _key(self):
        return self.rng.randrange(1 << 32)

    def _bytes(self, n):
        return self.rng.randbytes(n)

    def _keyed(self, length):
        return keyed_sgl(self._address(), length, self._key(),
                         invalidate=self.rng.random() < 0.2)

    def _nr(self, most=256):
        """Ranges minus one: mostly a handful, up to ``most`` ranges."""
        if self.rng.random() < 0.8:
            return self.rng.randint(1, min(most, 4)) - 1
        return self.rng.randint(1, most) - 1

    def _ranges(self, count):
        return dsm_ranges((self.rng.randrange(1 << 40), self.rng.randint(1, 1 << 16),
                           self.rng.randrange(1 << 32)) for _ in range(count))

    def _rw(self, opcode, length=None, sgl=None, **kwargs):
        """A Read/Write/Write Zeroes SQE; ``length`` picks NLB for that many bytes if it can."""
        rng = self.rng
        block = rng.choice((512, 4096))
        nlb = rng.randrange(64) if rng.random() < 0.9 else rng.randrange(256)
        if sgl is None:
            sgl = self._keyed((nlb + 1) * block)
        elif length is not None and length % 512 == 0 and length:
            nlb = length // 512 - 1
        return make_sqe(opcode, self._cid(), self._nsid(), sgl=sgl,
                        slba=rng.randrange(1 << 34), nlb=nlb,
                        fua=int(rng.random() < 0.1), lr=int(rng.random() < 0.05), **kwargs)

    def _icd_length(self, room):
        """A length in 1..room, block-aligned when the room allows it, else any."""
        if room >= 512 and self.rng.random() < 0.6:
            return 512 * self.rng.randint(1, room // 512)
        return self.rng.randint(1, room)

    def _offset(self, room):
        """An in-capsule offset in 0..room: mostly 0, sometimes odd."""
        if room <= 0 or self.rng.random() < 0.6:
            return 0
        return self.rng.randint(1, min(room, 257))

    # --- valid kinds ---------------------------------------------------------------------------

    def _read(self, qp):
        return "read", self._rw(Opcode.READ)

    def _write(self, qp):
        sqe = self._rw(Opcode.WRITE)
        trailing = qp.limit - SQE_BYTES
        if trailing > 0 and self.rng.random() < 0.15:
            return "write", sqe + self._bytes(self.rng.randint(1, min(trailing, 96)))
        return "write", sqe

    def _flush(self, qp):
        nsid = 0xFFFFFFFF if self.rng.random() < 0.2 else self._nsid()
        return "flush", make_sqe(Opcode.FLUSH, self._cid(), nsid)

    def _write_zeroes(self, qp):
        return "write_zeroes", self._rw(Opcode.WRITE_ZEROES, sgl=keyed_sgl(0, 0, 0))

    def _dsm(self, qp):
        nr = self._nr()
        sqe = make_sqe(Opcode.DSM, self._cid(), self._nsid(), nr=nr, ad=1,
                       sgl=self._keyed((nr + 1) * DSM_RANGE_BYTES))
        return "dsm", sqe

    def _write_icd(self, qp):
        if qp.room < 1:
            return self._write(qp)
        offset = self._offset(qp.room - 1)
        length = self._icd_length(qp.room - offset)
        tail = self.rng.randint(0, min(qp.room - offset - length, 32))
        sqe = self._rw(Opcode.WRITE, length=length, sgl=icd_sgl(offset, length))
        return "write_icd", qp.frame(sqe, self._bytes(offset + length + tail))

    def _dsm_icd(self, qp):
        if qp.room < DSM_RANGE_BYTES:
            return self._dsm(qp)
        offset = self._offset(qp.room - DSM_RANGE_BYTES)
        nr = self._nr(most=min(256, (qp.room - offset) // DSM_RANGE_BYTES))
        length = (nr + 1) * DSM_RANGE_BYTES
        sqe = make_sqe(Opcode.DSM, self._cid(), self._nsid(), nr=nr, ad=1,
                       sgl=icd_sgl(offset, length))
        return "dsm_icd", qp.frame(sqe, self._bytes(offset) + self._ranges(nr + 1))

    # --- malformed kinds -----------------------------------------------------------------------

    def _oversize(self, qp):
        _, base = self._write(qp)
        extra = self.rng.randint(1, 16) if self.rng.random() < 0.5 else self.rng.randint(1, 256)
        size = qp.limit + extra
        body = (base + self._bytes(max(0, size - len(base))))[:size]
        return "oversize", body

    def _runt(self, qp):
        size = self.rng.randint(1, SQE_BYTES - 1)
        if self.rng.random() < 0.5:
            return "runt", self._rw(self.rng.choice((Opcode.READ, Opcode.WRITE)))[:size]
        return "runt", self._bytes(size)

    def _fabrics(self, qp):
        fctype = self.rng.choice(list(FabricsType))
        connect_data = 1024
        if fctype is FabricsType.CONNECT and qp.room >= connect_data:
            sqe = make_fabrics_sqe(fctype, self._cid(), sgl=icd_sgl(0, connect_data))
            return "fabrics", qp.frame(sqe, self._bytes(connect_data))
        return "fabrics", make_fabrics_sqe(fctype, self._cid())

    def _fused(self, qp):
        opcode = self.rng.choice((Opcode.READ, Opcode.WRITE))
        return "fused", self._rw(opcode, fuse=self.rng.randint(1, 3))

    def _unknown_opcode(self, qp):
        opcode = self.rng.choice(
            [op for op in range(256) if op not in _SERVED_VALUES and op != Opcode.FABRICS.value])
        return "unknown_opcode", self._rw(opcode)

    def _op_disabled(self, qp):
        disabled = [op for op in _SERVED if not qp.attrs["ops"] >> _OP_BIT[op] & 1]
        if not disabled:
            return getattr(self, "_" + self.rng.choice(VALID_KINDS[:5]))(qp)
        _, sqe = getattr(self, "_" + _KEYED_KIND[self.rng.choice(disabled)])(qp)
        return "op_disabled", sqe

    def _psdt_not_sgl(self, qp):
        psdt = self.rng.choice((0, 2, 3))
        sgl = prp_dptr(self._address(), self._address()) if psdt == 0 else None
        opcode = self.rng.choice((Opcode.READ, Opcode.WRITE))
        return "psdt_not_sgl", self._rw(opcode, sgl=sgl, psdt=psdt)

    def _bad_sgl_type(self, qp):
        if self.rng.random() < 0.7:
            sgl_type, subtype = self.rng.choice(_UNSERVED_SGL_FORMS)
        else:
            served = {(0x4, 0x0), (0x4, 0xF), (0x0, 0x1)}
            sgl_type, subtype = self.rng.choice(
                [(t, s) for t in range(16) for s in range(16) if (t, s) not in served])
        sgl = sgl_descriptor(sgl_type, subtype, self._address(),
                             self.rng.randint(1, 1 << 16), self._key())
        opcode = self.rng.choice((Opcode.READ, Opcode.WRITE))
        return "bad_sgl_type", self._rw(opcode, sgl=sgl)

    def _icd_on_no_data(self, qp):
        opcode = self.rng.choice((Opcode.READ, Opcode.FLUSH, Opcode.WRITE_ZEROES))
        forms = ["empty_icd_sgl"]
        if qp.room >= 1:
            forms.append("icd_sgl")
        if qp.limit > SQE_BYTES:
            forms.append("trailing")
        form = self.rng.choice(forms)
        if form == "trailing":
            sqe = self._rw(opcode, sgl=keyed_sgl(0, 0, 0) if opcode != Opcode.READ else None)
            extra = self.rng.randint(1, min(qp.limit - SQE_BYTES, 64))
            return "icd_on_no_data", sqe + self._bytes(extra)
        if form == "icd_sgl":
            length = self._icd_length(qp.room)
            sqe = self._rw(opcode, length=length, sgl=icd_sgl(0, length))
            return "icd_on_no_data", qp.frame(sqe, self._bytes(length))
        return "icd_on_no_data", self._rw(opcode, sgl=icd_sgl(0, 0))

    def _received(self, qp):
        """Bytes of in-capsule data to send: 0 up to the room."""
        return self.rng.randint(0, max(0, min(qp.room, 300)))

    def _icd_opcode_sqe(self, offset, length):
        if self.rng.random() < 0.7:
            return self._rw(Opcode.WRITE, length=length, sgl=icd_sgl(offset, length))
        nr = max(0, min(255, length // DSM_RANGE_BYTES - 1))
        return make_sqe(Opcode.DSM, self._cid(), self._nsid(), nr=nr,
                        sgl=icd_sgl(offset, length))

    def _icd_offset_beyond(self, qp):
        received = self._received(qp)
        if self.rng.random() < 0.1:
            offset = self.rng.randint(received + 1, _U64_MAX)
        else:
            offset = received + self.rng.randint(1, 64)
        length = self.rng.randint(1, 4096)
        sqe = self._icd_opcode_sqe(offset, length)
        return "icd_offset_beyond", qp.frame(sqe, self._bytes(received))

    def _icd_length_beyond(self, qp):
        received = self._received(qp)
        offset = self.rng.randint(0, received)
        if self.rng.random() < 0.1:
            length = self.rng.randint(received - offset + 1, _U32_MAX)
        else:
            length = received - offset + self.rng.randint(1, 64)
        sqe = self._icd_opcode_sqe(offset, length)
        return "icd_length_beyond", qp.frame(sqe, self._bytes(received))

    def _zero_length(self, qp):
        opcode = self.rng.choice((Opcode.READ, Opcode.WRITE, Opcode.DSM))
        if opcode != Opcode.READ and self.rng.random() < 0.4:
            received = self._received(qp)
            offset = self.rng.randint(0, received)
            sgl = icd_sgl(offset, 0)
            data_bytes = self._bytes(received)
        else:
            sgl = keyed_sgl(self._address(), 0, self._key())
            data_bytes = b""
        if opcode == Opcode.DSM:
            sqe = make_sqe(Opcode.DSM, self._cid(), self._nsid(), nr=self._nr(), sgl=sgl)
        else:
            sqe = self._rw(opcode, sgl=sgl)
        return "zero_length", qp.frame(sqe, data_bytes)

    def _nonzero_length_no_data(self, qp):
        opcode = self.rng.choice((Opcode.FLUSH, Opcode.WRITE_ZEROES))
        sgl = keyed_sgl(self._address(), self.rng.randint(1, _KEYED_LENGTH_MAX), self._key())
        return "nonzero_length_no_data", self._rw(opcode, sgl=sgl)

    def _dsm_too_short(self, qp):
        nr = self._nr()
        need = (nr + 1) * DSM_RANGE_BYTES
        length = self.rng.randint(1, need - 1)
        if qp.room >= length and self.rng.random() < 0.4:
            sqe = make_sqe(Opcode.DSM, self._cid(), self._nsid(), nr=nr, sgl=icd_sgl(0, length))
            return "dsm_too_short", qp.frame(sqe, self._bytes(length))
        sqe = make_sqe(Opcode.DSM, self._cid(), self._nsid(), nr=nr, sgl=self._keyed(length))
        return "dsm_too_short", sqe


class _Qp:
    """What the generator needs of a QP: its capsule limit and room for in-capsule data."""

    def __init__(self, attrs, max_capsule_bytes):
        self.attrs = attrs
        self.icdoff = attrs["icdoff"]
        self.limit = min(attrs["ioccsz"] * CAPSULE_UNIT, max_capsule_bytes)
        self.room = self.limit - icd_start(self.icdoff)

    def frame(self, sqe, in_capsule):
        return build_capsule(sqe, in_capsule, self.icdoff)
