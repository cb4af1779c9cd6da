"""cocotb testbench of the CQ handler (``nvmf_cq_handler``).

Pieces, each modelling one thing outside the block:

* ``PcieMemory`` - the PCIe side behind ``m_axi``: host memory holding the
  CQ rings, the SSDs' CQ-head doorbell registers (every write recorded in
  order), injectable SLVERR answers (per beat), and a check that every read
  burst falls inside a ring and does not cross 4 KiB.
* ``AxiModel`` - the AXI4 slave in front of it: reads outstanding without
  limit, answered in order after a (random) latency, pauses per channel.
* ``SsdCq`` - the SSD side of one completion queue: posts CQEs with the
  phase tag, honours the CQ-full rule against the doorbell it last saw, and
  sends MSI-X messages.
* ``QueueTable`` - the ``BackendQueueEntry`` table behind ``bq_rd_*``
  (one-cycle read, held while ``en`` is low).
* ``CqConsumer`` - the reference model: a host driver consuming a PCIe CQ as
  ``nvme-facts.md`` describes it (expected phase starts at 1 and flips at each
  wrap; an entry is new when its phase equals the expected one). Written from
  the spec, not from the RTL.
* ``TB`` - clock, reset, stream drivers with idle / back-pressure generators,
  and the scoreboard: every ``o_cqe`` must be the entry at the model's head
  with the expected phase; every doorbell must carry the model's head after
  the CQEs emitted so far, and must move it.
"""

import itertools
from collections import Counter, deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from rtl.formats import CQE_BYTES, BackendQueueEntry, CqCompletion, Cqe, decode, encode
from sim.cosim.harness import params_from_env

CLOCK_NS = 4

#: bus address of the SSD's BAR0 (doorbells at 0x1000 + (2y+1) * (4 << DSTRD))
SSD_BAR = 0x0000_00F0_0000_0000


def random_pause(rng, busy_fraction):
    """An endless pause pattern: 1 (pause) with probability ``busy_fraction``."""
    while True:
        yield int(rng.random() < busy_fraction)


def cq_doorbell_addr(qid, dstrd=0, bar=SSD_BAR):
    """CQ ``qid`` head doorbell address of a PCIe NVMe controller (nvme-facts.md)."""
    return bar + 0x1000 + (2 * qid + 1) * (4 << dstrd)


def make_cqe(cid, phase, *, dw0=0, sqhd=0, sqid=1, sc=0, sct=0, dnr=0):
    """16 bytes of a CQE (``rtl.formats.Cqe``)."""
    return encode(Cqe, {"dw0": dw0, "dw1": 0, "sqhd": sqhd, "sqid": sqid, "cid": cid,
                        "status": {"p": phase, "sc": sc, "sct": sct, "dnr": dnr}})


def high(signal):
    """True when ``signal`` is 1 (X / Z before reset count as 0)."""
    value = signal.value
    return value.is_resolvable and int(value) != 0


def cqe_phase(raw):
    """Phase tag of a CQE: bit 0 of byte 14."""
    return raw[14] & 1


# --- reference model ----------------------------------------------------------------------------

class CqConsumer:
    """A host's view of one PCIe completion queue (nvme-facts.md, "Phase tag")."""

    def __init__(self, cq_addr, entries, head):
        self.cq_addr = cq_addr
        self.entries = entries
        self.head = head
        self.phase = 1            # the consumer starts expecting P = 1

    def slot_addr(self, slot=None):
        return self.cq_addr + (self.head if slot is None else slot) * CQE_BYTES

    def is_new(self, raw):
        return cqe_phase(raw) == self.phase

    def advance(self):
        self.head += 1
        if self.head == self.entries:
            self.head = 0
            self.phase ^= 1

    def drain(self, read16):
        """Consume every new entry visible through ``read16(addr)``; return them in order."""
        out = []
        while self.is_new(raw := read16(self.slot_addr())):
            out.append(raw)
            self.advance()
        return out


# --- PCIe side --------------------------------------------------------------------------------

