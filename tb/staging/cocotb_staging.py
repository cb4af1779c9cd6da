"""cocotb tests of ``nvmf_staging``; launched by ``tb/staging/test_staging.py``.

Knobs from the environment: ``NVMF_SEED``, ``NVMF_COUNT`` (operations per
agent in the random mix), ``NVMF_IDLE`` / ``NVMF_BACKPRESSURE`` (fraction of
paused cycles on every input / output channel), ``NVMF_TIMEOUT_MS`` (simulated
time a test may take, default 4 ms).
"""

import itertools
import os
import random

import cocotb
from cocotb.triggers import ClockCycles, Combine
from cocotbext.axi import AxiResp

from tb.staging.staging_tb import FIXED, INCR, TB, WRAP, burst_pause, random_pause

MESSAGES = 40
TIMEOUT = {"timeout_time": float(os.environ.get("NVMF_TIMEOUT_MS", "4")), "timeout_unit": "ms"}


def _env_float(name, default=0.0):
    return float(os.environ.get(name, default))


def _rng():
    return random.Random(int(os.environ.get("NVMF_SEED", "1")))


def _apply_traffic(tb, seed):
    idle, bp = _env_float("NVMF_IDLE"), _env_float("NVMF_BACKPRESSURE")
    rng = random.Random(seed)
    if idle:
        tb.set_idle_generator(lambda: random_pause(random.Random(rng.random()), idle))
    if bp:
        tb.set_backpressure_generator(
            lambda: burst_pause(random.Random(rng.random()), bp))


