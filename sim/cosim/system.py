"""The whole engine (``nvmf_engine``) under cocotb, with device models around it.

:class:`SystemTB` starts the clock and puts a bus model on every port of the engine
(AXI4-Lite CSR master, capsule source, response / exception / QP-error sinks, the
``m_axi_pcie`` fabric, the SSDs' ``s_axi_p2p`` master, the RDMA transport);
:class:`Target` builds a small two-SSD target through the driver. The demo workload
(:mod:`sim.cosim.demo_workload`) and the system tests (``tb/system``) run on them.
"""

import logging

import cocotb
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import (
    AxiBus,
    AxiLiteBus,
    AxiLiteMaster,
    AxiMaster,
    AxiStreamBus,
    AxiStreamSink,
    AxiStreamSource,
)

from rtl.formats import QP_OPS_ALL, Cqe, NsCounters, Opcode, SubsystemCounters, decode
from sim.cosim.harness import params_from_env
from sim.cosim.regs import AxilRegs, TeeRegs
from sim.devices.pcie_bus import HOST_BASE, PcieFabric
from sim.devices.rdma_bus import RdmaTransport
from sim.devices.ssd_bus import SsdDevice
from sim.devices.staging_bus import attach_staging
from sim.driver import NvmeCtrlAttrs, NvmfDevice, SrqAttrs
from sim.model.csr import CsrModel

CLOCK_NS = 4


class SystemTB:
    """The engine with two SSDs, an RDMA transport and an initiator around it."""

    def __init__(self, dut):
        self.dut = dut
        self.params = params_from_env()
        self.log = dut._log
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        clk, rst = dut.clk, dut.rst
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_csr"), clk, rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_capsule"), clk, rst)
        self.resp = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_resp"), clk, rst)
        self.exc = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_exc"), clk, rst)
        self.qp_err = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_qp_err"), clk, rst)
        self.fabric = PcieFabric(dut, clk, rst)
        self.p2p = AxiMaster(AxiBus.from_prefix(dut, "s_axi_p2p"), clk, rst)
        # external staging: a RAM on m_axi_stg that the SSDs reach directly
        self.staging = attach_staging(dut, clk, rst, self.params)
        self.dma = self.p2p if self.staging is None else self.staging.dma(self.p2p)
        self.rdma = RdmaTransport(dut, clk, rst)
        for model in (self.source, self.resp, self.exc, self.qp_err, self.axil.write_if,
                      self.axil.read_if, self.p2p.write_if, self.p2p.read_if):
            model.log.setLevel(logging.WARNING)
        self.model = CsrModel(self.params)
        self.cycle = 0
        cocotb.start_soon(self._count())

    async def _count(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)
        status = self.model.regmap["CMD_STATUS"].offset
        for _ in range(2000):
            resp = await self.axil.read(status, 4)
            if not int.from_bytes(resp.data, "little") & 1:
                return
        raise AssertionError("CMD_STATUS.busy never cleared after reset")


