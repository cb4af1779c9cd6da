"""The bus face of the NVMe SSD model, for the RTL under cocotb (:class:`SsdDevice`).

The controller is :class:`sim.devices.ssd.NvmeSsd`, the one the reference model
uses: its doorbells, queues, PRP walk, namespaces, command execution, CQ posting and
faults. This face only puts it on the engine's buses and on a clock:

- doorbell writes arrive from ``m_axi_pcie`` through the fabric's BAR window
  (:meth:`sim.devices.pcie_bus.PcieFabric.add_bar`); an invalid one is told to
  ``on_error`` and answered with an error;
- accesses by address: inside the fabric's host memory (SQ fetch and CQ posting;
  PRPs never point there in the benches) they go straight to it, since they do not
  pass through the engine, and take no cycles here;
- every other access (PRP lists, data, MSI-X) goes out on the ``s_axi_p2p`` master:
  PRP list entries one 8-byte read at a time, a command's data segments all issued at
  once and kept outstanding together, MSI-X writes posted (the next completion does
  not wait for the B response, which is checked when it comes);
- service timing: each command takes ``latency`` cycles from its fetch (plus a draw
  of ``rng.randint(0, jitter)`` and a fault's delay) before it executes; ``interval``
  makes the device a rate limiter in front of that latency; ``ordered`` gives it one
  DMA engine.

Written from ``shared/spec/nvme-facts.md`` and ``docs/engine.md``, not from the RTL.
"""

import math

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, Lock

from sim.devices.pcie import PcieError
from sim.devices.pcie_bus import BAR_SIZE
from sim.devices.ssd import DOORBELL_BASE, NvmeSsd, ProtocolError

__all__ = ["SsdDevice"]

LIST_ENTRY_BYTES = 8            # a PRP list is read one entry a request


