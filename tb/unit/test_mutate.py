"""``nvmf-offload mutate`` (``sim/tools/mutate.py``): where mutants are planted, what each
operator writes, the sampling, and the CI sample: four mutants of ``rtl/stream_util.py``
run end to end against the formal proofs (``tb/formal``)."""

import ast
import json
import textwrap
import time
from collections import Counter

from sim import cli
from sim.tools.mutate import PRESETS, ROOT, apply, enumerate_sites, sample

SNIPPET = textwrap.dedent('''\
    from amaranth.hdl import Elaboratable, Module, Mux, Signal


    def helper(a, b):
        return a + b


    def unused(a):
        return a - 1


    class Thing(Elaboratable):
        def __init__(self, width):
            if width < 1:
                raise ValueError(f"width {width + 1}")
            self.a = Signal(width)
            self.b = Signal(width)
            self.o = Signal(width)

        def elaborate(self, platform):
            m = Module()
            x = Signal(4, name="x")
            m.d.comb += x.eq(Mux(self.a == self.b, self.a & 3, ~self.b))
            with m.If(self.a < self.b):
                m.d.sync += [self.o.eq(helper(self.a, 1)), x.eq(0)]
            with m.Elif(self.a ^ self.b):
                m.d.sync += self.o.eq(0x1F)
            return m
    ''')


def _snippet_sites(tmp_path):
    (tmp_path / "rtl").mkdir()
    (tmp_path / "rtl" / "thing.py").write_text(SNIPPET)
    return enumerate_sites(tmp_path, ["rtl/thing.py"])


def _line(text, lineno):
    return text.split("\n")[lineno - 1].strip()


def test_sites_are_the_gateware_logic_only(tmp_path):
    """The helper ``elaborate`` calls and ``elaborate`` itself; not ``__init__`` (its
    check, its f-string, its widths), not an uncalled function, not a Signal's shape."""
    sites = _snippet_sites(tmp_path)
    got = sorted((s.line, s.op) for s in sites)
    assert got == sorted([
        (5, "add2sub"),                                                     # helper
        (23, "drop-assign"), (23, "mux-swap"), (23, "eq2ne"), (23, "and2or"),
        (23, "const+1"), (23, "const-1"), (23, "drop-not"),
        (24, "negate-if"), (24, "lt2ge"),
        (25, "drop-assign"), (25, "drop-assign"), (25, "const+1"), (25, "const-1"),
        (25, "const+1"),                                                    # 0: no 0 - 1
        (26, "negate-elif"), (26, "xor2or"),
        (27, "drop-assign"), (27, "const+1"), (27, "const-1"),
    ])
    assert len({s.id for s in sites}) == len(sites)
    for s in sites:
        ast.parse(apply(SNIPPET, s))


def test_each_operator_writes_the_expected_change(tmp_path):
    sites = _snippet_sites(tmp_path)

    def mutated(line, col, op):
        [site] = [s for s in sites if (s.line, s.col, s.op) == (line, col, op)]
        assert site.id == f"rtl/thing.py:{line}:{col}:{op}"
        return _line(apply(SNIPPET, site), line)

    assert mutated(5, 14, "add2sub") == "return a - b"
    assert mutated(23, 37, "eq2ne") == \
        "m.d.comb += x.eq(Mux(self.a != self.b, self.a & 3, ~self.b))"
    assert mutated(23, 55, "and2or") == \
        "m.d.comb += x.eq(Mux(self.a == self.b, self.a | 3, ~self.b))"
    assert mutated(23, 57, "const+1") == \
        "m.d.comb += x.eq(Mux(self.a == self.b, self.a & 4, ~self.b))"
    assert mutated(23, 57, "const-1") == \
        "m.d.comb += x.eq(Mux(self.a == self.b, self.a & 2, ~self.b))"
    assert mutated(23, 60, "drop-not") == \
        "m.d.comb += x.eq(Mux(self.a == self.b, self.a & 3, (self.b)))"
    assert mutated(23, 26, "mux-swap") == \
        "m.d.comb += x.eq(Mux(self.a == self.b, ~self.b, self.a & 3))"
    assert mutated(23, 21, "drop-assign") == "m.d.comb += []"
    assert mutated(24, 19, "negate-if") == "with m.If((self.a < self.b) == 0):"
    assert mutated(24, 26, "lt2ge") == "with m.If(self.a >= self.b):"
    assert mutated(25, 26, "drop-assign") == "m.d.sync += [x.eq(0)]"
    assert mutated(25, 56, "drop-assign") == "m.d.sync += [self.o.eq(helper(self.a, 1))]"
    assert mutated(25, 51, "const+1") == "m.d.sync += [self.o.eq(helper(self.a, 2)), x.eq(0)]"
    assert mutated(25, 61, "const+1") == "m.d.sync += [self.o.eq(helper(self.a, 1)), x.eq(1)]"
    assert mutated(26, 21, "negate-elif") == "with m.Elif((self.a ^ self.b) == 0):"
    assert mutated(26, 28, "xor2or") == "with m.Elif(self.a | self.b):"
    assert mutated(27, 35, "const+1") == "m.d.sync += self.o.eq(0x20)"
    assert mutated(27, 35, "const-1") == "m.d.sync += self.o.eq(0x1E)"
    [drop] = [s for s in sites if s.line == 25 and s.col == 26]
    assert drop.change() == "self.o.eq(helper(self.a, 1)) -> (dropped)"


