"""``TARGET.toml``: read and validate it into a :class:`Target` (``docs/replay.md``).

Every problem is a :class:`ReplayInputError` naming the file, the line where one
is known, and the field.
"""

import dataclasses
import re
import tomllib
from pathlib import Path

from rtl.formats import QP_OPS_ALL
from rtl.params import CLOCK_DOMAINS, STAGING_MODES, EngineParams
from sim.driver import ops_mask
from sim.replay.contract import FORMAT, OP_NAMES, RING_ALIGN, U32, U64, MiB, ReplayInputError
from sim.replay.layout import _align


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
        elif key in ("clock_domains", "staging_mode"):
            choices = CLOCK_DOMAINS if key == "clock_domains" else STAGING_MODES
            if value not in choices:
                raise r.error(where + (key,), f"must be one of "
                              f"{', '.join(map(repr, choices))}, not {value!r}")
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
