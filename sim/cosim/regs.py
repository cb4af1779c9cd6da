"""Register access for the driver (:class:`sim.driver.NvmfDevice`) on the RTL under cocotb.

* :class:`AxilRegs`: the engine's AXI4-Lite CSR port through cocotbext-axi's master;
  an SLVERR raises :class:`sim.model.csr.BusError`, as :class:`sim.model.csr.ModelRegs`
  does on the model.
* :class:`TeeRegs`: the RTL and the control-plane model (:class:`sim.model.csr.CsrModel`)
  in lock-step; every read and every response is compared.
"""

from sim.model.csr import BusError

__all__ = ["AxilRegs", "TeeRegs"]


class AxilRegs:
    """The driver's register access over cocotbext-axi's AXI4-Lite master (SLVERR raises
    :class:`sim.model.csr.BusError`, as :class:`sim.model.csr.ModelRegs` does)."""

    def __init__(self, axil):
        self.axil = axil

    async def read(self, offset):
        resp = await self.axil.read(offset, 4)
        if int(resp.resp) != 0:
            raise BusError("read", offset)
        return int.from_bytes(resp.data, "little")

    async def write(self, offset, value):
        resp = await self.axil.write(offset, value.to_bytes(4, "little"))
        if int(resp.resp) != 0:
            raise BusError("write", offset)


class TeeRegs:
    """Register access on the RTL (AXI4-Lite) and the model, in lock-step.

    Every read must return the same value and response on both; every
    write must get the same response. ``on_write`` (if set) is called after
    each write with the cycle it completed at (the lookup checker uses it).
    """

    def __init__(self, tb):
        self.tb = tb
        self.on_write = None
        self.reads = 0
        self.writes = 0
        self.busy_reads = 0
        self.status_offset = tb.model.regmap["CMD_STATUS"].offset

    async def read(self, offset):
        resp = await self.tb.axil.read(offset, 4)
        value = int.from_bytes(resp.data, "little")
        if offset == self.status_offset and int(resp.resp) == 0 and value & 1:
            # busy is timing: the model finishes a command at once, the RTL in a few
            # cycles. A busy read is not compared; the caller polls again.
            self.busy_reads += 1
            return value
        want, want_resp = self.tb.model.read(offset)
        got_resp = "OKAY" if int(resp.resp) == 0 else "SLVERR"
        assert (value, got_resp) == (want, want_resp), (
            f"read 0x{offset:03x}: rtl 0x{value:08x} {got_resp}, model 0x{want:08x} {want_resp}")
        self.reads += 1
        if got_resp != "OKAY":
            raise OSError(f"SLVERR reading 0x{offset:03x}")
        return value

    async def write(self, offset, value):
        await self.write_bytes(offset, value.to_bytes(4, "little"))

    async def write_bytes(self, offset, data):
        """Write ``data`` at byte ``offset`` (a partial word gives WSTRB < 0b1111)."""
        resp = await self.tb.axil.write(offset, data)
        lane = offset & 3
        strobe = ((1 << len(data)) - 1) << lane
        value = int.from_bytes(data, "little") << (8 * lane)
        got_resp = "OKAY" if int(resp.resp) == 0 else "SLVERR"
        want_resp = self.tb.model.write(offset & ~3, value, strobe)
        value = int.from_bytes(data, "little")
        assert got_resp == want_resp, (
            f"write 0x{offset:03x} = 0x{value:08x}: rtl {got_resp}, model {want_resp}")
        self.writes += 1
        if self.on_write is not None:
            self.on_write(self.tb.cycle)
        if got_resp != "OKAY":
            raise OSError(f"SLVERR writing 0x{offset:03x}")
