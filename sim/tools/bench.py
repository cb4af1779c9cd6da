"""``nvmf-offload bench``: benchmarks in simulated cycles, each against its physical limit.

Two kinds of records, one list (``--json`` prints it), each
``{"metric", "data_width", "value", "limit", "ratio"}``:

* the capsule parser alone (``parser_*``, every DATA_W): capsules a cycle vs one
  capsule per SQE beat count (``sim/cosim/parser_bench.py``, ``run_throughput``);
* the whole engine (``nvmf_engine``, DATA_W 128 and 512) with the device models of
  ``sim/devices/ssd_bus.py`` (the SSD's bus face), scenarios of ``sim/cosim/engine_bench.py``:

  - ``engine_cmds_per_cycle_<op>``: data-less commands (Flush, Write Zeroes), back
    to back over 8 QPs and 4 backend queues, SSD with no latency; limit one command
    per SQE beat count, ``DATA_W/8/64`` a cycle;
  - ``engine_bytes_per_cycle_<read|write>_<4k|128k>``: keyed-SGL transfers, every
    command queued at once; limit ``DATA_W/8`` bytes a cycle;
  - ``latency_<from>_to_<to>_<op>``: one command alone, cycles (limit and ratio
    null): capsule last beat to the SQ-tail doorbell write, MSI-X write to the
    response's first beat;
  - ``engine_iops_4k_read_ssd<N>M``: 4 KiB Reads on an SSD of N M IOPS at 250 MHz (a
    rate limiter, one command per ``250e6 / IOPS`` cycles, plus a fixed latency);
    commands a cycle against ``min(SSD IOPS, 100GbE line rate in 4 KiB payloads)``
    converted to commands a cycle at 250 MHz;
  - ``engine_iops_4k_read_ssd2.5M_deep``: 4 KiB Reads at random blocks on an SSD of
    2.5 M IOPS whose every command takes 20,000 cycles (80 us at 250 MHz), so that
    about 200 commands must be outstanding to keep it busy; an engine of
    :func:`deep_params` (16 MiB of external staging, 256 contexts) and 256-entry SSD
    queues; limit as above. ``engine_peak_outstanding_deep``: the most commands the
    SSD held at once in that run (no limit);
  - ``sim_cycles_per_second_<simulator>``: simulation speed, wall clock (reported,
    never asserted; limit and ratio null).

Rates are slopes in steady state: responses from the first quarter on (the warm-up
left out) over the cycles between them. Everything is in simulated cycles except
the simulation speed.
"""

import json
import re
import sys
import tempfile
from pathlib import Path

from rtl.params import DATA_WIDTHS, EngineParams, load_params
from sim.clocks import ENV as CLOCKS_ENV
from sim.clocks import ClockPeriods

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "performance.md"

ENGINE_WIDTHS = (128, 512)
CLOCK_HZ = 250e6
LINE_RATE_BPS = 100e9                   # 100GbE
BLOCK = 4096
SSD_IOPS = (1.6e6, 2.5e6)
SSD_LATENCY = 1000                      # cycles after the rate limiter (4 us at 250 MHz)
DEEP_IOPS = 2.5e6
DEEP_LATENCY = 20000                    # 80 us at 250 MHz: 200 commands in flight at 2.5 M
SQE_BYTES = 64

MARK_BEGIN = "<!-- bench:{} begin (nvmf-offload bench --write-docs) -->"
MARK_END = "<!-- bench:{} end -->"


# --- limits and records ---------------------------------------------------------------------

def command_limit(width):
    """Commands a cycle when every command is one SQE on the capsule stream."""
    return width / 8 / SQE_BYTES


def bytes_limit(width):
    """Bytes a cycle of one data path beat a cycle."""
    return width / 8


def line_rate_iops(payload=BLOCK):
    """100GbE line rate in ``payload``-byte transfers a second (headers left out)."""
    return LINE_RATE_BPS / 8 / payload


def iops_limit(ssd_iops, clock_hz=CLOCK_HZ):
    """Commands a cycle the SSD and the line allow, at ``clock_hz``."""
    return min(ssd_iops, line_rate_iops()) / clock_hz


def ssd_interval(ssd_iops, clock_hz=CLOCK_HZ):
    """Cycles between command starts of an SSD of ``ssd_iops``."""
    return clock_hz / ssd_iops


def record(metric, width, value, limit=None, digits=4):
    """One JSON record; ``ratio = value / limit`` (None without a limit)."""
    ratio = None
    if limit is not None and value is not None:
        ratio = round(value / limit, 4)
    return {"metric": metric, "data_width": width,
            "value": None if value is None else round(value, digits),
            "limit": None if limit is None else round(limit, 6), "ratio": ratio}


