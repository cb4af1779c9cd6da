"""The shared timing pieces of rtl/stream_util.py (docs/timing.md) in Amaranth's
simulator, each against what its docstring promises: items kept, in order, the latency
and rate stated, the misuse flagged. Their logic depth is checked in
tb/fpga/test_timing_guard.py and their stream rules proved in tb/formal/test_stream_formal.py.
"""

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from rtl.stream_util import (
    PART_BITS,
    CreditFifo,
    FlagFifo,
    PipelinedMemory,
    RegisterSlice,
    ReplicatedEnable,
    RoundRobinMerge,
)


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# --- RoundRobinMerge ---------------------------------------------------------------------

@pytest.mark.parametrize("slices", [True, False], ids=["input_slices", "no_slices"])
@pytest.mark.parametrize("n", [1, 3, 4])
@pytest.mark.parametrize("seed", [1, 2])
def test_merge_keeps_each_sources_items_in_order_under_back_pressure(seed, n, slices):
    rng = random.Random(seed * 10 + n)
    dut = RoundRobinMerge(16, n, input_slices=slices)
    per_source = 40
    todo = [[(k << 8) | i for i in range(per_source)] for k in range(n)]
    sent = [[] for _ in range(n)]
    got = []

    async def bench(ctx):
        offer = [None] * n
        for _ in range(4000):
            for k in range(n):
                if offer[k] is None and todo[k] and rng.random() < 0.6:
                    offer[k] = todo[k].pop(0)
                ctx.set(dut.i[k].valid, offer[k] is not None)
                ctx.set(dut.i[k].payload, offer[k] or 0)
            ready = rng.random() < 0.7
            ctx.set(dut.o.ready, ready)
            await ctx.delay(1e-9)
            if ctx.get(dut.o.valid) and ready:
                item = ctx.get(dut.o.payload)
                assert ctx.get(dut.o_source) == item >> 8
                got.append(item)
            for k in range(n):
                if offer[k] is not None and ctx.get(dut.i[k].ready):
                    sent[k].append(offer[k])
                    offer[k] = None
            await ctx.tick()
            if len(got) == n * per_source:
                break

    _run(dut, bench)
    assert len(got) == n * per_source
    for k in range(n):
        assert [x for x in got if x >> 8 == k] == sent[k] == list(range(k << 8,
                                                                         (k << 8) + per_source))


@pytest.mark.parametrize("slices", [True, False], ids=["input_slices", "no_slices"])
def test_merge_serves_busy_sources_in_turn_at_one_item_a_cycle(slices):
    n = 3
    dut = RoundRobinMerge(8, n, input_slices=slices)
    got, first = [], {}

    async def bench(ctx):
        for k in range(n):
            ctx.set(dut.i[k].valid, 1)
            ctx.set(dut.i[k].payload, k)
        ctx.set(dut.o.ready, 1)
        for cycle in range(40):
            await ctx.delay(1e-9)
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
                first.setdefault("cycle", cycle)
            await ctx.tick()

    _run(dut, bench)
    # latency: offered at t=0, out from t+2 with input slices, t+1 without
    assert first["cycle"] == (2 if slices else 1)
    assert len(got) == 40 - first["cycle"]                 # one item every cycle
    for i in range(len(got) - n):
        assert sorted(got[i:i + n]) == list(range(n))      # each source once in every n


def test_pieces_reject_sizes_that_are_not_positive():
    with pytest.raises(ValueError, match="n must be a positive integer, not 0"):
        RoundRobinMerge(8, 0)
    with pytest.raises(ValueError, match="depth must be a positive integer, not -1"):
        CreditFifo(8, -1)
    with pytest.raises(ValueError, match="copies must be a positive integer, not 'x'"):
        ReplicatedEnable("x")


# --- CreditFifo --------------------------------------------------------------------------

@pytest.mark.parametrize("depth,delay", [(4, 0), (4, 3), (8, 5), (1, 2)])
def test_credited_writes_arriving_late_are_all_kept_in_order(depth, delay):
    """The producer writes each item ``delay`` cycles after taking its credit (0: in the
    same cycle); the consumer reads at random. No item is lost or reordered, no misuse
    is flagged, and every credit is in use at some point (the credits, not luck, kept
    the FIFO from overflowing)."""
    rng = random.Random(depth * 7 + delay)
    dut = CreditFifo(16, depth)
    total = 60
    got, peak = [], []

    async def bench(ctx):
        line = [None] * delay                 # items between their credit and their write
        sent = 0
        for _ in range(3000):
            take = sent < total and ctx.get(dut.has_credit) and rng.random() < 0.8
            ctx.set(dut.take, take)
            now = sent if take else None
            line = [now] + line
            item = line.pop()
            ctx.set(dut.w_valid, item is not None)
            ctx.set(dut.w_data, item or 0)
            ready = rng.random() < 0.5
            ctx.set(dut.r.ready, ready)
            await ctx.delay(1e-9)
            if ctx.get(dut.r.valid) and ready:
                got.append(ctx.get(dut.r.payload))
            peak.append(ctx.get(dut.level))
            sent += bool(take)
            await ctx.tick()
            if len(got) == total:
                break
        assert not ctx.get(dut.overrun)

    _run(dut, bench)
    assert got == list(range(total))
    assert max(peak) == depth


