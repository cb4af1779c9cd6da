"""Reference model of the engine's front end: one capsule in, its outcome out.

Written from ``docs/engine.md`` sections 1 and 2 (and ``docs/parser.md``
through :func:`sim.model.parser.parse_capsule`); the configuration is read from
a :class:`sim.model.csr.CsrModel`, as the hardware reads its tables. Served
commands come out as the ``BackendCommand`` the back end receives.
"""

import dataclasses

from amaranth.lib import data

from rtl.formats import (
    QP_OPS_ALL,
    Action,
    EventType,
    NsCounters,
    NvmeStatus,
    OpBit,
    Opcode,
    Reason,
    Table,
)
from sim.model.parser import parse_capsule

__all__ = ["FrontModel", "Outcome"]

_OP_BIT = {Opcode.FLUSH.value: OpBit.FLUSH, Opcode.WRITE.value: OpBit.WRITE,
           Opcode.READ.value: OpBit.READ, Opcode.WRITE_ZEROES.value: OpBit.WRITE_ZEROES,
           Opcode.DSM.value: OpBit.DSM}
_NS_ERRORS = [name for name, _ in data.Layout.cast(NsCounters)].index("errors")


@dataclasses.dataclass
class Outcome:
    """What the front end does with one capsule.

    ``kind``: "response", "to_software", "qp_error" or "serve". ``response``
    is ``(cqe_fields, invalidate, rkey)``; ``reason`` a :class:`Reason`;
    ``backend`` the ``BackendCommand`` fields; ``data`` the software capsule
    or the in-capsule data of a served command; ``events`` ``(EventType,
    object)`` pairs; ``counts`` ``(Table, index, field, amount)`` tuples.
    """
    kind: str
    response: tuple = None
    reason: Reason = Reason.NONE
    backend: dict = None
    data: bytes = None
    events: list = dataclasses.field(default_factory=list)
    counts: list = dataclasses.field(default_factory=list)


class FrontModel:
    def __init__(self, csr):
        self.csr = csr
        self.params = csr.params
        self.sq_head = {}
        self.in_error = set()

    def qp_configured(self, qpn):
        """A QP entry was written (``qp_set_nvmf``): its SQ head and error state reset."""
        self.sq_head.pop(qpn, None)
        self.in_error.discard(qpn)

    def _status(self, entry, dnr=None):
        sct, sc, d = entry
        return {"sct": sct.value, "sc": sc.value, "dnr": d if dnr is None else dnr}

    def classify(self, capsule, qpn):
        p = self.params
        qp = self.csr.qp_entry(qpn)
        attrs = qp["attrs"]
        fields, packet = parse_capsule(capsule, qpn, attrs, p.max_capsule_bytes)
        # section 1: the SQ head advances for every capsule accepted on the QP
        if qpn < p.qp_count:
            sqsize = qp["sqsize"] or 65536
            head = (self.sq_head.get(qpn, 0) + 1) % sqsize
            self.sq_head[qpn] = head
        else:
            head = 1        # no state is kept for a QPN beyond the table
        offload_only = bool(attrs["offload"] and attrs["offload_only"])

        def response(status):
            cqe = {"sqhd": head, "sqid": qp["sqid"], "cid": fields["cid"], "status": status}
            inv = fields["sgl_invalidate"]
            return Outcome("response", response=(cqe, inv, fields["sgl_key"] if inv else 0))

        def qp_error(reason):
            self.in_error.add(qpn) if qpn < p.qp_count else None
            kind = EventType.QP_FATAL if reason == Reason.OVERSIZE else \
                EventType.UNSUPPORTED_NVMF_OP
            return Outcome("qp_error", reason=reason, events=[(kind, qpn)])

        if qpn in self.in_error:
            return Outcome("qp_error", reason=Reason.QP_IN_ERROR)
        action = fields["action"]
        if action == Action.SOFTWARE:
            return Outcome("to_software", reason=fields["reason"], data=packet)
        if action == Action.QP_ERROR:
            return qp_error(fields["reason"])
        if action == Action.RESPOND:
            return response(fields["status"])

        status, slot, ns = self.csr.ns_lookup(qp["subsystem"], fields["nsid"])
        if status == "NOT_FOUND":
            count = [(Table.SUBSYSTEM_COUNTERS, qp["subsystem"], 0, 1)]
            if offload_only:
                out = response(self._status(NvmeStatus.INVALID_NS))
            else:
                out = Outcome("to_software", reason=Reason.UNKNOWN_NSID, data=capsule)
            out.counts = count
            return out
        errors = [(Table.NS_COUNTERS, slot, _NS_ERRORS, 1)]
        if status == "NOT_READY":
            out = response(self._status(NvmeStatus.NS_NOT_READY))
            out.counts = errors
            return out
        op = fields["opcode"]
        if not ns["ops"] >> _OP_BIT[op] & 1:
            if offload_only:
                return qp_error(Reason.OP_DISABLED)
            return Outcome("to_software", reason=Reason.OP_DISABLED, data=capsule)
        rw = fields["cdw"]["raw"]
        slba = rw[0] | rw[1] << 32
        nlb = (rw[2] & 0xFFFF) + 1
        nbytes = nlb << ns["lba_shift"]
        subsystem = self.csr.decoded(Table.SUBSYSTEM, qp["subsystem"])
        check = None
        if op in (Opcode.READ.value, Opcode.WRITE.value, Opcode.WRITE_ZEROES.value) \
                and slba + nlb > ns["nsze"]:
            check = NvmeStatus.LBA_OUT_OF_RANGE
        elif op in (Opcode.READ.value, Opcode.WRITE.value) and nbytes > subsystem["max_io_size"]:
            check = NvmeStatus.INVALID_FIELD
        elif op in (Opcode.READ.value, Opcode.WRITE.value) and fields["sgl_length"] != nbytes:
            check = NvmeStatus.DATA_SGL_LENGTH_INVALID
        if check is not None:
            out = response(self._status(check))
            out.counts = errors
            return out
        moves = op in (Opcode.READ.value, Opcode.WRITE.value, Opcode.DSM.value)
        icd = packet is not None
        backend = {
            "qpn": qpn, "cid": fields["cid"], "sqhd": head, "sqid": qp["sqid"], "opcode": op,
            "subsystem": qp["subsystem"], "slot": slot, "lba_shift": ns["lba_shift"],
            "backend_nsid": ns["backend_nsid"], "queues": ns["queues"],
            "cdw": fields["cdw"], "sgl_keyed": fields["sgl_keyed"],
            "sgl_invalidate": fields["sgl_invalidate"], "sgl_address": fields["sgl_address"],
            "sgl_length": fields["sgl_length"], "sgl_key": fields["sgl_key"],
            "nbytes": fields["sgl_length"] if moves else 0, "icd": int(icd),
            "epoch": self.csr.fence_epoch, "nsze": ns["nsze"],
        }
        return Outcome("serve", backend=backend, data=packet)


assert QP_OPS_ALL == 0b11111
