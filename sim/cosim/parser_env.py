"""cocotb testbench of the capsule parser top (``nvmf_parser``).

``TB`` drives every input through cocotbext-axi bus models and offers idle
and back-pressure generators; ``Scoreboard`` compares every ``ParsedCommand``
and every data packet, in order, with the reference model
``sim.model.parser.parse_capsule``. The runs the command line makes are in
:mod:`sim.cosim.parser_bench`; the parser's tests in ``tb/parser/`` (``cocotb_parser.py``,
launched by ``test_parser.py``).
"""

import itertools
import logging

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from rtl.formats import ParsedCommand, QpCapsuleAttrs, decode, encode, layout_bytes
from sim.cosim.harness import params_from_env
from sim.model.parser import parse_capsule

CLOCK_NS = 4

ZERO_ATTRS = {"offload": 0, "offload_only": 0, "ops": 0, "ioccsz": 0, "icdoff": 0}


def random_pause(rng, busy_fraction):
    """An endless pause pattern: 1 (pause) with probability ``busy_fraction``."""
    while True:
        yield int(rng.random() < busy_fraction)


class TB:
    """Clock, reset and bus models of ``nvmf_parser``."""

    def __init__(self, dut):
        self.dut = dut
        self.params = params_from_env()
        self.log = dut._log
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_capsule"),
                                      dut.clk, dut.rst)
        self.cmd_sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_cmd"),
                                      dut.clk, dut.rst)
        self.data_sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_data"),
                                       dut.clk, dut.rst)
        for model in (self.source, self.cmd_sink, self.data_sink):
            model.log.setLevel(logging.WARNING)   # one line per frame otherwise
        dut.cfg_qp_wr_en.value = 0
        dut.cfg_qp_wr_addr.value = 0
        dut.cfg_qp_wr_data.value = 0
        self.qp_attrs = {}
        self.cycle = 0
        cocotb.start_soon(self._count_cycles())

    async def _count_cycles(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    def set_idle_generator(self, generator=None):
        self.source.set_pause_generator(generator)

    def set_backpressure_generator(self, cmd_generator=None, data_generator=None):
        """Pause patterns for the two output sinks (independent, so they drift apart)."""
        self.cmd_sink.set_pause_generator(cmd_generator)
        self.data_sink.set_pause_generator(data_generator)

    async def cycle_reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def write_qp(self, qpn, attrs):
        """Write one QP's capsule attributes through the configuration port."""
        raw = int.from_bytes(encode(QpCapsuleAttrs, attrs), "little")
        self.dut.cfg_qp_wr_addr.value = qpn
        self.dut.cfg_qp_wr_data.value = raw
        self.dut.cfg_qp_wr_en.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.cfg_qp_wr_en.value = 0
        if qpn < self.params.qp_count:
            self.qp_attrs[qpn] = dict(attrs)

    def attrs_of(self, qpn):
        return self.qp_attrs.get(qpn, ZERO_ATTRS) if qpn < self.params.qp_count else ZERO_ATTRS


def _beats_ok(frame, beat_bytes):
    """Every beat but the last full; the last beat's keep a run of ones from byte 0."""
    keep = frame.tkeep or []
    if len(keep) % beat_bytes:
        return False
    beats = [keep[i:i + beat_bytes] for i in range(0, len(keep), beat_bytes)]
    for beat in beats[:-1]:
        if not all(beat):
            return False
    last = beats[-1] if beats else []
    n = sum(last)
    return all(last[:n]) and not any(last[n:])


class Scoreboard:
    """Predicts each capsule's outcome with the reference model and checks the RTL's."""

    def __init__(self, tb):
        self.tb = tb
        self.expected = []       # (label, fields, packet) in capsule order
        self.checked = 0
        self.packets_checked = 0
        self.bytes_checked = 0
        self.capsule_bytes = []
        self.outcomes = []       # decoded RTL descriptors, for directed assertions

    async def send(self, capsule, qpn, label=""):
        fields, packet = parse_capsule(capsule, qpn, self.tb.attrs_of(qpn),
                                       self.tb.params.max_capsule_bytes)
        self.expected.append((label, fields, packet))
        self.capsule_bytes.append(len(capsule))
        await self.tb.source.send(AxiStreamFrame(capsule, tuser=qpn))

    async def check_all(self, timeout_cycles=None):
        """Receive and compare one descriptor (and packet) per capsule sent."""
        budget = timeout_cycles or 2000 + 50 * len(self.expected) * self.tb.params.sqe_beats
        start = self.tb.cycle
        nbytes = layout_bytes(ParsedCommand)
        size = 8 * nbytes
        for index, (label, fields, packet) in enumerate(self.expected[self.checked:],
                                                         self.checked):
            while self.tb.cmd_sink.empty():
                assert self.tb.cycle - start < budget, (
                    f"capsule {index} ({label}): no descriptor after {budget} cycles")
                await RisingEdge(self.tb.dut.clk)
            frame = self.tb.cmd_sink.recv_nowait()
            raw = int.from_bytes(bytes(frame.tdata), "little")
            assert raw >> size == 0, f"capsule {index}: padding bits set in descriptor"
            got = decode(ParsedCommand, raw.to_bytes(nbytes, "little"))
            want = decode(ParsedCommand, encode(ParsedCommand, fields))
            if got != want:
                diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
                raise AssertionError(
                    f"capsule {index} ({label}): descriptor differs (rtl, model): {diff}")
            self.outcomes.append(got)
            if packet is not None:
                while self.tb.data_sink.empty():
                    assert self.tb.cycle - start < budget, (
                        f"capsule {index} ({label}): no data packet after {budget} cycles")
                    await RisingEdge(self.tb.dut.clk)
                dframe = self.tb.data_sink.recv_nowait(compact=False)
                assert _beats_ok(dframe, self.tb.params.beat_bytes), (
                    f"capsule {index} ({label}): malformed beats, keep={dframe.tkeep}")
                dframe.compact()
                assert bytes(dframe.tdata) == packet, (
                    f"capsule {index} ({label}): data packet differs: "
                    f"rtl {bytes(dframe.tdata).hex()} model {packet.hex()}")
                self.packets_checked += 1
                self.bytes_checked += len(packet)
            self.checked = index + 1
        # nothing more may come out
        for _ in range(20):
            await RisingEdge(self.tb.dut.clk)
        assert self.tb.cmd_sink.empty(), "descriptor without a capsule"
        assert self.tb.data_sink.empty(), "data packet without a descriptor"
        return self.checked


def pattern(busy):
    """A fixed pause pattern with the given fraction of paused cycles (0, 0.25 or 0.5...)."""
    if busy <= 0:
        return None
    period = 8
    ones = round(busy * period)
    return itertools.cycle([1] * ones + [0] * (period - ones))