def test_helpers_are_found_across_modules(tmp_path):
    """A helper of another ``rtl`` module that an ``elaborate`` imports is a site."""
    (tmp_path / "rtl").mkdir()
    (tmp_path / "rtl" / "util.py").write_text("def inc(x):\n    return x + 1\n\n\n"
                                              "def dead(x):\n    return x + 1\n")
    (tmp_path / "rtl" / "top.py").write_text(
        "from .util import inc\n\n\nclass Top:\n    def elaborate(self, platform):\n"
        "        return inc(2)\n")
    sites = enumerate_sites(tmp_path, ["rtl/util.py"])
    assert sorted((s.line, s.op) for s in sites) == [
        (2, "add2sub"), (2, "const+1"), (2, "const-1")]


def test_sampling_is_deterministic_and_spread_over_the_files():
    files = ["rtl/cq_handler.py", "rtl/sq_writer.py"]
    sites = enumerate_sites(ROOT, files)
    per_file = Counter(s.file for s in sites)
    a, b = sample(sites, 30, seed=7), sample(sites, 30, seed=7)
    assert [s.id for s in a] == [s.id for s in b] and len(a) == 30
    assert [s.id for s in sample(sites, 30, seed=8)] != [s.id for s in a]
    got = Counter(s.file for s in a)
    for f in files:
        assert abs(got[f] - 30 * per_file[f] / len(sites)) < 1, (got, per_file)
    order = [sites.index(s) for s in a]
    assert order == sorted(order)
    assert sample(sites, 0, seed=7) == sites


def test_ci_sample_kills_and_classifies(tmp_path, capsys):
    """Four mutants of the register stages against the formal proofs: two killed, one
    whose Verilog is the original's (``min_value`` is in no top the proofs build) and one
    survivor reviewed as equivalent (its reason in the preset)."""
    sites = {s.id: s for s in enumerate_sites(ROOT, ["rtl/stream_util.py"])}

    def find(op, text):
        hits = [i for i, s in sites.items() if s.op == op and text in s.source_line]
        assert len(hits) == 1, (op, text, hits)
        return hits[0]

    hold = find("drop-not", "self.i_ready.eq(~self.o_valid)")      # HoldRegister
    slice_ = find("negate-if", "with m.If(full[k])")               # RegisterSlice
    same = find("mux-swap", "return Mux(a < b, a, b)")             # min_value
    [(reviewed, (line, _why))] = PRESETS["stream_util"]["equivalent"].items()
    assert reviewed in sites and sites[reviewed].source_line == line, \
        "rtl/stream_util.py changed: review the stream_util preset's equivalent mutant again"
    start = time.monotonic()
    rc = cli.main(["mutate", "--preset", "stream_util", "--jobs", "2", "--out", str(tmp_path),
                   "--ids", hold, slice_, same, reviewed])
    seconds = time.monotonic() - start
    assert rc == 0
    report = json.loads((tmp_path / "stream_util.json").read_text())
    by_id = {m["id"]: m for m in report["mutants"]}
    assert {i: m["status"] for i, m in by_id.items()} == {
        hold: "killed", slice_: "killed", same: "equivalent", reviewed: "equivalent"}
    for i in (hold, slice_):
        assert by_id[i]["failing_test"].startswith("tb/formal/test_stream_formal.py::")
    assert by_id[same]["reason"] == "the Verilog of every top is identical"
    assert by_id[reviewed]["reason"].startswith("reviewed: ")
    assert report["counts"]["killed"] == 2 and report["score"] == 1.0
    assert report["command"].startswith("nvmf-offload mutate --preset stream_util --ids ")
    md = (tmp_path / "stream_util.md").read_text()
    assert "| 2 | 0 | 0 | 2 | 0 | 0 | 2/2 = 100.0 % |" in md and "None." in md
    print(f"CI sample: {seconds:.1f} s")
    assert seconds < 300


def test_every_reviewed_equivalent_still_points_at_its_line():
    """A reviewed equivalent is keyed by file, line and column: when an edit above it moves
    the line, its key must move too, or the mutant is reported as a survivor again."""
    for name, preset in PRESETS.items():
        sites = {s.id: s for s in enumerate_sites(ROOT, preset["files"])}
        for site_id, (line, _why) in preset.get("equivalent", {}).items():
            assert site_id in sites and sites[site_id].source_line.strip() == line.strip(), \
                f"preset {name}: {site_id} no longer points at {line!r}: move its key"

