"""External staging memory for the RTL under cocotb: a RAM on ``m_axi_stg`` that the
SSDs reach directly.

With ``staging_mode = "external"`` (``docs/backend.md``, "External staging") the
engine keeps staging in memory the integrator provides and reaches it through its
AXI4 master ``m_axi_stg``; the SSDs' DMA goes to that memory without passing through
the engine. :class:`StagingRam` stands in for it:

- cocotbext-axi's ``AxiRam`` answers ``m_axi_stg`` (a DDR4/HBM controller, with the
  test bench's pause generators for latency and back-pressure on every channel);
- ``late_writes`` (cycles; ``NVMF_STG_LATE_WRITES`` in the environment for the test
  benches) makes the memory slow to take writes in: every 16th beat or so waits up to
  that many cycles before it, and the beats after it, reach memory, and the burst's B
  waits for them. AXI4 promises only that a write is visible once its B has come, so
  this is legal; an engine that rang a doorbell before its data's B would let the SSD
  read stale bytes;
- :meth:`StagingRam.dma` gives an SSD its bus master: an access inside the staging
  window (bus address ``staging_base`` + offset) goes to the same memory, one beat
  of ``data_width`` a cycle per direction (the link from the SSD to the memory, full
  duplex); every other access (MSI-X, a stray address) goes to the engine's
  ``s_axi_p2p`` as before.

Written from ``docs/backend.md``, not from the RTL.
"""

import math
import os
import random
from types import SimpleNamespace

import cocotb
from cocotb.triggers import ClockCycles, Event, Lock
from cocotbext.axi import AxiBus, AxiRam

__all__ = ["StagingRam", "attach_staging"]


class StagingRam:
    """The staging memory behind ``m_axi_stg`` (offset 0 = bus address ``staging_base``).

    ``ram`` is the ``AxiRam`` (``read(offset, n)`` / ``write(offset, data)`` read and
    write it directly, as a test's check does)."""

    def __init__(self, dut, clk, rst, params, late_writes=0, seed=0):
        self.params = params
        self.base, self.size = params.staging_base, params.staging_bytes
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_stg"), clk, rst, size=self.size)
        self.clk = clk
        self._links = {"read": Lock(), "write": Lock()}
        #: set to a cycle counter to record, per direction, the cycle of every data
        #: beat the SSDs move (transfers longer than one 8-byte PRP list entry)
        self.now = None
        self.beats = {"read": [], "write": []}
        for side in (self.ram.write_if, self.ram.read_if):
            side.log.setLevel("WARNING")
        if late_writes:
            rng = random.Random(f"{seed}/late_writes")
            ram = self.ram

            async def late(address, data):
                if rng.random() < 1 / 16:
                    await ClockCycles(clk, rng.randint(1, late_writes))
                ram.write(address % ram.size, data)
            self.ram.write_if._write = late

    def inside(self, addr, length):
        """The bus range lies in the staging window."""
        return self.base <= addr and addr + length <= self.base + self.size

    def dma(self, p2p):
        """An SSD's bus master: the staging window here, everything else on ``p2p``."""
        return _DmaPath(self, p2p)

    async def _move(self, kind, length):
        """Hold the link for the beats of one transfer."""
        async with self._links[kind]:
            n = max(1, math.ceil(length / self.params.beat_bytes))
            if self.now is not None and length > 8:
                start = self.now()
                self.beats[kind].extend(range(start + 1, start + n + 1))
            await ClockCycles(self.clk, n)


class _Done:
    """What an ``init_read`` / ``init_write`` of cocotbext-axi returns: ``wait()``, then
    ``data.resp`` (and ``data.data`` for a read)."""

    def __init__(self):
        self.event = Event()
        self.data = None

    async def wait(self):
        await self.event.wait()

    def set(self, **fields):
        self.data = SimpleNamespace(resp=0, **fields)
        self.event.set()


class _DmaPath:
    """``AxiMaster``'s calls (``init_read``, ``init_write``, ``read``, ``write``) routed by
    address: the staging window to :class:`StagingRam`, the rest to the engine."""

    def __init__(self, staging, p2p):
        self.staging, self.p2p = staging, p2p

    def init_read(self, addr, length):
        if not self.staging.inside(addr, length):
            return self.p2p.init_read(addr, length)
        done = _Done()

        async def run():
            await self.staging._move("read", length)
            done.set(data=self.staging.ram.read(addr - self.staging.base, length))
        cocotb.start_soon(run())
        return done

    def init_write(self, addr, data):
        if not self.staging.inside(addr, len(data)):
            return self.p2p.init_write(addr, data)
        done = _Done()
        data = bytes(data)

        async def run():
            await self.staging._move("write", len(data))
            self.staging.ram.write(addr - self.staging.base, data)
            done.set()
        cocotb.start_soon(run())
        return done

    async def read(self, addr, length):
        done = self.init_read(addr, length)
        await done.wait()
        return done.data

    async def write(self, addr, data):
        done = self.init_write(addr, data)
        await done.wait()
        return done.data


def attach_staging(dut, clk, rst, params, seed=0):
    """A :class:`StagingRam` on the engine's ``m_axi_stg`` when staging is external
    (``late_writes`` from ``NVMF_STG_LATE_WRITES``); ``None`` for on-chip staging."""
    if params.onchip_staging:
        return None
    late = int(os.environ.get("NVMF_STG_LATE_WRITES", "0") or 0)
    return StagingRam(dut, clk, rst, params, late_writes=late, seed=seed)
