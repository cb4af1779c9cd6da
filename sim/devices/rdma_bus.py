"""The NIC's RDMA transport at bus level, for cocotb benches (:class:`RdmaTransport`).

It takes the engine's RDMA descriptors on ``m_axis_rdma_cmd``, moves READ data in on
``s_axis_rdma_rd`` and WRITE data out of ``m_axis_rdma_wr``, and reports each
descriptor's status on ``s_axis_rdma_sts``, against the initiator's memory by rkey:
regions of its own (:meth:`RdmaTransport.add_region`) or a
:class:`sim.devices.initiator.Initiator` (shared address space, RDMA fault injection),
as ``nvmf-offload replay`` uses it.
"""

import logging

import cocotb
from cocotb.triggers import Event
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from rtl.formats import RdmaCommand, RdmaOp, decode, layout_bytes

__all__ = ["RdmaTransport"]


class RdmaTransport:
    """Executes the engine's RDMA descriptors against the initiator's memory by rkey.

    By default each region (:meth:`add_region`) is memory of its own. With
    ``initiator`` (a :class:`sim.devices.initiator.Initiator`), the descriptors run on it
    instead: regions share its address space, and its injected errors and access
    checks decide the status. ``on_failure(op, desc)``, when set, is called for
    every descriptor that completes with a nonzero status (``op`` "read" or
    "write", ``desc`` the decoded ``RdmaCommand``).
    """

    def __init__(self, dut, clk, rst, initiator=None):
        self.cmd = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_rdma_cmd"), clk, rst)
        self.rd = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_rdma_rd"), clk, rst)
        self.wr = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_rdma_wr"), clk, rst)
        self.sts = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_rdma_sts"), clk, rst)
        for model in (self.cmd, self.rd, self.wr, self.sts):
            model.log.setLevel(logging.WARNING)
        self.initiator = initiator
        self.regions = {}         # rkey -> (addr, bytearray)
        self.fail_rkeys = set()
        self.reads = self.writes = 0
        self.on_failure = None
        self.busy = False
        self.awaiting_engine = False  # a WRITE descriptor waits for the engine's data
        self.idle = Event()
        cocotb.start_soon(self._run())

    def add_region(self, rkey, addr, size):
        self.regions[rkey] = (addr, bytearray(size))
        return self.regions[rkey][1]

    @property
    def quiet(self):
        """Nothing the transport will do on its own: no descriptor waiting or in progress
        (one waiting for the engine's WRITE data counts as quiet: only the engine can
        move it on), no data or status still to send."""
        return ((not self.busy or self.awaiting_engine) and self.cmd.empty()
                and self.rd.idle() and self.sts.idle())

    async def _engine_data(self):
        self.awaiting_engine = True
        try:
            return await self.wr.recv()
        finally:
            self.awaiting_engine = False

    def _locate(self, rkey, addr, length):
        if rkey in self.fail_rkeys or rkey not in self.regions:
            return None
        base, mem = self.regions[rkey]
        if addr < base or addr + length > base + len(mem):
            return None
        return mem, addr - base

    async def _status(self, tag, status):
        await self.sts.send(AxiStreamFrame(
            (tag | status << 16).to_bytes(4, "little")))

    def _failed(self, op, desc):
        if self.on_failure is not None:
            self.on_failure(op, desc)

    async def _run(self):
        size = layout_bytes(RdmaCommand)
        while True:
            frame = await self.cmd.recv()
            self.busy = True
            desc = decode(RdmaCommand, bytes(frame.tdata)[:size])
            if self.initiator is not None:
                await self._run_initiator(desc)
                self.busy = False
                continue
            where = self._locate(desc["rkey"], desc["addr"], desc["length"])
            if desc["op"] == RdmaOp.READ:
                self.reads += 1
                if where is None:
                    self._failed("read", desc)
                    await self._status(desc["tag"], 1)
                    self.busy = False
                    continue
                mem, off = where
                payload = bytes(mem[off:off + desc["length"]])
                await self.rd.send(AxiStreamFrame(payload, tuser=desc["tag"]))
                await self.rd.wait()
                await self._status(desc["tag"], 0)
            else:
                self.writes += 1
                data = await self._engine_data()
                tags = data.tuser if isinstance(data.tuser, list) else [data.tuser]
                assert all(int(t) == desc["tag"] for t in tags), (tags, desc)
                payload = bytes(data.tdata)
                assert len(payload) == desc["length"], (len(payload), desc)
                if where is None:
                    self._failed("write", desc)
                    await self._status(desc["tag"], 1)
                    self.busy = False
                    continue
                mem, off = where
                mem[off:off + len(payload)] = payload
                await self._status(desc["tag"], 0)
            self.busy = False

    async def _run_initiator(self, desc):
        init = self.initiator
        if desc["op"] == RdmaOp.READ:
            self.reads += 1
            result = init.rdma_read(desc["rkey"], desc["addr"], desc["length"])
            if not result.ok:
                self._failed("read", desc)
                await self._status(desc["tag"], int(result.status))
                return
            await self.rd.send(AxiStreamFrame(result.data, tuser=desc["tag"]))
            await self.rd.wait()
            await self._status(desc["tag"], 0)
            return
        self.writes += 1
        data = await self._engine_data()
        tags = data.tuser if isinstance(data.tuser, list) else [data.tuser]
        assert all(int(t) == desc["tag"] for t in tags), (tags, desc)
        payload = bytes(data.tdata)
        assert len(payload) == desc["length"], (len(payload), desc)
        status = init.rdma_write(desc["rkey"], desc["addr"], payload)
        if status != 0:
            self._failed("write", desc)
        await self._status(desc["tag"], int(status))
