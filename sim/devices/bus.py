"""Bus-level device models around the engine for cocotb system tests.

* :class:`PcieFabric`: the AXI4 slave on ``m_axi_pcie``: host memory holding
  the backend rings and the SSDs' doorbell BARs, with injectable error
  responses.
* :class:`SsdDevice`: an NVMe SSD as the engine sees it over PCIe: doorbells,
  SQ fetch, PRP walk (lists included), DMA through ``s_axi_p2p``, CQ with the
  phase tag, MSI-X messages or polling, latency and fault injection. Block
  storage and its semantics come from :class:`sim.devices.ssd.SsdNamespace`.
* :class:`RdmaTransport`: the NIC's RC transport and the initiator's memory by
  rkey: executes READ/WRITE descriptors and reports their status; optionally
  backed by :class:`sim.devices.initiator.Initiator` (shared address space, RDMA fault
  injection), as ``nvmf-offload replay`` uses it.

Every model takes optional hooks so that a testbench can watch what happens
(``PcieFabric.on_access``, ``SsdDevice.on_error``, ``RdmaTransport.on_failure``)
and tell when it is idle (``SsdDevice.idle``, ``RdmaTransport.idle``).

Written from ``shared/spec/nvme-facts.md`` and ``docs/engine.md``, not from
the RTL.
"""

import dataclasses
import logging
import math

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, Lock
from cocotbext.axi import (
    AxiBus,
    AxiSlave,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)
from cocotbext.axi.address_space import AddressSpace, PeripheralRegion, SparseMemoryRegion

from rtl.formats import Cqe, DsmRange, RdmaCommand, RdmaOp, Sqe, decode, encode, layout_bytes
from sim.devices.ssd import SsdNamespace

HOST_BASE = 0x10_0000_0000      # host memory (backend rings)
HOST_SIZE = 1 << 32
BAR_BASE = 0xF000_0000          # SSD n's BAR at BAR_BASE + n * BAR_SIZE
BAR_SIZE = 0x1_0000
PAGE = 4096


class PcieFabric:
    """The address space behind ``m_axi_pcie``; writes/reads in a faulted range fail.

    ``host_base`` / ``host_size`` place the host memory (the rings). ``on_access``,
    when set, is called for every beat the engine reads or writes as
    ``on_access(kind, addr, data, failed)`` (``data``: the bytes written, or the
    length read).
    """

    def __init__(self, dut, clk, rst, prefix="m_axi_pcie", host_base=HOST_BASE,
                 host_size=HOST_SIZE):
        self.space = AddressSpace(2 ** 64)
        self.host_base = host_base
        self.host = SparseMemoryRegion(host_size)
        self.space.register_region(_Faultable(self, self.host, host_size), host_base)
        self.faults = []          # [base, size, kind ("read"/"write"), remaining, unit]
        self.on_access = None
        self._burst = {}          # kind -> (next address, unit) of a burst a fault hit
        self.slave = AxiSlave(AxiBus.from_prefix(dut, prefix), clk, rst, target=self.space)
        self.slave.write_if.log.setLevel(logging.WARNING)
        self.slave.read_if.log.setLevel(logging.WARNING)

    def add_bar(self, index, device, base=None):
        base = BAR_BASE + index * BAR_SIZE if base is None else base
        self.space.register_region(_Faultable(self, PeripheralRegion(device, BAR_SIZE),
                                              BAR_SIZE), base)
        return base

    def fail_next(self, base, size, kind, count=1, unit=None):
        """Fail the next ``count`` ``kind`` accesses touching ``[base, base + size)``.

        ``unit`` (bytes, a power of two): one access is an aligned unit of that size
        (an SQE, a CQE), whatever the number of beats it takes; the beats that follow
        a failed one inside its unit fail too without counting. None: every beat
        counts.
        """
        self.faults.append([base, size, kind, count, unit])

    def clear_faults(self):
        self.faults.clear()
        self._burst.clear()

    def check(self, kind, addr, length):
        burst = self._burst.pop(kind, None)
        if burst is not None and burst[0] == addr and addr % burst[1]:
            self._note(kind, addr, length, burst[1])
            raise OSError(f"injected {kind} error at {addr:#x} (same access)")
        for fault in self.faults:
            base, size, fkind, left, unit = fault
            if fkind == kind and left and addr < base + size and base < addr + length:
                fault[3] -= 1
                if unit:
                    self._note(kind, addr, length, unit)
                raise OSError(f"injected {kind} error at {addr:#x}")

    def _note(self, kind, addr, length, unit):
        if (addr + length) % unit:
            self._burst[kind] = (addr + length, unit)

    def _report(self, kind, addr, data, failed):
        if self.on_access is not None:
            self.on_access(kind, addr, data, failed)


