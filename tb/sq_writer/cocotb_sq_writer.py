"""cocotb tests of ``nvmf_sq_writer``; launched by ``tb/sq_writer/test_sq_writer.py``.

Knobs from the environment: ``NVMF_SEED``, ``NVMF_COUNT`` (SQEs of the random
test), ``NVMF_IDLE`` (fraction of idle cycles on ``i_sqe``), ``NVMF_BP``
(fraction of paused cycles on AW, W, B and ``o_done``). With ``NVMF_IDLE`` = 0
the SQEs are offered back to back, so the batches (and so the doorbell
sequence) must be exactly the model's (``SqWriterModel.expected_batches``);
with idle cycles a batch may end early, and each doorbell must still close a
batch the specification allows.
"""

import itertools
import os
import random
from collections import Counter

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from rtl.formats import SQE_BYTES
from tb.sq_writer.sq_writer_tb import BAR_BASE, RING_BASE, TB, Scoreboard, random_pause


def _knobs():
    return (int(os.environ.get("NVMF_SEED", "1")), float(os.environ.get("NVMF_IDLE", "0")),
            float(os.environ.get("NVMF_BP", "0")))


async def _start(dut):
    seed, idle, bp = _knobs()
    tb = TB(dut, seed)
    tb.random_pressure(idle, bp)
    await tb.cycle_reset()
    return tb, idle == 0


def _doorbells(tb):
    return [(db.addr, db.value) for db in tb.space.doorbells]


def _oks(tb):
    return [rec["ok"] for rec, _ in tb.done]


def _hold_alone(tb, channel, cycles):
    """Hold one AXI channel of the slave for ``cycles`` cycles (the other channels keep
    the traffic's pauses). The slave's channel queues (2 entries by default) are made
    deep, so that it takes and keeps every transfer of the channels that still move."""
    for ch in (tb.axi.aw_channel, tb.axi.w_channel, tb.axi.b_channel):
        ch.queue_occupancy_limit = 1024
    channel.set_pause_generator(itertools.chain(itertools.repeat(1, cycles),
                                                itertools.repeat(0)))


def _slot(tb, addr):
    off = addr - RING_BASE
    return bytes(tb.space.ring[off:off + SQE_BYTES])


@cocotb.test()
async def run_single_sqe(dut):
    """One SQE: written at sq_addr + tail * 64, one doorbell with tail + 1, ok = 1."""
    tb, strict = await _start(dut)
    entry = await tb.configure(0, entries=16, tail_init=0)
    rec = tb.submit(0)
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    assert rec.slot_addr == entry["sq_addr"]
    assert _slot(tb, entry["sq_addr"]) == rec.sqe
    assert _doorbells(tb) == [(tb.db_addr(0), 1)]
    assert [r for r, _ in tb.done] == [{"queue": 0, "ok": 1}]


@cocotb.test()
async def run_wraparound_several_queues(dut):
    """Runs of SQEs over five queues with 2- to 8-entry rings and non-zero initial tails:
    every tail wraps several times; doorbells and ring contents follow the model."""
    tb, strict = await _start(dut)
    sizes = {0: (4, 3), 1: (4, 1), 2: (4, 2), 3: (2, 1), 4: (8, 7)}
    for q, (entries, tail) in sizes.items():
        await tb.configure(q, entries=entries, tail_init=tail)
    per_queue = Counter()
    while len(tb.model.records) < 100 or any(per_queue[q] < 2 * e for q, (e, _) in sizes.items()):
        q = tb.rng.choice(list(sizes))
        for _ in range(tb.rng.randint(1, 5)):
            tb.submit(q)
            per_queue[q] += 1
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    for q, (entries, _) in sizes.items():
        assert per_queue[q] >= 2 * entries, f"queue {q} wrapped fewer than twice"
    assert all(_oks(tb))


@cocotb.test()
async def run_coalescing(dut):
    """SQEs of one queue share one doorbell carrying the final tail, also with other queues'
    SQEs between them; a batch stops at 8 SQEs and at sq_entries - 1, and a full batch
    closes every older one."""
    tb, strict = await _start(dut)
    await tb.configure(0, entries=16, tail_init=5)
    await tb.configure(1, entries=64, tail_init=60)
    await tb.configure(2, entries=4, tail_init=2)
    for q, n in ((0, 5), (1, 12), (2, 7), (0, 2), (1, 1), (0, 1)):
        for _ in range(n):
            tb.submit(q)
    await tb.wait_done()
    batches = Scoreboard(tb).check(strict)
    if strict:
        db = tb.db_addr
        assert _doorbells(tb) == [(db(0), 10), (db(1), 4), (db(1), 8), (db(2), 1), (db(2), 0),
                                  (db(2), 1), (db(0), 13), (db(1), 9)], _doorbells(tb)
        assert [len(b) for b, _ in batches] == [5, 8, 4, 3, 3, 1, 3, 1]
    assert all(_oks(tb))


