"""cocotb testbench of the engine's front half (``nvmf_engine_front``): front end and control plane.

``TB`` builds every bus model by prefix; ``EngineScoreboard`` predicts each
capsule's outcome with ``sim.model.front.FrontModel`` (configuration read from
the ``CsrModel`` that mirrors every register access) and checks every output
stream, in order, transaction by transaction.
"""

import logging

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import (
    AxiLiteBus,
    AxiLiteMaster,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

from rtl.formats import (
    BackendCommand,
    Cqe,
    ExcSideband,
    decode,
    encode,
    layout_bytes,
)
from sim.cosim.harness import params_from_env
from sim.model.csr import CsrModel
from sim.model.front import FrontModel

CLOCK_NS = 4
SINKS = ("m_axis_resp", "m_axis_exc", "m_axis_qp_err", "m_axis_backend_cmd",
         "m_axis_backend_data")


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.params = params_from_env()
        self.log = dut._log
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_csr"), dut.clk, dut.rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_capsule"),
                                      dut.clk, dut.rst)
        self.sinks = {name: AxiStreamSink(AxiStreamBus.from_prefix(dut, name), dut.clk, dut.rst)
                      for name in SINKS}
        for model in [self.source, *self.sinks.values(), self.axil.write_if, self.axil.read_if]:
            model.log.setLevel(logging.WARNING)
        self.model = CsrModel(self.params)
        self.cycle = 0
        cocotb.start_soon(self._count())

    async def _count(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    def set_idle_generator(self, generator=None):
        self.source.set_pause_generator(generator)

    def set_backpressure_generator(self, factory=None):
        """``factory()`` gives a fresh pause generator for each output sink."""
        for sink in self.sinks.values():
            sink.set_pause_generator(factory() if factory else None)

    async def cycle_reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.model = CsrModel(self.params)
        status = self.model.regmap["CMD_STATUS"].offset
        for _ in range(2000):
            resp = await self.axil.read(status, 4)
            if not int.from_bytes(resp.data, "little") & 1:
                return
        raise AssertionError("CMD_STATUS.busy never cleared after reset")


def _frame_int(frame):
    return int.from_bytes(bytes(frame.tdata), "little")


class EngineScoreboard:
    """Expected outcomes per output stream, in capsule order, from the front-end model."""

    def __init__(self, tb):
        self.tb = tb
        self.front = FrontModel(tb.model)
        self.expected = {name: [] for name in SINKS}
        self.sent = 0
        self.kinds = {}

    async def send(self, capsule, qpn, label=""):
        self.front.csr = self.tb.model
        out = self.front.classify(capsule, qpn)
        self.kinds[out.kind] = self.kinds.get(out.kind, 0) + 1
        tag = f"capsule {self.sent} ({label}, qpn {qpn}, {out.kind})"
        if out.kind == "response":
            cqe, inv, rkey = out.response
            tuser = qpn | inv << 24 | rkey << 25
            self.expected["m_axis_resp"].append((tag, encode(Cqe, cqe), tuser))
        elif out.kind == "to_software":
            side = int.from_bytes(encode(ExcSideband, {"qpn": qpn, "reason": out.reason}),
                                  "little")
            self.expected["m_axis_exc"].append((tag, out.data, side))
        elif out.kind == "qp_error":
            side = int.from_bytes(encode(ExcSideband, {"qpn": qpn, "reason": out.reason}),
                                  "little")
            self.expected["m_axis_qp_err"].append((tag, side.to_bytes(4, "little"), None))
        else:
            self.expected["m_axis_backend_cmd"].append(
                (tag, encode(BackendCommand, out.backend), None))
            if out.data is not None:
                self.expected["m_axis_backend_data"].append((tag, out.data, None))
        for kind, obj in out.events:
            self.tb.model.push_event(kind, obj)
        for table, index, field, amount in out.counts:
            self.tb.model.count(table, index, field, amount)
        self.sent += 1
        await self.tb.source.send(AxiStreamFrame(capsule, tuser=qpn))

    async def check_all(self, budget=None):
        """Every expected transaction arrives, equal, in order; nothing else does."""
        budget = budget or 4000 + 60 * self.sent
        start = self.tb.cycle
        checked = {}
        for name in SINKS:
            sink = self.tb.sinks[name]
            pending, self.expected[name] = self.expected[name], []
            checked[name] = len(pending)
            for tag, want, want_user in pending:
                while sink.empty():
                    assert self.tb.cycle - start < budget, (
                        f"{name}: nothing for {tag}; waiting in the other sinks: "
                        f"{ {n: s.count() for n, s in self.tb.sinks.items()} }")
                    await RisingEdge(self.tb.dut.clk)
                frame = sink.recv_nowait()
                got = bytes(frame.tdata)
                if name == "m_axis_backend_cmd":
                    got_f = decode(BackendCommand, got[:layout_bytes(BackendCommand)])
                    want_f = decode(BackendCommand, want)
                    diff = {k: (got_f[k], want_f[k]) for k in want_f if got_f[k] != want_f[k]}
                    assert not diff, f"{name} {tag}: fields differ (rtl, model): {diff}"
                elif name == "m_axis_resp":
                    got_f, want_f = decode(Cqe, got), decode(Cqe, want)
                    assert got_f == want_f, f"{name} {tag}: rtl {got_f} model {want_f}"
                else:
                    assert got == want, f"{name} {tag}: rtl {got.hex()} model {want.hex()}"
                if want_user is not None:
                    users = frame.tuser if isinstance(frame.tuser, list) else [frame.tuser]
                    assert all(int(u) == want_user for u in users), (
                        f"{name} {tag}: tuser {users} expected {want_user:#x}")
        for _ in range(30):
            await RisingEdge(self.tb.dut.clk)
        for name in SINKS:
            assert self.tb.sinks[name].empty(), f"{name}: an unexpected transaction"
        return checked

