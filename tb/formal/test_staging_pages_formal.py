"""Formal check (SymbiYosys through YoWASP, as ``tb/formal/test_stream_formal.py``) of the
staging page allocator (``rtl/pages.py``, ``PageAllocator``): a page is never handed out
twice, never lost, and never lies outside its subsystem's window, through configuration
and reconfiguration.

The allocator is checked alone, for one subsystem of a four-page staging memory
(``PARAMS``), between an environment that keeps its neighbours' contracts:

- configuration, as the control plane does it: a pulse on ``cfg_valid`` at most every
  third cycle (index 0, or 1: no such subsystem); the SUBSYSTEM table is a synchronous
  read port that answers an entry as ``create_srq`` validates it (a 4 KiB-aligned buffer
  of at least 4 KiB, at most 32 KiB, from 16 KiB below the staging memory to 16 KiB past
  its end: inside, across an edge or outside) or a cleared one. A subsystem is
  (re)configured only while no command holds or has reserved a page of it, and nothing is
  reserved, taken or given back from the pulse until the entry is loaded;
- admission (``docs/backend.md``): reserves ``need`` pages (1 .. 4) of subsystem 0 only
  while ``room`` and not in the cycle after a reservation (``res_v``: ``room`` is stale
  then), one command at a time, then takes exactly that many with ``pop_en``,
  never in a cycle with ``push_en``; the reclaimer gives back (``push_en``) only a page
  a command holds.

The harness keeps its own shadow of the pages commands hold and of the pages reserved and
not yet taken, works out the window from the entry as the docstring states it
(``staging_len // 4096`` pages from ``(staging_addr - staging_base) / 4096``, none when
the buffer leaves the staging memory), and checks in every cycle:

- a page taken lies in the window and is held by no command;
- conservation: the allocator's free count (``avail``) plus the pages held plus those
  reserved is the window's page count (a reservation reaches ``avail`` a cycle after
  it is made: the count then includes it once more), ``room`` and ``none`` are what that
  count says, and ``taken`` (``USE_STAGING.pages``) is held plus reserved (likewise);
- ``Cover``: every page of a four-page window held, a page taken from the stack (given
  back earlier) rather than from the watermark, a page given back and a command reserved
  in the same cycle, a page taken after a reconfiguration; and two planted bugs (a page
  given back that is lost, a page handed out twice) must fail.

Scope: bounded (BMC, ``DEPTH``): a configuration, the four pops of a window, a push and a
pop from the stack fit. The stack memory is turned into registers (``memory_map``) for z3.
"""

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Module, Mux, ResetSignal, Signal

from rtl.formats import PAGE_BYTES
from rtl.pages import PageAllocator
from rtl.params import EngineParams
from tb.formal.test_backend_outcome_formal import _mapped
from tb.formal.test_stream_formal import _sby

PARAMS = EngineParams(subsystems=1, staging_bytes=4 * PAGE_BYTES, max_io_size=4096,
                      min_staging_bytes=4096)
PAGES = 4
DEPTH = {"bmc": 14, "cover": 14}