def test_credit_fifo_flags_a_take_without_credit():
    dut = CreditFifo(8, 2)

    async def bench(ctx):
        ctx.set(dut.take, 1)                   # three takes, two credits, nothing read
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.take, 0)
        await ctx.tick()
        assert not ctx.get(dut.has_credit)
        assert ctx.get(dut.level) == 2
        assert ctx.get(dut.overrun)

    _run(dut, bench)


def test_credit_fifo_flags_a_write_beyond_its_room():
    dut = CreditFifo(8, 2)

    async def bench(ctx):
        ctx.set(dut.w_valid, 1)                # writes without credits, nothing read
        for _ in range(4):
            await ctx.tick()
        assert ctx.get(dut.overrun)

    _run(dut, bench)


# --- RegisterSlice -----------------------------------------------------------------------

@pytest.mark.parametrize("width", [8, PART_BITS + 1, 3 * PART_BITS + 7])
def test_wide_slice_passes_every_item_whole_and_in_order_under_back_pressure(width):
    """A payload held in parts (each with its own copies of the control flip-flops)
    comes out whole: every item, in order, one a cycle when the consumer is always
    ready; ``i_ready`` low only while the spare entry is full."""
    rng = random.Random(width)
    dut = RegisterSlice(width)
    items = [rng.getrandbits(width) for _ in range(200)]
    got, sent, streak = [], [], {"best": 0, "now": 0}

    async def bench(ctx):
        todo = list(items)
        for cycle in range(3000):
            always = cycle < 100                      # first a stretch with no back-pressure
            ready = always or rng.random() < 0.6
            ctx.set(dut.i_valid, bool(todo))
            ctx.set(dut.i_data, todo[0] if todo else 0)
            ctx.set(dut.o_ready, ready)
            await ctx.delay(1e-9)
            if ctx.get(dut.o_valid) and ready:
                got.append(ctx.get(dut.o_data))
                streak["now"] += 1
                streak["best"] = max(streak["best"], streak["now"])
            else:
                streak["now"] = 0
            assert ctx.get(dut.i_ready) == (not ctx.get(dut.spare_valid))
            if todo and ctx.get(dut.i_ready):
                sent.append(todo.pop(0))
            await ctx.tick()
            if len(got) == len(items):
                break

    _run(dut, bench)
    assert got == sent == items
    assert streak["best"] >= 90


# --- FlagFifo ----------------------------------------------------------------------------

@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("depth,width", [(2, 16), (3, 16), (8, 16), (32, 16),
                                         (4, 2 * PART_BITS + 3)])
