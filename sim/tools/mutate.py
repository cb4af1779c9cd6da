# Over 700 lines: the site finder, the operators, the runner and the report share one
# mutant record and one walk of the gateware source; split, each would re-walk it.
"""Mutation testing of the gateware: ``nvmf-offload mutate``.

A mutant is the gateware with one small change planted in its Python source. A test set
that passes on the real gateware and fails on a mutant *kills* it; a mutant that every
test passes is a *survivor*: a change to the logic that the tests cannot see, either a
missing test or a change that makes no difference. The share of mutants killed is the
test set's mutation score.

Where mutants are planted
-------------------------
Only in gateware logic of ``rtl/*.py``: the bodies of ``elaborate`` methods (nested
functions included), the methods of the same class they call as ``self.name(...)``, and
the module-level helper functions they call, directly or through other helpers, by name
or imported from another ``rtl`` module (``popcount`` of ``rtl/stream_util.py`` is a
helper because ``rtl/parser.py``'s ``elaborate`` calls it). ``__init__``, signatures and
port widths are left alone, and so are parameter checks (``raise`` and ``assert``
statements and the conditions of an ``if`` whose body only raises), f-strings, the shape
and ``name`` of a ``Signal(...)`` declaration.

Operators (the operator name ends each mutant's id)
---------------------------------------------------
=========================  =============================================================
``eq2ne`` ``ne2eq``        ``==`` <-> ``!=``
``lt2ge`` ``ge2lt``        ``<`` <-> ``>=``
``gt2le`` ``le2gt``        ``>`` <-> ``<=``
``and2or`` ``or2and``      ``&`` <-> ``|``
``xor2or``                 ``^`` -> ``|``
``add2sub`` ``sub2add``    ``+`` <-> ``-``
``drop-not``               ``~x`` -> ``(x)``
``const+1`` ``const-1``    an integer constant ``c`` -> ``c + 1`` / ``c - 1``
                           (not below 0)
``mux-swap``               ``Mux(c, a, b)`` -> ``Mux(c, b, a)``
``negate-if``              ``with m.If(c)`` -> ``with m.If((c) == 0)`` (a negation
                           at any width)
``negate-elif``            the same for ``m.Elif(c)``
``drop-assign``            one element of ``m.d.<domain> += [...]`` removed (a
                           lost assignment); a single ``m.d.<domain> += x``
                           becomes ``+= []``
=========================  =============================================================

A site's id is ``FILE:LINE:COL:OPERATOR`` (1-based line and column of the operator
token, the ``~``, the constant, ``Mux``, the condition or the dropped element): stable
while the file's text up to that point is.

Classification
--------------
The campaign first copies the tree (``rtl/``, ``sim/``, ``tb/``, ``configs/``,
``examples/``, ``constraints/``, ``pyproject.toml``) into ``OUT/work-NAME/base`` once, so
that edits made to the checkout meanwhile change nothing; every mutant is a copy of that
snapshot with one file rewritten, built in its own ``NVMF_BUILD_DIR`` (the harness finds
its ``rtl`` from its own location, so a copy simulates its own gateware). The test set
must pass on the snapshot (the *baseline*). Then, per mutant:

* ``invalid``: a top of the list (``--tops``) does not elaborate (not counted);
* ``equivalent``: the Verilog of every listed top is byte for byte that of the snapshot:
  the change cannot alter what the test set simulates (not counted). The tops must
  therefore be every design the test set builds, with the same parameters;
* otherwise ``python -m pytest -x -q TESTS`` runs in the copy: ``killed`` (a test
  failed: the first failing test is recorded), ``survived`` (all passed), ``timeout``
  (still running after ``--timeout`` seconds: the process group is killed), or
  ``error`` (pytest could not run the tests; not counted).

A survivor found by review to be equivalent (the Verilog differs, the behaviour cannot)
is listed with its reason in the preset's ``equivalent`` table below; when the mutant
survives again, and its source line is still the one reviewed, it is reported as
``equivalent`` with that reason. Score = (killed + timeout) / (killed + timeout +
survived).

Sampling
--------
``--count N`` picks N sites, spread over the files in proportion to their sites (largest
remainder), drawn at random within each file from a generator seeded with ``--seed`` and
the file name: the same seed, files and sources give the same mutants. ``--count 0``
takes every site; ``--ids`` names the sites to run instead (e.g. the survivors of a
previous report, to re-check them).

Reports: ``OUT/NAME.json`` (every mutant) and ``OUT/NAME.md`` (counts, score, survivors
with location and change), NAME being the preset's (``mutants`` without one); the pytest
output of the baseline and of each mutant tested in ``OUT/logs-NAME/``. The mutants' trees
are removed as they finish (``--keep`` keeps them).
"""

import ast
import bisect
import io
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import tokenize
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

# ast.parse from the worker threads: CPython 3.11 raises "AST constructor recursion
# depth mismatch" when two threads parse at once
_PARSE_LOCK = threading.Lock()

__all__ = ["PRESETS", "Site", "Mutant", "enumerate_sites", "apply", "sample", "run_campaign",
           "add_arguments", "main"]