@cocotb.test()
async def run_random_traffic(dut):
    """Seeded random runs over six queues with random ring sizes and initial tails, under the
    environment's idle and back-pressure, with a re-initialised queue half way."""
    tb, strict = await _start(dut)
    count = int(os.environ.get("NVMF_COUNT", "150"))
    queues = list(range(min(6, tb.params.backend_queues)))
    for q in queues:
        entries = tb.rng.choice([2, 3, 4, 5, 8, 16, 32])
        await tb.configure(q, entries=entries, tail_init=tb.rng.randrange(entries))
    for phase in range(2):
        while len(tb.model.records) < count * (phase + 1) // 2:
            q = tb.rng.choice(queues)
            for _ in range(tb.rng.choice([1, 1, 2, 3, 4, 6, 9, 12])):
                tb.submit(q)
        await tb.wait_done()
        if phase == 0:
            await tb.reinit(tb.rng.choice(queues))
    Scoreboard(tb).check(strict)
    assert all(_oks(tb))
    tb.log.info("%d SQEs, %d doorbells, %d cycles", len(tb.model.records),
                len(tb.space.doorbells), tb.cycle)


@cocotb.test()
async def run_sqe_write_error(dut):
    """An SQE write answered SLVERR: every SQE of its batch reports ok = 0 (the doorbell is
    still written, the slot keeps its old bytes); other queues and later batches are fine."""
    tb, strict = await _start(dut)
    await tb.configure(0, entries=16, tail_init=0)
    await tb.configure(1, entries=8, tail_init=6)
    tb.fail_sqe_write(0, slot=2)                 # the third SQE of the first batch
    for q, n in ((0, 4), (1, 3), (0, 2)):
        for _ in range(n):
            tb.submit(q)
    await tb.wait_done()
    tb.fail_sqe_write(1, slot=1)                 # a batch of one, on the other queue
    for q in (1, 0, 0):
        tb.submit(q)
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    if strict:
        assert _oks(tb) == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1]   # queue 0's 6 SQEs: one batch
        db = tb.db_addr
        assert _doorbells(tb) == [(db(0), 6), (db(1), 1), (db(1), 2), (db(0), 8)]
    assert _oks(tb)[2] == 0 and _oks(tb)[9] == 0      # the SQEs whose write failed


@cocotb.test()
async def run_doorbell_write_error(dut):
    """A doorbell write answered SLVERR: its batch reports ok = 0 and the register keeps its
    old value; the writer goes on with the other queue and with later batches."""
    tb, strict = await _start(dut)
    await tb.configure(0, entries=16, tail_init=0)
    await tb.configure(1, entries=4, tail_init=3)
    tb.fail_doorbell(0, n=0)
    tb.fail_doorbell(1, n=1)
    for q, n in ((0, 3), (1, 2), (0, 1), (1, 2), (0, 2), (1, 1)):
        for _ in range(n):
            tb.submit(q)
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    if strict:
        # batches [0 1 2 5] (q0), [3 4 6] (q1, full: closes both), [7 10] (q1), [8 9] (q0)
        assert _oks(tb) == [0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0]
        assert [db.failed for db in tb.space.doorbells] == [True, False, True, False]
        off = tb.db_addr(1) - BAR_BASE
        assert int.from_bytes(tb.space.bar[off:off + 4], "little") == 2   # the n=0 value
    off = tb.db_addr(0) - BAR_BASE
    assert int.from_bytes(tb.space.bar[off:off + 4], "little") == 6


@cocotb.test()
async def run_init_restarts_tail(dut):
    """init restarts a queue's tail at sq_tail_init (same or new configuration) and leaves
    other queues alone; after reset a queue starts at sq_tail_init without a pulse."""
    tb, strict = await _start(dut)
    await tb.configure(0, entries=16, tail_init=3)
    await tb.configure(1, entries=8, tail_init=0)
    await tb.configure(2, entries=8, tail_init=5, init=False)
    for q, n in ((0, 5), (1, 2), (2, 1)):
        for _ in range(n):
            tb.submit(q)
    await tb.wait_done()
    await tb.reinit(0)
    for q, n in ((0, 2), (1, 1)):
        for _ in range(n):
            tb.submit(q)
    await tb.wait_done()
    new_db = BAR_BASE + 0x1804
    tb.space.doorbell_addrs.add(new_db)
    new = await tb.configure(0, entries=4, tail_init=2, db_addr=new_db)
    first = tb.submit(0)
    for _ in range(3):
        tb.submit(0)
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    assert first.slot_addr == new["sq_addr"] + 2 * SQE_BYTES
    db = tb.db_addr
    if strict:
        assert _doorbells(tb) == [(db(0), 8), (db(1), 2), (db(2), 6), (db(0), 5), (db(1), 3),
                                  (new_db, 1), (new_db, 2)], _doorbells(tb)
    assert all(_oks(tb))


