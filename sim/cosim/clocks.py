"""The clocks and resets of an engine in a cocotb bench, one to three domains.

:class:`BenchClocks` reads the periods from ``NVMF_CLOCKS`` (:mod:`sim.clocks`),
drives ``clk`` and, on an engine built with ``clock_domains = "split"``,
``pcie_clk`` and ``csr_clk``; :attr:`core`, :attr:`pcie` and :attr:`csr` are the
``(clock, reset)`` a bus model of that side is clocked by (all ``(clk, rst)`` on a
single-clock engine). :meth:`reset` follows ``docs/clocks.md``: every reset
together, held four cycles of the slowest clock, released together.
"""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from sim.clocks import ENV, ClockPeriods

__all__ = ["BenchClocks"]


class BenchClocks:
    """Clock generators and reset of ``dut`` for the periods in ``NVMF_CLOCKS``."""

    def __init__(self, dut, periods=None):
        if periods is None:
            periods = ClockPeriods.parse(os.environ.get(ENV) or "4")
        self.periods = periods
        self.split = hasattr(dut, "pcie_clk")
        self.core = (dut.clk, dut.rst)
        if self.split:
            self.pcie = (dut.pcie_clk, dut.pcie_rst)
            self.csr = (dut.csr_clk, dut.csr_rst)
            self._ns = {"core": periods.core, "pcie": periods.pcie, "csr": periods.csr}
        else:
            self.pcie = self.csr = self.core
            self._ns = {"core": periods.core}
        self.core_ns = periods.core

    def _domains(self):
        return [(name, getattr(self, name)) for name in self._ns]

    def start(self):
        for name, (clk, _) in self._domains():
            cocotb.start_soon(Clock(clk, self._ns[name], unit="ns").start())

    async def reset(self):
        slowest = max(self._domains(), key=lambda d: self._ns[d[0]])[1][0]
        for _, (_, rst) in self._domains():
            rst.value = 1
        await ClockCycles(slowest, 4)
        for _, (_, rst) in self._domains():
            rst.value = 0
        await ClockCycles(self.core[0], 2)