def _iops_name(iops):
    return f"{iops / 1e6:g}M"


# --- scenarios --------------------------------------------------------------------------------

def scenarios(quick=False):
    """The engine scenarios (``sim/cosim/engine_bench.py``), smaller with ``quick``."""
    n_rate, n_4k, n_big, n_iops = (48, 16, 4, 32) if quick else (400, 128, 12, 200)
    out = [{"kind": "latency", "op": op} for op in ("flush", "read", "write")]
    out += [{"kind": "rate", "op": "flush", "count": n_rate}]
    if not quick:
        out += [{"kind": "rate", "op": "write_zeroes", "count": n_rate}]
    for op in ("read", "write"):
        out.append({"kind": "data", "op": op, "size": 4096, "count": n_4k})
    for iops in SSD_IOPS:
        out.append({"kind": "iops", "ssd_iops": iops, "interval": ssd_interval(iops),
                    "latency": SSD_LATENCY, "count": n_iops})
    for op in ("write", "read"):
        out.append({"kind": "data", "op": op, "size": 131072, "count": n_big})
    return out


def deep_scenarios(quick=False):
    """The deep IOPS row: random 4 KiB Reads, hundreds outstanding (a run of its own, on
    an engine of :func:`deep_params` with the ``deep`` bench target)."""
    return [{"kind": "iops", "ssd_iops": DEEP_IOPS, "interval": ssd_interval(DEEP_IOPS),
             "latency": DEEP_LATENCY, "count": 256 if quick else 1200, "seed": 7,
             "deep": True}]


def deep_params(width):
    """The engine of the deep row: 16 MiB of external staging, 256 contexts."""
    return EngineParams(data_width=width, staging_bytes=16 << 20, contexts=256)


def speed_scenarios():
    """A short run for the simulation speed of a second simulator."""
    return [{"kind": "rate", "op": "flush", "count": 32},
            {"kind": "data", "op": "read", "size": 4096, "count": 8}]


def bench_params(width):
    """The engine the bench simulates: 1 MiB staging, 64 contexts (as ``demo``)."""
    return EngineParams(data_width=width, staging_bytes=1 << 20, contexts=64)


def _size_name(size):
    return f"{size // 1024}k"


def engine_records(width, report, sim=None):
    """Records from one report of ``run_bench`` (``sim/cosim/engine_bench.py``)."""
    out = []
    for sc in report["scenarios"]:
        res = sc["result"]
        kind = sc["kind"]
        if res.get("hung"):         # nothing completed: the rate is 0 (stderr says why)
            zero = {"steady": {"commands_per_cycle": 0.0, "bytes_per_cycle": 0.0},
                    "capsule_to_sq_doorbell": None, "msix_to_response": None}
            res = dict(zero, **{k: v for k, v in res.items() if k not in zero})
        if kind == "latency":
            out.append(record(f"latency_capsule_to_sq_doorbell_{sc['op']}", width,
                              res["capsule_to_sq_doorbell"], digits=0))
            out.append(record(f"latency_msix_to_response_{sc['op']}", width,
                              res["msix_to_response"], digits=0))
        elif kind == "rate":
            out.append(record(f"engine_cmds_per_cycle_{sc['op']}", width,
                              res["steady"]["commands_per_cycle"], command_limit(width)))
        elif kind == "data":
            out.append(record(f"engine_bytes_per_cycle_{sc['op']}_{_size_name(sc['size'])}",
                              width, res["steady"]["bytes_per_cycle"], bytes_limit(width),
                              digits=3))
        elif kind == "iops":
            deep = "_deep" if sc.get("deep") else ""
            out.append(record(f"engine_iops_4k_read_ssd{_iops_name(sc['ssd_iops'])}{deep}",
                              width, res["steady"]["commands_per_cycle"],
                              iops_limit(sc["ssd_iops"]), digits=6))
            if deep:
                out.append(record("engine_peak_outstanding_deep", width,
                                  res.get("peak_in_flight"), digits=0))
    if sim is not None and report.get("cycles_per_second"):
        out.append(record(f"sim_cycles_per_second_{sim}", width, report["cycles_per_second"],
                          digits=0))
    return out


# --- running ----------------------------------------------------------------------------------