@cocotb.test()
async def run_init_during_batch_ends_it(dut):
    """init for the queue of the batch being written: that SQE keeps the old tail, the SQE
    waiting behind it does not join the batch and restarts at sq_tail_init."""
    tb, strict = await _start(dut)
    await tb.configure(0, entries=16, tail_init=3)
    for _ in range(4):
        tb.submit(0)
    await tb.wait_done()
    w_gen = random_pause_like(tb)
    tb.axi.w_channel.set_pause_generator(None)
    tb.axi.w_channel.pause = True               # hold the SQE write in the middle
    first = tb.submit(0)                        # slot 7 under the configuration in force
    tb.model.configure(0, tb.model.entries[0])  # the init below takes effect after it
    later = [tb.submit(0) for _ in range(2)]
    for _ in range(500):
        await ReadOnly()
        if int(dut.m_axi_wvalid.value) == 1:
            break
        await RisingEdge(dut.clk)
    else:
        raise AssertionError("the SQE write never started")
    await RisingEdge(dut.clk)
    await tb.pulse_init(0)
    tb.axi.w_channel.pause = False
    tb.axi.w_channel.set_pause_generator(w_gen)
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    assert first.slot_addr == tb.model.entries[0]["sq_addr"] + 7 * SQE_BYTES
    assert [r.tail_after for r in later] == [4, 5]
    assert _doorbells(tb)[-2:] == [(tb.db_addr(0), 8), (tb.db_addr(0), 5)]
    assert all(_oks(tb))


def random_pause_like(tb):
    """A fresh pause pattern of the test's back-pressure (None when there is none)."""
    _, _, bp = _knobs()
    return random_pause(random.Random(tb.rng.randrange(1 << 30)), bp) if bp else None


@cocotb.test()
async def run_unusable_queue_reports_failure(dut):
    """SQEs for a queue that is not valid, out of the table, misaligned or with its tail
    outside the ring: ok = 0, nothing written; the SQEs around them are unaffected."""
    tb, strict = await _start(dut)
    await tb.configure(0, entries=8, tail_init=1)
    await tb.configure(1, entries=8, valid=0)
    await tb.configure(2, entries=4, sq_addr=tb.alloc_ring(4) + 0x20)
    await tb.configure(3, entries=4, tail_init=4)
    await tb.configure(4, entries=4, db_addr=tb.db_addr(4) + 2)
    sequence = [0, 1, 0, 200, 2, 0, 0, 3, 4, 0]
    for q in sequence:
        tb.submit(q)
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    assert _oks(tb) == [int(q == 0) for q in sequence]
    assert {db.addr for db in tb.space.doorbells} == {tb.db_addr(0)}
    if strict:
        assert [db.value for db in tb.space.doorbells] == [6]      # queue 0's 5 SQEs


@cocotb.test()
async def run_unusable_sqes_pass_while_w_stalls(dut):
    """W held not ready while an SQE waits on it: SQEs for an unusable queue pass it and
    are reported, and the next usable SQE takes a free slot, never the one W still reads
    (both SQEs reach their rings intact)."""
    tb, strict = await _start(dut)
    await tb.configure(0, entries=8)
    await tb.configure(1, entries=8, valid=0)
    # W alone is held (the other channels keep the traffic's pauses)
    tb.axi.w_channel.set_pause_generator(itertools.chain(itertools.repeat(1, 100),
                                                         itertools.repeat(0)))
    sequence = [0, 1, 1, 1, 1, 0]
    for q in sequence:
        tb.submit(q)
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    assert _oks(tb) == [int(q == 0) for q in sequence]


@cocotb.test()
async def run_writes_outstanding_up_to_the_limit(dut):
    """B held back for 400 cycles: the writer issues SQE writes until ``max_writes`` (16)
    await their response, and not one more; once B flows every write completes."""
    tb, strict = await _start(dut)
    for q in range(4):
        await tb.configure(q, entries=64)
    _hold_alone(tb, tb.axi.b_channel, 400)
    for i in range(40):
        tb.submit(i % 4)
    for _ in range(380):
        await RisingEdge(dut.clk)
    aws = sum(1 for h in tb.handshakes if h[0] == "aw")
    bs = sum(1 for h in tb.handshakes if h[0] == "b")
    assert (aws, bs) == (16, 0), f"{aws} writes issued, {bs} answered while B is held"
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    assert all(_oks(tb))