class SsdDevice:
    """An NVMe SSD (:class:`~sim.devices.ssd.NvmeSsd`) on the engine's buses.

    ``fabric`` (:class:`~sim.devices.pcie_bus.PcieFabric`) maps BAR0 at ``bar``
    (default: by ``index``) and holds host memory; ``p2p`` is a cocotbext-axi
    ``AxiMaster`` on the engine's ``s_axi_p2p``; ``msix_addr`` is where MSI-X messages
    go (each queue's message data is given to :meth:`create_io_queue`).

    Each command takes ``latency`` cycles from its fetch to its execution, plus a draw
    of ``rng.randint(0, jitter)`` when ``rng`` is given. ``on_error(ssd, exc)``, when
    set, is told of what a real device would flag instead of raising in a background
    task: an invalid doorbell write, a DMA answered with an error (the command then
    completes with Data Transfer Error); without ``on_error`` these raise.

    ``interval`` (cycles, may be fractional; None: no limit) makes the device a rate
    limiter in front of its fixed latency: command service starts at least
    ``interval`` cycles apart (a token bucket of depth one), in fetch order, while any
    number of commands are in their latency at once (internal parallelism). An SSD of
    ``I`` IOPS on a ``f`` Hz engine clock has ``interval = f / I``; ``cycle_ns`` is the
    clock period the limiter converts simulated time with.

    ``ordered``: a single DMA engine: commands issue their transfers in service order,
    the next one as soon as this one's are all on the bus (they stay outstanding
    together), and CQEs and MSI-X messages are posted in the same order. By default
    every command in service moves its data at once, so with no latency the data of
    all fetched commands goes before the first MSI-X.
    """

    def __init__(self, tb, name, fabric, index, p2p, msix_addr, latency=50, bar=None,
                 rng=None, jitter=0, on_error=None, interval=None, cycle_ns=4,
                 ordered=False):
        self.tb, self.name = tb, name
        self.fabric, self.p2p, self.msix_addr = fabric, p2p, msix_addr
        # as many I/O queue pairs as the BAR window has doorbells for
        self.ssd = NvmeSsd(name, io_queues=(BAR_SIZE - DOORBELL_BASE) // 8 - 1)
        self.latency = latency
        self.interval, self.cycle_ns = interval, cycle_ns
        self._next_start = 0.0    # the limiter's next free start, in cycles
        self._dma = Lock() if ordered else None
        self._tickets = 0         # ordered: service order of the next command
        self._post_turn = 0       # ordered: the command whose completion posts next
        self._turn_event = Event()
        self.rng, self.jitter = rng, jitter
        self.on_error = on_error
        self.bar = fabric.add_bar(index, self, bar)
        self.executed = 0         # commands given a status (executed, or a fault's status)
        self.busy = 0             # commands fetched and not yet completed or given up
        self.cq_full_waits = 0
        self._fetching = 0
        self._posted = 0          # MSI-X writes issued, their B response not yet seen

    # --- configuration (the controller's) -------------------------------------------------

    @property
    def namespaces(self):
        return self.ssd.namespaces

    def add_namespace(self, nsid, lba_data_size, nsze):
        return self.ssd.add_namespace(nsid, lba_data_size, nsze)

    def create_io_queue(self, qid, sq_addr, sq_entries, cq_addr, cq_entries, msix_data):
        """Queue pair ``qid``; ``msix_data`` None: the queue is polled (no MSI-X)."""
        polled = msix_data is None
        self.ssd.create_io_queue(qid, sq_addr=sq_addr, sq_entries=sq_entries, cq_addr=cq_addr,
                                 cq_entries=cq_entries,
                                 msix_addr=None if polled else self.msix_addr,
                                 msix_data=msix_data)

    def sq_doorbell(self, qid):
        return self.bar + self.ssd.sq_doorbell_offset(qid)

    def cq_doorbell(self, qid):
        return self.bar + self.ssd.cq_doorbell_offset(qid)

    def inject(self, nsid, *, status=None, never=False, count=1, delay=0, dw0=0):
        """The next ``count`` commands fetched for ``nsid`` get this fault
        (:meth:`sim.devices.ssd.NvmeSsd.inject`): ``status`` (a dict of ``sct``, ``sc``,
        ``dnr``, ``crd``, ``m``) with ``dw0`` in the CQE instead of executing, ``never``
        completing, or ``delay`` more cycles."""
        self.ssd.inject(nsid, status=status, delay=delay, never=never, count=count, dw0=dw0)

    def clear_faults(self):
        self.ssd.clear_faults()

    @property
    def idle(self):
        """No command fetched and not completed (or given up by a ``never`` fault), no
        SQ-tail doorbell waiting to be fetched, no MSI-X write waiting for its answer."""
        return self.busy == 0 and self._fetching == 0 and self._posted == 0

    def _error(self, exc):
        if self.on_error is None:
            raise exc
        self.on_error(self, exc)

    # --- BAR (an AddressSpace region of the fabric) ------------------------------------------
    # Coroutines: cocotbext-axi's PeripheralRegion awaits them (a plain method would be
    # called a second time when awaiting its result fails).

    async def read(self, address, length, **kwargs):
        return self.ssd.bus_read(address, length)

    async def write(self, address, data, **kwargs):
        try:
            self.ssd.bus_write(address, bytes(data))
        except ProtocolError as exc:
            if self.on_error is not None:
                self.on_error(self, exc)
            raise OSError(str(exc)) from exc
        if self.ssd.fetch_pending:
            self._fetching += 1
            cocotb.start_soon(self._fetch())

    # --- the controller's steps on the buses --------------------------------------------------

    def _in_host(self, addr, length):
        base = self.fabric.host_base
        return base <= addr and addr + length <= base + self.fabric.host.size

    async def _fetch(self):
        try:
            await self._drive(self.ssd.fetch_steps(self._accept))
        finally:
            self._fetching -= 1

    def _accept(self, cmd):
        self.busy += 1
        cocotb.start_soon(self._run(cmd))

    def post_unsolicited(self, qid, cid, sc=0, delay=0):
        """A CQE for a command never submitted (:meth:`NvmeSsd.post_unsolicited`)."""
        self.ssd.post_unsolicited(qid, cid, sc=sc, delay=delay, accept=self._accept)

    async def _run(self, cmd):
        fault = cmd.fault
        try:
            if self.interval:
                await self._limit()
            latency = self.latency
            if self.rng is not None and self.jitter:
                latency += self.rng.randint(0, self.jitter)
            if fault is not None:
                latency += fault.delay
            if latency:
                await ClockCycles(self.tb.dut.clk, latency)
            if fault is not None and fault.never:
                return
            if self._dma is not None:
                # one DMA engine: commands issue their transfers in service order, the
                # next one as soon as this one's are all issued (they stay outstanding
                # on the bus together); completions are posted in the same order
                await self._dma.acquire()
                ticket, self._tickets = self._tickets, self._tickets + 1
                held = [True]

                def issued():
                    if held[0]:
                        held[0] = False
                        self._dma.release()
                try:
                    cqe = await self._complete(cmd, issued)
                finally:
                    issued()
                while self._post_turn != ticket:
                    await self._turn_event.wait()
                try:
                    await self._post(cmd.qid, cqe)
                finally:
                    self._post_turn += 1
                    event, self._turn_event = self._turn_event, Event()
                    event.set()
            else:
                await self._post(cmd.qid, await self._complete(cmd))
        except Exception as exc:        # noqa: BLE001 -- reported through on_error
            self._error(exc)
        finally:
            self.busy -= 1

    async def _complete(self, cmd, issued=None):
        cqe = await self._drive(self.ssd.completion_steps(cmd), issued)
        self.executed += 1
        return cqe

    async def _limit(self):
        """Wait for this command's start under the rate limit (``interval``)."""
        now = get_sim_time("ns") / self.cycle_ns
        start = max(self._next_start, now)
        self._next_start = start + self.interval
        wait = math.ceil(start - now - 1e-9)
        if wait > 0:
            await ClockCycles(self.tb.dut.clk, wait)

    async def _post(self, qid, cqe):
        # a full CQ (tail + 1 == head) holds the completion until the host consumes
        while self.ssd.queues[qid].cq_full():
            self.cq_full_waits += 1
            await ClockCycles(self.tb.dut.clk, 1)
        await self._drive(self.ssd.post_steps(qid, cqe))
        message = self.ssd.interrupt(qid)
        if message is not None:
            self._post_msix(*message)

    def _post_msix(self, addr, data):
        """Issue the MSI-X write and go on, as PCIe posts it."""
        event = self.p2p.init_write(addr, data)
        self._posted += 1
        cocotb.start_soon(self._check_posted(addr, event))

    async def _check_posted(self, addr, event):
        try:
            await event.wait()
            if int(event.data.resp) != 0:
                self._error(PcieError("write", addr, 4, f"MSI-X answered {event.data.resp}"))
        finally:
            self._posted -= 1

    async def _drive(self, steps, issued=None):
        """Run the controller's bus operations (:mod:`sim.devices.ssd`) on the buses; an
        access answered with an error is told to ``on_error`` and thrown back in as
        :class:`~sim.devices.pcie.PcieError`. ``issued`` is called once a data batch is
        all on the bus."""
        reply, error = None, None
        while True:
            try:
                op = steps.throw(error) if error is not None else steps.send(reply)
            except StopIteration as stop:
                return stop.value
            reply, error = None, None
            kind, *args = op
            try:
                if kind in ("read", "read_prp_list"):
                    reply = await self._read(args[0], args[1], kind == "read_prp_list")
                elif kind == "write":
                    await self._write(args[0], args[1])
                elif kind == "read_batch":
                    reply = await self._read_batch(args[0], issued)
                elif kind == "write_batch":
                    await self._write_batch(args[0], issued)
                else:
                    raise ValueError(f"unknown bus operation {kind!r}")
            except PcieError as exc:
                self._error(exc)
                error = exc

    async def _read(self, addr, length, entries=False):
        if self._in_host(addr, length):
            off = addr - self.fabric.host_base
            return bytes(self.fabric.host[off:off + length])
        step = LIST_ENTRY_BYTES if entries else length
        out = bytearray()
        for pos in range(0, length, step):
            resp = await self.p2p.read(addr + pos, min(step, length - pos))
            self._check(resp.resp, "read", addr + pos, step)
            out += bytes(resp.data)
        return bytes(out)

    async def _write(self, addr, data):
        if self._in_host(addr, len(data)):
            off = addr - self.fabric.host_base
            self.fabric.host[off:off + len(data)] = data
            return
        resp = await self.p2p.write(addr, data)
        self._check(resp.resp, "write", addr, len(data))

    async def _read_batch(self, segments, issued):
        events = [(addr, n, self.p2p.init_read(addr, n)) for addr, n in segments]
        if issued is not None:
            issued()
        out, failed = [], None
        for addr, n, event in events:
            await event.wait()
            try:
                self._check(event.data.resp, "read", addr, n)
            except PcieError as exc:
                failed = failed or exc
            out.append(bytes(event.data.data))
        if failed is not None:
            raise failed
        return out

    async def _write_batch(self, segments, issued):
        events = [(addr, len(data), self.p2p.init_write(addr, data)) for addr, data in segments]
        if issued is not None:
            issued()
        failed = None
        for addr, n, event in events:
            await event.wait()
            try:
                self._check(event.data.resp, "write", addr, n)
            except PcieError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    @staticmethod
    def _check(resp, kind, addr, length):
        if int(resp) != 0:
            raise PcieError(kind, addr, length, f"s_axi_p2p answered {resp}")