ROOT = Path(__file__).resolve().parents[2]

#: what a mutant's copy of the tree holds (the tests need nothing else)
TREE = ("rtl", "sim", "tb", "configs", "examples", "constraints", "pyproject.toml")

COUNTED = ("killed", "timeout", "survived")
STATUSES = ("killed", "timeout", "survived", "equivalent", "invalid", "error")

PRESETS = {
    # name: files, pytest arguments, Verilog tops (NAME:k=v,... of rtl.verilog.TOPS, or
    # MODULE:EXPRESSION), default count, reviewed equivalents {id: (source line, why)}
    "cq_handler": {
        "files": ["rtl/cq_handler.py"],
        "tests": 'tb/cq_handler -k "icarus and w128"',
        "tops": ["nvmf_cq_handler:data_width=128"],
        "count": 40,
        "equivalent": {
            "rtl/cq_handler.py:498:67:drop-assign": (
                "run_issued.eq(0), matched.eq(0), moved.eq(0), db_arm.eq(0), rbeat.eq(0),",
                "db_arm is already 0 in LOAD: it is set only in RUN (at a stop), and END "
                "leaves only when done, in the cycle that clears it (by db_place, or because "
                "nothing moved or the drain was cancelled); reset clears it too"),
        },
    },
    "sq_writer": {
        "files": ["rtl/sq_writer.py"],
        "tests": 'tb/sq_writer -k "icarus and w128"',
        "tops": ["nvmf_sq_writer:data_width=128"],
        "count": 30,
        # (the free check's old form had an equivalent mutant: a 2-bit slice of b_alloc
        # ANDed with a 1-bit one; it is now one 1-bit choice of ``b_alloc & b_answered &
        # b_none``, whose widened slice changes free_go)
        "equivalent": {},
    },
    "front": {
        "files": ["rtl/front.py"],
        "tests": 'tb/engine -k "icarus and (w128 or directed)"',
        "tops": ["nvmf_engine_front:data_width=128"],
        "count": 30,
        "equivalent": {
            "rtl/front.py:191:57:const+1": (
                "m.d.comb += head_next.eq(Mux((old.sq_head + 1)[:16] == qp.sqsize, 0, "
                "old.sq_head + 1))",
                "the 17-bit compare differs from the 16-bit one only when sq_head is 65535; "
                "then the 16-bit one wraps to 0 (sqsize 0) and the 17-bit one stores 65536 "
                "in the 16-bit sq_head, which is 0 too"),
            "rtl/front.py:380:61:const-1": (
                "width=data.Layout.cast(ExcSideband).size, depth=4)",
                "a FIFO's depth (the QP-error sideband): every writer waits on its level and "
                "every reader on its valid, so the depth changes when, never what, comes out"),
            "rtl/front.py:385:64:const+1": (
                "width=data.Layout.cast(BackendCommand).size, depth=4)",
                "a FIFO's depth (the served commands): as above, timing only"),
            "rtl/front.py:391:49:const-1": (
                "width=data.Layout.cast(CountRequest(16)).size, depth=4)",
                "one bit less of the subsystem-count FIFO drops the top bit of its last "
                "field, the 16-bit amount, which is always 1 there"),
        },
    },
    "parser": {
        "files": ["rtl/parser.py", "rtl/parser_top.py"],
        "tests": 'tb/parser -k "icarus and (w128 or directed)"',
        "tops": ["nvmf_parser:data_width=128"],
        "count": 30,
        "equivalent": {
            "rtl/parser.py:89:27:const+1": (
                "a, b, d = ops.pop(0), ops.pop(0), ops.pop(0)",
                "_sum_gt's carry-save step: with three or more operands left, pop(0), "
                "pop(1), pop(0) takes the same three as pop(0) three times (those at 0, 2, "
                "1), and a ^ b ^ d and the majority are symmetric in them; both sums "
                "(offset, end) give the same total"),
            "rtl/parser.py:464:16:const+1": (
                '"cut": 1,',
                "a 2-bit reader mode flag: it is loaded only from the 1-bit compare "
                "ins.mode == CUT (cur from inc or spare, same layout), so its top bit is "
                "always 0; every use ANDs it with 1-bit terms, and ~cur.cut (done_after) "
                "with the 1-bit cur_valid in finish, so the always-1 top bit never counts"),
        },
    },
    "control": {
        "files": ["rtl/control.py", "rtl/csr_bank.py", "rtl/table.py"],
        "tests": 'tb/control -k "icarus and default"',
        "tops": ["nvmf_control"],
        "count": 30,
        "equivalent": {
            "rtl/control.py:368:29:drop-assign": (
                "m.d.comb += busy.eq(1)",
                "CHECK: busy is a combinational Signal(init=1), and a comb signal that no "
                "statement of the active branch assigns takes its init value, so it is 1 "
                "there either way (run_cmd_busy_covers_the_whole_command checks busy in "
                "the cycle after the CMD write)"),
            "rtl/control.py:411:29:drop-assign": (
                "m.d.comb += busy.eq(1)",
                "READ: as in CHECK, busy is 1 there without the assignment (its init), so "
                "CMD writes stay refused (the same test checks a second CMD write)"),
            "rtl/csr_bank.py:89:48:const+1": (
                "part = Const(f.reset << f.lsb, 32)",
                "a constant field's read value as 33 bits instead of 32: a field's reset "
                "fits the field, so bit 32 is 0, and _read_value only feeds the 32-bit "
                "rdata, which drops it"),
            "rtl/table.py:69:20:const+1": (
                "rows = n + 1 if self.block_ram else n",
                "a block-RAM table one row deeper (n + 2): the write enable needs "
                "wr_addr < n and a read port's address is Mux(keep, addr, n) with keep "
                "needing addr < n, so the added row n + 1 is never written nor read"),
        },
    },
    "stream_util": {
        "files": ["rtl/stream_util.py"],
        "tests": "tb/formal/test_stream_formal.py",
        "tops": ["rtl.stream_util:RegisterSlice(4)", "rtl.stream_util:HoldRegister(4)"],
        "count": 0,
        "equivalent": {
            "rtl/stream_util.py:116:71:drop-assign": (
                "m.d.sync += [o_data[lo:hi].eq(spare_bits[lo:hi]), o_valid[k].eq(1),",
                "RegisterSlice: the spare entry fills only while o_valid is high and o_valid "
                "cannot fall while it is full (spare_valid implies o_valid, an invariant the "
                "formal proof checks), so o_valid is already 1 here"),
        },
    },
    "backend": {
        # whole-engine replays (the back end has no block testbench): the examples, the
        # fault traces and the control lines under load on Icarus, then the back end's
        # formal checks (queue credit, generation tag and one outcome); minutes a mutant
        "files": [f"rtl/backend/{unit}.py" for unit in (
            "admission", "common", "completion", "context_store", "core", "counters",
            "data_out", "dsm_check", "fence", "queue_failures", "queues", "rdma_read",
            "reclaim", "resources", "retirement", "status", "streamer", "submission",
            "timeout_scan")],
        "tests": ('tb/replay/test_replay_rtl.py tb/formal/test_queue_credit_formal.py '
                  'tb/formal/test_backend_outcome_formal.py '
                  '-k "prove or bmc or (icarus and (example or fault or under_load))"'),
        "tops": ["nvmf_backend:data_width=128"],
        "count": 24,
        "equivalent": {},
    },
}


