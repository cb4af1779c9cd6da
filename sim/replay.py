"""``nvmf-offload replay``: push a capsule trace through the engine, report what it did.

The public contract is ``docs/replay.md`` (format 1). This module:

- reads and validates ``TARGET.toml`` (:func:`load_target`) and ``TRACE.jsonl``
  (:func:`load_trace`); every problem is a :class:`ReplayInputError` whose
  message names the file, the line where one is known, and the field (exit
  status 2);
- plans the bus addresses of the staging windows, the rings, the SSD BARs
  and the MSI-X message (:func:`plan_layout`), deterministically;
- configures the engine through the driver (:func:`configure_device`,
  :class:`sim.driver.NvmfDevice`): the same calls a user makes, so a TARGET the
  driver refuses is reported with its errno (exit status 2);
- runs the trace on a :class:`Backend` (:func:`run_trace`): the reference
  model (:class:`ModelBackend`) in this process, or the RTL engine in Icarus or
  Verilator (:class:`RtlBackend`), where the whole trace runs inside one cocotb
  run (``sim/cosim/replay_bench.py``) and comes back as results and a verdict;
- writes the results, one JSON object a line, ordered by capsule within each
  segment between barriers, and a summary last (exit status 0); an engine
  invariant violation is exit status 1.
"""

import abc
import asyncio
import dataclasses
import errno
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from rtl.formats import QP_OPS_ALL, OpBit
from rtl.params import EngineParams
from sim.devices.initiator import Initiator
from sim.devices.ssd import NvmeSsd, PcieFabric, SparseMemory, SsdNamespace
from sim.driver import NvmeCtrlAttrs, NvmfDevice, NvmfError, SrqAttrs, ops_mask
from sim.model.csr import CsrModel, ModelRegs
from sim.model.engine import PCI_ACCESSES, EngineModel, InvariantError, result_key, strip_seq

__all__ = [
    "FORMAT", "EXIT_OK", "EXIT_INVARIANT", "EXIT_INPUT", "EXIT_BACKEND",
    "ReplayInputError", "BackendUnavailable", "InvariantError",
    "Target", "SsdSpec", "SsdNamespaceSpec", "SubsystemSpec", "SubsystemNamespaceSpec",
    "QpSpec", "RegionSpec", "TraceItem", "Layout",
    "load_target", "parse_target", "load_trace", "parse_trace", "plan_layout",
    "configure_device", "check_with_driver", "Backend", "ModelBackend", "RtlBackend",
    "make_backend",
    "run_trace", "replay", "add_arguments", "main",
    "WAIT_BUDGET_CYCLES", "OP_NAMES",
]

FORMAT = 1
EXIT_OK, EXIT_INVARIANT, EXIT_INPUT, EXIT_BACKEND = 0, 1, 2, 3
WAIT_BUDGET_CYCLES = 10_000_000     # a barrier that does not reach idle in this many: a hang
BACKENDS = ("model", "icarus", "verilator")

U16 = (1 << 16) - 1
U24 = (1 << 24) - 1
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
MiB = 1 << 20

# Bus addresses (docs/replay.md, "How the engine is configured"). The staging windows and
# the MSI-X address are the engine's (EngineParams staging_base / staging_bytes / msix_addr).
RING_BASE = 0x0200_0000_0000             # SQ and CQ rings, in backend queue creation order
RING_SPACE = 0x0100_0000_0000
BAR_BASE = 0x0300_0000_0000              # SSD i's BAR0 at BAR_BASE + i MiB
BAR_STRIDE = MiB
RING_ALIGN = 4096

OP_NAMES = {"flush": OpBit.FLUSH, "write": OpBit.WRITE, "read": OpBit.READ,
            "write_zeroes": OpBit.WRITE_ZEROES, "dsm": OpBit.DSM}


# --- errors ---------------------------------------------------------------------------------------

class ReplayInputError(Exception):
    """A malformed TARGET or TRACE (exit status 2): ``file:line: field: problem``."""

    def __init__(self, path, line, field, problem):
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")


class BackendUnavailable(Exception):
    """The requested backend cannot run here (exit status 3)."""


# --- TOML: where each key was written -------------------------------------------------------------

def _scan(text):
    """Split a TOML line into (code without comment, bracket depth change, open string)."""
    code, depth, quote, i = [], 0, None, 0
    while i < len(text):
        c = text[i]
        if quote:
            if quote in ('"""', "'''"):
                if text.startswith(quote, i):
                    quote = None
                    i += 3
                    code.append(c * 3)
                    continue
            elif c == "\\" and quote == '"':
                code.append(text[i:i + 2])
                i += 2
                continue
            elif c == quote:
                quote = None
            code.append(c)
            i += 1
            continue
        if c == "#":
            break
        if text.startswith('"""', i) or text.startswith("'''", i):
            quote = text[i:i + 3]
            code.append(quote)
            i += 3
            continue
        if c in "\"'":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        code.append(c)
        i += 1
    return "".join(code), depth, quote if quote in ('"""', "'''") else None


def _split_key(key):
    parts, buf, quote = [], "", None
    for c in key:
        if quote:
            if c == quote:
                quote = None
            else:
                buf += c
        elif c in "\"'":
            quote = c
        elif c == ".":
            parts.append(buf.strip())
            buf = ""
        else:
            buf += c
    parts.append(buf.strip())
    return parts


class _LineMap:
    """Line numbers of the tables and keys of a TOML document, by path.

    A path is a tuple of keys and array indices: ``("ssd", 0, "namespace", 1, "nsze")``.
    Good enough for error messages; :meth:`line` falls back to the nearest
    enclosing table or key.
    """

    def __init__(self, text):
        self.lines = {}
        counts = {}
        current = ()
        depth, ml = 0, None
        for no, raw in enumerate(text.splitlines(), 1):
            if ml is not None:
                if ml in raw:
                    ml = None
                continue
            code, delta, open_ml = _scan(raw)
            if depth > 0:
                depth += delta
                continue
            s = code.strip()
            if not s:
                continue
            if s.startswith("[["):
                parts = _split_key(s[2:s.find("]]")] if "]]" in s else s[2:])
                key = self._resolve(parts, counts)
                index = counts.get(key, 0)
                counts[key] = index + 1
                current = key + (index,)
                self.lines.setdefault(current, no)
                self.lines.setdefault(key, no)
            elif s.startswith("["):
                parts = _split_key(s[1:s.find("]")] if "]" in s else s[1:])
                current = self._resolve(parts, counts)
                self.lines.setdefault(current, no)
            elif "=" in s:
                key = _split_key(s.split("=", 1)[0])
                self.lines.setdefault(current + tuple(key), no)
                depth = max(0, delta)
                ml = open_ml

    @staticmethod
    def _resolve(parts, counts):
        path = ()
        for i, part in enumerate(parts):
            path += (part,)
            if i < len(parts) - 1 and path in counts:
                path += (counts[path] - 1,)
        return path

    def line(self, path):
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def _field_name(path):
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


