"""The back end on the Amaranth simulator: a timed-out command's late CQE, in every cycle
around its response, frees the context and leaves its queue's count whole.

A command given up for its timeout is answered Internal Error; its context is released
after the response and kept as a zombie until the CQE the SSD still owes arrives
(docs/backend.md, "Timeouts"). Whatever the cycle that CQE comes in, before the
response, in the cycle retirement releases the context, or after, the back end must end
with no zombie, and the queue must not count the command lost: a lost command makes a
queue owe nothing (``queues_busy`` stays low while it has a command at the SSD) and its
SQ slot is never given back. The sweep of the CQE's cycle runs from three cycles before
the response leaves to six after, and so covers the release cycle wherever retirement
puts it.

The environment is that of ``tb/formal/test_backend_outcome_formal.py``: the smallest
back end (two contexts, one backend queue, 64-bit data), dataless commands (Flush) for
namespace slot 0 served by backend queue 0, every output taken at once, the other inputs
idle.
"""

import functools

import pytest
from amaranth.sim import Simulator

from rtl.backend import Backend
from rtl.formats import Opcode
from tb.formal.test_backend_outcome_formal import PARAMS

TIMEOUT = 24                     # the queue's cmd_timeout, cycles
ENTRIES = 4                      # SQ and CQ entries
STATUS_INTERNAL_ERROR = 0x06


def _command(number):
    return {"cid": number, "opcode": Opcode.FLUSH.value, "subsystem": 0, "slot": 0,
            "queues": 1, "nbytes": 0, "cdw": {"raw": [number, 0, 0, 0, 0, 0]}}


class _Bench:
    """The back end's neighbours, cycle by cycle: the configuration table's read port, the
    SQ writer (takes every SQE), the consumers of every output, and a record of SQEs and
    responses."""

    def __init__(self, dut):
        self.dut = dut
        self.sqes, self.resps = [], []          # (cycle, cid) / (cycle, cid, sc, dw0)
        self.cycle = 0
        self.tail = 0

    async def step(self, ctx):
        dut = self.dut
        await ctx.tick()
        self.cycle += 1
        if ctx.get(dut.o_sqe.valid):
            self.sqes.append((self.cycle, ctx.get(dut.o_sqe.payload.sqe.cid)))
            self.tail = (self.tail + 1) % ENTRIES
        if ctx.get(dut.o_resp.valid):
            cqe = ctx.get(dut.o_resp.payload.cqe)
            self.resps.append((self.cycle, cqe.cid, cqe.status.sc, cqe.dw0))

    async def configure(self, ctx):
        dut = self.dut
        for port in (dut.o_resp, dut.o_event, dut.o_ns_count, dut.o_sqe, dut.o_rdma_cmd,
                     dut.o_rdma_wr, dut.o_stg_wr, dut.o_stg_rd, dut.o_qp_fail,
                     dut.o_qp_error):
            ctx.set(port.ready, 1)
        ctx.set(dut.bq_rd_data, {"valid": 1, "polling": 1, "subsystem": 0,
                                 "sq_entries": ENTRIES, "cq_entries": ENTRIES,
                                 "cmd_timeout": TIMEOUT})
        ctx.set(dut.bq_cfg_index, 0)
        ctx.set(dut.bq_cfg_valid, 1)
        await self.step(ctx)
        ctx.set(dut.bq_cfg_valid, 0)
        for _ in range(8):
            await self.step(ctx)

    async def offer(self, ctx, port, payload):
        """Offers ``payload`` on input stream ``port`` until taken; the cycle it was taken
        in."""
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        while True:
            ready = ctx.get(port.ready)
            await self.step(ctx)
            if ready:
                break
        ctx.set(port.valid, 0)
        return self.cycle

    async def send(self, ctx, number):
        await self.offer(ctx, self.dut.i_cmd, _command(number))

    async def complete(self, ctx, cid):
        """Offers the CQE of ``cid`` until taken; the cycle it was taken in."""
        return await self.offer(ctx, self.dut.i_cqe, {
            "queue": 0, "cqe": {"cid": cid, "sqhd": self.tail, "dw0": 0x600D}})

    async def until(self, ctx, done, budget, what):
        for _ in range(budget):
            if done():
                return
            await self.step(ctx)
        raise AssertionError(f"{what}: not within {budget} cycles")