# --- sites ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Site:
    """One mutation: ``text[start:end]`` (``expect``) of ``file`` becomes ``replacement``;
    ``original`` / ``mutated`` show the expression around it before and after."""

    file: str                   # relative to the tree, e.g. rtl/cq_handler.py
    line: int                   # 1-based
    col: int                    # 1-based, in characters
    op: str
    start: int                  # character offsets into the file's text
    end: int
    replacement: str
    expect: str                 # text[start:end]
    original: str               # the expression changed (the element, for drop-assign)
    mutated: str                # ... after the change ("" for a dropped element)
    source_line: str            # the (first) line the change is on, stripped

    @property
    def id(self):
        return f"{self.file}:{self.line}:{self.col}:{self.op}"

    def change(self):
        """The change, for a report: ``old -> new``."""
        return f"{_one_line(self.original)} -> {_one_line(self.mutated) or '(dropped)'}"


def _one_line(text):
    return " ".join(text.split())


_BINOPS = {ast.BitAnd: [("&", "|", "and2or")], ast.BitOr: [("|", "&", "or2and")],
           ast.BitXor: [("^", "|", "xor2or")],
           ast.Add: [("+", "-", "add2sub")], ast.Sub: [("-", "+", "sub2add")]}
_CMPOPS = {ast.Eq: ("==", "!=", "eq2ne"), ast.NotEq: ("!=", "==", "ne2eq"),
           ast.Lt: ("<", ">=", "lt2ge"), ast.GtE: (">=", "<", "ge2lt"),
           ast.Gt: (">", "<=", "gt2le"), ast.LtE: ("<=", ">", "le2gt")}