# --- TARGET ------------------------------------------------------------------------------------

@dataclasses.dataclass
class SsdNamespaceSpec:
    nsid: int
    lba_data_size: int
    nsze: int
    path: tuple


@dataclasses.dataclass
class SsdSpec:
    name: str
    io_queues: int
    queue_entries: int
    latency_cycles: int
    cmd_timeout: int
    polling: bool
    namespaces: list
    path: tuple

    def namespace(self, nsid):
        return next((ns for ns in self.namespaces if ns.nsid == nsid), None)


@dataclasses.dataclass
class SubsystemNamespaceSpec:
    fe_nsid: int
    ssd: str
    nsid: int
    queues: list
    ops: int | None
    path: tuple


@dataclasses.dataclass
class SubsystemSpec:
    name: str
    max_io_size: int
    ioccsz: int
    icdoff: int
    staging_bytes: int
    queue_depth: int | None
    max_namespaces: int
    ops: int
    namespaces: list
    path: tuple
    queue_depth_from: tuple | None = None   # the [[qp]] sqsize it defaulted to, if it did


@dataclasses.dataclass
class QpSpec:
    qpn: int
    subsystem: str | None
    sqsize: int
    sqid: int
    offload: bool
    offload_only: bool
    path: tuple


@dataclasses.dataclass
class RegionSpec:
    rkey: int
    addr: int
    size: int
    path: tuple


@dataclasses.dataclass
class Target:
    """A validated TARGET.toml."""
    path: str
    params: EngineParams
    ssds: list
    subsystems: list
    qps: list
    regions: list
    linemap: object = dataclasses.field(repr=False, default=None)

    def ssd(self, name):
        return next((s for s in self.ssds if s.name == name), None)

    def subsystem(self, name):
        return next((s for s in self.subsystems if s.name == name), None)

    def region(self, rkey):
        return next((r for r in self.regions if r.rkey == rkey), None)

    def line(self, path):
        return self.linemap.line(path) if self.linemap is not None else None

    def error(self, path, problem):
        return ReplayInputError(self.path, self.line(path), _field_name(path), problem)


_REQUIRED = object()


def _int(lo, hi):
    def check(value):
        if not isinstance(value, int) or isinstance(value, bool):
            return None, f"must be an integer in {lo}..{hi}, not {value!r}"
        if not lo <= value <= hi:
            return None, f"{value} is out of range {lo}..{hi}"
        return value, None
    return check


def _driver_int(value):
    """An integer that goes to the driver as it is: the driver checks its range, so a value
    out of it is the driver's refusal, with its errno (docs/replay.md)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None, f"must be an integer, not {value!r}"
    return value, None


def _bool(value):
    if not isinstance(value, bool):
        return None, f"must be true or false, not {value!r}"
    return value, None


def _str(value):
    if not isinstance(value, str) or not value:
        return None, f"must be a non-empty string, not {value!r}"
    return value, None


def _int_list(lo, hi):
    def check(value):
        if not isinstance(value, list) or not value:
            return None, f"must be a non-empty list of integers in {lo}..{hi}, not {value!r}"
        for v in value:
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                return None, f"must be a list of integers in {lo}..{hi}; {v!r} is not"
        if len(set(value)) != len(value):
            return None, f"lists {value!r}: an entry appears twice"
        return list(value), None
    return check


def _ops(value):
    if not isinstance(value, list) or not value:
        return None, (f"must be a non-empty list of operation names "
                      f"({', '.join(OP_NAMES)}), not {value!r}")
    for v in value:
        if v not in OP_NAMES:
            return None, f"{v!r} is not an operation name ({', '.join(OP_NAMES)})"
    if len(set(value)) != len(value):
        return None, f"lists {value!r}: a name appears twice"
    return ops_mask(*(OP_NAMES[v] for v in value)), None


def _array(value):
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        return None, "must be an array of tables"
    return value, None


class _Reader:
    def __init__(self, path, linemap):
        self.path = str(path)
        self.linemap = linemap

    def error(self, where, problem):
        return ReplayInputError(self.path, self.linemap.line(where), _field_name(where), problem)

    def table(self, value, where, spec):
        """Check a TOML table against ``{key: (checker, default)}``; return the values."""
        if not isinstance(value, dict):
            raise self.error(where, f"must be a table, not {value!r}")
        for key in value:
            if key not in spec:
                raise self.error(where + (key,),
                                 f"unknown key (known: {', '.join(sorted(spec))})")
        out = {}
        for key, (check, default) in spec.items():
            if key not in value:
                if default is _REQUIRED:
                    raise self.error(where + (key,), "missing (required)")
                out[key] = default
                continue
            result, problem = check(value[key])
            if problem is not None:
                raise self.error(where + (key,), problem)
            out[key] = result
        return out

    def array(self, doc, key):
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error((key,), f"must be an array of tables ([[{key}]])")
        return value


def _read_text(path):
    """A replay input file as text: ``ReplayInputError`` when unreadable or not UTF-8."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReplayInputError(path, None, None, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ReplayInputError(path, line, None, "not valid UTF-8") from None
    return path, text


def load_target(path):
    """Read and validate a TARGET.toml (:class:`ReplayInputError` on any problem)."""
    path, text = _read_text(path)
    return parse_target(text, path)


