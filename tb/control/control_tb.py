"""cocotb testbench of the control plane top (``nvmf_control``).

``TB`` owns the clock, reset and bus models: cocotbext-axi's AXI4-Lite master
on ``s_axil_csr``, drivers for the event and counter-increment streams, the
namespace-lookup stream and the QP lookup port. The driver's register access,
on the RTL and in lock-step on the reference model (``sim.model.csr.CsrModel``),
is :class:`sim.cosim.regs.TeeRegs`.
"""

import logging

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from rtl.formats import (
    BackendQueueEntry,
    Event,
    NsLookupRequest,
    NsLookupResponse,
    QpEntry,
    SubsystemEntry,
    decode,
    encode,
    layout_bytes,
)
from rtl.formats import Table as T
from sim.cosim.harness import params_from_env
from sim.model.csr import CsrModel

CLOCK_NS = 4

# the datapath's table read ports: prefix of ``{prefix}_rd_addr/_en/_data`` -> (entry, table)
READ_PORTS = {
    "qp": (QpEntry, T.QP), "qp2": (QpEntry, T.QP),
    "ss": (SubsystemEntry, T.SUBSYSTEM), "ss2": (SubsystemEntry, T.SUBSYSTEM),
    "bq": (BackendQueueEntry, T.BACKEND_QUEUE), "bq2": (BackendQueueEntry, T.BACKEND_QUEUE),
    "bq3": (BackendQueueEntry, T.BACKEND_QUEUE),
}
# the configuration pulses: valid -> index, and the table whose writes they follow
CFG_PULSES = {"qp_cfg_valid": ("qp_cfg_qpn", T.QP), "bq_cfg_valid": ("bq_cfg_index",
              T.BACKEND_QUEUE), "ss_cfg_valid": ("ss_cfg_index", T.SUBSYSTEM)}


def _bits(layout, fields):
    return int.from_bytes(encode(layout, fields), "little")


def _decode(layout, value):
    return decode(layout, int(value).to_bytes(layout_bytes(layout), "little"))


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.params = params_from_env()
        self.log = dut._log
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_csr"), dut.clk, dut.rst)
        self.axil.write_if.log.setLevel(logging.WARNING)
        self.axil.read_if.log.setLevel(logging.WARNING)
        self.model = CsrModel(self.params)
        for name in ("ns_req__valid", "ns_resp__ready", "event__valid", "ns_count__valid",
                     "subsystem_count__valid", "qp_rd_en"):
            getattr(dut, name).value = 0
        dut.ns_req__payload.value = 0
        dut.event__payload.value = 0
        dut.ns_count__payload.value = 0
        dut.subsystem_count__payload.value = 0
        for prefix in READ_PORTS:
            getattr(dut, f"{prefix}_rd_en").value = 0
            getattr(dut, f"{prefix}_rd_addr").value = 0
        self.cycle = 0
        cocotb.start_soon(self._count())

    async def _count(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    def set_idle_generator(self, generator=None):
        self.axil.write_if.aw_channel.set_pause_generator(generator)
        self.axil.read_if.ar_channel.set_pause_generator(generator)

    def set_backpressure_generator(self, generator=None):
        self.axil.write_if.b_channel.set_pause_generator(generator)
        self.axil.read_if.r_channel.set_pause_generator(generator)

    async def cycle_reset(self):
        """Reset, then wait for the table sweep (CMD_STATUS.busy) to end."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.model = CsrModel(self.params)

    # --- datapath-side stimulus ----------------------------------------------------------------

    async def push_event(self, kind, obj):
        """One event on the event stream (always accepted), mirrored into the model."""
        self.dut.event__payload.value = _bits(Event, {"kind": kind, "object": obj})
        self.dut.event__valid.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.event__valid.value = 0
        self.model.push_event(kind, obj)

    async def count(self, table_port, index, field, amount):
        """One counter increment; waits while the port is not ready."""
        valid = getattr(self.dut, f"{table_port}__valid")
        ready = getattr(self.dut, f"{table_port}__ready")
        getattr(self.dut, f"{table_port}__payload").value = (
            index | (field << 16) | (amount << 20))
        valid.value = 1
        while True:
            await ReadOnly()
            accepted = int(ready.value)
            await RisingEdge(self.dut.clk)
            if accepted:
                break
        valid.value = 0

    async def qp_lookup(self, qpn):
        self.dut.qp_rd_addr.value = qpn
        self.dut.qp_rd_en.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.qp_rd_en.value = 0
        await ReadOnly()
        value = _decode(QpEntry, self.dut.qp_rd_data.value)
        await RisingEdge(self.dut.clk)
        return value

    async def read_ports(self, addrs):
        """One read on several table read ports in the same cycle (``{prefix: address}``);
        returns ``{prefix: decoded entry}`` as the ports give it the cycle after."""
        for prefix, addr in addrs.items():
            getattr(self.dut, f"{prefix}_rd_addr").value = addr
            getattr(self.dut, f"{prefix}_rd_en").value = 1
        await RisingEdge(self.dut.clk)
        for prefix in addrs:
            getattr(self.dut, f"{prefix}_rd_en").value = 0
        await ReadOnly()
        got = {prefix: _decode(READ_PORTS[prefix][0], getattr(self.dut, f"{prefix}_rd_data").value)
               for prefix in addrs}
        await RisingEdge(self.dut.clk)
        return got

    def port_entry(self, prefix, addr):
        """What the model says read port ``prefix`` returns for ``addr`` (zero out of range)."""
        layout, table = READ_PORTS[prefix]
        if addr < self.model.sizes[table]:
            return self.model.decoded(table, addr)
        return decode(layout, bytes(layout_bytes(layout)))

    def ns_request_bits(self, subsystem, fe_nsid):
        return _bits(NsLookupRequest, {"subsystem": subsystem, "fe_nsid": fe_nsid})

    def ns_response(self):
        return _decode(NsLookupResponse, self.dut.ns_resp__payload.value)


