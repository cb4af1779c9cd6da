"""CounterBank on the Amaranth simulator: saturation, read-clear races, back-to-back adds.

A narrow (8-bit) counter layout makes saturation reachable in a few cycles; the
engine's 48-bit banks are the same gateware with a wider layout.
"""

from amaranth.lib import data
from amaranth.sim import Simulator

from rtl.counters import CounterBank


class Narrow(data.Struct):
    a: 8
    b: 8
    c: 8


def _run(testbench):
    dut = CounterBank(Narrow, 4)
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        await testbench(ctx, dut)

    sim.add_testbench(bench)
    sim.run()


async def _inc(ctx, dut, index, field, amount):
    ctx.set(dut.inc.payload, {"index": index, "field": field, "amount": amount})
    ctx.set(dut.inc.valid, 1)
    await ctx.tick().until(dut.inc.ready)
    ctx.set(dut.inc.valid, 0)


async def _read(ctx, dut, index, clear=False):
    ctx.set(dut.csr_index, index)
    ctx.set(dut.csr_clear, clear)
    ctx.set(dut.csr_start, 1)
    await ctx.tick()
    ctx.set(dut.csr_start, 0)
    await ctx.tick().until(dut.csr_done)
    value = ctx.get(dut.csr_data)
    return {"a": value.a, "b": value.b, "c": value.c}


def test_counter_saturates_at_all_ones():
    async def tb(ctx, dut):
        for _ in range(3):
            await _inc(ctx, dut, 1, 2, 100)
        await ctx.tick().repeat(2)
        assert (await _read(ctx, dut, 1)) == {"a": 0, "b": 0, "c": 255}
    _run(tb)


def test_back_to_back_increments_of_one_counter_are_all_counted():
    async def tb(ctx, dut):
        ctx.set(dut.inc.payload, {"index": 2, "field": 0, "amount": 3})
        ctx.set(dut.inc.valid, 1)
        await ctx.tick().repeat(10)
        ctx.set(dut.inc.valid, 0)
        await ctx.tick().repeat(2)
        assert (await _read(ctx, dut, 2))["a"] == 30
    _run(tb)


def test_read_clear_returns_the_count_and_leaves_zero():
    async def tb(ctx, dut):
        await _inc(ctx, dut, 0, 1, 7)
        await ctx.tick().repeat(2)
        assert (await _read(ctx, dut, 0, clear=True))["b"] == 7
        assert (await _read(ctx, dut, 0))["b"] == 0
    _run(tb)


def test_out_of_range_index_or_field_changes_nothing():
    async def tb(ctx, dut):
        await _inc(ctx, dut, 9, 0, 5)
        await _inc(ctx, dut, 0, 3, 5)
        await ctx.tick().repeat(2)
        for index in range(4):
            assert (await _read(ctx, dut, index)) == {"a": 0, "b": 0, "c": 0}
    _run(tb)