def parse_target(text, path="TARGET.toml"):
    """Validate TARGET text (see :func:`load_target`); ``path`` names it in messages."""
    path = str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)$", msg)
        line = int(m.group(1)) if m else None
        msg = msg[:m.start()].rstrip() if m else msg
        raise ReplayInputError(path, line, None, f"TOML syntax error: {msg}") from None
    linemap = _LineMap(text)
    r = _Reader(path, linemap)
    known = ("format", "engine", "ssd", "subsystem", "qp", "region")
    for key in doc:
        if key not in known:
            raise r.error((key,), f"unknown key (known: {', '.join(known)})")
    if "format" not in doc:
        raise r.error(("format",), f"missing (required): this tool reads format = {FORMAT}")
    fmt = doc["format"]
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt != FORMAT:
        raise r.error(("format",), f"unsupported format {fmt!r}: this tool reads "
                                   f"format = {FORMAT}")
    engine = doc.get("engine", {})
    params = _engine_params(r, engine)
    ssds = _ssds(r, doc)
    subsystems = _subsystems(r, doc, params, ssds)
    _check_unused(r, ssds, subsystems)
    if "staging_bytes" not in engine:
        params = _fit_staging(r, params, subsystems)
    qps = _qps(r, doc, subsystems)
    regions = _regions(r, doc)
    for sub in subsystems:
        if sub.queue_depth is None:
            mine = [qp for qp in qps if qp.subsystem == sub.name]
            sub.queue_depth = max([2] + [qp.sqsize for qp in mine])
            biggest = max(mine, key=lambda qp: qp.sqsize, default=None)
            if biggest is not None and biggest.sqsize == sub.queue_depth:
                sub.queue_depth_from = biggest.path + ("sqsize",)
    return Target(path, params, ssds, subsystems, qps, regions, linemap)


