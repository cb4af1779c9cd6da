"""The PCIe side of the engine at bus level, for cocotb benches: the AXI4 slave on
``m_axi_pcie``.

:class:`PcieFabric` holds host memory (the backend rings) and the SSDs' doorbell BARs
(:meth:`PcieFabric.add_bar`), answers the engine's reads and writes through
cocotbext-axi's :class:`~cocotbext.axi.AxiSlave`, and can answer chosen accesses with
SLVERR (:meth:`PcieFabric.fail_next`). ``on_access``, when set, sees every access;
``delay``, when set, holds accesses back for a number of clock cycles.
"""

import logging

from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiBus, AxiSlave
from cocotbext.axi.address_space import AddressSpace, PeripheralRegion, SparseMemoryRegion

__all__ = ["PcieFabric", "HOST_BASE", "HOST_SIZE", "BAR_BASE", "BAR_SIZE"]

HOST_BASE = 0x10_0000_0000      # host memory (backend rings)
HOST_SIZE = 1 << 32
BAR_BASE = 0xF000_0000          # SSD n's BAR at BAR_BASE + n * BAR_SIZE
BAR_SIZE = 0x1_0000


class PcieFabric:
    """The address space behind ``m_axi_pcie``; writes/reads in a faulted range fail.

    ``host_base`` / ``host_size`` place the host memory (the rings). ``on_access``,
    when set, is called for every beat the engine reads or writes as
    ``on_access(kind, addr, data, failed)`` (``data``: the bytes written, or the
    length read). ``delay``, when set, is called as ``delay(kind, addr, length)`` before
    each of those accesses takes effect and returns a number of cycles of ``clk`` to
    wait first (0 or None: none); that side of the slave (it takes one burst at a time)
    answers nothing meanwhile.
    """

    def __init__(self, dut, clk, rst, prefix="m_axi_pcie", host_base=HOST_BASE,
                 host_size=HOST_SIZE):
        self.space = AddressSpace(2 ** 64)
        self.host_base = host_base
        self.host = SparseMemoryRegion(host_size)
        self.space.register_region(_Faultable(self, self.host, host_size), host_base)
        self.faults = []          # [base, size, kind ("read"/"write"), remaining, unit, delay]
        self.stalled = 0          # accesses held back right now (delay, a late fault)
        self.on_access = None
        self.delay = None
        self.clk = clk
        self._burst = {}          # kind -> (next address, unit) of a burst a fault hit
        self.slave = AxiSlave(AxiBus.from_prefix(dut, prefix), clk, rst, target=self.space)
        self.slave.write_if.log.setLevel(logging.WARNING)
        self.slave.read_if.log.setLevel(logging.WARNING)

    def add_bar(self, index, device, base=None):
        base = BAR_BASE + index * BAR_SIZE if base is None else base
        self.space.register_region(_Faultable(self, PeripheralRegion(device, BAR_SIZE),
                                              BAR_SIZE), base)
        return base

    def fail_next(self, base, size, kind, count=1, unit=None, delay=0):
        """Fail the next ``count`` ``kind`` accesses touching ``[base, base + size)``.

        ``unit`` (bytes, a power of two): one access is an aligned unit of that size
        (an SQE, a CQE), whatever the number of beats it takes; the beats that follow
        a failed one inside its unit fail too without counting. None: every beat
        counts. ``delay``: the error answer comes that many cycles of ``clk`` late, as
        a PCIe completion timeout ends a read nobody completes (that side of the slave
        answers nothing meanwhile; :attr:`stalled` counts the accesses held).
        """
        self.faults.append([base, size, kind, count, unit, delay])

    def clear_faults(self):
        self.faults.clear()
        self._burst.clear()

    def check(self, kind, addr, length):
        burst = self._burst.pop(kind, None)
        if burst is not None and burst[0] == addr and addr % burst[1]:
            self._note(kind, addr, length, burst[1])
            raise _Injected(f"injected {kind} error at {addr:#x} (same access)")
        for fault in self.faults:
            base, size, fkind, left, unit, delay = fault
            if fkind == kind and left and addr < base + size and base < addr + length:
                fault[3] -= 1
                if unit:
                    self._note(kind, addr, length, unit)
                raise _Injected(f"injected {kind} error at {addr:#x}", delay)

    def _note(self, kind, addr, length, unit):
        if (addr + length) % unit:
            self._burst[kind] = (addr + length, unit)

    async def _hold(self, cycles):
        """Hold an access back ``cycles`` cycles of ``clk`` (counted in :attr:`stalled`)."""
        if cycles:
            self.stalled += 1
            try:
                await ClockCycles(self.clk, cycles)
            finally:
                self.stalled -= 1

    def _report(self, kind, addr, data, failed):
        if self.on_access is not None:
            self.on_access(kind, addr, data, failed)


class _Injected(OSError):
    """An injected error answer, ``delay`` cycles late."""

    def __init__(self, message, delay=0):
        super().__init__(message)
        self.delay = delay


class _Faultable:
    """Wraps a region so that the fabric's injected faults answer SLVERR."""

    def __init__(self, fabric, region, size):
        self.fabric, self.region, self.size = fabric, region, size
        self._parent = None
        self._base = None

    async def read(self, address, length, **kwargs):
        addr = address + (self._base or 0)
        if self.fabric.delay is not None:
            await self.fabric._hold(self.fabric.delay("read", addr, length))
        try:
            self.fabric.check("read", addr, length)
        except _Injected as exc:
            await self.fabric._hold(exc.delay)
            self.fabric._report("read", addr, length, True)
            raise
        self.fabric._report("read", addr, length, False)
        return await self.region.read(address, length, **kwargs)

    async def write(self, address, data, **kwargs):
        addr = address + (self._base or 0)
        if self.fabric.delay is not None:
            await self.fabric._hold(self.fabric.delay("write", addr, len(data)))
        try:
            self.fabric.check("write", addr, len(data))
        except _Injected as exc:
            await self.fabric._hold(exc.delay)
            self.fabric._report("write", addr, bytes(data), True)
            raise
        self.fabric._report("write", addr, bytes(data), False)
        await self.region.write(address, data, **kwargs)
