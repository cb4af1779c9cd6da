"""``TRACE.jsonl``: read and validate it into :class:`TraceItem` lines, against a
:class:`Target` (``docs/replay.md``).
"""

import dataclasses
import json
import re

from sim.model.engine import PCI_ACCESSES
from sim.replay.contract import U24, U32, U64, ReplayInputError
from sim.replay.target import _REQUIRED, _read_text

# --- TRACE -------------------------------------------------------------------------------------

CONTROL_KINDS = ("unmap", "map", "qp_set", "destroy_ctrl")
TRACE_KINDS = ("capsule", "write_mem", "wait", "dump_mem", "dump_lba", "fault") + CONTROL_KINDS
_HEX = re.compile(r"[0-9a-fA-F]*")


@dataclasses.dataclass
class TraceItem:
    """One trace line: ``kind`` (a key of :data:`TRACE_KINDS`) and its checked arguments."""
    line: int
    kind: str
    args: dict


class _TraceReader:
    def __init__(self, path, target):
        self.path = str(path)
        self.target = target
        self.line = None

    def error(self, field, problem):
        return ReplayInputError(self.path, self.line, field, problem)

    def int(self, obj, key, field, lo, hi, default=_REQUIRED):
        if key not in obj:
            if default is _REQUIRED:
                raise self.error(field, "missing (required)")
            return default
        value = obj[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(field, f"must be an integer in {lo}..{hi}, not {_show(value)}")
        if not lo <= value <= hi:
            raise self.error(field, f"{value} is out of range {lo}..{hi}")
        return value

    def hex(self, value, field, nonempty=False):
        if not isinstance(value, str):
            raise self.error(field, f"must be a string of hex digits, not {_show(value)}")
        if not _HEX.fullmatch(value):
            bad = next(c for c in value if not _HEX.fullmatch(c))
            raise self.error(field, f"not hex: {bad!r} at position {value.index(bad)}")
        if len(value) % 2:
            raise self.error(field, f"odd number of hex digits ({len(value)}): bytes take two")
        if nonempty and not value:
            raise self.error(field, "empty: a capsule has at least one byte")
        return bytes.fromhex(value)

    def choice(self, obj, key, field, choices, default=_REQUIRED):
        if key not in obj:
            if default is _REQUIRED:
                raise self.error(field, "missing (required)")
            return default
        value = obj[key]
        if value not in choices or not isinstance(value, str):
            raise self.error(field, f"must be one of {', '.join(map(json.dumps, choices))}, "
                                    f"not {_show(value)}")
        return value

    def obj(self, value, field, known):
        if not isinstance(value, dict):
            raise self.error(field, f"must be a JSON object, not {_show(value)}")
        for key in value:
            if key not in known:
                raise self.error(f"{field}.{key}",
                                 f"unknown key (known: {', '.join(known)})")
        return value

    def region(self, obj, field):
        rkey = self.int(obj, "rkey", f"{field}.rkey", 0, U32)
        region = self.target.region(rkey)
        if region is None:
            raise self.error(f"{field}.rkey", f"rkey {rkey} ({rkey:#x}) is not a [[region]] "
                                              f"of {self.target.path}")
        return region

    def ssd_ns(self, obj, field):
        name = obj.get("ssd", None)
        if "ssd" not in obj:
            raise self.error(f"{field}.ssd", "missing (required)")
        if not isinstance(name, str):
            raise self.error(f"{field}.ssd", f"must be a string, not {_show(name)}")
        ssd = self.target.ssd(name)
        if ssd is None:
            raise self.error(f"{field}.ssd", f"{name!r} names no [[ssd]] of "
                                             f"{self.target.path}")
        nsid = self.int(obj, "nsid", f"{field}.nsid", 1, 0xFFFF_FFFE)
        ns = ssd.namespace(nsid)
        if ns is None:
            raise self.error(f"{field}.nsid", f"ssd {name!r} has no namespace {nsid}")
        return ssd, ns


def _show(value):
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(Exception):
    pass


class _Pairs(list):
    """A JSON object kept as its (key, value) pairs, in order, duplicates included."""


def _duplicate_path(line):
    """The key path of the first key given twice on a JSON line (``dump_mem.rkey``)."""
    def walk(value, path):
        if isinstance(value, _Pairs):
            seen = set()
            for key, item in value:
                if key in seen:
                    return path + (key,)
                seen.add(key)
                found = walk(item, path + (key,))
                if found:
                    return found
        elif isinstance(value, list):
            for item in value:
                found = walk(item, path)
                if found:
                    return found
        return None

    found = walk(json.loads(line, object_pairs_hook=_Pairs, parse_constant=_reject_constant),
                 ())
    return ".".join(found) if found else None


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def load_trace(path, target):
    """Read and validate a TRACE.jsonl against ``target`` (:class:`ReplayInputError`)."""
    path, text = _read_text(path)
    return parse_trace(text, target, path)


def parse_trace(text, target, path="TRACE.jsonl"):
    """Validate TRACE text (see :func:`load_trace`); blank lines are skipped."""
    r = _TraceReader(path, target)
    items = []
    for number, line in enumerate(text.split("\n"), 1):
        r.line = number
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_no_duplicates,
                             parse_constant=_reject_constant)
        except _DuplicateKey as exc:
            field = _duplicate_path(line) or str(exc.args[0])
            raise r.error(field, "key given twice on one line") from None
        except ValueError as exc:
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            col = f" (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise r.error(None, f"not valid JSON: {problem}{col}") from None
        if not isinstance(obj, dict):
            raise r.error(None, f"expected a JSON object, not {_show(obj)}")
        items.append(_trace_item(r, obj))
    return items