class _Faultable:
    """Wraps a region so that the fabric's injected faults answer SLVERR."""

    def __init__(self, fabric, region, size):
        self.fabric, self.region, self.size = fabric, region, size
        self._parent = None
        self._base = None

    async def read(self, address, length, **kwargs):
        addr = address + (self._base or 0)
        try:
            self.fabric.check("read", addr, length)
        except OSError:
            self.fabric._report("read", addr, length, True)
            raise
        self.fabric._report("read", addr, length, False)
        return await self.region.read(address, length, **kwargs)

    async def write(self, address, data, **kwargs):
        addr = address + (self._base or 0)
        try:
            self.fabric.check("write", addr, len(data))
        except OSError:
            self.fabric._report("write", addr, bytes(data), True)
            raise
        self.fabric._report("write", addr, bytes(data), False)
        await self.region.write(address, data, **kwargs)


@dataclasses.dataclass
class _Queue:
    qid: int
    sq_addr: int
    sq_entries: int
    cq_addr: int
    cq_entries: int
    msix_data: int | None      # None: polling
    sq_head: int = 0
    sq_tail: int = 0
    cq_tail: int = 0
    cq_head: int = 0
    phase: int = 1


@dataclasses.dataclass
class _Fault:
    status: tuple = None        # (sct, sc, dnr) or (sct, sc, dnr, crd, m) instead of the outcome
    never: bool = False         # never complete
    count: int = 1              # how many commands it hits
    delay: int = 0              # extra cycles before the completion


