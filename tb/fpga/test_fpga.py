"""The FPGA flow (``nvmf-offload fpga``, ``sim/tools/fpga.py``, ``rtl/fpga_harness.py``).

Fast tests run by default: the harness and the flow's helpers, a failing tool, and the
whole flow on the smallest top (``--top parser --config small``: about a minute with a
warm YoWASP cache, up to two more while YoWASP compiles its WebAssembly on a fresh
machine). Place and route of the control plane and of the whole engine take from minutes
to an hour: they run only with ``NVMF_FPGA_LONG=1`` (docs/fpga.md).
"""

import json
import os
import re

import pytest
from amaranth.back import verilog

from rtl.fpga_harness import HARNESS_TOP, TimingHarness, verilog_ports
from rtl.params import load_params
from rtl.verilog import generate
from sim.cli import main as cli_main
from sim.tools import fpga

LONG = pytest.mark.skipif(not os.environ.get("NVMF_FPGA_LONG"),
                          reason="long place and route: set NVMF_FPGA_LONG=1")

KEYS = ("fmax_mhz", "target_mhz", "luts", "ffs", "brams", "dsps", "board", "config", "top",
        "met")


@pytest.fixture(scope="module")
def parser_small_text():
    return generate("nvmf_parser", load_params("small"))


def test_ports_are_read_from_the_verilog(parser_small_text):
    ports = verilog_ports(parser_small_text, "nvmf_parser")
    names = {name: (d, w) for d, name, w in ports}
    assert names["clk"] == ("input", 1) and names["rst"] == ("input", 1)
    assert names["s_axis_capsule_tdata"] == ("input", 64)
    assert names["s_axis_capsule_tready"] == ("output", 1)
    harness = TimingHarness("nvmf_parser", ports)
    assert harness.in_bits == sum(w for d, n, w in ports if d == "input") - 2
    assert harness.out_bits == sum(w for d, n, w in ports if d == "output")
    text = verilog.convert(harness, name=HARNESS_TOP,
                           ports=[harness.sin, harness.load, harness.sout], emit_src=False)
    assert re.search(r"^\s*nvmf_parser core \(", text, re.MULTILINE)
    for name in ("clk", "rst", "sin", "load", "sout"):
        assert re.search(rf"^\s*(input|output) {name};", text, re.MULTILINE), name


def test_every_fpga_top_is_a_verilog_top():
    from rtl.verilog import TOPS as VERILOG_TOPS
    assert set(fpga.TOPS.values()) <= set(VERILOG_TOPS)
    assert {"engine", "parser", "control", "front", "sq_writer", "cq_handler",
            "backend"} <= set(fpga.TOPS)


def test_lpf_frequency_is_replaced():
    board = fpga.BOARDS["ecp5-85k"]
    text, target = fpga._lpf_text(board, None)
    assert target == 150 and 'LOCATE COMP "clk"' in text
    text, target = fpga._lpf_text(board, 62.5)
    assert target == 62.5 and 'FREQUENCY PORT "clk" 62.5 MHZ;' in text


def test_a_failing_tool_reports_its_last_lines(tmp_path):
    cmd = ["sh", "-c", "for i in $(seq 1 50); do echo line $i; done; exit 3"]
    with pytest.raises(fpga.FlowError, match="exit status 3") as info:
        fpga._run(cmd, tmp_path / "x.log", tmp_path, "the tool")
    assert info.value.tail.splitlines()[-1] == "line 50"
    assert "line 20" not in info.value.tail


def test_unknown_configuration_exits_non_zero(tmp_path):
    with pytest.raises(SystemExit, match="nvmf-offload fpga: no configuration 'nope'"):
        cli_main(["fpga", "--top", "parser", "--config", "nope", "-o", str(tmp_path)])


def _check(result, top, config, target=150.0):
    assert set(KEYS) <= set(result)
    assert result["board"] == "ecp5-85k" and result["top"] == top
    assert result["config"] == config and result["target_mhz"] == target
    assert 10 < result["fmax_mhz"] < 500
    assert result["met"] == (result["fmax_mhz"] >= target)
    # the harness's own cells are part of the count, and nothing was optimised away
    assert result["ffs"] > result["harness"]["ffs"]
    assert result["luts"] > result["harness"]["luts"]
    assert result["luts"] < result["available"]["luts"]
    assert 0 <= result["brams"] <= result["available"]["brams"]
    assert 0 <= result["dsps"] <= result["available"]["dsps"]
    assert result["critical_path"]["delay_ns"] > 0


@pytest.mark.fpga
def test_flow_on_the_parser_of_the_small_configuration(tmp_path, capsys):
    assert cli_main(["fpga", "--board", "ecp5-85k", "--top", "parser", "--config", "small",
                     "--json", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    result = json.loads(out)
    _check(result, "parser", "small")
    assert result["router"] == "router2"
    build = tmp_path / "ecp5-85k" / "small" / "parser"
    for name in ("nvmf_parser.v", "nvmf_fpga_top.v", "yosys.log", "stat.txt", "synth.json",
                 "pnr.log", "report.json", "result.json"):
        assert (build / name).is_file(), name
    assert json.loads((build / "result.json").read_text()) == result
    # the parser's QP table is in distributed RAM; its data path has no multiplier
    assert result["dsps"] == 0


@pytest.mark.fpga
@LONG
@pytest.mark.parametrize("top,config", [("control", "small"), ("parser", "default"),
                                        ("control", "default"), ("engine", "small"),
                                        ("engine", "default")])
def test_flow_long(tmp_path, top, config):
    result = fpga.run_flow(config=config, top=top, out_root=tmp_path, log=lambda msg: None)
    _check(result, top, config)