def _harness(bug=None):
    dut = PageAllocator(PARAMS) if bug is None else bug(PARAMS)
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
    answer = Signal.like(dut.rd_data)
    e = dut.rd_data
    with m.If(dut.rd_en):
        m.d.sync += e.eq(answer)
    near = answer.staging_addr - (PARAMS.staging_base - 16384)
    with m.If(~dut.rd_en):
        m.d.comb += Assume(answer.as_value() == 0)
    with m.Elif(answer.valid):
        m.d.comb += [Assume(answer.staging_addr[:12] == 0),
                     Assume(answer.staging_len >= 4096), Assume(answer.staging_len <= 32768),
                     Assume(near[:64] < 16384 * 3)]
    with m.If(cfg1):
        m.d.comb += [Assert(dut.rd_en), Assert(dut.rd_addr == index)]
    loading = cfg2 & (index == 0)
    busy0 = (dut.cfg_valid & (dut.cfg_index == 0)) | ((cfg1 | cfg2) & (index == 0))

    # --- the window the entry gives ------------------------------------------------------
    offset = (e.staging_addr - PARAMS.staging_base)[:64]
    inside = (e.valid & (e.staging_addr >= PARAMS.staging_base)
              & (offset + e.staging_len <= PARAMS.staging_bytes))
    n, base = Signal(4), Signal(3)
    configs = Signal(2)
    with m.If(loading):
        m.d.sync += [n.eq(Mux(inside, e.staging_len >> 12, 0)), base.eq(offset[12:15]),
                     configs.eq(Mux(configs == 3, 3, configs + 1))]

    # --- the shadow: pages held, pages reserved and not yet taken; the environment -------
    held = Signal(PAGES)
    resv = Signal(4)
    m.d.comb += [Assume(dut.cfg_index < 2), Assume(dut.need_ss < 2),
                 Assume(dut.need >= 1), Assume(dut.need <= PAGES)]
    m.d.comb += [Assume(~(busy0 & (dut.reserve_en | dut.pop_en | dut.push_en))),
                 Assume(~(dut.cfg_valid & (dut.cfg_index == 0) & ((held != 0) | (resv != 0))))]
    with m.If(dut.reserve_en):
        m.d.comb += [Assume(dut.need_ss == 0), Assume(dut.room), Assume(resv == 0),
                     Assume(~dut.res_v)]
    with m.If(dut.pop_en):
        m.d.comb += [Assume(dut.pop_ss == 0), Assume(resv != 0), Assume(~dut.push_en)]
    with m.If(dut.push_en):
        m.d.comb += [Assume(dut.push_ss == 0), Assume(held.bit_select(dut.push_page, 1))]
    popped = Mux(dut.pop_en, 1 << dut.pop_page, 0)
    pushed = Mux(dut.push_en, 1 << dut.push_page, 0)
    m.d.sync += held.eq((held | popped) & ~pushed)
    m.d.sync += resv.eq(resv + Mux(dut.reserve_en, dut.need, 0) - dut.pop_en)
    count = sum(held[i] for i in range(PAGES))

    # --- properties ----------------------------------------------------------------------
    with m.If(dut.pop_en):
        page = dut.pop_page
        m.d.comb += [Assert(page >= base), Assert(page < base + n),
                     Assert(~held.bit_select(page, 1))]
    started = Signal()
    m.d.sync += started.eq(1)
    # (a reservation reaches ``avail`` and ``taken`` a cycle after the shadow's ``resv``:
    # ``pending`` is it in that cycle)
    pending = Mux(dut.res_v, dut.res_need, 0)
    with m.If(started & ~busy0):
        m.d.comb += [Assert(dut.avail[0] + count + resv == n + pending),
                     Assert(dut.taken + pending == count + resv)]
        with m.If(dut.need_ss == 0):
            m.d.comb += [Assert(dut.none == (n == 0)),
                         Assert(dut.room == ((n != 0) & (dut.avail[0] >= dut.need)))]
        with m.Else():
            m.d.comb += [Assert(dut.none), Assert(~dut.room)]

    # --- not vacuous ---------------------------------------------------------------------
    m.d.comb += [
        Cover((n == PAGES) & (held == (1 << PAGES) - 1)),
        Cover(dut.pop_en & (dut.sp[0] != 0)),                  # from the stack
        Cover(dut.push_en & dut.reserve_en),
        Cover(dut.pop_en & (configs == 2)),
    ]
    ports = [dut.cfg_valid, dut.cfg_index, answer.as_value(), dut.need_ss, dut.need,
             dut.reserve_en, dut.pop_en, dut.pop_ss, dut.push_en, dut.push_ss, dut.push_page]
    return m, ports


def _run(tmp_path, name, task, bug=None):
    m, ports = _harness(bug)
    design = _mapped(tmp_path, rtlil.convert(m, ports=ports))
    return _sby(tmp_path, name, design, task, depth=DEPTH[task])


@pytest.mark.parametrize("task", ["bmc", "cover"])
def test_a_page_is_never_handed_out_twice_nor_lost(tmp_path, task):
    rc, log = _run(tmp_path, "pages", task)
    assert rc == 0 and "DONE (PASS" in log, log[-3000:]
    if task == "cover":
        assert log.count("Reached cover statement") >= 4, log[-3000:]


class _Losing(PageAllocator):
    """Page 1, given back, is dropped (neither stacked nor counted free): it is lost."""

    def elaborate(self, platform):
        outer, self.push_en = self.push_en, Signal(name="push_en_inner")
        m = super().elaborate(platform)
        inner, self.push_en = self.push_en, outer
        m.d.comb += inner.eq(outer & (self.push_page != 1))
        return m


class _Twice(PageAllocator):
    """A pop from the stack does not lower its pointer: the same page is handed out
    again."""

    def elaborate(self, platform):
        outer, self.pop_en = self.pop_en, Signal(name="pop_en_inner")
        m = super().elaborate(platform)
        inner, self.pop_en = self.pop_en, outer
        m.d.comb += inner.eq(outer & (self.sp[0] == 0))
        return m


@pytest.mark.parametrize("bug", [_Losing, _Twice], ids=["loses_a_page", "gives_twice"])
def test_the_check_catches_a_broken_allocator(tmp_path, bug):
    rc, log = _run(tmp_path, bug.__name__.lower(), "bmc", bug)
    assert rc != 0 and "DONE (FAIL" in log, log[-3000:]
