"""The VCD reader and the diagram extraction of ``sim/tools/wavedrom.py`` on small
waveforms written here, and the committed diagrams of ``docs/waves.md``."""

import json
from pathlib import Path

import pytest
from amaranth.lib import data

from rtl.formats import RdmaCommand, RdmaOp
from rtl.params import EngineParams
from sim.tools import wavedrom as wd

ROOT = Path(__file__).resolve().parents[2]

# A capsule of three beats on s_axis_capsule, clk rising at 5, 15, 25, ... (cycles 0,
# 1, 2, ...). Every change but the clock's is made at a rising edge, as a flip-flop
# does, so it shows from the next cycle on: tvalid in cycles 2-5, tready low in
# cycle 3 (beats in cycles 2, 4 and 5), tlast in cycle 5. The $rootio scope (as
# Verilator writes it) and the nested parser scope are not read.
CAPSULE_VCD = """\
$version hand-written $end
$timescale 1ns $end
$scope module $rootio $end
 $var wire 1 ! clk $end
 $var wire 1 # s_axis_capsule_tvalid $end
 $var wire 1 ) only_in_rootio $end
$upscope $end
$scope module nvmf_engine $end
 $var wire 1 ! clk $end
 $var wire 1 " s_axis_capsule_tready $end
 $var wire 1 # s_axis_capsule_tvalid $end
 $var wire 1 $ s_axis_capsule_tlast $end
 $var wire 24 % s_axis_capsule_tuser [23:0] $end
 $var wire 4 & s_axis_capsule_tkeep [3:0] $end
 $var wire 32 ' s_axis_capsule_tdata [31:0] $end
 $scope module parser $end
  $var wire 1 ( busy $end
 $upscope $end
$upscope $end
$enddefinitions $end
#0
$dumpvars
0!
1"
0#
0$
bx %
bxxxx &
bx '
0(
0)
$end
#5
1!
#10
0!
#15
1!
1#
b10001 %
b1111 &
b00010001000100010001000100010001 '
#20
0!
#25
1!
0"
b100010001000100010001000100010 '
#30
0!
#35
1!
1"
#40
0!
#45
1!
1$
b1 &
b11 '
#50
0!
#55
1!
0#
0$
1(
#60
0!
#65
1!
#70
0!
#75
1!
#80
0!
"""


@pytest.fixture
def capsule_vcd(tmp_path):
    path = tmp_path / "capsule.vcd"
    path.write_text(CAPSULE_VCD)
    return wd.read_vcd(path)


def test_reader_takes_the_top_scope_only_with_widths_and_changes(capsule_vcd):
    vcd = capsule_vcd
    assert (vcd.scope, vcd.timescale) == ("nvmf_engine", "1ns")
    assert vcd.widths == {"clk": 1, "s_axis_capsule_tready": 1, "s_axis_capsule_tvalid": 1,
                          "s_axis_capsule_tlast": 1, "s_axis_capsule_tuser": 24,
                          "s_axis_capsule_tkeep": 4, "s_axis_capsule_tdata": 32}
    assert vcd.changes["s_axis_capsule_tvalid"] == ([0, 15, 55], [0, 1, 0])
    assert vcd.changes["s_axis_capsule_tuser"] == ([0, 15], [None, 0x11])   # x is None
    assert vcd.changes["s_axis_capsule_tdata"] == (
        [0, 15, 25, 45], [None, 0x11111111, 0x22222222, 3])
    assert vcd.changes["clk"][0][:4] == [0, 5, 10, 15]


def test_a_cycle_holds_the_values_just_before_its_rising_edge(capsule_vcd):
    waves = wd.Waves(capsule_vcd)
    assert waves.edges == [5, 15, 25, 35, 45, 55, 65, 75]
    assert len(waves) == 8
    assert waves["s_axis_capsule_tvalid"] == [0, 0, 1, 1, 1, 1, 0, 0]
    assert waves["s_axis_capsule_tready"] == [1, 1, 1, 0, 1, 1, 1, 1]
    assert waves["s_axis_capsule_tdata"] == [None, None, 0x11111111, 0x22222222,
                                             0x22222222, 3, 3, 3]
    assert waves.handshakes("s_axis_capsule_tvalid", "s_axis_capsule_tready") == [2, 4, 5]
    with pytest.raises(KeyError, match="pcie_clk"):
        wd.Waves(capsule_vcd, "pcie_clk")


