"""Formal check (SymbiYosys through YoWASP, as ``tb/formal/test_stream_formal.py``) of the
back end's staging slot allocator (``rtl/backend.py``, ``_Slots``): a slot is never handed
out twice and never lost, through configuration and reconfiguration.

The allocator is checked alone, for one subsystem (see ``PARAMS``), between an environment
that keeps the contracts of its neighbours:

- configuration, as the control plane does it: a pulse on ``cfg_valid`` at most every
  third cycle (index 0, or 1: no such subsystem); the SUBSYSTEM table is a synchronous
  read port (``rd_en`` / ``rd_addr``, data the cycle after, held between reads) that
  answers an entry as ``create_srq`` validates it (``max_io_size`` 1 .. ``max_io_size`` of
  the engine, a 4 KiB-aligned staging buffer of at least ``min_staging_bytes``; to keep
  the solver fast, one of at most 64 KiB starting between 32 KiB below the staging memory
  and 32 KiB past its end: inside, across an edge or outside) or a cleared one
  (``valid`` = 0, as ``destroy_srq`` leaves it). A subsystem is (re)configured only
  while no command holds a slot of it, and no slot of it is taken or returned from the
  pulse until the entry is loaded (no QP uses a subsystem being created or destroyed);
- admission takes a slot (``alloc_en``) only of subsystem 0 while one is offered
  (``alloc_ok``), and retirement returns (``free_en``) only a slot a command holds.

The harness keeps its own shadow of the slots commands hold (set on ``alloc_en`` with
``alloc_slot``, cleared on ``free_en``), works out the window from the entry as the
docstrings state it (slots of the next power of two at or above ``max_io_size + 4096``,
``staging_len`` of them from ``staging_addr - staging_base``, none when the window leaves
the staging memory), and runs a reference model of the docstring's policy (a free set;
one free slot set aside, refilled with the lowest free slot the cycle after it was
taken). It checks, in every cycle:

- a slot offered is in the window and held by no command, and ``alloc_off`` is the
  window's base plus ``slot << shift`` (so the slot lies inside the window);
- conservation: every slot of the window is exactly one of free, set aside or held, and
  the allocator offers what the model sets aside, when the model sets it aside: a slot
  it lost (or kept twice) shows as an offer missing (or a slot offered again) on its
  ports; ``alloc_none`` and ``shift`` are those of the window; a subsystem index out of
  range is offered nothing;
- the same after a reconfiguration (the properties hold in every cycle, and a ``Cover``
  reaches a slot taken from a window configured a second time);
- ``Cover``: every slot of a four-slot window held, a slot returned and one taken in
  the same cycle, the set-aside slot refilled after it was taken, so a vacuous check
  fails; and two planted bugs (a returned slot that never comes back, a taken slot
  offered again) must fail.

Scope: bounded (BMC, 12 cycles from reset: steps 0 to 11, ``DEPTH``): a configuration and
the fill of a four-slot window (held by step 11), a take, a return and a reconfiguration
followed by a take (step 10) fit in it; 12 steps take z3 about a minute, each further
step about doubles it. Not k-induction: the free bitmap and the set-aside registers are
local to ``_Slots.elaborate``, so no invariant can tie them to the shadow, and an
induction step would start from a bitmap that already holds a slot a command holds.
Exposing them as ``_Queues`` exposes its table (attributes made in ``__init__``) would let
the same harness assert the invariant on the state and prove it.
One subsystem: the others are the same code behind ``index == i``; the slot count is
small (at most four) for the same reason, the bitmap logic is the same at 64.
"""

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Module, Mux, ResetSignal, Signal

from rtl.backend import _Slots
from rtl.params import EngineParams
from tb.formal.test_stream_formal import _sby

# A 32 KiB staging memory and transfers up to 8 KiB: slots of 8 KiB (max_io_size up to
# 4096) or 16 KiB, so a window holds at most four.
PARAMS = EngineParams(subsystems=1, staging_bytes=32768, max_io_size=8192,
                      min_staging_bytes=4096)
MAXN = PARAMS.staging_bytes // 8192
DEPTH = {"bmc": 12, "cover": 12}


