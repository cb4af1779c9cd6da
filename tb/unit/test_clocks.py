"""Clock domains: ``--clocks`` parsing, and an AXI port crossing between unrelated clocks.

The crossing is simulated with Amaranth's simulator at two unrelated periods; on
each channel a producer offers numbered transfers with random idle cycles, the
consumer takes them with random back-pressure, and every channel must deliver
exactly what was offered, in order, in both directions. The whole engine across
three clocks is in ``tb/replay/test_replay_rtl.py``.
"""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from rtl.cdc import AxiPortCrossing, axi_channels
from rtl.control import AXIL_PORTS
from rtl.engine import Engine
from rtl.params import EngineParams
from sim import cli
from sim.clocks import ClockPeriods
from sim.replay import EXIT_INPUT


def test_one_period_is_the_single_clock_engine_and_three_split_it():
    one = ClockPeriods.parse("5")
    assert (one.core, one.pcie, one.csr, one.split) == (5, 5, 5, False)
    three = ClockPeriods.parse("4, 5.3,13")
    assert (three.core, three.pcie, three.csr, three.split) == (4, 5.3, 13, True)
    assert ClockPeriods.parse(three.text()) == three
    assert three.params(EngineParams()).clock_domains == "split"
    assert one.params(EngineParams()).clock_domains == "single"


@pytest.mark.parametrize("text, named", [("4,5", "'4,5'"), ("4,x,13", "'x'"),
                                         ("4,5.0001,13", "'5.0001'"), ("0", "'0'")])
def test_a_bad_period_is_refused_naming_it(text, named):
    with pytest.raises(ValueError, match=named):
        ClockPeriods.parse(text)


def test_replay_refuses_bad_clocks_with_exit_status_2(tmp_path, capsys):
    from tb.replay.test_replay_rtl import EXAMPLES, TARGET

    status = cli.main(["replay", str(TARGET), str(EXAMPLES / "smoke.jsonl"), "--backend",
                       "verilator", "--clocks", "4,abc,8", "--out", str(tmp_path / "o")])
    assert status == EXIT_INPUT
    assert "'abc'" in capsys.readouterr().err


def test_the_split_engine_has_three_clocks_and_the_same_bus_ports():
    single = Engine(EngineParams()).signature.members
    split = Engine(EngineParams(clock_domains="split")).signature.members
    extra = set(split) - set(single)
    assert extra == {"pcie_clk", "pcie_rst", "csr_clk", "csr_rst"}
    assert set(single) <= set(split)


def test_channels_of_an_axi_lite_port():
    chans = axi_channels(AXIL_PORTS)
    assert {ch: d for ch, (d, _) in chans.items()} == {"aw": "i", "w": "i", "b": "o",
                                                        "ar": "i", "r": "o"}
    assert [n for n, _ in chans["w"][1]] == ["wdata", "wstrb"]


def _crossing_run(outer_ns, inner_ns, seed, count=60):
    cdc = AxiPortCrossing(AXIL_PORTS, "csr")
    top = Module()
    top.domains.sync = ClockDomain()
    top.domains.csr = ClockDomain()
    top.submodules.cdc = cdc
    sim = Simulator(top)
    sim.add_clock(inner_ns * 1e-9, domain="sync")
    sim.add_clock(outer_ns * 1e-9, domain="csr")
    rng = random.Random(seed)
    chans = axi_channels(AXIL_PORTS)
    offered, received = {}, {}

    def side(ch, producer):
        inbound = chans[ch][0] == "i"
        if producer:
            return ("outer", "csr") if inbound else ("inner", "sync")
        return ("inner", "sync") if inbound else ("outer", "csr")

    def make_producer(ch):
        prefix, domain = side(ch, True)
        payload = chans[ch][1]
        items = [[rng.getrandbits(w) for _, w in payload] for _ in range(count)]
        offered[ch] = items
        prng = random.Random(rng.random())

        async def producer(ctx):
            valid = getattr(cdc, f"{prefix}_{ch}valid")
            ready = getattr(cdc, f"{prefix}_{ch}ready")
            for item in items:
                while prng.random() < 0.3:
                    ctx.set(valid, 0)
                    await ctx.tick(domain)
                for (name, _), value in zip(payload, item, strict=True):
                    ctx.set(getattr(cdc, f"{prefix}_{name}"), value)
                ctx.set(valid, 1)
                await ctx.tick(domain).until(ready)
            ctx.set(valid, 0)
        return producer

    def make_consumer(ch):
        prefix, domain = side(ch, False)
        payload = chans[ch][1]
        got = received[ch] = []
        crng = random.Random(rng.random())

        async def consumer_sampling(ctx):
            valid = getattr(cdc, f"{prefix}_{ch}valid")
            ready = getattr(cdc, f"{prefix}_{ch}ready")
            values = [getattr(cdc, f"{prefix}_{name}") for name, _ in payload]
            while len(got) < count:
                ctx.set(ready, int(crng.random() >= 0.4))
                _, _, v, r, *sample = await ctx.tick(domain).sample(valid, ready, *values)
                if v and r:
                    got.append(list(sample))
        return consumer_sampling

    for ch in chans:
        sim.add_testbench(make_producer(ch))
        sim.add_testbench(make_consumer(ch))
    sim.run_until((count * 8 + 200) * max(outer_ns, inner_ns) * 1e-9)
    return offered, received


@pytest.mark.parametrize("outer_ns, inner_ns, seed", [(13, 4, 1), (3.1, 7.7, 2), (5, 5, 3)])
def test_every_channel_crosses_whole_and_in_order(outer_ns, inner_ns, seed):
    offered, received = _crossing_run(outer_ns, inner_ns, seed)
    for ch, items in offered.items():
        assert received[ch] == items, f"channel {ch}: {len(received[ch])} of {len(items)}"