class _Text:
    """Offsets and operator tokens of one source file."""

    def __init__(self, text):
        self.text = text
        self.lines = [line + "\n" for line in text.split("\n")]
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        self.ops = []
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.OP:
                self.ops.append((self.starts[tok.start[0] - 1] + tok.start[1], tok.string))
        self.op_offsets = [o for o, _ in self.ops]

    def offset(self, lineno, col_bytes):
        """A character offset from ``ast``'s line and UTF-8 byte column."""
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode()[:col_bytes].decode())

    def start(self, node):
        return self.offset(node.lineno, node.col_offset)

    def end(self, node):
        return self.offset(node.end_lineno, node.end_col_offset)

    def position(self, offset):
        """``(line, column)``, both 1-based, of a character offset."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1

    def find_op(self, lo, hi, symbol):
        """Offset of the first ``symbol`` token in ``[lo, hi)``."""
        i = bisect.bisect_left(self.op_offsets, lo)
        while i < len(self.ops) and self.ops[i][0] < hi:
            if self.ops[i][1] == symbol:
                return self.ops[i][0]
            i += 1
        raise ValueError(f"no {symbol!r} token between offsets {lo} and {hi}")


class _Module:
    """A parsed ``rtl`` module: its functions, classes and imports."""

    def __init__(self, name, path, text):
        self.name, self.path, self.text = name, path, text
        self.tree = ast.parse(text, filename=str(path))
        self.functions = {n.name: n for n in self.tree.body if isinstance(n, ast.FunctionDef)}
        self.classes = {n.name: n for n in self.tree.body if isinstance(n, ast.ClassDef)}
        self.imported = {}          # local name -> (module, function)
        self.modules = {}           # local name -> module
        package = name.rpartition(".")[0]          # "backend" for "backend.core"
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom):
                base = _rtl_module(node.module, node.level, package)
                for alias in node.names:
                    local = alias.asname or alias.name
                    if base is None:
                        if node.level == 1 and node.module is None:     # from . import x
                            self.modules[local] = f"{package}.{alias.name}" if package \
                                else alias.name
                    else:
                        self.imported[local] = (base, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("rtl.") and alias.asname:
                        self.modules[alias.asname] = alias.name.split(".", 1)[1]


def _rtl_module(module, level, package=""):
    """The ``rtl``-relative dotted name of an import's module, or None (outside ``rtl``,
    or ``from . import x``)."""
    if level == 0:
        return module.split(".", 1)[1] if module and module.startswith("rtl.") else None
    if not module:
        return None
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[:len(parts) - (level - 1)]
    return ".".join(base + [module])


def _module_name(root, path):
    """``rtl``-relative dotted name of a gateware file: ``parser``, ``backend.core``;
    a package's ``__init__.py`` is the package."""
    rel = Path(path).resolve().relative_to((Path(root) / "rtl").resolve()).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _regions(modules):
    """``{module: [function nodes]}``: the gateware logic of every module (module doc)."""
    regions = {name: {} for name in modules}
    todo = []
    for name, mod in modules.items():
        for cls in mod.classes.values():
            methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
            if "elaborate" in methods:
                todo.append((name, cls.name, methods["elaborate"], methods))
    while todo:
        name, cls, fn, methods = todo.pop()
        if id(fn) in regions[name]:
            continue
        regions[name][id(fn)] = fn
        mod = modules[name]
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            target = None
            if isinstance(f, ast.Name):
                if f.id in mod.functions:
                    target = (name, f.id)
                elif f.id in mod.imported:
                    target = mod.imported[f.id]
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                if f.value.id == "self" and methods and f.attr in methods:
                    todo.append((name, cls, methods[f.attr], methods))
                elif f.value.id in mod.modules:
                    target = (mod.modules[f.value.id], f.attr)
            if target and target[0] in modules and target[1] in modules[target[0]].functions:
                todo.append((target[0], None, modules[target[0]].functions[target[1]], None))
    return {name: list(fns.values()) for name, fns in regions.items()}


def _skipped(node):
    """Subtrees of a region that are not gateware logic (module doc)."""
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Raise, ast.Assert, ast.JoinedStr)):
            out.append(sub)
        elif isinstance(sub, ast.If) and all(isinstance(s, ast.Raise) for s in sub.body):
            out.append(sub.test)
        elif (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
              and sub.func.id == "Signal"):
            out.extend(sub.args[:1])
            out.extend(k.value for k in sub.keywords if k.arg in ("shape", "name"))
        elif isinstance(sub, ast.Call):
            out.extend(k.value for k in sub.keywords if k.arg == "name")
    return out


def _walk(fn):
    """The nodes of a function's body, without the skipped subtrees."""
    skip = set()
    for stmt in fn.body:
        skip.update(id(n) for n in _skipped(stmt))
    stack = list(reversed(fn.body))
    while stack:
        node = stack.pop()
        if id(node) in skip:
            continue
        yield node
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _is_domain(target):
    """``m.d.<domain>``."""
    return (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute)
            and target.value.attr == "d")