def test_columns_join_near_windows_and_put_a_gap_between_far_ones():
    assert wd.columns([2, 4, 5], 8) == list(range(8))
    assert wd.columns([1], 3) == [0, 1, 2]
    assert wd.columns([10, 12, 40], 100) == [8, 9, 10, 11, 12, 13, 14, None,
                                             38, 39, 40, 41, 42]
    assert wd.columns([10, 21], 100) == list(range(8, 24))       # 6 between: drawn
    assert None in wd.columns([10, 22], 100)                        # 7 between: a gap


def test_capsule_diagram_has_its_lanes_and_values(capsule_vcd):
    diagram = wd.extract(capsule_vcd)["capsule"]
    assert diagram["head"] == {"text": "capsule in (s_axis_capsule), cycles 0-7", "tick": 0}
    assert diagram["signal"][0] == {"name": "clk", "wave": "p......."}
    group = diagram["signal"][1]
    assert group[0] == "s_axis_capsule"
    assert group[1:] == [
        {"name": "tvalid", "wave": "0.1...0."},
        {"name": "tready", "wave": "1..01..."},
        {"name": "tlast", "wave": "0....10."},
        {"name": "tuser (qpn)", "wave": "x.=...x.", "data": ["11"]},
        {"name": "tkeep", "wave": "x.=..=x.", "data": ["f", "1"]},
        {"name": "tdata", "wave": "x.==.=x.", "data": ["11111111", "22222222", "3"]},
    ]
    assert wd.lanes_of(diagram) == [("", "clk")] + [
        ("s_axis_capsule", name)
        for name in ("tvalid", "tready", "tlast", "tuser (qpn)", "tkeep", "tdata")]
    assert wd.transfers(diagram) == [("s_axis_capsule", 2), ("s_axis_capsule", 4),
                                     ("s_axis_capsule", 5)]
    assert json.loads(wd.to_json(diagram)) == diagram
    # no other interface has a transfer in this waveform
    assert set(wd.extract(capsule_vcd)) == {"capsule"}


def test_expand_wave_and_short_labels():
    assert wd.expand_wave("0.1|.x=.") == "00111x=="
    assert wd._short(0x1234) == "1234"
    assert wd._short(0x123456789abcdef0) == "123..ef0"
    assert wd._short(0x123456789abcdef0, full=True) == "123456789abcdef0"


# --- the other interfaces, on waveforms written from cycle tables -------------------------

def vcd_from_cycles(path, widths, cycles, top="nvmf_engine"):
    """Write a VCD whose signal ``name`` has value ``cycles[name][k]`` in cycle ``k``
    (0 where the list ends); ``clk`` rises at 10 k + 5."""
    codes = {name: chr(34 + i) for i, name in enumerate(["clk", *widths])}
    n = max(len(v) for v in cycles.values()) + 2
    lines = ["$timescale 1ns $end", f"$scope module {top} $end"]
    lines += [f"$var wire {widths.get(name, 1)} {code} {name} $end"
              for name, code in codes.items()]
    lines += ["$upscope $end", "$enddefinitions $end"]

    def values(k):
        out = []
        for name, width in widths.items():
            series = cycles.get(name, [])
            out.append(f"b{series[k] if k < len(series) else 0:0{width}b} {codes[name]}")
        return out
    lines += ["#0", "0" + codes["clk"], *values(0)]
    for k in range(n):
        lines += [f"#{10 * k + 5}", "1" + codes["clk"],
                  *(values(k + 1) if k + 1 < n else []), f"#{10 * k + 10}", "0" + codes["clk"]]
    path.write_text("\n".join(lines) + "\n")
    return wd.read_vcd(path, top)


def pulses(n, *ks, value=1):
    out = [0] * n
    for k in ks:
        out[k] = value
    return out