def run_engine(sim, width, scenario_list, profile=False, params=None, clocks=None,
               deep=False):
    """Run ``run_bench`` on ``sim`` at ``width``; the report it wrote. ``profile``: each
    scenario's result also gets the cycles every unit's FSM spent in each state.
    ``params``: the engine to build (default :func:`bench_params` of ``width``);
    ``clocks``: a :class:`sim.clocks.ClockPeriods` (default one 4 ns clock; cycles are
    always the core clock's).

    A scenario that hangs the engine ends its simulation (result ``{"hung": true}``);
    the scenarios after it run in a new one, on a fresh engine.
    """
    todo, done, cycles, wall = list(scenario_list), [], 0, 0.0
    while todo:
        rep = _run_engine_once(sim, params or bench_params(width), todo, profile, clocks,
                               deep)
        done += rep["scenarios"]
        cycles += rep["cycles"]
        wall += rep["wall_seconds"]
        todo = todo[len(rep["scenarios"]):]
        if rep["scenarios"] and rep["scenarios"][-1]["result"].get("hung"):
            sc = rep["scenarios"][-1]
            print(f"bench: DATA_W {width}: {_describe(sc)} hung the engine: "
                  f"{sc['result']['message']}; FSM states {sc['result']['states']}",
                  file=sys.stderr)
    return {"data_width": width, "scenarios": done, "cycles": cycles, "wall_seconds": wall,
            "cycles_per_second": cycles / wall if wall else None}


def _describe(sc):
    return sc["kind"] + " " + " ".join(str(sc[k]) for k in ("op", "size", "ssd_iops")
                                       if k in sc)


def _run_engine_once(sim, params, scenario_list, profile, clocks=None, deep=False):
    from sim.cosim.harness import run_cocotb

    with tempfile.TemporaryDirectory() as tmp:
        report, log = Path(tmp) / "report.json", Path(tmp) / "sim.log"
        env = {"NVMF_BENCH": json.dumps({"scenarios": scenario_list, "deep": deep}),
               "NVMF_REPORT": str(report)}
        if profile:
            env["NVMF_BENCH_PROFILE"] = "1"
        if clocks is not None:
            params = clocks.params(params)
            env[CLOCKS_ENV] = clocks.text()
        try:
            run_cocotb(sim, "nvmf_engine", params, "sim.cosim.engine_bench",
                       testcase="run_bench", extra_env=env, log_file=log)
        except (AssertionError, RuntimeError, SystemExit) as exc:
            sys.stderr.write(log.read_text()[-6000:] if log.exists() else "")
            raise SystemExit(f"nvmf-offload: bench simulation failed: {exc}") from exc
        return json.loads(report.read_text())


# --- profile: cycles per command in each FSM state -------------------------------------------

_FSM_FILES = {"backend": "rtl/backend", "sq_writer": "rtl/sq_writer.py",
              "cq_handler": "rtl/cq_handler.py", "staging": "rtl/staging.py"}


def fsm_states(path, name):
    """State names of ``m.FSM(name=name)`` in ``path`` (a file, or a package whose files
    are searched) by encoding: Amaranth numbers the states in the order they are first
    named (``m.State``, ``m.next``), which in these blocks is their textual order."""
    path = Path(path)
    if path.is_dir():
        for f in sorted(path.glob("*.py")):
            found = fsm_states(f, name)
            if found:
                return found
        return []
    text = path.read_text()
    start = text.find(f'm.FSM(name="{name}")')
    if start < 0:
        return []
    nxt = text.find("m.FSM(name=", start + 1)
    block = text[start:nxt if nxt > 0 else len(text)]
    order = []
    for m in re.finditer(r'm\.State\("(\w+)"\)|m\.next = "(\w+)"', block):
        state = m.group(1) or m.group(2)
        if state not in order:
            order.append(state)
    return order


def profile_table(report, root=ROOT):
    """Cycles per command each FSM spends in each state, per throughput scenario."""
    lines = []
    for sc in report["scenarios"]:
        res = sc["result"]
        prof = res.get("profile")
        if not prof or sc["kind"] == "latency" or res.get("hung"):
            continue
        n = res["commands"]
        what = _describe(sc)
        lines.append(f"{what}: {n} commands, {res['overall_cycles']} cycles "
                     f"({res['overall_cycles'] / n:.1f} a command)")
        for key, counts in prof.items():
            unit, reg = key.split(".")
            if not reg.endswith("_state"):      # a stream: go / stall / idle
                parts = [f"{k} {counts.get(k, 0) / n:.1f}" for k in ("go", "stall", "idle")]
                lines.append(f"  {key:<28} " + ", ".join(parts))
                continue
            names = fsm_states(root / _FSM_FILES[unit], reg.removesuffix("_state"))
            parts = [f"{names[int(v)] if int(v) < len(names) else v} {c / n:.1f}"
                     for v, c in sorted(counts.items(), key=lambda kv: int(kv[0]))]
            lines.append(f"  {key:<28} " + ", ".join(parts))
    return "\n".join(lines)


def parser_records(args, widths):
    from sim.cli import _run_parser_sim

    base = load_params(getattr(args, "config", None))
    out = []
    for width in widths:
        params = load_params(None, data_width=width, qp_count=base.qp_count,
                             max_capsule_bytes=base.max_capsule_bytes)
        rep = _run_parser_sim(args.sim, params, "run_throughput", {"NVMF_COUNT": args.count})
        out.append(record("parser_capsules_per_cycle_64B", width, rep["rate"], rep["limit"]))
    return out


