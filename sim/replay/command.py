"""``nvmf-offload replay``: the whole command (:func:`replay`) and its arguments.
"""

import json
import sys

from sim.clocks import ClockPeriods
from sim.model.engine import InvariantError
from sim.replay.backends import RtlBackend, make_backend
from sim.replay.contract import (
    BACKENDS,
    EXIT_BACKEND,
    EXIT_INPUT,
    EXIT_INVARIANT,
    EXIT_OK,
    BackendUnavailable,
    ReplayInputError,
)
from sim.replay.counters import write_counters
from sim.replay.layout import check_with_driver
from sim.replay.results import run_trace
from sim.replay.target import load_target
from sim.replay.trace import load_trace


def replay(target_path, trace_path, backend="model", out=None, seed=0, waves=None,
           stderr=None, clocks=None):
    """The whole command; returns the exit status. ``out``: a path, or None for stdout;
    ``clocks``: the ``--clocks`` text (:class:`sim.clocks.ClockPeriods`), or None."""
    stderr = stderr if stderr is not None else sys.stderr

    def say(message):
        print(f"nvmf-offload replay: {message}", file=stderr)

    periods = None
    if clocks is not None:
        try:
            periods = ClockPeriods.parse(clocks)
        except ValueError as exc:
            say(str(exc))
            return EXIT_INPUT
    try:
        target = load_target(target_path)
        trace = load_trace(trace_path, target)
        layout = check_with_driver(target)
    except ReplayInputError as exc:
        say(str(exc))
        return EXIT_INPUT
    try:
        runner = make_backend(backend, seed=seed, waves=waves, clocks=periods)
    except BackendUnavailable as exc:
        say(str(exc))
        return EXIT_BACKEND
    if waves is not None and backend == "model":
        say(f"--waves {waves}: the model backend has no waveforms; ignored")
    if clocks is not None and backend == "model":
        say(f"--clocks {clocks}: the model backend has no clocks; ignored")
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
        write_counters(runner.counters())
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
    p.add_argument("--clocks", metavar="CORE[,PCIE,CSR]",
                   help="clock periods in ns (simulator backends): one for the single-clock "
                        "engine, or three to build it with a core, a PCIe and a CSR clock "
                        "domain (docs/clocks.md); default one 4 ns clock")
    return p


def main(args):
    """Entry point of the ``replay`` subcommand: ``args`` from :func:`add_arguments`."""
    return replay(args.target, args.trace, backend=args.backend, out=args.out,
                  seed=args.seed, waves=args.waves, clocks=args.clocks)