@pytest.mark.parametrize("seed", [1, 2])
def test_flag_fifo_behaves_as_a_fifo_of_its_depth_with_its_latency(seed, depth, width,
                                                                   buffered):
    """Against a model of the FIFO kept cycle by cycle: ``w_rdy`` is high exactly while
    the storage has room (``depth`` items, or ``depth - 1`` and the output register
    when buffered, as amaranth's SyncFIFOBuffered), an item written in cycle t is offered from
    t+2 (buffered) or t+1, in order, and writes or reads without their flag change
    nothing."""
    rng = random.Random(seed * 100 + depth + buffered)
    dut = FlagFifo(width, depth, buffered=buffered)
    delay = 2 if buffered else 1

    def spread(n):                          # the item's number in every 16-bit lane
        return sum(n << (16 * j) for j in range(-(-width // 16))) & ((1 << width) - 1)

    held = []                               # (item, cycle written), oldest first
    counts = {"full": 0, "out": 0}

    async def bench(ctx):
        nxt = 0
        for cycle in range(1500):
            w_en, r_en = rng.random() < 0.55, rng.random() < 0.5
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_data, spread(nxt))
            ctx.set(dut.r_en, r_en)
            await ctx.delay(1e-9)
            ready = [x for x, at in held if cycle - at >= delay]
            head_ready = bool(held) and cycle - held[0][1] >= delay
            # buffered: the output register holds the head once it has had its two
            # cycles, and the storage (depth - 1 entries) holds the rest
            stored = len(held) - (head_ready if buffered else 0)
            assert ctx.get(dut.w_rdy) == (stored < depth - buffered), cycle
            assert ctx.get(dut.w_rdy2) == (stored < depth - buffered - 1), cycle
            if cycle:
                assert ctx.get(dut.w_rdy) == counts["w_rdy_next"], cycle
            counts["full"] += len(held) == depth
            assert ctx.get(dut.r_rdy) == head_ready, cycle
            if head_ready:
                assert ctx.get(dut.r_data) == ready[0], cycle
            pop = r_en and ctx.get(dut.r_rdy)
            push = w_en and ctx.get(dut.w_rdy)
            if pop:
                held.pop(0)
                counts["out"] += 1
            counts["w_rdy_next"] = ctx.get(dut.w_rdy_next)
            if push:
                held.append((spread(nxt), cycle))
                nxt = (nxt + 1) & 0xFFFF
            await ctx.tick()

    _run(dut, bench)
    assert counts["out"] > 400 and counts["full"] > 0


def test_flag_fifo_rejects_a_buffered_depth_of_one():
    with pytest.raises(ValueError, match="needs depth >= 2, not 1"):
        FlagFifo(8, 1)
    Fragment.get(FlagFifo(8, 1, buffered=False), None)     # one unbuffered entry is fine


# --- PipelinedMemory ---------------------------------------------------------------------

def test_memory_reads_return_two_cycles_later_and_do_not_see_that_cycles_write():
    rng = random.Random(5)
    dut = PipelinedMemory(12, 32, init=[i * 3 for i in range(32)], read_ports=2)
    model = [i * 3 for i in range(32)]

    async def bench(ctx):
        pending = [[], []]                     # per port: (due cycle, value)
        for cycle in range(400):
            wen = rng.random() < 0.4
            waddr, wdata = rng.randrange(32), rng.randrange(1 << 12)
            ctx.set(dut.w_en, wen)
            ctx.set(dut.w_addr, waddr)
            ctx.set(dut.w_data, wdata)
            for k, port in enumerate(dut.read):
                en = rng.random() < 0.6
                addr = rng.randrange(32)
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
                if en:
                    pending[k].append((cycle + 2, model[addr]))
            await ctx.delay(1e-9)
            for k, port in enumerate(dut.read):
                if pending[k] and pending[k][0][0] == cycle:
                    assert ctx.get(port.valid)
                    assert ctx.get(port.data) == pending[k].pop(0)[1]
                else:
                    assert not ctx.get(port.valid)
            if wen:
                model[waddr] = wdata
            await ctx.tick()

    _run(dut, bench)


# --- ReplicatedEnable --------------------------------------------------------------------

def test_replicated_enable_copies_follow_the_input_a_cycle_later():
    dut = ReplicatedEnable(ReplicatedEnable.copies_for(200))
    assert len(dut.q) == 4 and ReplicatedEnable.copies_for(64) == 1
    assert dut.of(0, 8) is dut.q[0] and dut.of(7, 8) is dut.q[3]

    async def bench(ctx):
        for value in (1, 0, 1, 1, 0):
            ctx.set(dut.d, value)
            await ctx.tick()
            assert [ctx.get(q) for q in dut.q] == [value] * 4

    _run(dut, bench)


# --- HeadFifo ----------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2, 3, 32])
@pytest.mark.parametrize("seed", [1, 2])
def test_head_fifo_matches_amaranths_fall_through_fifo_cycle_by_cycle(seed, depth):
    """Driven with the same random writes and reads as amaranth's SyncFIFO of the same
    depth, every cycle: the same ``w_rdy``, ``r_rdy`` and (when ready) ``r_data``, so it
    keeps the items, their order and the fall-through latency (offered the cycle after the
    write), and the run fills it and drains it."""
    from amaranth.hdl import Module
    from amaranth.lib.fifo import SyncFIFO

    from rtl.stream_util import HeadFifo
    rng = random.Random(seed * 10 + depth)
    top = Module()
    top.submodules.dut = dut = HeadFifo(16, depth)
    top.submodules.ref = ref = SyncFIFO(width=16, depth=depth)
    counts = {"full": 0, "out": 0}

    async def bench(ctx):
        for cycle in range(1500):
            w_en, r_en = rng.random() < 0.55, rng.random() < 0.5
            data = rng.randrange(1 << 16)
            for f in (dut, ref):
                ctx.set(f.w_en, w_en)
                ctx.set(f.w_data, data)
                ctx.set(f.r_en, r_en)
            await ctx.delay(1e-9)
            assert ctx.get(dut.w_rdy) == ctx.get(ref.w_rdy), cycle
            assert ctx.get(dut.r_rdy) == ctx.get(ref.r_rdy), cycle
            if ctx.get(ref.r_rdy):
                assert ctx.get(dut.r_data) == ctx.get(ref.r_data), cycle
                counts["out"] += r_en
            counts["full"] += not ctx.get(ref.w_rdy)
            await ctx.tick()

    _run(top, bench)
    assert counts["out"] > 400 and counts["full"] > 0