def _pattern(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


async def _prefill(tb, rng):
    """Random bytes in every word of the memory, through ``i_wr`` (one beat a cycle)."""
    B = tb.params.beat_bytes
    full = (1 << B) - 1
    beats = [(rng.getrandbits(8 * B), full) for _ in range(tb.params.staging_bytes // B)]
    await tb.internal_write(0, beats)


# --- AXI byte-granular writes and reads ---------------------------------------------------------

@cocotb.test(**TIMEOUT)
async def run_axi_sweep_with_guard_bytes(dut):
    """Every lane offset x lengths around the beat size: only the target bytes change."""
    tb = TB(dut)
    rng = _rng()
    _apply_traffic(tb, rng.random())
    await tb.cycle_reset()
    await _prefill(tb, rng)      # guard bytes hold random data from the start
    B = tb.params.beat_bytes
    guard = 2 * B + 3
    cases = [(length, shift) for length in sorted({1, 2, 3, 4, B - 1, B, B + 1})
             for shift in range(B)]
    cases += [(length, shift) for length in (2 * B + 1, 3 * B + 5, 16 * B + 7)
              for shift in sorted({0, 1, B // 2, B - 1})]
    writes = 0
    for slot, (length, shift) in enumerate(cases):
        offset = 256 + (slot * 320) % (tb.params.staging_bytes - 1024) + shift
        lo, hi = offset - guard, offset + length + guard
        await tb.axi_write(tb.addr(offset), _pattern(rng, length),
                           tag=f"len {length} shift {shift}")
        await tb.axi_read(tb.addr(lo), hi - lo, tag=f"len {length} shift {shift} + guards")
        writes += 1
    # transfers a master cuts at a 4 KiB boundary inside the window, and the longest bursts
    for offset, length in [(4096 - 5, 10), (4096 - B, 2 * B), (4096 - 3 * B - 1, 600),
                           (0, 256 * B), (8192 - 256 * B, 256 * B), (B, 4096 - B)]:
        lo, hi = max(0, offset - guard), min(tb.params.staging_bytes, offset + length + guard)
        await tb.axi_write(tb.addr(offset), _pattern(rng, length), tag=f"{length} at {offset}")
        await tb.axi_read(tb.addr(lo), hi - lo, tag=f"{length} at {offset} + guards")
        writes += 1
    await tb.check_whole_memory()
    tb.log.info("%d checked writes, %d AXI W beats, %d R beats", writes, tb.w_beats.count,
                tb.r_beats.count)


# --- everything at once --------------------------------------------------------------------------

@cocotb.test(**TIMEOUT)
async def run_random_mix(dut):
    """AXI and internal writes and reads, concurrently, some outside the window, all checked."""
    tb = TB(dut)
    rng = _rng()
    count = int(os.environ.get("NVMF_COUNT", "40"))
    _apply_traffic(tb, rng.random())
    await tb.cycle_reset()
    p = tb.params
    B, size = p.beat_bytes, p.staging_bytes
    stats = {"axi_w": 0, "axi_w_err": 0, "axi_r": 0, "axi_r_err": 0, "msix": 0,
             "int_w": 0, "int_r": 0}

    def axi_range(r):
        kind = r.random()
        if kind < 0.08:        # crosses an end of the window, or lies just outside
            edge = r.choice([0, size])
            lo = edge + r.randint(-600, 300)
        elif kind < 0.12:      # far away or at an alias of the window
            lo = r.choice([size, -size, 1 << 32, 1 << 40]) + r.randrange(size - 64)
        else:
            lo = r.randrange(size - 1)
        length = r.choice([r.randint(1, 2 * B), r.randint(1, 64 * B), r.randint(1, 1500)])
        if r.random() < 0.08:
            length = r.randint(256 * B, 300 * B)     # more than one burst's worth
        if lo < 0 < lo + length and r.random() < 0.5:
            length = min(length, -lo + 3 * B)
        return lo, lo + length

    async def axi_writer(index):
        r = random.Random(rng.random())
        for _ in range(count):
            if index == 0 and r.random() < 0.1:
                await tb.axi_write(p.msix_addr, r.getrandbits(32).to_bytes(4, "little"),
                                   tag="msix")
                stats["msix"] += 1
                continue
            lo, hi = axi_range(r)
            lock = await tb.locks.acquire(max(lo, 0), min(hi, size), True)
            resp = await tb.axi_write(tb.addr(lo) % (1 << 64), _pattern(r, hi - lo),
                                      tag=f"writer {index}")
            tb.locks.release(lock)
            stats["axi_w"] += 1
            stats["axi_w_err"] += resp != AxiResp.OKAY

    async def axi_reader(index):
        r = random.Random(rng.random())
        for _ in range(count):
            lo, hi = axi_range(r)
            if r.random() < 0.03:
                lo, hi = p.msix_addr - p.staging_base, p.msix_addr - p.staging_base + 4
            lock = await tb.locks.acquire(max(lo, 0), min(hi, size), False)
            resp = await tb.axi.read(tb.addr(lo) % (1 << 64), hi - lo)
            want, want_resp = tb.model.axi_read(tb.addr(lo) % (1 << 64), hi - lo)
            tb.locks.release(lock)
            assert resp.resp == want_resp, f"reader {index}: {hi - lo} B at {lo:#x}: {resp.resp}"
            assert bytes(resp.data) == want, f"reader {index}: {hi - lo} B at {lo:#x} differ"
            stats["axi_r"] += 1
            stats["axi_r_err"] += resp.resp != AxiResp.OKAY

    async def internal_writer():
        r = random.Random(rng.random())
        full = (1 << B) - 1
        for _ in range(count):
            beats = r.choice([1, r.randint(1, 8), r.randint(1, 64)])
            word = r.randrange(size // B - beats + 1)
            data = [(r.getrandbits(8 * B), full if r.random() < 0.5 else r.getrandbits(B))
                    for _ in range(beats)]
            lock = await tb.locks.acquire(word * B, (word + beats) * B, True)
            await tb.internal_write(word * B, data)
            tb.locks.release(lock)
            stats["int_w"] += 1

    async def internal_reader(index):
        r = random.Random(rng.random())
        for _ in range(count):
            beats = r.choice([1, r.randint(1, 8), r.randint(1, 64)])
            word = r.randrange(size // B - beats + 1)
            lock = await tb.locks.acquire(word * B, (word + beats) * B, False)
            await tb.internal_read(word * B, beats, tag=f"internal reader {index}")
            tb.locks.release(lock)
            stats["int_r"] += 1

    agents = [axi_writer(0), axi_writer(1), axi_reader(0), axi_reader(1), internal_writer(),
              internal_reader(0), internal_reader(1)]
    watchdog = tb.start_watchdog()
    await Combine(*(cocotb.start_soon(a) for a in agents))
    watchdog.cancel()
    tb.set_idle_generator(None)
    tb.set_backpressure_generator(None)
    await tb.check_whole_memory()
    stats["msix_seen"] = await tb.check_msix()
    assert stats["axi_w_err"] and stats["axi_r_err"] and stats["msix"], stats
    tb.log.info("%s; lock waits %d; beats: W %d R %d i_wr %d o_rd %d in %d cycles", stats,
                tb.locks.waits, tb.w_beats.count, tb.r_beats.count, tb.iw_beats.count,
                tb.ir_beats.count, tb.cycle)


# --- errors ------------------------------------------------------------------------------------

@cocotb.test(**TIMEOUT)
async def run_outside_window_answers_slverr(dut):
    """Writes outside the window, at aliases, of other sizes / burst types: SLVERR, no change."""
    tb = TB(dut)
    rng = _rng()
    await tb.cycle_reset()
    await _prefill(tb, rng)
    p = tb.params
    B, base, size = p.beat_bytes, p.staging_base, p.staging_bytes
    end = base + size
    cases = [
        (base - 1, 1), (base - B, B), (base - 4096, 4096), (base - 3, 8), (end, 1), (end, B),
        (end + 5, 300), (end - 2, 4), (end - 3 * B, 6 * B), (0, 64), ((1 << 64) - B, B),
        (base + (1 << 32), 64), (base ^ (1 << 63), 64), (base - size, 64), (end + size, 64),
        (p.msix_addr + 4, 4), (p.msix_addr - 4, 4), (p.msix_addr + 4096, 4),
        (p.msix_addr, 2 * B + 1),
    ]
    for addr, length in cases:
        kinds = {tb.model.burst_kind(a, n) for a, n, _, _ in tb.model.bursts(addr, length)}
        resp = await tb.axi_write(addr, _pattern(rng, length), tag=f"write at {addr:#x}")
        # (msix_addr may sit right after the window: then some of these store or are messages)
        assert resp == AxiResp.SLVERR or "error" not in kinds, (
            f"write {length} B at {addr:#x}: {resp!r}")
        await tb.axi_read(addr, length, tag=f"read at {addr:#x}")
    # inside the window but not a full-width INCR burst
    for kwargs in ({"size": 2}, {"size": 0}, {"burst": FIXED}, {"burst": WRAP, "size": 2}):
        for offset, length in [(64, 4), (128, 3 * B)]:
            resp = await tb.axi.write(tb.addr(offset), _pattern(rng, length), **kwargs)
            assert resp.resp == AxiResp.SLVERR, f"write {kwargs}: {resp.resp!r}"
            rresp = await tb.axi.read(tb.addr(offset), length, **kwargs)
            assert rresp.resp == AxiResp.SLVERR, f"read {kwargs}: {rresp.resp!r}"
            assert bytes(rresp.data) == bytes(length), f"read {kwargs}: data not zero"
    # the MSI-X address is write-only
    for length in (4, B):
        await tb.axi_read(p.msix_addr, length, tag="msix read")
    await tb.check_whole_memory()
    await tb.check_msix()


@cocotb.test(**TIMEOUT)
async def run_bursts_crossing_window_end(dut):
    """Single bursts (as no compliant master cuts them) leaving or entering the window:
    SLVERR on the whole burst, nothing written, zero read data, IDs echoed."""
    tb = TB(dut, raw=True)
    rng = _rng()
    _apply_traffic(tb, rng.random())
    await tb.cycle_reset()
    await _prefill(tb, rng)
    p = tb.params
    B, base, size = p.beat_bytes, p.staging_base, p.staging_bytes
    full = tb.model.full_size
    end = base + size
    raw = tb.raw

    def beats_of(n):
        return [(rng.getrandbits(8 * B), rng.choice([(1 << B) - 1, rng.getrandbits(B)]))
                for _ in range(n)]

    cases = [  # (address, beats, size, burst)
        (end - B, 2, full, INCR), (end - 4 * B, 5, full, INCR), (end - B, 256, full, INCR),
        (end - 100 * B + 3, 101, full, INCR), (end - 255 * B, 256, full, INCR),
        (base - B, 2, full, INCR), (base - 10 * B, 200, full, INCR), (base - 1, 1, full, INCR),
        (end - B, 1, full, INCR), (end - 256 * B, 256, full, INCR), (base, 256, full, INCR),
        (base + 5, 3, full, INCR), (base + 7 * B, 9, full, INCR),   # these three store
        (base + 3 * B, 4, full, FIXED), (base + 3 * B, 4, full, WRAP), (base, 2, full - 1, INCR),
        (p.msix_addr, 1, full, INCR), (p.msix_addr, 2, full, INCR), (p.msix_addr, 1, 2, INCR),
        (p.msix_addr, 1, full, FIXED), (p.msix_addr - B, 2, full, INCR),
        (p.msix_addr + B, 1, full, INCR),
    ]
    results = {"OKAY": 0, "SLVERR": 0}
    for index, (addr, n, sz, burst) in enumerate(cases):
        awid = (index * 5 + 3) % 16
        beats = beats_of(n)
        want = tb.model.raw_write(addr, beats, sz, burst)
        got, bid = await raw.write(addr, beats, sz, burst, awid=awid)
        assert (got, bid) == (want, awid), (
            f"write {n} beats at {addr:#x} size {sz} burst {burst}: {got!r} bid {bid}, "
            f"model {want!r} bid {awid}")
        results[got.name] += 1
        arid = (index * 7 + 1) % 16
        want_data, want_resp = tb.model.raw_read(addr, n, sz, burst)
        beats_read = await raw.read(addr, n, sz, burst, arid=arid)
        for i, (data, resp, last, rid) in enumerate(beats_read):
            where = f"read beat {i} of {n} at {addr:#x} size {sz} burst {burst}"
            assert (resp, last, rid) == (want_resp, int(i == n - 1), arid), (
                f"{where}: rresp {resp!r} rlast {last} rid {rid}")
            assert data == want_data[i], f"{where}: {data.hex()} model {want_data[i].hex()}"
    assert results["OKAY"] >= 4 and results["SLVERR"] >= 10, results
    tb.set_idle_generator(None)
    tb.set_backpressure_generator(None)
    await tb.check_whole_memory()
    assert await tb.check_msix() == 1


# --- MSI-X ---------------------------------------------------------------------------------------

@cocotb.test(**TIMEOUT)
async def run_msix_messages_in_order(dut):
    """MSI-X writes among staging writes, o_msix slow: every message once, in order."""
    tb = TB(dut)
    rng = _rng()
    await tb.cycle_reset()
    p = tb.params
    B = p.beat_bytes
    tb.set_backpressure_generator(lambda: burst_pause(random.Random(rng.random()), 0.7, 30))
    done = {"msix": 0, "stores": 0}

    async def messages():
        for i in range(MESSAGES):
            value = rng.getrandbits(32)
            if i % 10 == 9:   # a wider one-beat write: the low four bytes are the message
                data = value.to_bytes(4, "little") + _pattern(rng, min(B, 8) - 4)
            else:
                data = value.to_bytes(4, "little")
            assert await tb.axi_write(p.msix_addr, data, tag=f"msix {i}") == AxiResp.OKAY
            done["msix"] += 1

    async def stores():
        r = random.Random(rng.random())
        while done["msix"] < MESSAGES:
            offset = r.randrange(p.staging_bytes - 200)
            await tb.axi_write(tb.addr(offset), _pattern(r, r.randint(1, 200)), tag="store")
            done["stores"] += 1

    await Combine(cocotb.start_soon(messages()), cocotb.start_soon(stores()))
    # o_msix stalled under a run of back-to-back messages: the writes wait, nothing is lost
    tb.set_backpressure_generator(None)
    stall = 400
    tb.ports.msix.set_pause_generator(itertools.chain(itertools.repeat(1, stall),
                                                      itertools.repeat(0)))
    values = [rng.getrandbits(32) for _ in range(12)]
    b_before = tb.b_beats.count
    writes = [cocotb.start_soon(tb.axi.write(p.msix_addr, v.to_bytes(4, "little")))
              for v in values]
    for v in values:
        tb.model.axi_write(p.msix_addr, v.to_bytes(4, "little"))
    await ClockCycles(dut.clk, stall // 2)
    assert tb.b_beats.count - b_before < len(values), "MSI-X writes not held back"
    for w in writes:
        assert (await w).resp == AxiResp.OKAY
    # not messages: another address, a longer burst
    assert await tb.axi_write(p.msix_addr + 4, bytes(4), tag="msix+4") == AxiResp.SLVERR
    assert await tb.axi_write(p.msix_addr, bytes(2 * B), tag="2 beats") == AxiResp.SLVERR
    await tb.axi_read(p.msix_addr, 4, tag="msix read")
    await ClockCycles(dut.clk, 400)
    seen = await tb.check_msix(settle=50)
    assert seen == MESSAGES + 12, seen
    await tb.check_whole_memory()
    tb.log.info("%d messages among %d staging writes", seen, done["stores"])


# --- internal ports ------------------------------------------------------------------------------

@cocotb.test(**TIMEOUT)
async def run_internal_ports(dut):
    """i_wr byte enables, i_rd lengths 0..4096 (wrapping), requests back to back."""
    tb = TB(dut)
    rng = _rng()
    _apply_traffic(tb, rng.random())
    await tb.cycle_reset()
    p = tb.params
    B, words = p.beat_bytes, p.staging_bytes // p.beat_bytes
    await _prefill(tb, rng)
    # scattered byte enables, including none at all
    for _ in range(24):
        n = rng.randint(1, 16)
        word = rng.randrange(words - n)
        beats = [(rng.getrandbits(8 * B), rng.choice([0, 1, 1 << (B - 1), rng.getrandbits(B)]))
                 for _ in range(n)]
        await tb.internal_write(word * B, beats)
        await tb.internal_read(max(0, word - 1) * B, min(n + 2, words - max(0, word - 1)),
                               tag="after byte-enable write")
    # offset bits above the memory size are ignored
    await tb.internal_write(p.staging_bytes * 3 + 5 * B, [(rng.getrandbits(8 * B), (1 << B) - 1)])
    await tb.internal_read(4 * B, 3, tag="high offset bits")
    # the longest request wraps at the end of the memory; zero beats give nothing
    await tb.internal_read((words - 7) * B, 4096, tag="4096 beats")
    await Combine(*(cocotb.start_soon(tb.internal_read(w * B, n, tag=f"{n} at {w}"))
                    for w, n in [(3, 1), (words - 1, 2), (9, 1), (0, 1), (17, 5)]))
    await tb.internal_read(5 * B, 0, tag="zero beats")
    await tb.internal_read(0, 2, tag="after a zero-beat request")
    await ClockCycles(dut.clk, 20)
    assert tb.ports.rd_out.empty() and not tb.ports.pending
    await tb.check_whole_memory()


# --- throughput and arbitration ------------------------------------------------------------------

def _span(cycles):
    return cycles[-1] - cycles[0] + 1 if cycles else 0


def _in(cycles, lo, hi):
    return sum(lo <= c <= hi for c in cycles)


@cocotb.test(**TIMEOUT)
async def run_throughput_and_alternation(dut):
    """One beat a cycle on each path alone; contending paths alternate beat by beat."""
    tb = TB(dut)
    rng = _rng()
    await tb.cycle_reset()
    p = tb.params
    B = p.beat_bytes
    full = (1 << B) - 1
    n = min(256, 4096 // B)      # the longest burst a 4 KiB page holds: one AW, n beats
    counters = {"AXI W": tb.w_beats, "AXI R": tb.r_beats, "i_wr": tb.iw_beats,
                "o_rd": tb.ir_beats}

    def reset_logs():
        for c in (*counters.values(), tb.b_beats, tb.ar_beats, tb.rd_requests):
            c.cycles.clear()

    def int_beats(k):
        return [(rng.getrandbits(8 * B), full) for _ in range(k)]

    # each path alone: n beats in n consecutive cycles
    reset_logs()
    await tb.axi_write(tb.addr(0), _pattern(rng, n * B), tag="W alone")
    await tb.axi_read(tb.addr(0), n * B, tag="R alone")
    await tb.internal_write(4096, int_beats(n))
    reads = [cocotb.start_soon(tb.internal_read(4096, n // 2, tag="o_rd alone a")),
             cocotb.start_soon(tb.internal_read(4096 + n // 2 * B, n // 2, tag="o_rd alone b"))]
    await Combine(*reads)
    for name, c in counters.items():
        assert len(c.cycles) == n and _span(c.cycles) == n, (
            f"{name} alone: {len(c.cycles)} beats over {_span(c.cycles)} cycles")
    # the latencies the docstring promises, with nothing in the way
    assert tb.b_beats.cycles[-1] - tb.w_beats.cycles[n - 1] == 1, "B not one cycle after W"
    assert tb.r_beats.cycles[0] - tb.ar_beats.cycles[-1] == 4, "first R not 4 cycles after AR"
    assert tb.ir_beats.cycles[0] - tb.rd_requests.cycles[-2] == 4, "o_rd not 4 after i_rd"

    # two bursts back to back (2n beats cross a 4 KiB page or the 256-beat limit): the
    # second AW is taken in the cycle of the first burst's last W beat, so W has no bubble
    reset_logs()
    await tb.axi_write(tb.addr(0), _pattern(rng, 2 * n * B), tag="two bursts")
    w = tb.w_beats.cycles
    assert len(w) == 2 * n and _span(w) == 2 * n, (
        f"two bursts: {len(w)} beats over {_span(w)} cycles")
    # ... and read back: the second AR is taken while the first burst's beats are still
    # in the read pipeline, so R has no bubble either
    reset_logs()
    await tb.axi_read(tb.addr(0), 2 * n * B, tag="two bursts")
    r = tb.r_beats.cycles
    assert len(r) == 2 * n and _span(r) == 2 * n, (
        f"two bursts read: {len(r)} beats over {_span(r)} cycles")

    # all four at once: AXI W vs i_wr on the write port, AXI R vs i_rd on the read port
    reset_logs()
    tasks = [
        cocotb.start_soon(tb.axi_write(tb.addr(0), _pattern(rng, n * B), tag="W vs i_wr")),
        cocotb.start_soon(tb.internal_write(4096, int_beats(n // 2))),
        cocotb.start_soon(tb.axi_read(tb.addr(8192), n * B, tag="R vs o_rd")),
        cocotb.start_soon(tb.internal_read(8192, n, tag="o_rd vs R")),
    ]
    await Combine(*tasks)
    for a, b in (("AXI W", "i_wr"), ("AXI R", "o_rd")):
        ca, cb = counters[a].cycles, counters[b].cycles
        lo, hi = max(ca[0], cb[0]), min(ca[-1], cb[-1])
        na, nb = _in(ca, lo, hi), _in(cb, lo, hi)
        cycles = hi - lo + 1
        tb.log.info("%s vs %s: %d and %d beats in %d shared cycles", a, b, na, nb, cycles)
        assert cycles >= min(len(ca), len(cb)), (
            f"{a}/{b}: one side waited for the other ({cycles} shared cycles)")
        assert na + nb >= 0.85 * cycles, f"{a}/{b}: memory port idle too often"
        assert min(na, nb) >= 0.4 * cycles, f"{a}/{b}: one side starved ({na} vs {nb})"
    await tb.check_whole_memory()