def _trace_item(r, obj):
    for key in obj:
        if key not in TRACE_KINDS and key != "qpn":
            raise r.error(key, f"unknown key (known: {', '.join(TRACE_KINDS)}, and qpn with "
                               f"capsule)")
    kinds = [k for k in obj if k in TRACE_KINDS]
    if not kinds:
        if "qpn" in obj:
            raise r.error("qpn", "only goes with a capsule")
        raise r.error(None, f"empty object: expected one of {', '.join(TRACE_KINDS)}")
    if len(kinds) > 1:
        raise r.error(kinds[1], f"one action a line: {kinds[0]} and {kinds[1]} on one line")
    kind = kinds[0]
    if "qpn" in obj and kind != "capsule":
        raise r.error("qpn", f"only goes with a capsule, not with {kind}")
    value = obj[kind]
    if kind == "capsule":
        capsule = r.hex(value, "capsule", nonempty=True)
        qpn = r.int(obj, "qpn", "qpn", 0, U24)
        return TraceItem(r.line, kind, {"capsule": capsule, "qpn": qpn})
    if kind == "wait":
        if value != "idle":
            raise r.error("wait", f"must be \"idle\", not {_show(value)}")
        return TraceItem(r.line, kind, {})
    if kind in ("write_mem", "dump_mem"):
        known = ("rkey", "offset", "data") if kind == "write_mem" else \
            ("rkey", "offset", "length")
        o = r.obj(value, kind, known)
        region = r.region(o, kind)
        offset = r.int(o, "offset", f"{kind}.offset", 0, U64)
        if kind == "write_mem":
            if "data" not in o:
                raise r.error(f"{kind}.data", "missing (required)")
            payload = r.hex(o["data"], f"{kind}.data")
            length = len(payload)
        else:
            length = r.int(o, "length", f"{kind}.length", 0, U64)
        if offset + length > region.size:
            raise r.error(f"{kind}.offset", f"offset {offset} + length {length} is beyond "
                                            f"the {region.size} bytes of rkey {region.rkey}")
        args = {"rkey": region.rkey, "offset": offset}
        args.update({"data": payload} if kind == "write_mem" else {"length": length})
        return TraceItem(r.line, kind, args)
    if kind == "dump_lba":
        o = r.obj(value, kind, ("ssd", "nsid", "slba", "nlb"))
        ssd, ns = r.ssd_ns(o, kind)
        slba = r.int(o, "slba", "dump_lba.slba", 0, U64)
        nlb = r.int(o, "nlb", "dump_lba.nlb", 0, U64)
        if slba + nlb > ns.nsze:
            raise r.error("dump_lba.nlb", f"slba {slba} + nlb {nlb} is beyond nsze {ns.nsze} "
                                          f"of ssd {ssd.name!r} nsid {ns.nsid}")
        return TraceItem(r.line, kind, {"ssd": ssd.name, "nsid": ns.nsid, "slba": slba,
                                        "nlb": nlb})
    if kind in CONTROL_KINDS:
        return TraceItem(r.line, kind, _control(r, kind, value))
    return TraceItem(r.line, kind, _fault(r, value))


_CONTROL_KEYS = {
    "unmap": ("subsystem", "fe_nsid"),
    "map": ("subsystem", "fe_nsid", "ssd", "nsid", "queues"),
    "qp_set": ("qpn", "offload", "offload_only"),
    "destroy_ctrl": ("ssd", "queue"),
}


