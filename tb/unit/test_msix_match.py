"""MSI-X recognition (rtl/msix.py) in Amaranth's simulator, against a model from its
docstring: each message names every armed queue whose value it carries, lowest first, or
NO_QUEUE; a value loaded in a cycle applies to the messages taken from the second cycle
after it; random
back-pressure on both sides."""

import random

import pytest
from amaranth.sim import Simulator

from rtl.msix import NO_QUEUE, MsixMatch
from rtl.params import EngineParams


def _expected(values, armed, data):
    hits = [q for q in sorted(values) if armed[q] and values[q] == data]
    return hits or [NO_QUEUE]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_message_names_every_queue_with_its_data_value(seed):
    rng = random.Random(seed)
    params = EngineParams(backend_queues=8)
    n = params.backend_queues
    dut = MsixMatch(params)
    pool = [0x4E564D00 + k for k in range(4)] + [3]       # shared and index-like values
    values, armed = {q: 0 for q in range(n)}, {q: False for q in range(n)}
    want, got = [], []
    cycles = {"first": None}

    async def bench(ctx):
        sent = 0
        in_flight = None
        # what the queues held at the start of each cycle: a message taken in cycle c is
        # matched against the loads of cycle c - 2 and before
        views = [(dict(values), dict(armed))] * 2
        for q in range(n):                          # every queue configured first
            views = [views[-1], (dict(values), dict(armed))]
            value, on = rng.choice(pool), q != 5        # queue 5 polls
            ctx.set(dut.load_valid, 1)
            ctx.set(dut.load_queue, q)
            ctx.set(dut.load_data, value)
            ctx.set(dut.load_armed, on)
            values[q], armed[q] = value, on
            await ctx.tick()
        for cycle in range(3000):
            # a reconfiguration now and then, only while no message is being matched; it
            # applies to messages taken from the second cycle after it on
            views = [views[-1], (dict(values), dict(armed))]
            seen_values, seen_armed = views[0]
            if in_flight is None and len(got) == len(want) and rng.random() < 0.1:
                q = rng.randrange(n + 1)                      # n: out of range, ignored
                value, on = rng.choice(pool), rng.random() < 0.8
                ctx.set(dut.load_valid, 1)
                ctx.set(dut.load_queue, q)
                ctx.set(dut.load_data, value)
                ctx.set(dut.load_armed, on)
                if q < n:
                    values[q], armed[q] = value, on
            else:
                ctx.set(dut.load_valid, 0)
            if in_flight is None and sent < 60 and rng.random() < 0.5:
                in_flight = rng.choice(pool + [0xDEAD])
            ctx.set(dut.i_msg.valid, in_flight is not None)
            ctx.set(dut.i_msg.payload, in_flight if in_flight is not None else 0)
            ready = rng.random() < 0.7
            ctx.set(dut.o_queue.ready, ready)
            await ctx.delay(1e-9)
            if ctx.get(dut.o_queue.valid) and ready:
                got.append(ctx.get(dut.o_queue.payload))
                if cycles["first"] is None:
                    cycles["first"] = cycle
            if in_flight is not None and ctx.get(dut.i_msg.ready):
                want.extend(_expected(seen_values, seen_armed, in_flight))
                sent += 1
                in_flight = None
            await ctx.tick()
            if sent == 60 and len(got) == len(want) and in_flight is None:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want
    assert NO_QUEUE in want and any(q != NO_QUEUE for q in want)
    assert len(want) > 60                     # some message named several queues


@pytest.mark.parametrize("gap", [0, 1, 2])
def test_a_load_applies_to_messages_taken_from_the_second_cycle_after_it(gap):
    """Queue 3 gets value V in cycle 0; a message carrying V is taken in cycle ``gap``:
    it names queue 3 only when ``gap`` >= 2 (the pulse is registered before the write),
    and NO_QUEUE before."""
    dut = MsixMatch(EngineParams(backend_queues=8))
    value = 0x1234_5678
    got = []

    async def bench(ctx):
        ctx.set(dut.o_queue.ready, 1)
        for _ in range(4):                      # let reset settle, nothing loaded
            await ctx.tick()
        ctx.set(dut.load_valid, 1)
        ctx.set(dut.load_queue, 3)
        ctx.set(dut.load_data, value)
        ctx.set(dut.load_armed, 1)
        for cycle in range(gap + 1):
            if cycle == gap:
                ctx.set(dut.i_msg.valid, 1)
                ctx.set(dut.i_msg.payload, value)
                await ctx.delay(1e-9)
                assert ctx.get(dut.i_msg.ready)
            await ctx.tick()
            ctx.set(dut.load_valid, 0)
        ctx.set(dut.i_msg.valid, 0)
        for _ in range(6):
            await ctx.delay(1e-9)
            if ctx.get(dut.o_queue.valid):
                got.append(ctx.get(dut.o_queue.payload))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == ([3] if gap >= 2 else [NO_QUEUE])