def _harness(bug=None):
    dut = _Slots(PARAMS) if bug is None else bug(PARAMS)
    m = Module()
    m.submodules.dut = dut
    m.d.comb += Assume(~ResetSignal())

    # --- configuration, as the control plane does it -------------------------------------
    cfg1, cfg2 = Signal(), Signal()
    index = Signal(8)
    m.d.sync += [cfg1.eq(dut.cfg_valid), cfg2.eq(cfg1)]
    with m.If(dut.cfg_valid):
        m.d.sync += index.eq(dut.cfg_index)
    m.d.comb += Assume(~(dut.cfg_valid & (cfg1 | cfg2)))
    # the SUBSYSTEM table: a synchronous read (its output holds between reads) of an entry
    # as create_srq validates it or as destroy_srq clears it
    answer = Signal.like(dut.rd_data)
    e = dut.rd_data
    with m.If(dut.rd_en):
        m.d.sync += e.eq(answer)
    # (small: a buffer of at most 64 KiB from 32 KiB below the staging memory to 32 KiB
    # past its end, so the window is inside, overlaps an edge, or lies outside)
    near = answer.staging_addr - (PARAMS.staging_base - 32768)
    with m.If(~dut.rd_en):
        m.d.comb += Assume(answer.as_value() == 0)      # (only what is read matters)
    with m.Elif(answer.valid):
        m.d.comb += [Assume(answer.max_io_size >= 1),
                     Assume(answer.max_io_size <= PARAMS.max_io_size),
                     Assume(answer.staging_addr[:12] == 0),
                     Assume(answer.staging_len >= PARAMS.min_staging_bytes),
                     Assume(near[:64] < 65536 + 32768),
                     Assume(answer.staging_len <= 65536)]
    # the entry is read at the address given, the cycle after the pulse
    with m.If(cfg1):
        m.d.comb += [Assert(dut.rd_en), Assert(dut.rd_addr == index)]
    loading = cfg2 & (index == 0)
    busy0 = (dut.cfg_valid & (dut.cfg_index == 0)) | ((cfg1 | cfg2) & (index == 0))

    # --- the window the entry gives, as the docstrings state it -------------------------
    slot_shift = Mux(e.max_io_size + 4096 <= 8192, 13, 14)   # next power of two, bytes
    offset = (e.staging_addr - PARAMS.staging_base)[:64]
    inside = (e.valid & (e.staging_addr >= PARAMS.staging_base)
              & (offset + e.staging_len <= PARAMS.staging_bytes))
    n, shift, base, length = Signal(4), Signal(5), Signal(32), Signal(32)
    configs = Signal(2)                    # configurations of subsystem 0 (saturating)
    with m.If(loading):
        m.d.sync += [n.eq(Mux(inside, e.staging_len >> slot_shift, 0)), shift.eq(slot_shift),
                     base.eq(offset[:32]), length.eq(e.staging_len),
                     configs.eq(Mux(configs == 3, 3, configs + 1))]
    window = Signal(MAXN)
    m.d.comb += window.eq((1 << n) - 1)

    # --- the shadow of the slots commands hold; the environment -------------------------
    owned = Signal(MAXN)
    took = dut.alloc_en
    gave = dut.free_en
    m.d.comb += [Assume(dut.cfg_index < 2), Assume(dut.alloc_ss < 2), Assume(dut.shift_ss < 2)]
    m.d.comb += [Assume(~(busy0 & (took | gave))), Assume(~(dut.cfg_valid
                                                             & (dut.cfg_index == 0)
                                                             & (owned != 0)))]
    with m.If(took):
        m.d.comb += [Assume(dut.alloc_ss == 0), Assume(dut.alloc_ok)]
    with m.If(gave):
        m.d.comb += [Assume(dut.free_ss == 0), Assume(dut.free_slot < MAXN),
                     Assume(owned.bit_select(dut.free_slot[:2], 1))]
    took_bit = Mux(took, 1 << dut.alloc_slot[:2], 0)
    gave_bit = Mux(gave, 1 << dut.free_slot[:2], 0)
    m.d.sync += owned.eq((owned | took_bit) & ~gave_bit)

    # --- the reference model: a free set, one free slot set aside (lowest first) --------
    free, aside, aside_ok = Signal(MAXN), Signal(2), Signal()
    lowest = Signal(2)
    for k in reversed(range(MAXN)):
        with m.If(free[k]):
            m.d.comb += lowest.eq(k)
    refill = ~aside_ok & (free != 0)
    with m.If(loading):
        m.d.sync += [free.eq(Mux(inside, (1 << (e.staging_len >> slot_shift)[:3]) - 1, 0)),
                     aside_ok.eq(0)]
    with m.Else():
        m.d.sync += free.eq((free & ~Mux(refill, 1 << lowest, 0)) | gave_bit)
        with m.If(refill):
            m.d.sync += [aside.eq(lowest), aside_ok.eq(1)]
        with m.Elif(took):
            m.d.sync += aside_ok.eq(0)
    aside_bit = Mux(aside_ok, 1 << aside, 0)

    # --- properties ----------------------------------------------------------------------
    # conservation: each slot of the window exactly one of free / set aside / held
    m.d.comb += [Assert((free | owned | aside_bit) == window), Assert((free & owned) == 0),
                 Assert((free & aside_bit) == 0), Assert((owned & aside_bit) == 0)]
    with m.If(dut.alloc_ss == 0):
        m.d.comb += [Assert(dut.alloc_ok == aside_ok), Assert(dut.alloc_none == (n == 0))]
        with m.If(dut.alloc_ok):
            slot = dut.alloc_slot
            m.d.comb += [
                Assert(slot < n),                                   # inside the window
                Assert(~owned.bit_select(slot[:2], 1)),             # held by no command
                Assert(slot == aside),
                Assert(dut.alloc_off == (base + (slot << shift))[:32]),
                Assert(dut.alloc_off + (1 << shift) <= base + length),
            ]
    with m.Else():
        m.d.comb += [Assert(~dut.alloc_ok), Assert(dut.alloc_none)]
    with m.If((dut.shift_ss == 0) & (n != 0)):
        m.d.comb += Assert(dut.shift == shift)

    # --- not vacuous ---------------------------------------------------------------------
    took1, took2 = Signal(), Signal()
    m.d.sync += [took1.eq(took), took2.eq(took1)]
    m.d.comb += [
        Cover((n == MAXN) & (owned == window)),                     # every slot held
        Cover(took & gave),                                          # a return and a take
        Cover(took2 & dut.alloc_ok & (dut.alloc_ss == 0) & (owned != 0)),  # refilled
        Cover(took & (configs == 2) & (n >= 2)),                     # after reconfiguration
    ]
    ports = [dut.cfg_valid, dut.cfg_index, answer.as_value(), dut.alloc_ss, dut.alloc_en,
             dut.free_ss, dut.free_slot, dut.free_en, dut.shift_ss]
    return m, ports


