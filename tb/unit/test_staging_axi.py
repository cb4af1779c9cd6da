"""External staging (rtl/staging_axi.py) in Amaranth's simulator, against an AXI4 slave
model written from the AXI4 rules and the block's docstring, with random back-pressure
and latency on every channel:

* every write burst is INCR, full width, at most MAX_WRITE_BURST beats, inside one 4 KiB
  page and inside the window at ``staging_axi_base``; its W beats come after its AW and
  ``wlast`` marks its last one;
* memory ends up as the beats offered, in order, with their byte enables, would leave it;
* ``wr_done`` never counts a beat whose B has not been sent, and counts them all in the end;
* reads return the memory's words in request order, ``last`` on each request's last beat,
  bursts never longer than MAX_READ_BURST or across a page.
"""

import random

import pytest
from amaranth.sim import Simulator

from rtl.params import EngineParams
from rtl.staging_axi import MAX_READ_BURST, MAX_WRITE_BURST, StagingAxi

PAGE = 4096
BASE = 0x40_0000_0000


def _params(width):
    return EngineParams(data_width=width, staging_bytes=65536, staging_axi_base=BASE,
                        min_staging_bytes=16384)


def _writes(rng, B, count):
    """Beats to offer: runs of consecutive words (often across a page end) and strays."""
    words = 65536 // B
    out = []
    while len(out) < count:
        start = rng.randrange(words)
        for k in range(rng.choice([1, 3, 40, PAGE // B + 5])):
            word = (start + k) % words
            keep = rng.choice([(1 << B) - 1, rng.getrandbits(B)])
            out.append((word * B, rng.getrandbits(8 * B), keep))
    return out[:count]


def _reads(rng, B, count):
    page_words = PAGE // B
    out = []
    for _ in range(count):
        page = rng.randrange(65536 // PAGE)
        first = rng.choice([0, rng.randrange(page_words)])
        # now and then a request of no beats: it issues no AR and returns nothing
        beats = 0 if rng.random() < 0.05 else rng.randint(1, page_words - first)
        out.append((page * PAGE + first * B, beats))
    return out


@pytest.mark.parametrize("width, seed", [(128, 1), (64, 2), (512, 3)])
def test_bursts_obey_axi_and_memory_ends_as_the_beats_left_it(width, seed):
    rng = random.Random(seed)
    params = _params(width)
    B = params.beat_bytes
    dut = StagingAxi(params)
    writes = _writes(rng, B, 600)
    reads = _reads(rng, B, 12)
    mem = bytearray(65536)                  # the slave's memory
    want = bytearray(65536)                 # what the offered beats leave
    for offset, data, keep in writes:
        for i in range(B):
            if keep >> i & 1:
                want[offset + i] = data >> (8 * i) & 0xFF
    state = {"b_sent": 0}
    problems = []

    def sig(name):
        return getattr(dut, f"m_axi_stg_{name}")

    async def bench(ctx):
        aws, b_due, r_queue = [], [], []
        w_burst = None                      # (word, beats left, taken) of the W burst
        i_w = 0
        rq = None                           # read request being offered
        i_r = 0
        expect_rd = []                      # (data, last) per o_rd beat, in order
        got_rd = 0
        phase = "write"
        for cycle in range(40000):
            # ---- inputs of this cycle
            if phase == "write" and i_w < len(writes) and rng.random() < 0.8:
                offset, data, keep = writes[i_w]
                ctx.set(dut.i_wr.valid, 1)
                ctx.set(dut.i_wr.payload.offset, offset)
                ctx.set(dut.i_wr.payload.data, data)
                ctx.set(dut.i_wr.payload.keep, keep)
            else:
                ctx.set(dut.i_wr.valid, 0)
            if phase == "read" and rq is None and i_r < len(reads) and rng.random() < 0.5:
                rq = reads[i_r]
            ctx.set(dut.i_rd.valid, rq is not None)
            if rq is not None:
                ctx.set(dut.i_rd.payload.offset, rq[0])
                ctx.set(dut.i_rd.payload.beats, rq[1])
            ctx.set(sig("awready"), rng.random() < 0.6)
            ctx.set(sig("wready"), rng.random() < 0.7)
            ctx.set(sig("arready"), rng.random() < 0.6)
            b_now = bool(b_due) and b_due[0][0] <= cycle
            ctx.set(sig("bvalid"), b_now)
            ctx.set(sig("bresp"), 0)
            r_now = bool(r_queue) and rng.random() < 0.7
            ctx.set(sig("rvalid"), r_now)
            if r_now:
                ctx.set(sig("rdata"), r_queue[0][0])
                ctx.set(sig("rlast"), r_queue[0][1])
            ctx.set(sig("rresp"), 0)
            ctx.set(dut.o_rd.ready, rng.random() < 0.7)

            # ---- handshakes in this cycle
            if ctx.get(dut.i_wr.valid) and ctx.get(dut.i_wr.ready):
                i_w += 1
            if ctx.get(sig("awvalid")) and ctx.get(sig("awready")):
                addr, n = ctx.get(sig("awaddr")), ctx.get(sig("awlen")) + 1
                off = addr - BASE
                if ctx.get(sig("awsize")) != B.bit_length() - 1 or ctx.get(sig("awburst")) != 1:
                    problems.append(f"AW {addr:#x}: size/burst")
                if not (0 <= off and off + n * B <= 65536) or off % B:
                    problems.append(f"AW {addr:#x}: outside the window")
                if n > MAX_WRITE_BURST or off // PAGE != (off + n * B - 1) // PAGE:
                    problems.append(f"AW {addr:#x} x{n}: too long or across a page")
                aws.append((off // B, n))
            if ctx.get(sig("wvalid")):
                if w_burst is None and not aws:
                    problems.append(f"cycle {cycle}: W beat before its AW")
            if ctx.get(sig("wvalid")) and ctx.get(sig("wready")):
                if w_burst is None:
                    w_burst = (*aws.pop(0), 0) if aws else (0, 1, 0)
                word, left, n = w_burst
                data, strb = ctx.get(sig("wdata")), ctx.get(sig("wstrb"))
                for i in range(B):
                    if strb >> i & 1:
                        mem[word * B + i] = data >> (8 * i) & 0xFF
                if bool(ctx.get(sig("wlast"))) != (left == 1):
                    problems.append(f"cycle {cycle}: wlast {ctx.get(sig('wlast'))}, "
                                    f"{left} beats left")
                w_burst = (word + 1, left - 1, n + 1) if left > 1 else None
                if left == 1:
                    b_due.append((cycle + rng.randint(1, 12), n + 1))
            if b_now and ctx.get(sig("bready")):
                state["b_sent"] += b_due.pop(0)[1]
            if ctx.get(sig("arvalid")) and ctx.get(sig("arready")):
                addr, n = ctx.get(sig("araddr")), ctx.get(sig("arlen")) + 1
                off = addr - BASE
                if n > MAX_READ_BURST or off // PAGE != (off + n * B - 1) // PAGE:
                    problems.append(f"AR {addr:#x} x{n}: too long or across a page")
                for k in range(n):
                    word = bytes(mem[off + k * B:off + (k + 1) * B])
                    r_queue.append((int.from_bytes(word, "little"), k == n - 1))
            if r_now and ctx.get(sig("rready")):
                r_queue.pop(0)
            if rq is not None and ctx.get(dut.i_rd.ready):
                offset, beats = rq
                for k in range(beats):
                    word = bytes(mem[offset + k * B:offset + (k + 1) * B])
                    expect_rd.append((int.from_bytes(word, "little"), k == beats - 1))
                rq, i_r = None, i_r + 1
            if ctx.get(dut.o_rd.valid) and ctx.get(dut.o_rd.ready):
                data, last = ctx.get(dut.o_rd.payload.data), ctx.get(dut.o_rd.payload.last)
                if got_rd >= len(expect_rd) or (data, bool(last)) != expect_rd[got_rd]:
                    problems.append(f"o_rd beat {got_rd}: {data:#x} last {last}")
                got_rd += 1
            await ctx.tick()
            done = ctx.get(dut.wr_done)
            state["done"] = done
            if done > state["b_sent"]:
                problems.append(f"cycle {cycle}: wr_done {done} before the B of beat "
                                f"{state['b_sent']}")
            if problems:
                return
            if phase == "write" and i_w == len(writes) and done == len(writes) % 65536:
                phase = "read"
            if phase == "read" and i_r == len(reads) and got_rd == len(expect_rd):
                state["finished"] = cycle
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not problems, problems[:5]
    assert "finished" in state, f"stuck: wr_done {state.get('done')} of {len(writes)}"
    assert mem == want
