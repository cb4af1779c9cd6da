"""The main job (``nvmf-offload demo``) end to end, on both simulators: a short workload
through the whole engine with every read checked inside the simulation, its report and
its plot."""

import re

import pytest

from sim import cli


@pytest.mark.cocotb
@pytest.mark.parametrize("sim, count", [("icarus", 12), ("verilator", 60)])
def test_demo_reports_every_command_verified_and_writes_its_plot(tmp_path, capsys, sim,
                                                                  count):
    plot = tmp_path / "lat.svg"
    status = cli.main(["demo", "--sim", sim, "--count", str(count), "--qd", "8",
                       "--plot", str(plot), "-o", str(tmp_path / "verilog")])
    out = capsys.readouterr().out
    assert status == 0, out
    reads, writes = map(int, re.search(rf"commands\s+{count} \((\d+) reads, (\d+) writes\)",
                                       out).groups())
    assert reads + writes == count
    verified = int(re.search(r"bytes read back and verified\s+(\d+)", out).group(1))
    assert verified == reads * 4096
    ssd, rdma_reads, rdma_writes = map(int, re.search(
        r"SSD commands / RDMA READs / WRITEs\s+(\d+) / (\d+) / (\d+)", out).groups())
    assert (ssd, rdma_reads, rdma_writes) == (count, writes, reads)
    assert f"latency plot: {plot}" in out and plot.read_text().lstrip().startswith("<?xml")