def _sites_of(fn, src, file):
    t = src.text
    out = []

    def add(at, op, start, end, replacement, shown=None):
        """A site at offset ``at``; ``shown`` = the node whose text the report shows."""
        ds, de = (src.start(shown), src.end(shown)) if shown is not None else (start, end)
        line, col = src.position(at)
        out.append(Site(file, line, col, op, start, end, replacement, t[start:end],
                        t[ds:de], t[ds:start] + replacement + t[end:de],
                        src.lines[line - 1].strip()))

    for node in _walk(fn):
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            for sym, new, op in _BINOPS[type(node.op)]:
                at = src.find_op(src.end(node.left), src.start(node.right), sym)
                add(at, op, at, at + len(sym), new, node)
        elif isinstance(node, ast.Compare):
            left = node.left
            for cmp, right in zip(node.ops, node.comparators, strict=True):
                if type(cmp) in _CMPOPS:
                    sym, new, op = _CMPOPS[type(cmp)]
                    at = src.find_op(src.end(left), src.start(right), sym)
                    add(at, op, at, at + len(sym), new, node)
                left = right
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            s, e = src.start(node), src.end(node)
            add(s, "drop-not", s, e, f"({t[src.start(node.operand):src.end(node.operand)]})")
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            s, e = src.start(node), src.end(node)
            for op, value in (("const+1", node.value + 1), ("const-1", node.value - 1)):
                if value >= 0:
                    add(s, op, s, e, _int_like(t[s:e], value))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "Mux" and len(node.args) == 3 and not node.keywords):
            a, b = node.args[1], node.args[2]
            sa, ea, sb, eb = src.start(a), src.end(a), src.start(b), src.end(b)
            add(src.start(node), "mux-swap", sa, eb, t[sb:eb] + t[ea:sb] + t[sa:ea], node)
        elif isinstance(node, ast.With):
            for item in node.items:
                c = item.context_expr
                if (isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                        and c.func.attr in ("If", "Elif") and len(c.args) == 1):
                    s, e = src.start(c.args[0]), src.end(c.args[0])
                    add(s, f"negate-{c.func.attr.lower()}", s, e, f"({t[s:e]}) == 0")
        elif (isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add)
              and _is_domain(node.target)):
            v = node.value
            if isinstance(v, (ast.List, ast.Tuple)) and len(v.elts) > 1:
                elts = v.elts
                for k, elt in enumerate(elts):
                    if k < len(elts) - 1:
                        s, e = src.start(elt), src.start(elts[k + 1])
                    else:
                        s, e = src.end(elts[k - 1]), src.end(elt)
                    line, col = src.position(src.start(elt))
                    out.append(Site(file, line, col, "drop-assign", s, e, "", t[s:e],
                                    t[src.start(elt):src.end(elt)], "",
                                    src.lines[line - 1].strip()))
            else:
                s, e = src.start(v), src.end(v)
                add(s, "drop-assign", s, e, "[]")
    return out


def _int_like(text, value):
    """``value`` written like the literal ``text`` (hex stays hex)."""
    low = text.lower().replace("_", "")
    if low.startswith("0x"):
        digits = f"{value:x}"
        return "0x" + (digits if any(c in "abcdef" for c in text[2:]) else digits.upper())
    if low.startswith("0b"):
        return f"0b{value:b}"
    if low.startswith("0o"):
        return f"0o{value:o}"
    return str(value)


def enumerate_sites(root, files):
    """Every site of ``files`` (paths relative to ``root``), in file order, ids unique.

    Helper functions are found through the ``elaborate`` methods of every ``rtl`` module
    under ``root``."""
    root = Path(root)
    modules = {}
    for path in sorted((root / "rtl").rglob("*.py")):
        name = _module_name(root, path)
        modules[name] = _Module(name, path, path.read_text())
    for f in files:
        path = root / f
        name = _module_name(root, path)
        if name not in modules:
            modules[name] = _Module(name, path, path.read_text())
    regions = _regions(modules)
    sites = {}
    for f in files:
        mod = modules[_module_name(root, root / f)]
        src = _Text(mod.text)
        found = []
        for fn in regions.get(mod.name, []):
            found.extend(_sites_of(fn, src, f))
        for site in sorted(found, key=lambda s: (s.start, s.end, s.op)):
            sites.setdefault(site.id, site)
    return list(sites.values())


def apply(text, site):
    """``text`` with ``site``'s change."""
    if text[site.start:site.end] != site.expect:
        raise ValueError(f"{site.id}: the source changed under the site")
    return text[:site.start] + site.replacement + text[site.end:]