def _simulate(bench):
    """Runs ``bench(ctx, dut, tb)`` against a fresh smallest back end; its result."""
    dut = Backend(PARAMS)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    out = []

    async def testbench(ctx):
        out.append(await bench(ctx, dut, _Bench(dut)))

    sim.add_testbench(testbench)
    sim.run()
    return out[0]


@functools.cache
def _response_cycle():
    """The cycle the first command's timeout response is offered, with no CQE."""
    async def bench(ctx, dut, tb):
        await tb.configure(ctx)
        await tb.send(ctx, 1)
        await tb.until(ctx, lambda: tb.resps, 6 * TIMEOUT, "the timeout's response")
        return tb.resps[0][0]
    return _simulate(bench)


def _run(offset):
    """The timed-out command's CQE is offered ``offset`` cycles after the cycle its
    response is first offered (negative: before); the responses, as (cid, sc, dw0)."""
    async def bench(ctx, dut, tb):
        await tb.configure(ctx)
        # a first command, never answered by the SSD in time
        await tb.send(ctx, 1)
        await tb.until(ctx, lambda: tb.sqes, 50, "the first SQE")
        cid = tb.sqes[0][1]
        if offset < 0:
            # the response is offered TIMEOUT + a few cycles after the SQE: run until
            # ``-offset`` cycles before it (found by a first run without a CQE)
            await tb.until(ctx, lambda: tb.cycle >= _response_cycle() - 1 + offset,
                           4 * TIMEOUT, "the cycle before the response")
        else:
            await tb.until(ctx, lambda: tb.resps, 4 * TIMEOUT, "the timeout's response")
            for _ in range(offset):
                await tb.step(ctx)
        taken = await tb.complete(ctx, cid)
        # no zombie once the late CQE is in, within a sweep of the contexts
        await tb.until(ctx, lambda: ctx.get(dut.use_zombies) == 0
                       and ctx.get(dut.use_live) == 0,
                       PARAMS.contexts + 12, f"context free after its CQE (cycle {taken})")
        # long past the zombie's abandonment time: still no zombie, and a second command
        # makes the queue busy while it is at the SSD (it would not if the first had been
        # counted lost)
        for _ in range(3 * TIMEOUT):
            await tb.step(ctx)
            assert ctx.get(dut.use_zombies) == 0
        await tb.send(ctx, 2)
        await tb.until(ctx, lambda: len(tb.sqes) == 2, 50, "the second SQE")
        await tb.until(ctx, lambda: ctx.get(dut.queues_busy), 4, "queue busy")
        assert ctx.get(dut.poll) == 1
        await tb.complete(ctx, tb.sqes[1][1])
        await tb.until(ctx, lambda: len(tb.resps) == 2, 50, "the second response")
        await tb.until(ctx, lambda: not ctx.get(dut.queues_busy), 8, "queue idle")
        assert ctx.get(dut.poll) == 0, "an idle polled queue is still polled"
        return [(cid_, sc, dw0) for _, cid_, sc, dw0 in tb.resps]

    if offset < 0:
        _response_cycle()           # (its own simulation, before this one starts)
    return _simulate(bench)


@pytest.mark.parametrize("offset", range(-3, 7))
def test_a_late_cqe_in_any_cycle_around_the_timeout_response_frees_the_context(offset):
    resps = _run(offset)
    assert resps == [(1, STATUS_INTERNAL_ERROR, 0), (2, 0, 0x600D)], resps