class Target:
    """Two subsystems on two SSDs, two queues each, one QP each; built through the driver."""

    async def build(self, tb, latency=60):
        p = tb.params
        self.dev = NvmfDevice(TeeRegs(tb), p)
        await self.dev.open()
        half = p.staging_bytes // 2
        self.ssds, self.srqs, self.ctrls, self.namespaces = [], [], [], []
        for s in range(2):
            ssd = SsdDevice(tb, f"ssd{s}", tb.fabric, s, tb.dma, p.msix_addr, latency=latency)
            ssd.add_namespace(1, (512, 4096)[s], (65536, 8192)[s])
            self.ssds.append(ssd)
            srq = await self.dev.create_srq(SrqAttrs(
                ops=QP_OPS_ALL, max_namespaces=4, ioccsz=p.max_capsule_bytes // 16, icdoff=0,
                max_io_size=8192, queue_depth=64,
                staging_addr=p.staging_base + s * half, staging_len=half))
            self.srqs.append(srq)
            ctrls = []
            for y in (1, 2):
                ring = HOST_BASE + (s * 4 + y) * 0x10000
                index = len(self.ctrls) + len(ctrls)
                polling = s == 1 and y == 2           # one queue polled, the others MSI-X
                ctrl = await self.dev.create_nvme_ctrl(srq, NvmeCtrlAttrs(
                    sq_addr=ring, sq_entries=16, cq_addr=ring + 0x8000, cq_entries=16,
                    sq_db_addr=ssd.sq_doorbell(y), cq_db_addr=ssd.cq_doorbell(y),
                    cmd_timeout=0, msix_data=None if polling else 0x5A00 + 3 * index))
                assert ctrl.index == index
                # the SSD's MSI-X table entry takes what create_nvme_ctrl returned
                ssd.create_io_queue(y, ring, 16, ring + 0x8000, 16, ctrl.msix_data)
                ctrls.append(ctrl)
            self.ctrls += ctrls
            self.namespaces.append(
                await self.dev.map_nvmf_nsid(ctrls, 1, (512, 4096)[s], 1, (65536, 8192)[s]))
            await self.dev.qp_set_nvmf(s + 1, srq, sqsize=64, sqid=1)
        self.memory = [tb.rdma.add_region(0x100 * (s + 1), 0x1000_0000 * (s + 1), 1 << 20)
                       for s in range(2)]


class CounterModel:
    """The counters a workload of successful commands must leave (``docs/engine.md``,
    counters): per subsystem, its namespace's counters and the subsystem's own, from
    what the workload sent, independent of the RTL."""

    def __init__(self, subsystems=2):
        self.ns = [{name: 0 for name, _ in data.Layout.cast(NsCounters)}
                   for _ in range(subsystems)]
        self.srq = [{name: 0 for name, _ in data.Layout.cast(SubsystemCounters)}
                    for _ in range(subsystems)]

    def served(self, s, opcode, blocks=0, icd=False):
        """Subsystem ``s``'s namespace answered a command of ``opcode`` with success."""
        c = self.ns[s]
        if opcode == Opcode.READ:
            c["read_cmds"] += 1
            c["read_blocks"] += blocks
        elif opcode == Opcode.WRITE:
            c["write_cmds"] += 1
            c["write_blocks"] += blocks
            c["icd_writes"] += int(icd)
        elif opcode == Opcode.FLUSH:
            c["flushes"] += 1
        elif opcode == Opcode.WRITE_ZEROES:
            c["write_zeroes"] += 1
        elif opcode == Opcode.DSM:
            c["dsm"] += 1
        else:
            raise ValueError(f"no counter for opcode {opcode!r}")

    async def check(self, tb, target):
        """Read every namespace's and subsystem's counters through the driver (straight
        from the RTL: the CSR model holds no I/O) and compare them with these."""
        regs, target.dev.regs = target.dev.regs, AxilRegs(tb.axil)
        try:
            got_ns = [await target.dev.ns_counters(ns) for ns in target.namespaces]
            got_srq = [await target.dev.srq_counters(srq) for srq in target.srqs]
        finally:
            target.dev.regs = regs
        wrong = [f"subsystem {s} namespace: {name} is {got[name]}, expected {want[name]}"
                 for s, (got, want) in enumerate(zip(got_ns, self.ns, strict=True))
                 for name in want if got[name] != want[name]]
        wrong += [f"subsystem {s}: {name} is {got[name]}, expected {want[name]}"
                  for s, (got, want) in enumerate(zip(got_srq, self.srq, strict=True))
                  for name in want if got[name] != want[name]]
        assert not wrong, "counters differ from the workload's:\n" + "\n".join(wrong)


async def collect(tb, count, budget):
    """``count`` responses, decoded, within ``budget`` cycles."""
    out = []
    start = tb.cycle
    while len(out) < count:
        assert tb.cycle - start < budget, (
            f"{len(out)} of {count} responses after {budget} cycles; "
            f"exc {tb.exc.count()}, qp errors {tb.qp_err.count()}")
        if tb.resp.empty():
            await RisingEdge(tb.dut.clk)
            continue
        frame = tb.resp.recv_nowait()
        out.append(decode(Cqe, bytes(frame.tdata)))
    return out