def sample(sites, count, seed):
    """``count`` sites spread over their files (module doc), in file order; all for 0."""
    if count <= 0 or count >= len(sites):
        return list(sites)
    by_file = {}
    for site in sites:
        by_file.setdefault(site.file, []).append(site)
    total = len(sites)
    quota = {f: count * len(s) // total for f, s in by_file.items()}
    rest = sorted(by_file, key=lambda f: (-(count * len(by_file[f]) % total), f))
    for f in rest[:count - sum(quota.values())]:
        quota[f] += 1
    chosen = set()
    for f, group in by_file.items():
        rng = random.Random(f"{seed}:{f}")
        chosen.update(s.id for s in rng.sample(group, quota[f]))
    return [s for s in sites if s.id in chosen]


# --- Verilog of the tops (run inside a copy of the tree) ------------------------------------

def _top_verilog(spec):
    """Verilog text of one ``--tops`` entry (runs in the tree it is imported from)."""
    import importlib

    from amaranth.back import verilog
    from amaranth.hdl import Signal
    from amaranth.lib import wiring

    from rtl.params import EngineParams
    from rtl.verilog import TOPS, generate

    head, _, rest = spec.partition(":")
    if head in TOPS:
        kwargs = {}
        for item in filter(None, rest.split(",")):
            key, _, value = item.partition("=")
            try:
                kwargs[key.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                kwargs[key.strip()] = value.strip()
        return generate(head, EngineParams(**kwargs))
    obj = eval(rest, vars(importlib.import_module(head)))       # noqa: S307 (a CLI argument)
    if isinstance(obj, wiring.Component):
        return verilog.convert(obj, name="top", emit_src=False)
    ports = [v for v in vars(obj).values() if isinstance(v, Signal)]
    return verilog.convert(obj, name="top", ports=ports, emit_src=False)


def _emit_tops(out_dir, specs):
    """Write the Verilog of each spec to ``out_dir/<index>.v`` (entry of a subprocess)."""
    import warnings

    warnings.simplefilter("ignore")
    for i, spec in enumerate(specs):
        Path(out_dir, f"{i}.v").write_text(_top_verilog(spec))


# --- one mutant -----------------------------------------------------------------------------

@dataclass
class Mutant:
    id: str
    file: str
    line: int
    col: int
    operator: str
    original: str
    mutated: str
    source_line: str
    mutated_line: str
    status: str = ""
    seconds: float = 0.0
    failing_test: str | None = None
    detail: str | None = None
    reason: str | None = None
    extra: dict = field(default_factory=dict)


def _copy_tree(src, dst):
    dst.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", ".pytest_cache")
    for name in TREE:
        path = src / name
        if path.is_dir():
            shutil.copytree(path, dst / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, dst / name)


def _env(tree):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT")) and k != "PYTEST_ADDOPTS"}
    env["NVMF_BUILD_DIR"] = str(tree / "build")
    env["PYTHONPATH"] = os.pathsep.join([str(tree)] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class _Procs:
    """The process groups started, so that an interrupt ends them (by id)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.live = set()

    def run(self, cmd, cwd, env, timeout):
        """``(returncode or None on timeout, output)``."""
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        with self.lock:
            self.live.add(proc)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out
        except subprocess.TimeoutExpired:
            self.kill(proc)
            out, _ = proc.communicate()
            return None, out
        finally:
            with self.lock:
                self.live.discard(proc)

    @staticmethod
    def kill(proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill_all(self):
        with self.lock:
            for proc in list(self.live):
                self.kill(proc)


def _verilog_of(procs, tree, specs, out_dir):
    """``(texts, None)`` or ``(None, error)``: the tops' Verilog as built in ``tree``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    code = ("import sys; from sim.tools.mutate import _emit_tops; "
            "_emit_tops(sys.argv[1], sys.argv[2:])")
    rc, out = procs.run([sys.executable, "-c", code, str(out_dir), *specs], tree, _env(tree),
                        timeout=900)
    if rc != 0:
        lines = [x for x in (out or "").strip().splitlines() if x.strip()]
        return None, (lines[-1] if lines else f"exit status {rc}")
    return [Path(out_dir, f"{i}.v").read_text() for i in range(len(specs))], None


def _pytest(procs, tree, tests, timeout, log=None):
    """``(status, failing test, detail)`` of the test set in ``tree``; the output goes to
    the file ``log`` when given."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider",
           *shlex.split(tests)]
    rc, out = procs.run(cmd, tree, _env(tree), timeout)
    if log is not None:
        Path(log).write_text(out or "")
    tail = "\n".join((out or "").strip().splitlines()[-3:])
    if rc is None:
        return "timeout", None, f"still running after {timeout:.0f} s"
    failed = None
    lines = (out or "").splitlines()
    summary = [i for i, x in enumerate(lines) if "short test summary info" in x]
    for line in lines[summary[-1] + 1:] if summary else []:
        if line.startswith(("FAILED ", "ERROR ")):
            failed = line.split(" ", 1)[1].split(" - ", 1)[0]
            break
    if rc == 0:
        return "survived", None, tail
    if rc == 1 or (rc == 2 and failed):
        return "killed", failed, tail
    return "error", failed, f"pytest exit status {rc}: {tail}"


def _mutated_line(text, site):
    mutated = apply(text, site)
    return mutated.split("\n")[site.line - 1].strip()


def _log_name(site_id):
    return site_id.replace("/", "_").replace(":", "_") + ".log"


def _run_mutant(procs, site, n, base, work, tests, tops, reference, timeout, reviewed, keep,
                logs):
    text = (base / site.file).read_text()
    m = Mutant(site.id, site.file, site.line, site.col, site.op, site.original,
               site.mutated, site.source_line, _mutated_line(text, site))
    started = time.monotonic()
    tree = work / f"m{n:04d}"
    try:
        mutated = apply(text, site)
        try:
            with _PARSE_LOCK:       # CPython 3.11's parser is not safe across threads
                ast.parse(mutated)
        except SyntaxError as exc:
            m.status, m.detail = "invalid", f"syntax: {exc}"
            return m
        _copy_tree(base, tree)
        (tree / site.file).write_text(mutated)
        texts, err = _verilog_of(procs, tree, tops, tree / "build" / "tops")
        if texts is None:
            m.status, m.detail = "invalid", err
        elif texts == reference:
            m.status = "equivalent"
            m.reason = "the Verilog of every top is identical"
        else:
            m.status, m.failing_test, m.detail = _pytest(procs, tree, tests, timeout,
                                                         logs / _log_name(site.id))
            review = reviewed.get(site.id)
            if m.status == "survived" and review:
                if review[0] == site.source_line:
                    m.status, m.reason = "equivalent", f"reviewed: {review[1]}"
                else:
                    m.extra["stale_review"] = review[0]
        return m
    finally:
        m.seconds = round(time.monotonic() - started, 1)
        if not keep:
            shutil.rmtree(tree, ignore_errors=True)


# --- the campaign ---------------------------------------------------------------------------

def run_campaign(files, tests, tops, *, count=40, seed=1, jobs=1, timeout=0, out="build/mutate",
                 name="mutants", ids=None, reviewed=None, keep=False, root=ROOT, command=None,
                 log=print):
    """Run a campaign (module doc); returns the report dict (also written under ``out``)."""
    out = Path(out).resolve()
    work = out / f"work-{name}"
    shutil.rmtree(work, ignore_errors=True)
    base = work / "base"
    _copy_tree(Path(root), base)
    procs = _Procs()
    logs = out / f"logs-{name}"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    t0 = time.monotonic()
    all_sites = enumerate_sites(base, files)
    if ids:
        known = {s.id: s for s in all_sites}
        missing = [i for i in ids if i not in known]
        if missing:
            raise SystemExit(f"nvmf-offload mutate: no such site: {', '.join(missing)}")
        chosen = [known[i] for i in ids]
    else:
        chosen = sample(all_sites, count, seed)
    log(f"{len(all_sites)} sites in {', '.join(files)}; {len(chosen)} mutants; "
        f"tests: {tests}; tops: {', '.join(tops)}")
    try:
        reference, err = _verilog_of(procs, base, tops, base / "build" / "tops")
        if reference is None:
            raise SystemExit(f"nvmf-offload mutate: the unmutated tops do not elaborate: {err}")
        b0 = time.monotonic()
        status, failed, detail = _pytest(procs, base, tests, timeout=3600,
                                         log=logs / "baseline.log")
        baseline = round(time.monotonic() - b0, 1)
        if status != "survived":
            raise SystemExit(f"nvmf-offload mutate: the test set does not pass on the "
                             f"unmutated tree ({status}, {failed}): {detail}")
        timeout = timeout or max(60.0, 3 * baseline + 30)
        log(f"baseline: the test set passes in {baseline} s; per-mutant timeout {timeout:.0f} s")
        done = [0]
        lock = threading.Lock()

        def one(job):
            n, site = job
            m = _run_mutant(procs, site, n, base, work, tests, tops, reference, timeout,
                            reviewed or {}, keep, logs)
            with lock:
                done[0] += 1
                why = m.failing_test or m.reason or (m.detail if m.status != "survived" else "")
                log(f"[{done[0]:3d}/{len(chosen)}] {m.status:<10} {m.seconds:6.1f}s  {m.id}  "
                    f"{site.change()}" + (f"  ({why})" if why else ""))
            return m

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            mutants = list(pool.map(one, enumerate(chosen)))
    except BaseException:
        procs.kill_all()
        raise
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    report = _report(name, files, tests, tops, count, seed, ids, len(all_sites), baseline,
                     timeout, mutants, round(time.monotonic() - t0, 1), command)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(report))
    log(f"score {report['score_text']}; reports: {out / name}.json, {out / name}.md")
    return report


def _report(name, files, tests, tops, count, seed, ids, sites, baseline, timeout, mutants,
            seconds, command):
    counts = {s: sum(m.status == s for m in mutants) for s in STATUSES}
    caught = counts["killed"] + counts["timeout"]
    counted = caught + counts["survived"]
    score = caught / counted if counted else None
    return {
        "name": name, "command": command, "files": files, "tests": tests, "tops": tops,
        "count": count, "seed": seed, "ids": ids, "sites": sites,
        "baseline_seconds": baseline, "timeout_seconds": timeout, "seconds": seconds,
        "counts": counts, "score": score,
        "score_text": (f"{caught}/{counted} = {100 * score:.1f} %" if counted else "n/a"),
        "mutants": [asdict(m) for m in mutants],
    }


def _cell(text):
    """Code in a Markdown table cell: one line (a multi-line expression's lines joined)."""
    text = " ".join(part.strip() for part in str(text).splitlines())
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def markdown(report):
    """The Markdown report of a campaign."""
    c = report["counts"]
    lines = [f"# Mutation campaign `{report['name']}`", ""]
    if report["command"]:
        lines += [f"Command: `{report['command']}`", ""]
    picked = (f"the sites {', '.join(report['ids'])}" if report["ids"] else
              f"{len(report['mutants'])} of {report['sites']} sites (seed {report['seed']})")
    lines += [
        f"- files: {', '.join(report['files'])}; {picked}",
        f"- tests: `{report['tests']}`; tops compared: {', '.join(report['tops'])}",
        f"- baseline run {report['baseline_seconds']} s; per-mutant timeout "
        f"{report['timeout_seconds']:.0f} s; campaign {report['seconds']} s",
        "",
        "| killed | timeout | survived | equivalent | invalid | error | score |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {c['killed']} | {c['timeout']} | {c['survived']} | {c['equivalent']} | "
        f"{c['invalid']} | {c['error']} | {report['score_text']} |",
        "",
        "Score = (killed + timeout) / (killed + timeout + survived).",
        "",
    ]
    survivors = [m for m in report["mutants"] if m["status"] == "survived"]
    lines += ["## Survivors", ""]
    if survivors:
        lines += ["| id | line | change |", "|---|---|---|"]
        for m in survivors:
            lines.append(f"| {m['id']} | {_cell(m['source_line'])} | "
                         f"{_cell(m['original'])} -> {_cell(m['mutated'] or '(dropped)')} |")
    else:
        lines.append("None.")
    reviewed = [m for m in report["mutants"]
                if m["status"] == "equivalent" and (m["reason"] or "").startswith("reviewed: ")]
    if reviewed:
        lines += ["", "## Survivors reviewed as equivalent (not counted)", "",
                  "| id | change | why |", "|---|---|---|"]
        for m in reviewed:
            lines.append(f"| {m['id']} | {_cell(m['original'])} -> "
                         f"{_cell(m['mutated'] or '(dropped)')} | "
                         f"{m['reason'].removeprefix('reviewed: ').replace('|', '/')} |")
    lines += ["", "## Every mutant", "",
              "| id | change | status | s | failing test / note |", "|---|---|---|---:|---|"]
    for m in report["mutants"]:
        note = m["failing_test"] or m["reason"] or (m["detail"] if m["status"] in (
            "invalid", "error", "timeout") else "") or ""
        lines.append(f"| {m['id']} | {_cell(m['original'])} -> "
                     f"{_cell(m['mutated'] or '(dropped)')} | {m['status']} | {m['seconds']} | "
                     f"{_one_line(note).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


# --- command line ---------------------------------------------------------------------------

def add_arguments(p):
    """The arguments of ``nvmf-offload mutate``."""
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="a block's files, tests, tops and count (the options below override)")
    p.add_argument("--files", nargs="+", metavar="FILE", help="rtl/*.py files to mutate")
    p.add_argument("--tests", metavar="ARGS", help='pytest arguments, one string, e.g. '
                   '\'tb/cq_handler -k "icarus and w128"\'')
    p.add_argument("--tops", nargs="+", metavar="TOP",
                   help="every design the tests build, for the equivalence check: "
                        "NAME[:key=value,...] (rtl.verilog.TOPS, EngineParams) or "
                        "MODULE:EXPRESSION (an Elaboratable)")
    p.add_argument("--count", type=int, help="mutants to sample (0: every site; default: the "
                                              "preset's, else 40)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (default 1)")
    p.add_argument("--ids", nargs="+", metavar="ID",
                   help="run these sites (FILE:LINE:COL:OPERATOR) instead of a sample")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="mutants run at once (default: half the cores)")
    p.add_argument("--timeout", type=float, default=0,
                   help="seconds per mutant's test run (default: 3 x the baseline + 30, at "
                        "least 60)")
    p.add_argument("--out", default="build/mutate", metavar="DIR",
                   help="reports go to DIR/NAME.json and DIR/NAME.md (default build/mutate)")
    p.add_argument("--list", action="store_true", help="list the sites and exit")
    p.add_argument("--keep", action="store_true", help="keep the mutants' trees")
    return p


def _command(args, count):
    """The command line that repeats this campaign (for the report)."""
    words = ["nvmf-offload", "mutate"]
    if args.preset:
        words += ["--preset", args.preset]
    for option in ("files", "tops", "ids"):
        if getattr(args, option):
            words += [f"--{option}", *getattr(args, option)]
    if args.tests:
        words += ["--tests", args.tests]
    if not args.ids:
        words += ["--count", str(count), "--seed", str(args.seed)]
    words += ["--jobs", str(args.jobs)]
    if args.timeout:
        words += ["--timeout", f"{args.timeout:g}"]
    return " ".join(shlex.quote(w) for w in words)


def main(args):
    """Entry point of the ``mutate`` subcommand."""
    preset = PRESETS.get(args.preset, {})
    files = args.files or preset.get("files")
    tests = args.tests or preset.get("tests")
    tops = args.tops or preset.get("tops")
    if not files:
        raise SystemExit("nvmf-offload mutate: give --files or --preset")
    if args.list:
        for site in enumerate_sites(ROOT, files):
            print(f"{site.id}  {site.change()}")
        return 0
    if not tests or not tops:
        raise SystemExit("nvmf-offload mutate: give --tests and --tops (or --preset)")
    count = args.count if args.count is not None else preset.get("count", 40)
    command = _command(args, count)
    report = run_campaign(files, tests, tops, count=count, seed=args.seed, jobs=args.jobs,
                          timeout=args.timeout, out=args.out, name=args.preset or "mutants",
                          ids=args.ids, reviewed=preset.get("equivalent", {}), keep=args.keep,
                          command=command)
    return 0 if report["counts"]["error"] == 0 else 1