def main(args):
    quick = getattr(args, "quick", False)
    clocks = None
    if getattr(args, "clocks", None):
        try:
            clocks = ClockPeriods.parse(args.clocks)
        except ValueError as exc:
            raise SystemExit(f"nvmf-offload bench: {exc}") from None
        if args.write_docs and clocks.split:
            raise SystemExit(f"nvmf-offload bench: --write-docs records the single-clock "
                             f"engine; drop --clocks {args.clocks}")
    if args.data_width:
        parser_widths = engine_widths = [args.data_width]
    else:
        parser_widths, engine_widths = list(DATA_WIDTHS), list(ENGINE_WIDTHS)
    records = parser_records(args, parser_widths)
    for width in engine_widths:
        print(f"bench: whole engine at DATA_W {width} on {args.sim}...", file=sys.stderr,
              flush=True)
        profile = getattr(args, "profile", False)
        rep = run_engine(args.sim, width, scenarios(quick), profile=profile, clocks=clocks)
        records += engine_records(width, rep, args.sim)
        if not getattr(args, "no_deep", False):
            print(f"bench: deep 4 KiB random reads at DATA_W {width} (256 contexts, 16 MiB "
                  f"of staging)...", file=sys.stderr, flush=True)
            rep = run_engine(args.sim, width, deep_scenarios(quick), params=deep_params(width),
                             clocks=clocks, deep=True)
            records += engine_records(width, rep)
        if profile:
            print(f"FSM cycles per command at DATA_W {width}:\n{profile_table(rep)}",
                  file=sys.stderr)
    other = "icarus" if args.sim == "verilator" else "verilator"
    if not quick and not getattr(args, "no_speed", False):
        width = engine_widths[0]
        print(f"bench: simulation speed on {other} at DATA_W {width}...", file=sys.stderr,
              flush=True)
        rep = run_engine(other, width, speed_scenarios())
        records.append(record(f"sim_cycles_per_second_{other}", width,
                              rep["cycles_per_second"], digits=0))
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(table(records))
    if args.write_docs:
        write_docs(records, args)
    return 0


def table(records):
    rows = [(r["metric"], r["data_width"], _show(r["value"]), _show(r["limit"]),
             _show(r["ratio"])) for r in records]
    from sim.cli import text_table
    return text_table(rows, ("metric", "DATA_W", "value", "limit", "ratio"))


def _show(value):
    return "-" if value is None else value


# --- docs/performance.md -----------------------------------------------------------------------

def replace_section(text, name, body):
    """``text`` with the part between the markers of section ``name`` replaced by
    ``body``; the markers and the section appended at the end when missing."""
    begin, end = MARK_BEGIN.format(name), MARK_END.format(name)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    i = text.find(begin)
    j = text.find(end, i if i >= 0 else 0)
    if i < 0 or j < 0:
        return text.rstrip() + "\n\n" + block + "\n"
    return text[:i] + block + text[j + len(end):]


def _command(args, width=None):
    cmd = f"nvmf-offload bench --sim {args.sim}"
    if width:
        cmd += f" --data-width {width}"
    if getattr(args, "quick", False):
        cmd += " --quick"
    return cmd


def parser_section(records, args):
    rows = "\n".join(
        f"| {r['data_width']} | {r['value']:.4f} | {r['limit']:.4f} | {r['ratio']:.3f} |"
        for r in records if r["metric"].startswith("parser_"))
    return f"""Reproduce: `{_command(args)} --count {args.count}` (`--json` for the records).

| DATA_W | capsules / cycle | limit | ratio |
|---|---|---|---|
{rows}"""


def engine_section(records, args):
    lines = [f"Reproduce one width: `{_command(args, 128)}` (or `--data-width 512`); both "
             f"and the parser: `{_command(args)}`. Simulated cycles; the SSD model has no "
             "latency except in the IOPS rows.", "",
             "| metric | DATA_W | value | limit | ratio |", "|---|---|---|---|---|"]
    for r in records:
        if r["metric"].startswith("parser_"):
            continue
        lines.append(f"| `{r['metric']}` | {r['data_width']} | {_show(r['value'])} | "
                     f"{_show(r['limit'])} | {_show(r['ratio'])} |")
    return "\n".join(lines)


def write_docs(records, args, path=DOCS):
    text = path.read_text()
    text = replace_section(text, "parser", parser_section(records, args))
    if any(not r["metric"].startswith("parser_") for r in records):
        text = replace_section(text, "engine", engine_section(records, args))
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)