class PcieMemory:
    """Behind ``AxiModel``: host memory with the rings, and the SSDs' doorbells."""

    def __init__(self, beat_bytes):
        self.beat_bytes = beat_bytes
        self.mem = {}                    # byte address -> value (absent: 0)
        self.rings = {}                  # queue -> (base, bytes)
        self.doorbells = {}              # doorbell address -> queue
        self.doorbell_log = []           # (queue, value, ok) in bus order
        self.reads = Counter()           # queue -> read bursts
        self.beats = Counter()           # queue -> beats read
        self.read_faults = []            # [lo, hi, remaining]: SLVERR for the beats touching it
        self.write_faults = {}           # doorbell address -> writes still to fail
        self.errors = []                 # protocol violations seen here
        self.on_doorbell = None          # callback(queue, value, ok)

    def load(self, addr, raw):
        for i, b in enumerate(raw):
            self.mem[addr + i] = b

    def peek(self, addr, n):
        return bytes(self.mem.get(addr + i, 0) for i in range(n))

    def read16(self, addr):
        return self.peek(addr, CQE_BYTES)

    def fail_reads(self, lo, hi, count=1):
        self.read_faults.append([lo, hi, count])

    def fail_doorbell(self, addr, count=1):
        self.write_faults[addr] = count

    def read_burst(self, address, beats):
        """One read burst of ``beats`` full beats: [(bytes, resp)], resp 2 (SLVERR) per beat."""
        nb = self.beat_bytes
        length = beats * nb
        queue = None
        for q, (base, size) in self.rings.items():
            lo = base - base % nb
            span = -(-(base + size) // nb) * nb - lo                 # whole beats
            if lo <= address and address + length <= lo + span:
                queue = q
        if queue is None:
            self.errors.append(f"read of {length} bytes at {address:#x} outside every CQ ring")
            return [(bytes(nb), 2)] * beats
        if address // 4096 != (address + length - 1) // 4096:
            self.errors.append(f"read of {length} bytes at {address:#x} crosses 4 KiB")
        self.reads[queue] += 1
        self.beats[queue] += beats
        bad = set()
        for fault in self.read_faults:
            lo, hi, remaining = fault
            if remaining and address < hi and lo < address + length:
                fault[2] -= 1
                bad |= {i for i in range(beats)
                        if address + i * nb < hi and lo < address + (i + 1) * nb}
        return [(self.peek(address + i * nb, nb), 2 if i in bad else 0) for i in range(beats)]

    def write(self, address, data):
        """A doorbell write; returns the response (0 OKAY, 2 SLVERR)."""
        queue = self.doorbells.get(address)
        if queue is None or len(data) != 4:
            self.errors.append(f"write of {bytes(data).hex()} at {address:#x} is not a doorbell")
            return 2
        value = int.from_bytes(data, "little")
        ok = not self.write_faults.get(address)
        if not ok:
            self.write_faults[address] -= 1
        self.doorbell_log.append((queue, value, ok))
        if self.on_doorbell is not None:
            self.on_doorbell(queue, value, ok)
        return 0 if ok else 2


class AxiModel:
    """The PCIe fabric on ``m_axi``: an AXI4 slave in front of ``PcieMemory``.

    Any number of reads outstanding, answered in order; read data is taken when
    the AR is accepted and comes ``latency`` cycles later at the earliest (a
    random pick from ``latency`` when it is a range); SLVERR per beat for the
    beats that touch an injected fault. Writes: one beat each, the response
    ``b_latency`` cycles after both AW and W. ``pause`` generators per channel
    (``ar``, ``r``, ``aw``, ``w``, ``b``) drop ready / valid for a cycle.
    """

    def __init__(self, tb, mem, rng=None):
        self.tb = tb
        self.mem = mem
        self.rng = rng
        self.latency = (2, 2)
        self.b_latency = (2, 2)
        self.pause = {ch: None for ch in ("ar", "r", "aw", "w", "b")}
        cocotb.start_soon(self._run())

    def _paused(self, ch):
        gen = self.pause[ch]
        return bool(next(gen)) if gen else False

    def _lat(self, span):
        lo, hi = span
        return lo if lo == hi or self.rng is None else self.rng.randint(lo, hi)

    async def _run(self):
        dut, nb = self.tb.dut, self.mem.beat_bytes
        for name in ("arready", "rvalid", "rlast", "rresp", "rdata", "awready", "wready",
                     "bvalid", "bresp", "rid", "bid"):
            getattr(dut, f"m_axi_{name}").value = 0
        reads = deque()           # [due cycle, [(data, resp)]]
        aws, ws, bs = deque(), deque(), deque()
        r_on = b_on = False
        arready = awready = wready = False
        cycle = 0
        while True:
            await RisingEdge(dut.clk)
            cycle += 1
            if high(dut.rst):
                for q in (reads, aws, ws, bs):
                    q.clear()
                r_on = b_on = False
            else:
                if arready and high(dut.m_axi_arvalid):
                    addr, beats = int(dut.m_axi_araddr.value), int(dut.m_axi_arlen.value) + 1
                    reads.append([cycle + self._lat(self.latency) - 1,
                                  self.mem.read_burst(addr - addr % nb, beats)])
                if awready and high(dut.m_axi_awvalid):
                    aws.append(int(dut.m_axi_awaddr.value))
                if wready and high(dut.m_axi_wvalid):
                    ws.append((int(dut.m_axi_wdata.value), int(dut.m_axi_wstrb.value)))
                if r_on and high(dut.m_axi_rready):
                    reads[0][1].pop(0)
                    if not reads[0][1]:
                        reads.popleft()
                    r_on = False
                if b_on and high(dut.m_axi_bready):
                    bs.popleft()
                    b_on = False
                while aws and ws:
                    addr = aws.popleft()
                    data, strb = ws.popleft()
                    raw = data.to_bytes(nb, "little")
                    lanes = [i for i in range(nb) if strb >> i & 1]
                    base = addr - addr % nb
                    payload = bytes(raw[i] for i in lanes)
                    start = base + (lanes[0] if lanes else 0)
                    bs.append([cycle + self._lat(self.b_latency) - 1,
                               self.mem.write(start, payload)])
            arready = not self._paused("ar")
            awready = not self._paused("aw")
            wready = not self._paused("w")
            dut.m_axi_arready.value = int(arready)
            dut.m_axi_awready.value = int(awready)
            dut.m_axi_wready.value = int(wready)
            if not r_on and reads and reads[0][0] <= cycle and not self._paused("r"):
                data, resp = reads[0][1][0]
                dut.m_axi_rdata.value = int.from_bytes(data, "little")
                dut.m_axi_rresp.value = resp
                dut.m_axi_rlast.value = int(len(reads[0][1]) == 1)
                r_on = True
            dut.m_axi_rvalid.value = int(r_on)
            if not b_on and bs and bs[0][0] <= cycle and not self._paused("b"):
                dut.m_axi_bresp.value = bs[0][1]
                b_on = True
            dut.m_axi_bvalid.value = int(b_on)


class SsdCq:
    """The SSD's side of one CQ: the producer (tail, phase tag) and its MSI-X vector."""

    def __init__(self, tb, queue, cq_addr, entries, head_init, db_addr, polling=False):
        self.tb = tb
        self.queue = queue
        self.cq_addr = cq_addr
        self.entries = entries
        self.db_addr = db_addr
        self.tail = head_init
        self.phase = 1
        self.db_head = head_init         # the last CQ-head doorbell the SSD accepted
        self.posted = []                 # every CQE posted, in order
        self.unsignalled = 0             # posted since the last MSI-X message
        self.polling = polling
        self.next_cid = 0x100 * queue

    def room(self):
        return (self.tail + 1) % self.entries != self.db_head

    def post(self, **fields):
        """Write the next CQE at the tail with the current phase tag; return its bytes."""
        assert self.room(), f"CQ {self.queue} is full (tail {self.tail}, head {self.db_head})"
        fields.setdefault("cid", self.next_cid & 0xFFFF)
        self.next_cid += 1
        fields.setdefault("dw0", (0xC0DE0000 | self.queue << 8 | len(self.posted)) & 0xFFFFFFFF)
        raw = make_cqe(phase=self.phase, sqid=self.queue + 1, **fields)
        self.tb.mem.load(self.cq_addr + self.tail * CQE_BYTES, raw)
        self.posted.append(raw)
        self.unsignalled += 1
        self.tail += 1
        if self.tail == self.entries:
            self.tail = 0
            self.phase ^= 1
        return raw

    async def msix(self):
        self.unsignalled = 0
        await self.tb.send_msix(self.queue)

    async def post_when_room(self, timeout=20000, **fields):
        """Post, first signalling what is posted and waiting for the host to free a slot."""
        if not self.room():
            if self.unsignalled and not self.polling:
                await self.msix()
            await self.tb.wait_until(self.room, timeout, f"CQ {self.queue} never got room")
        return self.post(**fields)


class QueueTable:
    """The ``BackendQueueEntry`` table behind ``bq_rd_*``: data one cycle after ``en``."""

    def __init__(self, tb):
        self.tb = tb
        self.entries = {}
        self.lookups = Counter()

    def bits(self, queue):
        fields = self.entries.get(queue)
        if fields is None:
            return 0
        return int.from_bytes(encode(BackendQueueEntry, fields), "little")

    async def run(self):
        dut = self.tb.dut
        dut.bq_rd_data.value = 0
        while True:
            await RisingEdge(dut.clk)
            if high(dut.bq_rd_en):
                addr = int(dut.bq_rd_addr.value)
                self.lookups[addr] += 1
                dut.bq_rd_data.value = self.bits(addr)


# --- ready/valid drivers for the Amaranth streams ---------------------------------------------

class StreamSource:
    """Drives ``<name>__valid`` / ``__payload``; pauses between transfers only."""

    def __init__(self, dut, name):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.payload = getattr(dut, f"{name}__payload")
        self.ready = getattr(dut, f"{name}__ready")
        self.queue = deque()
        self.sent = 0
        self.history = []                # payloads transferred, in order
        self.pause = None
        self.valid.value = 0
        self.payload.value = 0
        cocotb.start_soon(self._run())

    def send_nowait(self, value):
        self.queue.append(value)

    async def _run(self):
        driving = False
        while True:
            await RisingEdge(self.clk)
            if driving and high(self.ready):
                self.history.append(self.queue.popleft())
                self.sent += 1
                driving = False
            paused = bool(next(self.pause)) if self.pause else False
            if not driving and self.queue and not paused:
                self.payload.value = self.queue[0]
                self.valid.value = 1
                driving = True
            elif not driving:
                self.valid.value = 0


class StreamSink:
    """Drives ``<name>__ready`` from a pause generator; calls ``on_item(payload)`` per transfer."""

    def __init__(self, dut, name, on_item):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.payload = getattr(dut, f"{name}__payload")
        self.ready = getattr(dut, f"{name}__ready")
        self.on_item = on_item
        self.pause = None
        self.ready.value = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        ready = False
        while True:
            await RisingEdge(self.clk)
            if ready and high(self.valid):
                self.on_item(int(self.payload.value))
            ready = not (bool(next(self.pause)) if self.pause else False)
            self.ready.value = int(ready)


# --- the testbench ----------------------------------------------------------------------------

class TB:
    """Clock, reset, bus models and scoreboard of ``nvmf_cq_handler``."""

    def __init__(self, dut):
        self.dut = dut
        self.params = params_from_env()
        self.log = dut._log
        self.beat_bytes = self.params.data_width // 8
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.rst.value = 1
        dut.poll.value = 0
        dut.init_valid.value = 0
        dut.init_queue.value = 0
        self.mem = PcieMemory(self.beat_bytes)
        self.mem.on_doorbell = self._doorbell
        self.axi = AxiModel(self, self.mem)
        self.table = QueueTable(self)
        cocotb.start_soon(self.table.run())
        self.msix = StreamSource(dut, "i_msix")
        self.cqe_sink = StreamSink(dut, "o_cqe", self._cqe)
        self.err_sink = StreamSink(dut, "o_error", self._error)
        self.ssd = {}                     # queue -> SsdCq
        self.model = {}                   # queue -> CqConsumer
        self.emitted = {}                 # queue -> [CQE bytes] from o_cqe
        self.last_doorbell = {}           # queue -> last value written
        self.head_init = {}               # queue -> cq_head_init of its configuration
        self.o_errors = []                # queues from o_error, in order
        self.retiring = {}                # queue -> deque of CQEs still due from an old config
        self.reached = {}                 # queue -> heads after each CQE since the last doorbell
        self.cqe_cycles = []              # cycle of each o_cqe transfer
        self.failures = []
        self.cycle = 0
        self.ar_count = 0
        cocotb.start_soon(self._count())

    async def _count(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            self.cycle += 1
            if high(dut.m_axi_arvalid) and high(dut.m_axi_arready):
                self.ar_count += 1
                self._check_ar()
            if high(dut.m_axi_awvalid) and high(dut.m_axi_awready):
                self._check_aw()

    def _check_ar(self):
        """A CQE read: INCR, full aligned beats, 64 bytes or less (the memory checks the ring)."""
        dut, nb = self.dut, self.beat_bytes
        addr, length = int(dut.m_axi_araddr.value), int(dut.m_axi_arlen.value)
        size, burst = int(dut.m_axi_arsize.value), int(dut.m_axi_arburst.value)
        max_beats = max(1, 64 // nb) + (1 if nb > 16 else 0)
        if (1 << size != nb or length + 1 > max_beats or burst != 1
                or addr % min(nb, CQE_BYTES)):
            self._fail(f"CQE read araddr {addr:#x} arlen {length} arsize {size} arburst {burst}")

    def _check_aw(self):
        """A doorbell write: one 4-byte INCR beat at a 4-byte aligned address."""
        dut = self.dut
        addr, length = int(dut.m_axi_awaddr.value), int(dut.m_axi_awlen.value)
        size, burst = int(dut.m_axi_awsize.value), int(dut.m_axi_awburst.value)
        if (size, length, burst) != (2, 0, 1) or addr % 4:
            self._fail(f"doorbell awaddr {addr:#x} awlen {length} awsize {size} awburst {burst}")

    # -- knobs --

    def set_idle_generator(self, factory=None):
        """Pauses on the handler's inputs: ``i_msix`` and the AXI ``b`` / ``r`` channels."""
        self.msix.pause = factory() if factory else None
        for ch in ("b", "r"):
            self.axi.pause[ch] = factory() if factory else None

    def set_backpressure_generator(self, factory=None):
        """Pauses on the handler's outputs: ``o_cqe``, ``o_error``, AXI ``aw`` / ``w`` / ``ar``."""
        self.cqe_sink.pause = factory() if factory else None
        self.err_sink.pause = factory() if factory else None
        for ch in ("aw", "w", "ar"):
            self.axi.pause[ch] = factory() if factory else None

    def hold_cqe_output(self, hold=True):
        """Keep ``o_cqe.ready`` low until released (``hold=False``)."""
        self.cqe_sink.pause = itertools.repeat(1) if hold else None

    async def cycle_reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    # -- configuration --

    def add_queue(self, queue, *, entries, head_init=0, cq_addr=None, polling=False,
                  valid=True, stale_fill=True):
        """Configure backend queue ``queue`` in the table, the SSD and the reference model.

        The ring is filled with stale entries that must never come out: the
        queue is in its first lap (the consumer expects phase 1 at
        ``head_init``), so slots from ``head_init`` on hold phase 0 (a fresh
        ring) and slots before it phase 1 (entries consumed earlier in the lap).
        """
        if cq_addr is None:
            cq_addr = 0x0000_0012_3400_0000 + queue * 0x10_0000
        db_addr = cq_doorbell_addr(queue + 1, dstrd=queue % 4)    # various byte lanes
        self.table.entries[queue] = {
            "valid": int(valid), "polling": int(polling), "subsystem": 0,
            "sq_entries": entries, "cq_entries": entries,
            "sq_addr": 0x0000_0055_0000_0000 + queue * 0x1000, "cq_addr": cq_addr,
            "sq_db_addr": cq_doorbell_addr(queue + 1) - 4, "cq_db_addr": db_addr,
            "sq_tail_init": 0, "cq_head_init": head_init, "cmd_timeout": 0, "msix_data": queue}
        ring_bytes = entries * CQE_BYTES
        self.mem.rings[queue] = (cq_addr, ring_bytes)
        self.mem.doorbells = {a: q for a, q in self.mem.doorbells.items() if q != queue}
        self.mem.doorbells[db_addr] = queue
        if stale_fill:
            for slot in range(max(entries, self.beat_bytes // CQE_BYTES)):
                self.mem.load(cq_addr + slot * CQE_BYTES,
                              make_cqe(0xDEAD, int(slot < head_init),
                                       dw0=0xBAD00000 | queue << 8 | slot))
        ssd = SsdCq(self, queue, cq_addr, entries, head_init, db_addr, polling)
        self.ssd[queue] = ssd
        self.model[queue] = CqConsumer(cq_addr, entries, head_init)
        self.emitted[queue] = []
        self.head_init[queue] = head_init
        self.last_doorbell.pop(queue, None)
        self.reached[queue] = []
        return ssd

    async def init_queue(self, queue):
        """Pulse ``init_valid`` for ``queue`` (after its table entry was written)."""
        await RisingEdge(self.dut.clk)
        self.dut.init_queue.value = queue
        self.dut.init_valid.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.init_valid.value = 0

    def set_poll(self, queues):
        self.dut.poll.value = sum(1 << q for q in queues)

    async def send_msix(self, data):
        self.msix.send_nowait(data)
        target = self.msix.sent + len(self.msix.queue)
        await self.wait_until(lambda: self.msix.sent >= target, 5000, "i_msix never accepted")

    # -- scoreboard --

    def _fail(self, text):
        self.failures.append(text)
        self.log.error(text)

    def _cqe(self, value):
        item = decode(CqCompletion, value.to_bytes(17, "little"))
        queue = item["queue"]
        raw = encode(Cqe, item["cqe"])
        if self.retiring.get(queue):
            want = self.retiring[queue].popleft()
            if raw != want:
                self._fail(f"queue {queue}: o_cqe {raw.hex()} is not the CQE due from the "
                           f"configuration being replaced ({want.hex()})")
            return
        model = self.model.get(queue)
        if model is None:
            self._fail(f"o_cqe for unconfigured queue {queue}: {raw.hex()}")
            return
        in_ring = self.mem.read16(model.slot_addr())
        if raw != in_ring:
            self._fail(f"queue {queue}: o_cqe {raw.hex()} is not the entry at head "
                       f"{model.head} ({in_ring.hex()})")
        elif not model.is_new(raw):
            self._fail(f"queue {queue}: stale entry emitted at head {model.head} "
                       f"(phase {cqe_phase(raw)}, expected {model.phase})")
        model.advance()
        self.emitted[queue].append(raw)
        self.cqe_cycles.append(self.cycle)
        self.reached.setdefault(queue, []).append(model.head)

    def _doorbell(self, queue, value, ok):
        reached = self.reached.get(queue, [])
        if value not in reached:
            self._fail(f"queue {queue}: doorbell {value} is no head reached by the CQEs "
                       f"emitted since the last doorbell ({reached})")
        else:
            del reached[:reached.index(value) + 1]
        previous = self.last_doorbell.get(queue, self.head_init[queue])
        if value == previous:
            self._fail(f"queue {queue}: doorbell {value} does not move the head")
        self.last_doorbell[queue] = value
        if ok:
            self.ssd[queue].db_head = value

    def _error(self, value):
        self.o_errors.append(value & 0xFF)

    def doorbells(self, queue):
        """Values written to ``queue``'s doorbell, in order (failed writes included)."""
        return [v for q, v, _ in self.mem.doorbell_log if q == queue]

    async def wait_until(self, cond, timeout, what):
        for _ in range(timeout):
            if cond():
                return
            await RisingEdge(self.dut.clk)
        assert cond(), f"{what} (after {timeout} cycles)"

    def caught_up(self):
        """Every posted CQE emitted and the last doorbell equal to each moved head."""
        for q, ssd in self.ssd.items():
            if len(self.emitted[q]) != len(ssd.posted):
                return False
            if ssd.posted and self.last_doorbell.get(q) != self.model[q].head:
                return False
        return True

    async def settle(self, timeout=20000, quiet=60):
        """Wait until caught up, then ``quiet`` cycles with no new output; check everything."""
        await self.wait_until(self.caught_up, timeout, "CQEs or doorbells missing")
        before = (sum(map(len, self.emitted.values())), len(self.mem.doorbell_log),
                  len(self.o_errors))
        await ClockCycles(self.dut.clk, quiet)
        after = (sum(map(len, self.emitted.values())), len(self.mem.doorbell_log),
                 len(self.o_errors))
        assert before == after, f"output after the queues were drained: {before} -> {after}"
        self.check()

    def check(self):
        """The scoreboard's verdict: nothing failed, each queue's CQEs are the SSD's, in order."""
        assert not self.failures, "\n".join(self.failures)
        assert not self.mem.errors, "\n".join(self.mem.errors)
        for q, ssd in self.ssd.items():
            got, want = self.emitted[q], ssd.posted
            if got != want:
                first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False))
                              if a != b),
                             min(len(got), len(want)))
                raise AssertionError(f"queue {q}: emitted {len(got)} CQEs, posted {len(want)}; "
                                     f"first difference at CQE {first}")
            left = CqConsumer(ssd.cq_addr, ssd.entries, self.model[q].head)
            left.phase = self.model[q].phase
            assert left.drain(self.mem.read16) == [], f"queue {q}: new entries left unread"