def _run(tmp_path, name, task, bug=None):
    m, ports = _harness(bug)
    return _sby(tmp_path, name, rtlil.convert(m, ports=ports), task, depth=DEPTH[task])


@pytest.mark.parametrize("task", ["bmc", "cover"])
def test_a_slot_is_never_handed_out_twice_nor_lost(tmp_path, task):
    rc, log = _run(tmp_path, "slots", task)
    assert rc == 0 and "DONE (PASS" in log, log[-3000:]
    if task == "cover":
        assert log.count("Reached cover statement") >= 4, log[-3000:]


class _Leaking(_Slots):
    """A returned slot 1 never goes back to the bitmap: the window shrinks."""

    def elaborate(self, platform):
        outer, self.free_en = self.free_en, Signal(name="free_en_inner")
        m = super().elaborate(platform)
        inner, self.free_en = self.free_en, outer
        m.d.comb += inner.eq(outer & (self.free_slot != 1))
        return m


class _Keeping(_Slots):
    """A slot taken stays set aside: the next command is offered the same slot."""

    def elaborate(self, platform):
        outer, self.alloc_en = self.alloc_en, Signal(name="alloc_en_inner")
        m = super().elaborate(platform)
        self.alloc_en = outer                  # the inner pulse is never driven
        return m


@pytest.mark.parametrize("bug", [_Leaking, _Keeping], ids=["loses_a_slot", "gives_twice"])
def test_the_check_catches_a_broken_allocator(tmp_path, bug):
    rc, log = _run(tmp_path, bug.__name__.lower(), "bmc", bug)
    assert rc != 0 and "DONE (FAIL" in log, log[-3000:]