@cocotb.test()
async def run_two_writes_wait_for_aw(dut):
    """AW held for 300 cycles: the writer starts a write, then a second one whose AW waits
    behind the first, sends the W beats of both and starts no third; once AW flows every
    write completes."""
    tb, strict = await _start(dut)
    for q in range(2):
        await tb.configure(q, entries=64)
    _hold_alone(tb, tb.axi.aw_channel, 300)
    for i in range(8):
        tb.submit(i % 2)
    for _ in range(280):
        await RisingEdge(dut.clk)
    aws = sum(1 for h in tb.handshakes if h[0] == "aw")
    lasts = sum(1 for h in tb.handshakes if h[0] == "w" and h[2])
    assert (aws, lasts) == (0, 2), f"{aws} AW and {lasts} W bursts taken while AW is held"
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    assert all(_oks(tb))


@cocotb.test()
async def run_round_robin_coalescing(dut):
    """Nine SQEs for each of four queues, round robin: the first eight of each queue share
    a doorbell (batches full in turn), the ninth ones are rung when the input runs dry."""
    tb, strict = await _start(dut)
    for q in range(4):
        await tb.configure(q, entries=64, tail_init=q)
    for _ in range(9):
        for q in range(4):
            tb.submit(q)
    await tb.wait_done()
    Scoreboard(tb).check(strict)
    if strict:
        db = tb.db_addr
        assert _doorbells(tb) == ([(db(q), q + 8) for q in range(4)]
                                  + [(db(q), q + 9) for q in range(4)]), _doorbells(tb)
    assert all(_oks(tb))


@cocotb.test()
async def run_init_while_busy(dut):
    """Queues 1..3 keep the writer busy while queue 0 gets bursts of SQEs; after each burst
    has started, queue 0 is re-initialised (new ring, tail and doorbell address every other
    time): its open batch rings the old tail at the old doorbell, later SQEs restart."""
    tb, _ = await _start(dut)
    for q in range(1, 4):
        await tb.configure(q, entries=tb.rng.choice([4, 16, 64]), tail_init=1)
    await tb.configure(0, entries=16, tail_init=3)
    spare_db = BAR_BASE + 0x1900
    tb.space.doorbell_addrs.add(spare_db)
    for rnd in range(6):
        burst = [tb.submit(0) for _ in range(tb.rng.randint(1, 4))]
        for _ in range(tb.rng.randint(4, 12)):
            tb.submit(tb.rng.randint(1, 3))
        for _ in range(3000):                      # the burst's last SQE has started
            if burst[-1].index in tb.sqe_aw_index:
                break
            await RisingEdge(dut.clk)
        else:
            raise AssertionError("queue 0's SQEs never started")
        if rnd % 2:
            await tb.configure(0, entries=tb.rng.choice([4, 8, 16]),
                               tail_init=tb.rng.randrange(4),
                               db_addr=spare_db if rnd % 4 == 1 else None)
        else:
            await tb.reinit(0)
    await tb.wait_done()
    batches = Scoreboard(tb).check(strict=False)
    assert all(_oks(tb))
    # no batch of queue 0 spans an init
    for indices, _ in batches:
        assert len({tb.model.records[k].epoch for k in indices}) == 1


@cocotb.test()
async def run_throughput(dut):
    """64 SQEs round robin over four queues, always-ready slave: cycles from the first to
    the last SQE taken, against one SQE per 64/B cycles (+5 %) at B < 64 and one per 2
    cycles at B = 64, and to the last o_done record (the same plus a constant: the last
    batches' doorbells and records). Also the latency of a lone SQE to its doorbell."""
    tb, _ = await _start(dut)
    for q in range(4):
        await tb.configure(q, entries=64, tail_init=0)
    beats = tb.params.sqe_beats
    start = tb.cycle
    rec = tb.submit(0)
    while not tb.space.doorbells:
        await RisingEdge(dut.clk)
    latency = tb.space.doorbells[0].cycle - start
    await tb.wait_done()
    n = 64
    start = tb.cycle
    for i in range(n):
        tb.submit(i % 4)
    while len(tb.done) < n + 1:
        await RisingEdge(dut.clk)
    cycles = tb.done[-1][1] - start
    await tb.wait_done()
    taken = tb.take_cycles[-1] - tb.take_cycles[-n]       # first to last SQE taken
    per_sqe = beats * 1.05 if beats > 1 else 2
    tb.log.info("THROUGHPUT width %d: %d SQEs taken in %d cycles (%.2f per SQE), all "
                "reported after %d; lone SQE to doorbell write %d cycles; %d doorbells",
                tb.params.data_width, n, taken, taken / (n - 1), cycles, latency,
                len(tb.space.doorbells) - 1)
    assert rec.tail_after == 1 and all(_oks(tb))
    assert taken <= (n - 1) * per_sqe + 2, f"{n} SQEs taken in {taken} cycles"
    # the end: the last batches' doorbells, then up to 4 * 8 records at one per cycle
    assert cycles <= n * per_sqe + 48, f"{n} SQEs reported after {cycles} cycles"
    Scoreboard(tb).check(True)