def _engine_params(r, table):
    where = ("engine",)
    if not isinstance(table, dict):
        raise r.error(where, "must be a table ([engine])")
    fields = {f.name for f in dataclasses.fields(EngineParams)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise r.error(where + (key,), f"unknown key (known: {', '.join(sorted(fields))})")
        if key == "lba_sizes":
            if not isinstance(value, list) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise r.error(where + (key,), f"must be a list of integers, not {value!r}")
            value = tuple(value)
        elif not isinstance(value, int) or isinstance(value, bool):
            raise r.error(where + (key,), f"must be an integer, not {value!r}")
        values[key] = value
    try:
        return EngineParams(**values)
    except ValueError as exc:
        msg = str(exc)
        bad = next((k for k in sorted(fields, key=len, reverse=True) if msg.startswith(k)),
                   None)
        if bad is None:
            bad = next((k for k in values if k in msg), None)
        raise r.error(where + ((bad,) if bad else ()), msg) from None


def _fit_staging(r, params, subsystems):
    """Without ``[engine] staging_bytes``: the smallest power of two (not below the default)
    that holds every subsystem's staging window."""
    need = sum(_align(sub.staging_bytes, RING_ALIGN) for sub in subsystems)
    size = params.staging_bytes
    while size < need:
        size *= 2
    if size == params.staging_bytes:
        return params
    try:
        return dataclasses.replace(params, staging_bytes=size)
    except ValueError as exc:
        sub = subsystems[-1]
        raise r.error(sub.path + ("staging_bytes",),
                      f"the staging windows need {need} bytes, more than the engine's "
                      f"staging memory can have: {exc}") from None


def _ssds(r, doc):
    ssds = []
    spec = {
        "name": (_str, _REQUIRED),
        "io_queues": (_int(1, 1024), 1),
        "queue_entries": (_driver_int, 64),
        "latency_cycles": (_int(0, U32), 200),
        "cmd_timeout": (_driver_int, 0),
        "polling": (_bool, False),
        "namespace": (_array, []),
    }
    ns_spec = {
        "nsid": (_int(1, 0xFFFF_FFFE), _REQUIRED),
        "lba_data_size": (_driver_int, 512),
        "nsze": (_int(1, U64), _REQUIRED),
    }
    for i, table in enumerate(r.array(doc, "ssd")):
        where = ("ssd", i)
        v = r.table(table, where, spec)
        if any(s.name == v["name"] for s in ssds):
            raise r.error(where + ("name",), f"{v['name']!r} names another [[ssd]] already")
        namespaces = []
        for j, ns_table in enumerate(v["namespace"]):
            nwhere = where + ("namespace", j)
            n = r.table(ns_table, nwhere, ns_spec)
            if n["lba_data_size"] < 1 or n["lba_data_size"] & (n["lba_data_size"] - 1):
                raise r.error(nwhere + ("lba_data_size",),
                              f"{n['lba_data_size']} is not a power of two")
            if any(x.nsid == n["nsid"] for x in namespaces):
                raise r.error(nwhere + ("nsid",), f"nsid {n['nsid']} appears twice in "
                                                  f"ssd {v['name']!r}")
            namespaces.append(SsdNamespaceSpec(n["nsid"], n["lba_data_size"], n["nsze"],
                                               nwhere))
        ssds.append(SsdSpec(v["name"], v["io_queues"], v["queue_entries"],
                            v["latency_cycles"], v["cmd_timeout"], v["polling"], namespaces,
                            where))
    return ssds


# Replay's own ranges of the [[ssd]] values the driver checks when a subsystem uses them.
_UNUSED_QUEUE_KEYS = (("queue_entries", _int(2, 1 << 16)), ("cmd_timeout", _int(0, U32)))
_UNMAPPED_NS_KEYS = (("lba_data_size", _int(512, 65536)),)


def _check_unused(r, ssds, subsystems):
    """The driver range-checks ``queue_entries``, ``cmd_timeout`` (create_nvme_ctrl) and
    ``lba_data_size`` (map_nvmf_nsid), with its errno, for the SSD queues and namespaces a
    subsystem uses; the others it never sees: replay's own ranges for them."""
    used = {n.ssd for s in subsystems for n in s.namespaces}
    mapped = {(n.ssd, n.nsid) for s in subsystems for n in s.namespaces}
    for ssd in ssds:
        checks = [(ssd, key, check) for key, check in _UNUSED_QUEUE_KEYS
                  if ssd.name not in used]
        checks += [(ns, key, check) for ns in ssd.namespaces for key, check in _UNMAPPED_NS_KEYS
                   if (ssd.name, ns.nsid) not in mapped]
        for spec, key, check in checks:
            _, problem = check(getattr(spec, key))
            if problem is not None:
                raise r.error(spec.path + (key,), problem)


def _subsystems(r, doc, params, ssds):
    subs = []
    spec = {
        "name": (_str, _REQUIRED),
        "max_io_size": (_driver_int, params.max_io_size),
        "ioccsz": (_driver_int, params.max_capsule_bytes // 16),
        "icdoff": (_driver_int, 0),
        "staging_bytes": (_int(1, U32), MiB),
        "queue_depth": (_driver_int, None),
        "max_namespaces": (_driver_int, params.srq_namespaces),
        "ops": (_ops, None),
        "namespace": (_array, []),
    }
    ns_spec = {
        "fe_nsid": (_driver_int, _REQUIRED),
        "ssd": (_str, _REQUIRED),
        "nsid": (_int(1, 0xFFFF_FFFE), _REQUIRED),
        "queues": (_int_list(0, 1023), None),
        "ops": (_ops, None),
    }
    users = {}          # (ssd, queue) -> subsystem name
    for i, table in enumerate(r.array(doc, "subsystem")):
        where = ("subsystem", i)
        v = r.table(table, where, spec)
        if any(s.name == v["name"] for s in subs):
            raise r.error(where + ("name",), f"{v['name']!r} names another [[subsystem]] "
                                             f"already")
        ops = v["ops"] if v["ops"] is not None else QP_OPS_ALL
        namespaces = []
        for j, ns_table in enumerate(v["namespace"]):
            nwhere = where + ("namespace", j)
            n = r.table(ns_table, nwhere, ns_spec)
            ssd = next((s for s in ssds if s.name == n["ssd"]), None)
            if ssd is None:
                raise r.error(nwhere + ("ssd",), f"{n['ssd']!r} names no [[ssd]]")
            if ssd.namespace(n["nsid"]) is None:
                raise r.error(nwhere + ("nsid",), f"ssd {ssd.name!r} has no namespace "
                                                  f"{n['nsid']}")
            queues = n["queues"] if n["queues"] is not None else list(range(ssd.io_queues))
            for q in queues:
                if q >= ssd.io_queues:
                    raise r.error(nwhere + ("queues",),
                                  f"queue {q} is not one of ssd {ssd.name!r}'s io_queues "
                                  f"(0..{ssd.io_queues - 1})")
                other = users.setdefault((ssd.name, q), v["name"])
                if other != v["name"]:
                    raise r.error(nwhere + ("queues",),
                                  f"queue {q} of ssd {ssd.name!r} already serves subsystem "
                                  f"{other!r}: an I/O queue pair serves one subsystem")
            namespaces.append(SubsystemNamespaceSpec(n["fe_nsid"], ssd.name, n["nsid"],
                                                     queues, n["ops"], nwhere))
        subs.append(SubsystemSpec(v["name"], v["max_io_size"], v["ioccsz"], v["icdoff"],
                                  v["staging_bytes"], v["queue_depth"], v["max_namespaces"],
                                  ops, namespaces, where))
    return subs


def _qps(r, doc, subsystems):
    qps = []
    spec = {
        "qpn": (_driver_int, _REQUIRED),
        "subsystem": (_str, None),
        "sqsize": (_driver_int, 128),
        "sqid": (_driver_int, 1),
        "offload": (_bool, True),
        "offload_only": (_bool, False),
    }
    for i, table in enumerate(r.array(doc, "qp")):
        where = ("qp", i)
        v = r.table(table, where, spec)
        if any(q.qpn == v["qpn"] for q in qps):
            raise r.error(where + ("qpn",), f"qpn {v['qpn']} appears in another [[qp]]")
        if v["subsystem"] is None and v["offload"]:
            raise r.error(where + ("subsystem",), "missing (required when offload = true)")
        if v["subsystem"] is not None and not any(s.name == v["subsystem"]
                                                  for s in subsystems):
            raise r.error(where + ("subsystem",), f"{v['subsystem']!r} names no "
                                                  f"[[subsystem]]")
        qps.append(QpSpec(v["qpn"], v["subsystem"], v["sqsize"], v["sqid"], v["offload"],
                          v["offload_only"], where))
    return qps


def _regions(r, doc):
    regions = []
    spec = {
        "rkey": (_int(0, U32), _REQUIRED),
        "addr": (_int(0, U64), _REQUIRED),
        "size": (_int(1, U64), _REQUIRED),
    }
    for i, table in enumerate(r.array(doc, "region")):
        where = ("region", i)
        v = r.table(table, where, spec)
        if any(x.rkey == v["rkey"] for x in regions):
            raise r.error(where + ("rkey",), f"rkey {v['rkey']:#x} appears in another "
                                             f"[[region]]")
        if v["addr"] + v["size"] > 1 << 64:
            raise r.error(where + ("size",), f"addr {v['addr']:#x} + size {v['size']} wraps "
                                             f"the 64-bit address space")
        regions.append(RegionSpec(v["rkey"], v["addr"], v["size"], where))
    return regions


# --- TRACE -------------------------------------------------------------------------------------

TRACE_KINDS = ("capsule", "write_mem", "wait", "dump_mem", "dump_lba", "fault")
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
    return TraceItem(r.line, kind, _fault(r, value))


_FAULT_KEYS = {
    "ssd_status": ("kind", "ssd", "nsid", "sct", "sc", "dnr", "crd", "m", "count"),
    "ssd_timeout": ("kind", "ssd", "nsid", "mode", "delay_cycles", "count"),
    "rdma_error": ("kind", "rkey", "op", "count"),
    "pci_error": ("kind", "ssd", "queue", "access", "count"),
    "clear": ("kind",),
}


def _fault(r, value):
    if not isinstance(value, dict):
        raise r.error("fault", f"must be a JSON object, not {_show(value)}")
    kind = r.choice(value, "kind", "fault.kind", tuple(_FAULT_KEYS))
    o = r.obj(value, "fault", _FAULT_KEYS[kind])
    args = {"kind": kind}
    if kind != "clear":
        args["count"] = r.int(o, "count", "fault.count", 1, U32, default=1)
    if kind in ("ssd_status", "ssd_timeout"):
        ssd, ns = r.ssd_ns(o, "fault")
        args.update(ssd=ssd.name, nsid=ns.nsid)
    if kind == "ssd_status":
        args["sc"] = r.int(o, "sc", "fault.sc", 0, 0xFF)
        for key, hi in (("sct", 7), ("dnr", 1), ("crd", 3), ("m", 1)):
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
    elif kind == "pci_error":
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
                    access=r.choice(o, "access", "fault.access", PCI_ACCESSES))
    return args


# --- addresses and configuration ----------------------------------------------------------------

@dataclasses.dataclass
class QueuePlan:
    """One backend queue: an SSD I/O queue pair given to one subsystem."""
    order: int                  # creation order (the msix_data value)
    subsystem: str
    ssd: str
    queue: int                  # the SSD's I/O queue index (qid = queue + 1)
    sq_addr: int
    cq_addr: int
    entries: int
    sq_db_addr: int
    cq_db_addr: int
    path: tuple                 # the [[subsystem.namespace]] that first uses it


@dataclasses.dataclass
class Layout:
    """Every bus address replay chooses, from the TARGET alone."""
    staging: dict               # subsystem name -> staging_addr
    bars: dict                  # ssd name -> BAR0 base
    queues: list                # QueuePlan, in creation order
    msix_addr: int

    def queue(self, ssd, queue):
        return next(q for q in self.queues if q.ssd == ssd and q.queue == queue)


def _align(value, align):
    return -(-value // align) * align


def plan_layout(target):
    """Bus addresses: staging windows packed in the engine's staging memory (4 KiB aligned,
    in file order), SSD BARs, and SQ/CQ rings (4 KiB aligned) in backend-queue creation
    order."""
    p = target.params
    staging = {}
    cursor = p.staging_base
    for sub in target.subsystems:
        staging[sub.name] = cursor
        cursor = _align(cursor + sub.staging_bytes, RING_ALIGN)
    if cursor > p.staging_base + p.staging_bytes:
        sub = target.subsystems[-1]
        raise target.error(sub.path + ("staging_bytes",),
                           f"the staging windows need {cursor - p.staging_base} bytes; the "
                           f"engine's staging memory ([engine] staging_bytes) has "
                           f"{p.staging_bytes}")
    ours = ((RING_BASE, RING_SPACE, "the rings"),
            (BAR_BASE, BAR_STRIDE * max(1, len(target.ssds)), "the SSD BARs"))
    for name, base, size in (("staging_base", p.staging_base, p.staging_bytes),
                             ("msix_addr", p.msix_addr, 4)):
        for lo, n, what in ours:
            if base < lo + n and lo < base + size:
                raise target.error(("engine", name),
                                   f"{base:#x} overlaps {what}, which replay places at "
                                   f"[{lo:#x}, {lo + n:#x})")
    stride = 4
    bars = {ssd.name: BAR_BASE + i * BAR_STRIDE for i, ssd in enumerate(target.ssds)}
    queues = []
    ring = RING_BASE
    for sub in target.subsystems:
        for ns in sub.namespaces:
            ssd = target.ssd(ns.ssd)
            for q in ns.queues:
                if any(p.ssd == ssd.name and p.queue == q for p in queues):
                    continue
                qid = q + 1
                sq_addr = ring
                cq_addr = _align(sq_addr + ssd.queue_entries * 64, RING_ALIGN)
                ring = _align(cq_addr + ssd.queue_entries * 16, RING_ALIGN)
                bar = bars[ssd.name]
                queues.append(QueuePlan(len(queues), sub.name, ssd.name, q, sq_addr, cq_addr,
                                        ssd.queue_entries,
                                        bar + 0x1000 + 2 * qid * stride,
                                        bar + 0x1000 + (2 * qid + 1) * stride, ns.path))
    return Layout(staging, bars, queues, p.msix_addr)


def _driver_error(target, path, call, exc, keys=None):
    """A driver refusal as a TARGET error; ``keys`` maps the driver's argument names (the
    first word of its message) to the TARGET key that gave the value."""
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    words = exc.strerror.split()
    if keys and words and words[0] in keys:
        path = keys[words[0]]
    return target.error(path, f"{call} refused it: {name}: {exc.strerror}")


async def configure_device(dev, target, layout):
    """Configure an opened-or-not :class:`NvmfDevice` for ``target``; returns
    ``{"srqs": {name: Srq}, "ctrls": {(ssd, queue): NvmeCtrl}}``.

    Driver errors become :class:`ReplayInputError` naming the TARGET table that
    asked for the call, with the errno name and the driver's message.
    """
    try:
        await dev.open()
    except NvmfError as exc:
        raise _driver_error(target, (), "open", exc) from None
    srqs, ctrls = {}, {}
    ssd_by_name = {s.name: s for s in target.ssds}
    for sub in target.subsystems:
        attrs = SrqAttrs(ops=sub.ops, max_namespaces=sub.max_namespaces, ioccsz=sub.ioccsz,
                         icdoff=sub.icdoff, max_io_size=sub.max_io_size,
                         queue_depth=sub.queue_depth, staging_addr=layout.staging[sub.name],
                         staging_len=sub.staging_bytes)
        try:
            srqs[sub.name] = await dev.create_srq(attrs)
        except NvmfError as exc:
            keys = {k: sub.path + (k,) for k in ("ops", "max_namespaces", "ioccsz", "icdoff",
                                                 "max_io_size", "queue_depth")}
            keys["staging_len"] = sub.path + ("staging_bytes",)
            if sub.queue_depth_from is not None:
                keys["queue_depth"] = sub.queue_depth_from
            raise _driver_error(target, sub.path, "create_srq", exc, keys) from None
    for plan in layout.queues:
        ssd = ssd_by_name[plan.ssd]
        attrs = NvmeCtrlAttrs(sq_addr=plan.sq_addr, sq_entries=plan.entries,
                              cq_addr=plan.cq_addr, cq_entries=plan.entries,
                              sq_db_addr=plan.sq_db_addr, cq_db_addr=plan.cq_db_addr,
                              cmd_timeout=ssd.cmd_timeout,
                              msix_data=None if ssd.polling else plan.order)
        try:
            ctrl = await dev.create_nvme_ctrl(srqs[plan.subsystem], attrs)
            if ctrl.index != plan.order:
                raise NvmfError(errno.EIO, f"backend queue index {ctrl.index} is not the "
                                           f"MSI-X data {plan.order} given (the device was "
                                           f"not fresh)")
            ctrls[(plan.ssd, plan.queue)] = ctrl
        except NvmfError as exc:
            keys = {"sq_entries": ssd.path + ("queue_entries",),
                    "cq_entries": ssd.path + ("queue_entries",),
                    "cmd_timeout": ssd.path + ("cmd_timeout",)}
            raise _driver_error(target, plan.path + ("queues",),
                                f"create_nvme_ctrl (ssd {plan.ssd!r} queue {plan.queue})",
                                exc, keys) from None
    for sub in target.subsystems:
        for ns in sub.namespaces:
            ssd_ns = ssd_by_name[ns.ssd].namespace(ns.nsid)
            try:
                await dev.map_nvmf_nsid([ctrls[(ns.ssd, q)] for q in ns.queues], ns.fe_nsid,
                                        ssd_ns.lba_data_size, ns.nsid, ssd_ns.nsze,
                                        ops=ns.ops)
            except NvmfError as exc:
                keys = {"fe_nsid": ns.path + ("fe_nsid",), "nvme_nsid": ns.path + ("nsid",),
                        "ops": ns.path + ("ops",),
                        "lba_data_size": ssd_ns.path + ("lba_data_size",),
                        "nsze": ssd_ns.path + ("nsze",)}
                raise _driver_error(target, ns.path, "map_nvmf_nsid", exc, keys) from None
    for qp in target.qps:
        srq = srqs[qp.subsystem] if qp.subsystem is not None else None
        try:
            await dev.qp_set_nvmf(qp.qpn, srq if qp.offload else None, offload=qp.offload,
                                  offload_only=qp.offload_only, sqsize=qp.sqsize,
                                  sqid=qp.sqid)
        except NvmfError as exc:
            keys = {k: qp.path + (k,) for k in ("qpn", "sqsize", "sqid", "offload_only")}
            raise _driver_error(target, qp.path, "qp_set_nvmf", exc, keys) from None
    return {"srqs": srqs, "ctrls": ctrls}


def check_with_driver(target):
    """Run the configuration against the control-plane model: the driver's verdict."""
    layout = plan_layout(target)
    csr = CsrModel(target.params)
    dev = NvmfDevice(ModelRegs(csr), target.params)
    asyncio.run(configure_device(dev, target, layout))
    return layout


# --- backends -----------------------------------------------------------------------------------

class Backend(abc.ABC):
    """What runs a trace: the reference model, or (later) the RTL in a simulator.

    Every method but :meth:`configure` is called after it; :meth:`deliver` may be
    called many times before :meth:`run_until_idle`. Results are the tagged
    records of :mod:`sim.model.engine` (``{"seq": n, "<kind>": {...}}``); the runner
    sorts them with :func:`sim.model.engine.result_key`.
    """
    name = "?"
    reports_cycles = False      # True: responses carry "cycle" and the summary real cycles

    @abc.abstractmethod
    def configure(self, target, layout):
        """Build the system for ``target`` and configure it through the driver."""

    @abc.abstractmethod
    def write_mem(self, rkey, offset, data):
        """Set initiator memory."""

    @abc.abstractmethod
    def deliver(self, capsule, qpn, seq):
        """Hand one received SEND to the engine (returns once the engine accepted it)."""

    @abc.abstractmethod
    def run_until_idle(self, budget_cycles):
        """Run until nothing is outstanding; InvariantError on a hang or a broken invariant."""

    @abc.abstractmethod
    def take_results(self):
        """Tagged result records since the last call."""

    @abc.abstractmethod
    def dump_mem(self, rkey, offset, length):
        """Initiator memory bytes."""

    @abc.abstractmethod
    def dump_lba(self, ssd, nsid, slba, nlb):
        """An SSD's stored blocks (``nlb`` blocks, a count)."""

    @abc.abstractmethod
    def inject_fault(self, fault):
        """Arm a fault (a checked ``fault`` trace argument dict)."""

    @property
    @abc.abstractmethod
    def cycles(self):
        """Cycles simulated so far (the summary's ``cycles``)."""

    def close(self):  # noqa: B027 -- optional hook, nothing to release by default
        """Release simulator resources (waveform file, processes)."""


class ModelBackend(Backend):
    """The transaction-level reference model (:class:`sim.model.engine.EngineModel`).

    ``seed`` draws each SSD command's extra service time (up to half of
    ``latency_cycles``): outcomes of a race-free trace do not depend on it.
    """
    name = "model"
    reports_cycles = False

    def __init__(self, seed=0):
        self.seed = seed
        self.engine = None

    def configure(self, target, layout=None):
        if layout is None:
            layout = plan_layout(target)
        self.target = target
        self.layout = layout
        params = target.params
        self.csr = CsrModel(params)
        self.device = NvmfDevice(ModelRegs(self.csr), params)
        self.handles = asyncio.run(configure_device(self.device, target, layout))
        self.fabric = PcieFabric()
        self.initiator = Initiator([{"rkey": r.rkey, "addr": r.addr, "size": r.size}
                                    for r in target.regions])
        self.ssds = {}
        for spec in target.ssds:
            ssd = NvmeSsd(spec.name, [SsdNamespace(n.nsid, n.lba_data_size, n.nsze)
                                      for n in spec.namespaces],
                          io_queues=spec.io_queues, max_queue_entries=1 << 16,
                          latency_cycles=spec.latency_cycles,
                          jitter_cycles=spec.latency_cycles // 2,
                          rng=random.Random(f"{self.seed}/{spec.name}"))
            ssd.attach(self.fabric, layout.bars[spec.name])
            self.ssds[spec.name] = ssd
        for plan in layout.queues:
            ssd_spec = target.ssd(plan.ssd)
            ring = f"{plan.ssd} queue {plan.queue}"
            self.fabric.map(plan.sq_addr, plan.entries * 64, SparseMemory(), f"{ring} SQ")
            self.fabric.map(plan.cq_addr, plan.entries * 16, SparseMemory(), f"{ring} CQ")
            self.ssds[plan.ssd].create_io_queue(
                plan.queue + 1, sq_addr=plan.sq_addr, sq_entries=plan.entries,
                cq_addr=plan.cq_addr, cq_entries=plan.entries,
                msix_addr=None if ssd_spec.polling else layout.msix_addr,
                msix_data=None if ssd_spec.polling else plan.order)
        self.engine = EngineModel(self.csr, self.fabric, self.initiator, self.ssds)
        for qp in target.qps:
            self.engine.qp_enabled(qp.qpn)

    def write_mem(self, rkey, offset, data):
        self.initiator.write(rkey, offset, data)

    def deliver(self, capsule, qpn, seq):
        self.engine.deliver(capsule, qpn, seq)

    def run_until_idle(self, budget_cycles=WAIT_BUDGET_CYCLES):
        return self.engine.run_until_idle(budget_cycles)

    def take_results(self):
        return self.engine.take_results()

    def dump_mem(self, rkey, offset, length):
        return self.initiator.read(rkey, offset, length)

    def dump_lba(self, ssd, nsid, slba, nlb):
        return self.ssds[ssd].namespace(nsid).read(slba, nlb)

    def inject_fault(self, fault):
        fault = dict(fault)
        kind = fault.pop("kind")
        if kind == "ssd_timeout" and "delay_cycles" in fault:
            fault["delay"] = fault.pop("delay_cycles")
        if kind == "pci_error":
            ctrl = self.handles["ctrls"][(fault.pop("ssd"), fault.pop("queue"))]
            fault["queue"] = ctrl.index
        self.engine.inject_fault(kind, **fault)

    @property
    def cycles(self):
        return 0        # the model has no clock: docs/replay.md, "Results"


class RtlBackend(Backend):
    """The RTL engine (``nvmf_engine``) in Icarus Verilog or Verilator, with modelled SSDs,
    PCIe fabric and initiator around it.

    A whole trace runs inside one cocotb run (:func:`sim.cosim.harness.run_cocotb`, test
    ``sim.cosim.replay_bench:run_replay``): there the testbench is a
    :class:`Backend` (:class:`sim.cosim.replay_bench.RtlReplay`) that builds the
    device models of :mod:`sim.devices.bus` from the TARGET, configures the engine
    with :func:`configure_device` through the driver over AXI4-Lite, and runs
    :func:`run_trace`. :meth:`run` launches it, copies the results out and maps the
    verdict to the exit status; the step-by-step :class:`Backend` methods are not
    available out here (the simulator runs in its own process).
    """
    reports_cycles = True
    TOP = "nvmf_engine"
    MODULE = "sim.cosim.replay_bench"
    TESTCASE = "run_replay"

    def __init__(self, simulator, seed=0, waves=None):
        self.name = simulator
        self.seed = seed
        self.waves = waves

    @staticmethod
    def available(simulator):
        """``(ok, why)``: whether this simulator backend can run here."""
        try:
            from sim.cosim.harness import sim_env
        except ImportError as exc:
            return False, (f"--backend {simulator}: the cocotb test bench cannot be loaded "
                           f"({exc}); use --backend model")
        sim_env()
        exe = "iverilog" if simulator == "icarus" else "verilator"
        if shutil.which(exe) is None:
            return False, (f"--backend {simulator}: {exe} not found on PATH (./bootstrap.sh "
                           f"setup installs it); use --backend model")
        return True, ""

    def _whole_traces_only(self, *args, **kwargs):
        raise NotImplementedError(f"--backend {self.name} runs whole traces in the "
                                  f"simulator: use RtlBackend.run()")

    configure = write_mem = deliver = run_until_idle = take_results = _whole_traces_only
    dump_mem = dump_lba = inject_fault = _whole_traces_only

    @property
    def cycles(self):
        return self._whole_traces_only()

    def _build_dir(self, params, waves):
        from sim.cosim.harness import build_root
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        tag = params.tag() + ("_waves" if waves else "")
        return build_root() / "sim" / worker / self.name / self.TOP / tag

    def run(self, target, target_path, trace_path, stream, say):
        """Run the trace; write the results to ``stream``; return the exit status."""
        from sim.cosim.harness import run_cocotb

        work = Path(tempfile.mkdtemp(prefix="nvmf-replay-"))
        results = work / "results.jsonl"
        status_file = work / "results.jsonl.status"
        log = work / "sim.log"
        env = {"NVMF_REPLAY_TARGET": str(Path(target_path).resolve()),
               "NVMF_REPLAY_TRACE": str(Path(trace_path).resolve()),
               "NVMF_REPLAY_OUT": str(results), "NVMF_REPLAY_SEED": str(self.seed)}
        failure = None
        try:
            run_cocotb(self.name, self.TOP, target.params, self.MODULE, testcase=self.TESTCASE,
                       extra_env=env, waves=self.waves is not None, log_file=log)
        except (AssertionError, RuntimeError, SystemExit, OSError,
                subprocess.SubprocessError) as exc:
            failure = exc
        verdict = None
        if status_file.exists():
            verdict = json.loads(status_file.read_text(encoding="utf-8"))
        if verdict is not None and verdict["status"] == EXIT_INPUT:
            shutil.rmtree(work, ignore_errors=True)
            say(verdict["message"])
            return EXIT_INPUT
        if verdict is None and not log.exists():
            shutil.rmtree(work, ignore_errors=True)
            bdir = self._build_dir(target.params, self.waves is not None)
            say(f"--backend {self.name}: the simulator could not be built or started "
                f"({failure}); see {bdir / 'build.log'}")
            return EXIT_BACKEND
        if results.exists():
            stream.write(results.read_text(encoding="utf-8"))
            stream.flush()
        if self.waves is not None:
            self._copy_waves(target.params, say)
        if verdict is None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            say(f"invariant violated: the simulation ended without a verdict ({failure}); "
                f"simulator log {log}, ending:\n{tail}")
            return EXIT_INVARIANT
        if verdict["status"] == EXIT_OK and failure is None:
            shutil.rmtree(work, ignore_errors=True)
            return EXIT_OK
        message = verdict["message"] or f"the simulation failed ({failure})"
        say(f"invariant violated: {message} (simulator log: {log})")
        return EXIT_INVARIANT

    def _copy_waves(self, params, say):
        bdir = self._build_dir(params, True)
        candidates = [bdir / f"{self.TOP}.fst", bdir / "run" / self.TESTCASE / "dump.vcd"]
        found = [p for p in candidates if p.exists()]
        if not found:
            found = sorted((p for ext in ("*.fst", "*.vcd") for p in bdir.rglob(ext)),
                           key=lambda p: p.stat().st_mtime)[-1:]
        if not found:
            say(f"--waves {self.waves}: the simulator wrote no waveform in {bdir}")
            return
        try:
            shutil.copyfile(found[0], self.waves)
        except OSError as exc:
            say(f"--waves {self.waves}: cannot write: {exc.strerror}")


def make_backend(name, seed=0, waves=None):
    """The backend called ``name`` (BackendUnavailable when it cannot run here)."""
    if name == "model":
        return ModelBackend(seed)
    if name in ("icarus", "verilator"):
        ok, why = RtlBackend.available(name)
        if not ok:
            raise BackendUnavailable(why)
        return RtlBackend(name, seed, waves)
    raise BackendUnavailable(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")


# --- running ------------------------------------------------------------------------------------

def run_trace(backend, trace, emit, budget_cycles=WAIT_BUDGET_CYCLES):
    """Run ``trace`` on a configured backend, calling ``emit(record)`` for each result line.

    Returns the summary record (also emitted, last). Raises InvariantError after
    emitting the results of the unfinished segment.
    """
    counts = {"capsules": 0, "responses": 0, "to_software": 0}

    def flush():
        for result in sorted(backend.take_results(), key=result_key):
            record = strip_seq(result)
            if "response" in record:
                counts["responses"] += 1
                if not backend.reports_cycles:
                    record["response"].pop("cycle", None)
            elif "to_software" in record:
                counts["to_software"] += 1
            emit(record)

    def barrier():
        try:
            backend.run_until_idle(budget_cycles)
        finally:
            flush()

    where = "end of trace"
    try:
        for item in trace:
            where = f"trace line {item.line}"
            a = item.args
            if item.kind == "capsule":
                backend.deliver(a["capsule"], a["qpn"], counts["capsules"])
                counts["capsules"] += 1
            elif item.kind == "write_mem":
                backend.write_mem(a["rkey"], a["offset"], a["data"])
            elif item.kind == "wait":
                barrier()
            elif item.kind == "dump_mem":
                barrier()
                data = backend.dump_mem(a["rkey"], a["offset"], a["length"])
                emit({"mem": {"rkey": a["rkey"], "offset": a["offset"], "data": data.hex()}})
            elif item.kind == "dump_lba":
                barrier()
                data = backend.dump_lba(a["ssd"], a["nsid"], a["slba"], a["nlb"])
                emit({"lba": {"ssd": a["ssd"], "nsid": a["nsid"], "slba": a["slba"],
                              "data": data.hex()}})
            elif item.kind == "fault":
                barrier()
                backend.inject_fault(a)
        where = "end of trace"
        barrier()
    except InvariantError as exc:
        try:
            flush()                     # what the unfinished segment produced, ordered
        except InvariantError:
            pass
        raise InvariantError(f"{where}: {exc}") from exc
    summary = {"summary": {"capsules": counts["capsules"], "responses": counts["responses"],
                           "to_software": counts["to_software"], "cycles": backend.cycles}}
    emit(summary)
    return summary


def replay(target_path, trace_path, backend="model", out=None, seed=0, waves=None,
           stderr=None):
    """The whole command; returns the exit status. ``out``: a path, or None for stdout."""
    stderr = stderr if stderr is not None else sys.stderr

    def say(message):
        print(f"nvmf-offload replay: {message}", file=stderr)

    try:
        target = load_target(target_path)
        trace = load_trace(trace_path, target)
        layout = check_with_driver(target)
    except ReplayInputError as exc:
        say(str(exc))
        return EXIT_INPUT
    try:
        runner = make_backend(backend, seed=seed, waves=waves)
    except BackendUnavailable as exc:
        say(str(exc))
        return EXIT_BACKEND
    if waves is not None and backend == "model":
        say(f"--waves {waves}: the model backend has no waveforms; ignored")
    if isinstance(runner, RtlBackend):
        try:
            stream = open(out, "w", encoding="utf-8") if out is not None else sys.stdout
        except OSError as exc:
            say(f"{out}: cannot write: {exc.strerror}")
            return EXIT_INPUT
        try:
            return runner.run(target, target_path, trace_path, stream, say)
        finally:
            if stream is not sys.stdout:
                stream.close()
    try:
        runner.configure(target, layout)
    except ReplayInputError as exc:
        say(str(exc))
        return EXIT_INPUT
    except BackendUnavailable as exc:
        say(str(exc))
        return EXIT_BACKEND
    try:
        stream = open(out, "w", encoding="utf-8") if out is not None else sys.stdout
    except OSError as exc:
        say(f"{out}: cannot write: {exc.strerror}")
        return EXIT_INPUT

    def emit(record):
        stream.write(json.dumps(record) + "\n")

    try:
        run_trace(runner, trace, emit)
    except InvariantError as exc:
        say(f"invariant violated: {exc}")
        return EXIT_INVARIANT
    finally:
        runner.close()
        if stream is not sys.stdout:
            stream.close()
        else:
            stream.flush()
    return EXIT_OK


# --- command line -------------------------------------------------------------------------------

def add_arguments(p):
    """The arguments of ``nvmf-offload replay`` (docs/replay.md)."""
    p.add_argument("target", metavar="TARGET.toml", help="engine, SSDs, subsystems, QPs, "
                                                         "initiator memory regions")
    p.add_argument("trace", metavar="TRACE.jsonl", help="capsules and actions, one JSON "
                                                        "object a line")
    p.add_argument("--backend", choices=BACKENDS, default="model",
                   help="what runs the trace: the reference model (default), or the RTL "
                        "engine in Icarus Verilog or Verilator")
    p.add_argument("--out", metavar="FILE", help="write the results here (default: stdout)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random service times and "
                                                       "stalls (default 0)")
    p.add_argument("--waves", metavar="FILE", help="waveform file (simulator backends)")
    return p


def main(args):
    """Entry point of the ``replay`` subcommand: ``args`` from :func:`add_arguments`."""
    return replay(args.target, args.trace, backend=args.backend, out=args.out,
                  seed=args.seed, waves=args.waves)