def axi_widths(p, data_width=128):
    widths = {f"{p}_{name}": 1 for name in ("awvalid", "awready", "awid", "wvalid", "wready",
                                           "wlast", "bvalid", "bready", "bid")}
    widths.update({f"{p}_awaddr": 64, f"{p}_awlen": 8, f"{p}_wdata": data_width,
                   f"{p}_wstrb": data_width // 8, f"{p}_bresp": 2})
    return widths


def test_sqe_diagram_is_the_64_byte_burst_then_the_doorbell(tmp_path):
    p, n = "m_axi_pcie", 24
    # a one-beat write first (not an SQE), then the SQE burst: AW in cycle 5, four W
    # beats in 4-7, B in 9; the doorbell: AW and W in 11, B in 13
    cycles = {
        f"{p}_awvalid": pulses(n, 1, 5, 11), f"{p}_awready": [1] * n,
        f"{p}_awaddr": [{1: 0x3000, 5: 0x20000000000, 11: 0x30000001008}.get(k, 0)
                        for k in range(n)],
        f"{p}_awlen": pulses(n, 5, value=3),
        f"{p}_wvalid": pulses(n, 1, 4, 5, 6, 7, 11), f"{p}_wready": [1] * n,
        f"{p}_wlast": pulses(n, 1, 7, 11), f"{p}_wstrb": pulses(n, 4, 5, 6, 7, value=0xffff),
        f"{p}_bvalid": pulses(n, 3, 9, 13), f"{p}_bready": [1] * n,
    }
    vcd = vcd_from_cycles(tmp_path / "sqe.vcd", axi_widths(p), cycles)
    waves = wd.Waves(vcd)
    assert wd.write_transactions(waves, p) == [(1, [1], 3), (5, [4, 5, 6, 7], 9),
                                               (11, [11], 13)]
    diagram = wd.extract(vcd)["sqe"]
    assert diagram["head"] == {"text": "SQE write and doorbell (m_axi_pcie), cycles 2-15",
                               "tick": 2}
    assert [g[0] for g in diagram["signal"][1:]] == ["aw", "w", "b"]
    aw = {lane["name"]: lane for lane in diagram["signal"][1][1:]}
    assert aw["awaddr"]["data"] == ["20000000000", "30000001008"]
    assert aw["awlen"]["data"] == ["3", "0"]
    assert {group for group, _ in wd.transfers(diagram)} == {"aw", "w", "b"}


def test_msix_diagram_is_the_write_to_the_msix_address(tmp_path):
    p, n = "s_axi_p2p", 16
    msix = EngineParams().msix_addr
    # a two-beat staging write (AW 1, W 2-3, B 5), then the MSI-X write (AW 2, its
    # one W beat in 4 after the first burst, B 6)
    cycles = {
        f"{p}_awvalid": pulses(n, 1, 2), f"{p}_awready": [1] * n,
        f"{p}_awaddr": [{1: 0x8000000000, 2: msix}.get(k, 0) for k in range(n)],
        f"{p}_awlen": pulses(n, 1),
        f"{p}_wvalid": pulses(n, 2, 3, 4), f"{p}_wready": [1] * n,
        f"{p}_wlast": pulses(n, 3, 4), f"{p}_wdata": pulses(n, 4, value=7),
        f"{p}_wstrb": [{2: 0xffff, 3: 0xffff, 4: 0xf}.get(k, 0) for k in range(n)],
        f"{p}_bvalid": pulses(n, 5, 6), f"{p}_bready": [1] * n,
    }
    vcd = vcd_from_cycles(tmp_path / "msix.vcd", axi_widths(p), cycles)
    assert wd.write_transactions(wd.Waves(vcd), p) == [(1, [2, 3], 5), (2, [4], 6)]
    diagram = wd.extract(vcd)["msix"]
    assert diagram["head"] == {"text": "MSI-X (s_axi_p2p), cycles 0-8", "tick": 0}
    lanes = {lane["name"]: lane for group in diagram["signal"][1:] for lane in group[1:]}
    assert lanes["awaddr"] == {"name": "awaddr", "wave": "x==x.....",
                               "data": ["8000000000", "80f0000000"]}
    assert lanes["wdata"] == {"name": "wdata", "wave": "x.=.=x...", "data": ["0", "7"]}
    assert lanes["wstrb"]["data"] == ["ffff", "f"]
    assert lanes["bvalid"]["wave"] == "0....1.0."
    # another MSI-X address: no diagram
    assert "msix" not in wd.extract(vcd, EngineParams(msix_addr=msix + 0x1000))


def _rdma_command(op, tag, addr, length, qpn=0x11, rkey=0x1000):
    layout = data.Layout.cast(RdmaCommand)
    value = 0
    for name, field_value in (("op", op.value), ("qpn", qpn), ("addr", addr), ("rkey", rkey),
                              ("length", length), ("tag", tag)):
        value |= field_value << layout[name].offset
    return value


def test_rdma_diagram_has_the_first_read_and_write_with_their_data(tmp_path):
    n, c, rd, wr = 48, "m_axis_rdma_cmd", "s_axis_rdma_rd", "m_axis_rdma_wr"
    widths = {f"{c}_tvalid": 1, f"{c}_tready": 1, f"{c}_tlast": 1, f"{c}_tdata": 176}
    for s in (rd, wr):
        widths.update({f"{s}_tvalid": 1, f"{s}_tready": 1, f"{s}_tlast": 1,
                       f"{s}_tuser": 16, f"{s}_tdata": 128})
    read = _rdma_command(RdmaOp.READ, 5, 0x10000000, 32)
    write = _rdma_command(RdmaOp.WRITE, 6, 0x10010000, 32)
    cycles = {
        f"{c}_tvalid": pulses(n, 2, 30), f"{c}_tready": [1] * n, f"{c}_tlast": [1] * n,
        f"{c}_tdata": [read if k == 2 else write if k == 30 else 0 for k in range(n)],
        f"{rd}_tvalid": pulses(n, 4, 5), f"{rd}_tready": [1] * n, f"{rd}_tlast": pulses(n, 5),
        f"{rd}_tuser": pulses(n, 4, 5, value=5), f"{rd}_tdata": pulses(n, 4, 5, value=0xab),
        f"{wr}_tvalid": pulses(n, 33, 34), f"{wr}_tready": [1] * n,
        f"{wr}_tlast": pulses(n, 34), f"{wr}_tuser": pulses(n, 33, 34, value=6),
        f"{wr}_tdata": pulses(n, 33, 34, value=0xcd),
    }
    vcd = vcd_from_cycles(tmp_path / "rdma.vcd", widths, cycles)
    diagram = wd.extract(vcd)["rdma"]
    assert diagram["head"] == {
        "text": "RDMA command (m_axis_rdma_cmd), READ then WRITE, cycles 0-6, 28-35"}
    assert diagram["signal"][0]["wave"] == "p......|........"
    assert [g[0] for g in diagram["signal"][1:]] == [c, rd, wr]
    cmd = {lane["name"]: lane for lane in diagram["signal"][1][1:]}
    assert [name for name in cmd] == ["tvalid", "tready", "tlast", "tdata.op", "tdata.qpn",
                                      "tdata.addr", "tdata.rkey", "tdata.length", "tdata.tag"]
    assert cmd["tdata.op"] == {"name": "tdata.op", "wave": "x.=x...|x.=x....",
                               "data": ["READ", "WRITE"]}
    assert cmd["tdata.addr"]["data"] == ["10000000", "10010000"]
    assert cmd["tdata.tag"]["data"] == ["5", "6"]
    assert {group for group, _ in wd.transfers(diagram)} == {c, rd, wr}


# --- the committed diagrams -----------------------------------------------------------------

def test_committed_diagrams_are_one_per_interface_and_their_svgs_are_drawn_from_them():
    folder = ROOT / "docs" / "waves"
    assert sorted(p.stem for p in folder.glob("*.json")) == sorted(wd.INTERFACES)
    doc = (ROOT / "docs" / "waves.md").read_text()
    pytest.importorskip("wavedrom")
    for name in wd.INTERFACES:
        assert f"(waves/{name}.svg)" in doc, f"docs/waves.md does not show {name}.svg"
        text = (folder / f"{name}.json").read_text()
        assert wd.to_json(json.loads(text)) == text
        assert (folder / f"{name}.svg").read_text() == wd.to_svg(text), (
            f"docs/waves/{name}.svg is not drawn from {name}.json: run "
            f"`python -m sim.tools.wavedrom --out docs/waves`")
