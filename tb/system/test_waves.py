"""The interface diagrams of ``docs/waves.md`` from a fresh simulation: a short replay
on Icarus with ``--waves`` (VCD), drawn by ``python -m sim.tools.wavedrom --sim icarus``. Every
interface yields a diagram with a transfer on each of its channels, and the committed
diagrams have the same lanes (their cycle numbers and values may move with the RTL's
timing).

Icarus, not Verilator: the engine's Verilator build with tracing took about three
minutes of the CI run, Icarus builds and runs this in about ten seconds; the
lanes are the same (docs/waves.md was drawn on Verilator). To keep the build
short, the engine is the ``small`` configuration (``configs/small.toml``)
and the trace two capsules of ``examples/replay/basic.jsonl``: a 4 KiB Write whose
data the engine fetches with an RDMA READ, then a Read of the same blocks that it
returns with an RDMA WRITE. The lanes do not depend on the configuration.
"""

import json
import tomllib
from pathlib import Path

import pytest

from sim.tools import wavedrom

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "waves"
QPN = 5

TARGET = """\
format = 1

[engine]
{engine}

[[ssd]]
name = "ssd0"
queue_entries = 16
latency_cycles = 100
  [[ssd.namespace]]
  nsid = 1
  nsze = 1024

[[subsystem]]
name = "nqn.2026-11.io.example:waves"
staging_bytes = 65536
  [[subsystem.namespace]]
  fe_nsid = 1
  ssd = "ssd0"
  nsid = 1

[[qp]]
qpn = {qpn}
subsystem = "nqn.2026-11.io.example:waves"
sqsize = 16
sqid = 1

[[region]]
rkey = 0x1000
addr = 0x10000000
size = 131072
"""

# Write (opcode 01), CID 1, NSID 1, keyed SGL: 0x1000 bytes at 0x10000000, rkey 0x1000,
# SLBA 0, 8 blocks; Read (02), CID 3, the same blocks to 0x10010000
WRITE = ("01400100010000000000000000000000000000000000000000000010000000000010000010000040"
         "000000000000000007000000000000000000000000000000")
READ = ("02400300010000000000000000000000000000000000000000000110000000000010000010000040"
        "000000000000000007000000000000000000000000000000")

# one build and one replay for the module, on one xdist worker
pytestmark = [pytest.mark.cocotb, pytest.mark.xdist_group("tb.system.test_waves")]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """``{interface: WaveJSON dict}`` drawn by the command line from a new replay."""
    work = tmp_path_factory.mktemp("waves")
    engine = tomllib.loads((ROOT / "configs" / "small.toml").read_text())["engine"]
    target = work / "target.toml"
    target.write_text(TARGET.format(
        engine="\n".join(f"{key} = {json.dumps(value)}" for key, value in engine.items()),
        qpn=QPN))
    trace = work / "trace.jsonl"
    trace.write_text("".join(json.dumps(item) + "\n" for item in (
        {"write_mem": {"rkey": 0x1000, "offset": 0, "data": bytes(range(256)).hex() * 16}},
        {"capsule": WRITE, "qpn": QPN},
        {"wait": "idle"},
        {"capsule": READ, "qpn": QPN},
        {"wait": "idle"},
    )))
    out = work / "out"
    assert wavedrom.main(["--target", str(target), "--trace", str(trace),
                          "--out", str(out), "--sim", "icarus", "--no-svg"]) == 0
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def test_every_interface_has_a_diagram_with_a_transfer_on_each_channel(fresh):
    assert sorted(fresh) == sorted(wavedrom.INTERFACES)
    for name, diagram in fresh.items():
        groups = [item[0] for item in diagram["signal"] if isinstance(item, list)]
        moved = {group for group, _ in wavedrom.transfers(diagram)}
        assert groups and moved == set(groups), (
            f"{name}: channels without a transfer: {set(groups) - moved}")
    ops = [lane["data"] for group in fresh["rdma"]["signal"][1:] for lane in group[1:]
           if lane["name"] == "tdata.op"]
    assert ops == [["READ", "WRITE"]]          # both directions, decoded


def test_committed_diagrams_have_the_lanes_of_fresh_ones(fresh):
    for name, diagram in fresh.items():
        committed = json.loads((COMMITTED / f"{name}.json").read_text())
        assert wavedrom.lanes_of(committed) == wavedrom.lanes_of(diagram), (
            f"docs/waves/{name}.json is stale: run `python -m sim.tools.wavedrom "
            f"--out docs/waves`")