class SsdDevice:
    """An NVMe SSD on the fabric: BAR doorbells (DSTRD 0), I/O queues, namespaces.

    Each command takes ``latency`` cycles from its fetch to its completion, plus a
    draw of ``rng.randint(0, jitter)`` when ``rng`` is given. ``bar`` places BAR0
    (default: by ``index``). ``on_error(ssd, exc)``, when set, is told of what a
    real device would flag instead of raising in a background task: an invalid
    doorbell write, a DMA answered with an error.

    ``interval`` (cycles, may be fractional; None: no limit) makes the device a rate
    limiter in front of its fixed latency: command service starts at least
    ``interval`` cycles apart (a token bucket of depth one), in fetch order, while any
    number of commands are in their latency at once (internal parallelism). An SSD of
    ``I`` IOPS on a ``f`` Hz engine clock has ``interval = f / I``; ``cycle_ns`` is the
    clock period the limiter converts simulated time with.

    ``ordered``: one command at a time moves its data, then posts its CQE and MSI-X
    while the next one moves its data (a single DMA engine, completions in service
    order); by default every command in service moves its data at once, so with no
    latency the data of all fetched commands goes before the first MSI-X.
    """

    def __init__(self, tb, name, fabric, index, p2p, msix_addr, latency=50, bar=None,
                 rng=None, jitter=0, on_error=None, interval=None, cycle_ns=4,
                 ordered=False):
        self.tb, self.name = tb, name
        self.fabric, self.p2p, self.msix_addr = fabric, p2p, msix_addr
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
        self.namespaces = {}
        self.queues = {}
        self.faults = {}
        self.executed = 0
        self.fetched = 0
        self.busy = 0
        self.cq_full_waits = 0
        self._fetching = 0
        self._posted = 0          # MSI-X writes issued, their B response not yet seen

    def add_namespace(self, nsid, lba_data_size, nsze):
        self.namespaces[nsid] = SsdNamespace(nsid, lba_data_size, nsze)
        return self.namespaces[nsid]

    def create_io_queue(self, qid, sq_addr, sq_entries, cq_addr, cq_entries, msix_data):
        self.queues[qid] = _Queue(qid, sq_addr, sq_entries, cq_addr, cq_entries, msix_data)

    def sq_doorbell(self, qid):
        return self.bar + 0x1000 + 2 * qid * 4

    def cq_doorbell(self, qid):
        return self.bar + 0x1000 + (2 * qid + 1) * 4

    def inject(self, nsid, **kwargs):
        """The next ``count`` commands fetched for ``nsid`` get this fault (``_Fault``
        fields: ``status``, ``never``, ``count``, ``delay``)."""
        self.faults.setdefault(nsid, []).append(_Fault(**kwargs))

    def clear_faults(self):
        self.faults.clear()

    @property
    def idle(self):
        """No command fetched and not completed (or given up by a ``never`` fault), no
        SQ-tail doorbell waiting to be fetched."""
        return self.busy == 0 and self._fetching == 0 and self._posted == 0

    def _take_fault(self, nsid):
        faults = self.faults.get(nsid, [])
        if not faults:
            return None
        fault = faults[0]
        fault.count -= 1
        if fault.count <= 0:
            faults.pop(0)
        return fault

    def _error(self, exc):
        if self.on_error is None:
            raise exc
        self.on_error(self, exc)

    # --- BAR ---------------------------------------------------------------------------------

    def read(self, address, length, **kwargs):
        return bytes(length)

    def write(self, address, data, **kwargs):
        try:
            self._doorbell(address, data)
        except OSError as exc:
            if self.on_error is not None:
                self.on_error(self, exc)
            raise

    def _doorbell(self, address, data):
        if address < 0x1000 or len(data) != 4 or address % 4:
            raise OSError(f"{self.name}: bad register write at {address:#x}")
        index = (address - 0x1000) // 4
        qid, is_cq = divmod(index, 2)
        queue = self.queues.get(qid)
        if queue is None:
            raise OSError(f"{self.name}: doorbell of queue {qid}, which does not exist")
        value = int.from_bytes(data, "little")
        if is_cq:
            if value >= queue.cq_entries:
                raise OSError(f"{self.name}: CQ {qid} head {value} beyond {queue.cq_entries}")
            queue.cq_head = value
            return
        if value >= queue.sq_entries:
            raise OSError(f"{self.name}: SQ {qid} tail {value} beyond {queue.sq_entries}")
        queue.sq_tail = value
        self._fetching += 1
        cocotb.start_soon(self._fetch(queue))

    # --- execution -----------------------------------------------------------------------------

    async def _fetch(self, queue):
        base = self.fabric.host_base
        while queue.sq_head != queue.sq_tail:
            raw = bytes(self.fabric.host[queue.sq_addr - base + queue.sq_head * 64:
                                         queue.sq_addr - base + queue.sq_head * 64 + 64])
            queue.sq_head = (queue.sq_head + 1) % queue.sq_entries
            self.busy += 1
            self.fetched += 1
            sqe = decode(Sqe, raw)
            cocotb.start_soon(self._run(queue, sqe, self._take_fault(sqe["nsid"])))
        self._fetching -= 1

    async def _run(self, queue, sqe, fault=None):
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
                    status = await self._status(sqe, fault, issued)
                finally:
                    issued()
                while self._post_turn != ticket:
                    await self._turn_event.wait()
                try:
                    await self._post(queue, sqe, status)
                finally:
                    self._post_turn += 1
                    event, self._turn_event = self._turn_event, Event()
                    event.set()
            else:
                await self._post(queue, sqe, await self._status(sqe, fault))
        except Exception as exc:        # noqa: BLE001 -- reported through on_error
            self._error(exc)
        finally:
            self.busy -= 1

    async def _status(self, sqe, fault, issued=None):
        """Execute (or take the status of a fault): the status to post. ``issued`` is
        called once every data transfer of the command is on the bus."""
        if fault is not None and fault.status is not None:
            sct, sc, dnr, *rest = fault.status
            status = {"sct": sct, "sc": sc, "dnr": dnr}
            if rest:
                status.update(crd=rest[0], m=rest[1])
        else:
            status = await self._execute(sqe, issued)
        self.executed += 1
        return status

    async def _limit(self):
        """Wait for this command's start under the rate limit (``interval``)."""
        now = get_sim_time("ns") / self.cycle_ns
        start = max(self._next_start, now)
        self._next_start = start + self.interval
        wait = math.ceil(start - now - 1e-9)
        if wait > 0:
            await ClockCycles(self.tb.dut.clk, wait)

    async def _execute(self, sqe, issued=None):
        ns = self.namespaces.get(sqe["nsid"])
        if ns is None:
            return {"sct": 0, "sc": 0x0B, "dnr": 1}
        op = sqe["opcode"]
        rw = sqe["cdw"]["rw"]
        prp = sqe["dptr"]["prp"]
        count = rw["nlb"] + 1
        if op in (0x01, 0x02, 0x08) and not ns.in_range(rw["slba"], count):
            return {"sct": 0, "sc": 0x80, "dnr": 1}
        if op == 0x02:
            await self._dma_write(prp, ns.read(rw["slba"], count), issued)
        elif op == 0x01:
            ns.write(rw["slba"], await self._dma_read(prp, count * ns.lba_data_size, issued))
        elif op == 0x08:
            ns.write_zeroes(rw["slba"], count)
        elif op == 0x09:
            nr = sqe["cdw"]["dsm"]["nr"] + 1
            raw = await self._dma_read(prp, nr * 16, issued)
            ranges = [decode(DsmRange, raw[i * 16:(i + 1) * 16]) for i in range(nr)]
            if any(not ns.in_range(r["slba"], r["length"]) for r in ranges):
                return {"sct": 0, "sc": 0x80, "dnr": 1}
            if sqe["cdw"]["dsm"]["ad"]:
                for r in ranges:
                    ns.deallocate(r["slba"], r["length"])
        elif op != 0x00:
            return {"sct": 0, "sc": 0x01, "dnr": 1}
        return {"sct": 0, "sc": 0, "dnr": 0}

    async def _prp_pages(self, prp, length):
        """(address, length) segments of a PRP pair, walking lists."""
        first = min(length, PAGE - prp["prp1"] % PAGE)
        segments = [(prp["prp1"], first)]
        left = length - first
        if left <= 0:
            return segments
        if left <= PAGE:
            return segments + [(prp["prp2"], left)]
        entry = prp["prp2"]
        while left > 0:
            address = int.from_bytes(await self._p2p_read(entry, 8), "little")
            if address % PAGE:
                raise AssertionError(f"{self.name}: PRP list entry {address:#x} not page aligned")
            segments.append((address, min(PAGE, left)))
            left -= PAGE
            entry += 8
        return segments

    async def _dma_read(self, prp, length, issued=None):
        """Read the PRP segments: every read is issued at once (a DMA engine keeps them
        outstanding together), then ``issued`` is called and the data awaited."""
        segments = await self._prp_pages(prp, length)
        events = [(address, self.p2p.init_read(address, size)) for address, size in segments]
        if issued is not None:
            issued()
        out = bytearray()
        for address, event in events:
            await event.wait()
            if int(event.data.resp) != 0:
                raise AssertionError(f"{self.name}: P2P read at {address:#x} answered "
                                     f"{event.data.resp}")
            out += bytes(event.data.data)
        return bytes(out)

    async def _p2p_read(self, address, length):
        resp = await self.p2p.read(address, length)
        if int(resp.resp) != 0:
            raise AssertionError(f"{self.name}: P2P read at {address:#x} answered {resp.resp}")
        return bytes(resp.data)

    async def _dma_write(self, prp, payload, issued=None):
        """Write the PRP segments, all issued at once; returns when every one answered."""
        done, events = 0, []
        for address, size in await self._prp_pages(prp, len(payload)):
            events.append((address, self.p2p.init_write(address, payload[done:done + size])))
            done += size
        if issued is not None:
            issued()
        for address, event in events:
            await event.wait()
            if int(event.data.resp) != 0:
                raise AssertionError(f"{self.name}: P2P write at {address:#x} answered "
                                     f"{event.data.resp}")

    async def _post(self, queue, sqe, status):
        # a full CQ (tail + 1 == head) holds the completion until the host consumes
        while (queue.cq_tail + 1) % queue.cq_entries == queue.cq_head:
            self.cq_full_waits += 1
            await ClockCycles(self.tb.dut.clk, 1)
        cqe = encode(Cqe, {"sqhd": queue.sq_head, "sqid": queue.qid, "cid": sqe["cid"],
                           "status": dict(status, p=queue.phase)})
        offset = queue.cq_addr - self.fabric.host_base + queue.cq_tail * 16
        self.fabric.host[offset:offset + 16] = cqe
        queue.cq_tail += 1
        if queue.cq_tail == queue.cq_entries:
            queue.cq_tail, queue.phase = 0, queue.phase ^ 1
        if queue.msix_data is not None:
            self._post_msix(queue.msix_data)

    def _post_msix(self, value):
        """Issue the MSI-X write and go on, as PCIe posts it: the next completion does
        not wait for this one's B response, which is checked when it comes."""
        event = self.p2p.init_write(self.msix_addr, value.to_bytes(4, "little"))
        self._posted += 1
        cocotb.start_soon(self._check_posted(event))

    async def _check_posted(self, event):
        try:
            await event.wait()
            if int(event.data.resp) != 0:
                self._error(AssertionError(f"{self.name}: MSI-X write at {self.msix_addr:#x} "
                                           f"answered {event.data.resp}"))
        finally:
            self._posted -= 1


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
