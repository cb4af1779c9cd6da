"""The AXI4 write arbiter (rtl/axi_arbiter.py) in Amaranth's simulator.

Every cycle the test bench drives the masters (random bursts, random idle
cycles, random ``bready``) and the slave (random ``awready`` / ``wready``, B
responses in AW order after a random delay), and checks the AXI rules the
arbiter must keep: the W beats on the shared port follow the AW order with no
interleaving, every burst arrives whole, each master gets exactly its own B
responses in order, and several B responses may be outstanding.
"""

import random

import pytest
from amaranth.sim import Simulator

from rtl.axi_arbiter import AxiWriteArbiter

W = 32


def _run(seed, masters=2, bursts=40, pause=0.3, outstanding=4, b_delay=(0, 6),
         w_after_aw=(), early_w=False):
    """``early_w``: the masters may raise a burst's W before its AW (AXI allows it);
    otherwise W comes with or after AW, as the masters in ``w_after_aw`` promise."""
    rng = random.Random(seed)
    dut = AxiWriteArbiter(masters, W, outstanding=outstanding, w_after_aw=w_after_aw)
    # each master's bursts: (addr, [data...], resp the slave will give)
    plans = [[(0x1000 * k + 0x40 * i, [rng.getrandbits(W) for _ in range(rng.randint(1, 4))],
               rng.choice([0, 0, 0, 2]))
              for i in range(bursts)] for k in range(masters)]
    resp_of = {addr: resp for plan in plans for addr, _, resp in plan}
    log = {"aw": [], "w": [], "b": [[] for _ in range(masters)], "max_out": 0}

    async def bench(ctx):
        nxt = [0] * masters                # next burst to offer
        aw_sent = [False] * masters
        w_sent = [0] * masters             # beats of the current burst handed over
        pending_b = []                     # slave: [addr, cycles left] in AW order
        w_burst = []                       # slave: beats of the burst being received
        up = [False] * masters             # a master's AW is raised
        cycle = 0
        while cycle < 20000:
            done = all(nxt[k] == bursts for k in range(masters))
            if done and not pending_b:
                break
            # drive the masters
            for k, port in enumerate(dut.inputs):
                active = nxt[k] < bursts and rng.random() >= pause
                addr, data, _ = plans[k][nxt[k]] if nxt[k] < bursts else (0, [0], 0)
                # AW, once raised, stays up until taken (AXI); W beats with or after AW
                # (an early-W master raises its AW on a draw of its own, so that its W
                # often comes first)
                aw_act = rng.random() >= 0.7 if early_w else active
                aw_v = nxt[k] < bursts and not aw_sent[k] and (aw_act or up[k])
                up[k] = aw_v
                w_v = (nxt[k] < bursts and (aw_sent[k] or aw_v or early_w)
                       and w_sent[k] < len(data) and active)
                ctx.set(port.awvalid, aw_v)
                ctx.set(port.awaddr, addr)
                ctx.set(port.awlen, len(data) - 1)
                ctx.set(port.wvalid, w_v)
                ctx.set(port.wdata, data[w_sent[k]] if w_v else 0)
                ctx.set(port.wstrb, (1 << (W // 8)) - 1)
                ctx.set(port.wlast, w_v and w_sent[k] == len(data) - 1)
                ctx.set(port.bready, rng.random() >= pause)
            # drive the slave
            out = dut.output
            ctx.set(out.awready, rng.random() >= pause)
            ctx.set(out.wready, rng.random() >= pause)
            b_ready_now = bool(pending_b) and pending_b[0][1] <= 0
            ctx.set(out.bvalid, b_ready_now)
            ctx.set(out.bresp, resp_of[pending_b[0][0]] if b_ready_now else 0)
            # observe handshakes (combinational outputs have settled)
            if ctx.get(out.awvalid) and ctx.get(out.awready):
                addr = ctx.get(out.awaddr)
                log["aw"].append((addr, ctx.get(out.awlen)))
                pending_b.append([addr, rng.randint(*b_delay)])
            if ctx.get(out.wvalid) and ctx.get(out.wready):
                w_burst.append(ctx.get(out.wdata))
                if ctx.get(out.wlast):
                    log["w"].append(list(w_burst))
                    w_burst.clear()
            if b_ready_now and ctx.get(out.bready):
                pending_b.pop(0)
            log["max_out"] = max(log["max_out"], len(pending_b))
            for k, port in enumerate(dut.inputs):
                if ctx.get(port.awvalid) and ctx.get(port.awready):
                    aw_sent[k] = True
                    up[k] = False
                if ctx.get(port.wvalid) and ctx.get(port.wready):
                    w_sent[k] += 1
                if ctx.get(port.bvalid) and ctx.get(port.bready):
                    log["b"][k].append(ctx.get(port.bresp))
                if aw_sent[k] and nxt[k] < bursts and w_sent[k] == len(plans[k][nxt[k]][1]):
                    nxt[k] += 1
                    aw_sent[k] = False
                    w_sent[k] = 0
            for entry in pending_b:
                entry[1] -= 1
            await ctx.tick()
            cycle += 1
        log["cycles"] = cycle
        # let the last B responses reach the masters
        for _ in range(200):
            if sum(len(b) for b in log["b"]) == masters * bursts:
                break
            for port in dut.inputs:
                ctx.set(port.bready, 1)
                ctx.set(port.awvalid, 0)
                ctx.set(port.wvalid, 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return plans, log


@pytest.mark.parametrize("w_after_aw, early_w", [((), False), ((0,), False), ((0, 1), False),
                                                 ((), True)])
@pytest.mark.parametrize("seed", range(6))
def test_bursts_arrive_whole_in_aw_order_and_b_goes_back_to_its_master(seed, w_after_aw,
                                                                       early_w):
    plans, log = _run(seed, w_after_aw=w_after_aw, early_w=early_w)
    by_addr = {addr: (data, resp) for plan in plans for addr, data, resp in plan}
    # every burst once, whole, in AW order, no interleaving
    assert len(log["aw"]) == sum(len(p) for p in plans)
    assert [by_addr[a][0] for a, _ in log["aw"]] == log["w"]
    assert all(length == len(by_addr[a][0]) - 1 for a, length in log["aw"])
    # each master: its bursts in its own order, and its B responses in that order
    for k, plan in enumerate(plans):
        mine = [a for a, _ in log["aw"] if a // 0x1000 == k]
        assert mine == [addr for addr, _, _ in plan]
        assert log["b"][k] == [resp for _, _, resp in plan]


def test_several_b_responses_may_be_outstanding():
    _, log = _run(7, b_delay=(8, 12), pause=0.0)
    assert log["max_out"] > 1


def test_back_to_back_bursts_take_no_idle_cycle_between_them():
    """With the slave always ready and B late, 2 x 30 four-beat bursts take about
    4 cycles each: the port does not wait for B responses."""
    plans, log = _run(3, bursts=30, pause=0.0, outstanding=16, b_delay=(6, 6))
    beats = sum(len(d) for plan in plans for _, d, _ in plan)
    assert log["cycles"] <= beats + 16, (log["cycles"], beats)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_outstanding_must_be_positive():
    with pytest.raises(ValueError, match="outstanding"):
        AxiWriteArbiter(2, W, outstanding=0)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_w_after_aw_must_name_a_master():
    with pytest.raises(ValueError, match=r"w_after_aw names no master: \[2\]"):
        AxiWriteArbiter(2, W, w_after_aw=(0, 2))


@pytest.mark.parametrize("flagged", [False, True])
def test_w_waits_for_its_masters_aw_unless_the_master_is_in_w_after_aw(flagged):
    """Master 0 holds the parked grant and raises W alone: W passes at once when it is
    in ``w_after_aw`` (its ``wready`` does not look at its ``awvalid``), else it waits
    for the AW."""
    dut = AxiWriteArbiter(2, W, w_after_aw=(0,) if flagged else ())
    seen = {}

    async def bench(ctx):
        out, port = dut.output, dut.inputs[0]
        ctx.set(out.awready, 1)
        ctx.set(out.wready, 1)
        for _ in range(3):                 # idle: the grant parks on master 0
            await ctx.tick()
        ctx.set(port.wvalid, 1)
        ctx.set(port.wlast, 1)
        seen["wready"] = ctx.get(port.wready)
        seen["out_wvalid"] = ctx.get(out.wvalid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"wready": int(flagged), "out_wvalid": int(flagged)}


def _first_handshake(master):
    """Cycles from ``awvalid`` rising on an idle port (every master idle before) to the
    shared port's AW hand-shake, with the slave always ready."""
    dut = AxiWriteArbiter(2, W)
    result = {}

    async def bench(ctx):
        out = dut.output
        ctx.set(out.awready, 1)
        ctx.set(out.wready, 1)
        for _ in range(3):                 # idle: the grant parks
            await ctx.tick()
        port = dut.inputs[master]
        ctx.set(port.awvalid, 1)
        ctx.set(port.awaddr, 0x40)
        ctx.set(port.wvalid, 1)
        ctx.set(port.wlast, 1)
        for cycle in range(4):
            if ctx.get(port.awready):
                assert ctx.get(port.wready)          # a one-beat burst: AW and W at once
                result["cycles"] = cycle
                return
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result.get("cycles")


def test_master_0_starts_at_once_on_an_idle_port_another_master_the_cycle_after():
    """The grant is a register parked on master 0 (the SQ writer): it starts in the cycle
    it raises ``awvalid``; master 1 waits one cycle for the grant to move to it."""
    assert _first_handshake(0) == 0
    assert _first_handshake(1) == 1