def _control(r, kind, value):
    """A control line: TARGET names resolved and types checked here (exit status 2); the
    values the driver judges (fe_nsid range, which queues, ...) are left to it, whose
    refusal is a ``control_error`` result."""
    o = r.obj(value, kind, _CONTROL_KEYS[kind])
    args = {}
    if kind in ("unmap", "map"):
        name = o.get("subsystem")
        if "subsystem" not in o:
            raise r.error(f"{kind}.subsystem", "missing (required)")
        if not isinstance(name, str) or r.target.subsystem(name) is None:
            raise r.error(f"{kind}.subsystem", f"{_show(name)} names no [[subsystem]] of "
                                               f"{r.target.path}")
        args["subsystem"] = name
        args["fe_nsid"] = r.int(o, "fe_nsid", f"{kind}.fe_nsid", 0, U32)
    if kind == "map":
        ssd, ns = r.ssd_ns(o, kind)
        queues = o.get("queues")
        if "queues" not in o:
            raise r.error("map.queues", "missing (required)")
        if (not isinstance(queues, list) or not queues
                or not all(isinstance(q, int) and not isinstance(q, bool) for q in queues)):
            raise r.error("map.queues", f"must be a non-empty list of integers, not "
                                        f"{_show(queues)}")
        for q in queues:
            if not 0 <= q < ssd.io_queues:
                raise r.error("map.queues", f"queue {q} is out of range 0..{ssd.io_queues - 1} "
                                            f"(ssd {ssd.name!r} has {ssd.io_queues} I/O queues)")
        args.update(ssd=ssd.name, nsid=ns.nsid, queues=list(queues))
    elif kind == "qp_set":
        qpn = r.int(o, "qpn", "qp_set.qpn", 0, U24)
        if not any(qp.qpn == qpn for qp in r.target.qps):
            raise r.error("qp_set.qpn", f"QPN {qpn} is not a [[qp]] of {r.target.path} (its "
                                        f"subsystem, sqsize and sqid come from there)")
        args["qpn"] = qpn
        for key, default in (("offload", _REQUIRED), ("offload_only", False)):
            if key not in o:
                if default is _REQUIRED:
                    raise r.error(f"qp_set.{key}", "missing (required)")
                args[key] = default
            elif not isinstance(o[key], bool):
                raise r.error(f"qp_set.{key}", f"must be true or false, not {_show(o[key])}")
            else:
                args[key] = o[key]
    elif kind == "destroy_ctrl":
        name = o.get("ssd")
        ssd = r.target.ssd(name) if isinstance(name, str) else None
        if ssd is None:
            raise r.error("destroy_ctrl.ssd", "missing (required)" if "ssd" not in o else
                          f"{_show(name)} names no [[ssd]] of {r.target.path}")
        args.update(ssd=ssd.name,
                    queue=r.int(o, "queue", "destroy_ctrl.queue", 0, ssd.io_queues - 1))
    return args


_FAULT_KEYS = {
    "ssd_status": ("kind", "ssd", "nsid", "sct", "sc", "dnr", "crd", "m", "dw0", "count"),
    "ssd_timeout": ("kind", "ssd", "nsid", "mode", "delay_cycles", "count"),
    "rdma_error": ("kind", "rkey", "op", "count"),
    "pci_error": ("kind", "ssd", "queue", "access", "count", "delay_cycles"),
    "unsolicited_cqe": ("kind", "ssd", "queue", "cid", "sc", "delay_cycles"),
    "clear": ("kind",),
}


def _fault(r, value):
    if not isinstance(value, dict):
        raise r.error("fault", f"must be a JSON object, not {_show(value)}")
    kind = r.choice(value, "kind", "fault.kind", tuple(_FAULT_KEYS))
    o = r.obj(value, "fault", _FAULT_KEYS[kind])
    args = {"kind": kind}
    if kind not in ("clear", "unsolicited_cqe"):
        args["count"] = r.int(o, "count", "fault.count", 1, U32, default=1)
    if kind in ("ssd_status", "ssd_timeout"):
        ssd, ns = r.ssd_ns(o, "fault")
        args.update(ssd=ssd.name, nsid=ns.nsid)
    if kind == "ssd_status":
        args["sc"] = r.int(o, "sc", "fault.sc", 0, 0xFF)
        for key, hi in (("sct", 7), ("dnr", 1), ("crd", 3), ("m", 1), ("dw0", U32)):
            args[key] = r.int(o, key, f"fault.{key}", 0, hi, default=0)
    elif kind == "ssd_timeout":
        args["mode"] = r.choice(o, "mode", "fault.mode", ("never", "late"))
        if args["mode"] == "late":
            args["delay_cycles"] = r.int(o, "delay_cycles", "fault.delay_cycles", 1, U32)
        elif "delay_cycles" in o:
            raise r.error("fault.delay_cycles", "only goes with mode \"late\"")
    elif kind == "rdma_error":
        args["rkey"] = r.region(o, "fault").rkey
        args["op"] = r.choice(o, "op", "fault.op", ("read", "write"))
    elif kind in ("pci_error", "unsolicited_cqe"):
        name = o.get("ssd")
        ssd = r.target.ssd(name) if isinstance(name, str) else None
        if ssd is None:
            raise r.error("fault.ssd", "missing (required)" if "ssd" not in o else
                          f"{_show(name)} names no [[ssd]] of {r.target.path}")
        queue = r.int(o, "queue", "fault.queue", 0, ssd.io_queues - 1)
        if not any(ssd.name == n.ssd and queue in n.queues
                   for s in r.target.subsystems for n in s.namespaces):
            raise r.error("fault.queue", f"queue {queue} of ssd {ssd.name!r} serves no "
                                         f"subsystem namespace")
        args.update(ssd=ssd.name, queue=queue,
                    delay_cycles=r.int(o, "delay_cycles", "fault.delay_cycles", 0, U32,
                                       default=0))
        if kind == "pci_error":
            args["access"] = r.choice(o, "access", "fault.access", PCI_ACCESSES)
        else:
            args["cid"] = r.int(o, "cid", "fault.cid", 0, 0xFFFF)
            args["sc"] = r.int(o, "sc", "fault.sc", 0, 0xFF, default=0)
    return args
