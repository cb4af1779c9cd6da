"""cocotb testbench of the CQ handler (``nvmf_cq_handler``).

Pieces, each modelling one thing outside the block:

* ``PcieSide`` - the PCIe side behind ``m_axi``: the project's
  :class:`~sim.devices.pcie_bus.PcieFabric`, i.e. cocotbext-axi's ``AxiSlave``
  over host memory holding the CQ rings and the SSDs' BAR0 (``DoorbellBar``);
  injectable SLVERR answers (``fail_reads`` fails every beat of the CQE it hits,
  ``fail_doorbell`` a doorbell write); every doorbell write recorded in bus
  order, failed ones included (the fabric's ``on_access``). The slave reads a
  whole burst from memory at once and answers in order, one burst at a time.
* ``BusTiming`` - the slave's timing: extra random latency before a read burst
  or a write (the fabric's ``delay`` hook; the slave's own is 2 cycles after
  AR, B 2 cycles after AW and W) and cocotbext pause generators on the five
  channels.
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
  the AR / AW handshake monitor (protocol checks: every read burst inside a
  configured ring, whole beats around it allowed, not crossing 4 KiB; every
  write one 4-byte beat to a configured doorbell), and the scoreboard: every
  ``o_cqe`` must be the entry at the model's head with the expected phase;
  every doorbell must carry the model's head after the CQEs emitted so far,
  and must move it.
"""

import itertools
from collections import Counter, deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from rtl.formats import CQE_BYTES, BackendQueueEntry, CqCompletion, Cqe, decode, encode
from sim.cosim.harness import params_from_env
from sim.devices.pcie_bus import PcieFabric

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

#: host memory behind the fabric: every CQ ring of the tests lies in it
HOST_BASE = 0x0000_0012_3400_0000
HOST_SIZE = 1 << 26


class DoorbellBar:
    """The SSDs' BAR0 as a cocotbext-axi peripheral: the last bytes written per offset.

    :class:`PcieSide` logs the writes from the fabric's ``on_access`` (failed ones too,
    which never reach here).
    """

    def __init__(self):
        self.regs = {}

    async def read(self, address, length, **kwargs):
        return bytes(length)

    async def write(self, address, data, **kwargs):
        self.regs[address] = bytes(data)


class PcieSide:
    """The PCIe side behind ``m_axi``: a :class:`~sim.devices.pcie_bus.PcieFabric`.

    Its cocotbext-axi ``AxiSlave`` answers from host memory (``HOST_BASE``, holding
    the CQ rings) and the SSDs' BAR0 (:class:`DoorbellBar` at ``SSD_BAR``); injected
    faults answer SLVERR. The R queue has no limit, so the slave reads a whole burst
    from memory at once (a two-beat CQE never mixes old and new bytes) and goes on to
    the next AR while the beats wait for ``rready``.

    What the tests see: ``load`` / ``peek`` / ``read16`` on host memory, ``rings`` and
    ``doorbells`` (what is configured, for the TB's address checks), ``reads`` /
    ``beats`` per queue (counted by the TB's AR monitor), ``doorbell_log`` (queue,
    value, ok) in bus order with failed writes, and ``errors`` (bad doorbell writes).
    """

    def __init__(self, tb):
        dut = tb.dut
        self.beat_bytes = tb.beat_bytes
        self.fabric = PcieFabric(dut, dut.clk, dut.rst, prefix="m_axi",
                                 host_base=HOST_BASE, host_size=HOST_SIZE)
        self.bar = DoorbellBar()
        self.fabric.add_bar(0, self.bar, base=SSD_BAR)
        self.fabric.on_access = self._access
        self.fabric.slave.read_if.r_channel.queue_occupancy_limit = 0
        self.rings = {}                  # queue -> (base, bytes)
        self.doorbells = {}              # doorbell address -> queue
        self.doorbell_log = []           # (queue, value, ok) in bus order
        self.reads = Counter()           # queue -> read bursts
        self.beats = Counter()           # queue -> beats read
        self.errors = []                 # protocol violations seen here
        self.on_doorbell = None          # callback(queue, value, ok)

    def load(self, addr, raw):
        self.fabric.host.mem.write(addr - HOST_BASE, bytes(raw))

    def peek(self, addr, n):
        return self.fabric.host.mem.read(addr - HOST_BASE, n)

    def read16(self, addr):
        return self.peek(addr, CQE_BYTES)

    def fail_reads(self, lo, hi, count=1):
        """SLVERR for the next ``count`` reads of ``[lo, hi)``: every beat of the CQE hit."""
        self.fabric.fail_next(lo, hi - lo, "read", count, unit=CQE_BYTES)

    def fail_doorbell(self, addr, count=1):
        """SLVERR for the next ``count`` writes to the doorbell at ``addr``."""
        self.fabric.fail_next(addr, 4, "write", count)

    def ring_of(self, address, length):
        """The queue whose ring (in whole beats) holds ``[address, address + length)``."""
        nb = self.beat_bytes
        queue = None
        for q, (base, size) in self.rings.items():
            lo = base - base % nb
            span = -(-(base + size) // nb) * nb - lo
            if lo <= address and address + length <= lo + span:
                queue = q
        return queue

    def _access(self, kind, addr, data, failed):
        if kind != "write":
            return
        queue = self.doorbells.get(addr)
        if queue is None or len(data) != 4:
            self.errors.append(f"write of {data.hex()} at {addr:#x} is not a doorbell")
            return
        value = int.from_bytes(data, "little")
        self.doorbell_log.append((queue, value, not failed))
        if self.on_doorbell is not None:
            self.on_doorbell(queue, value, not failed)


class BusTiming:
    """Timing of the slave on ``m_axi``: response latency and pauses per channel.

    ``latency`` / ``b_latency`` (a range, a random pick with ``rng`` when it is one):
    extra cycles before the slave answers a read burst (it waits before reading the
    first beat; one burst at a time) / a write (before it takes effect, and B after
    it); (0, 0), the default, leaves the slave's own: the first R beat 2 cycles after
    the AR at the earliest, B 2 cycles after AW and W. Through the fabric's ``delay``
    hook, which is called for every beat the slave reads; the TB's AR monitor tells
    (:meth:`burst_accepted`) where each burst starts.

    ``set_pause(ch, generator)``: cocotbext's pause generator of channel ``ar``, ``r``,
    ``aw``, ``w`` or ``b`` (None: no pauses).
    """

    def __init__(self, side, rng=None):
        self.rng = rng
        self.latency = (0, 0)
        self.b_latency = (0, 0)
        read, write = side.fabric.slave.read_if, side.fabric.slave.write_if
        self.channels = {"ar": read.ar_channel, "r": read.r_channel, "aw": write.aw_channel,
                         "w": write.w_channel, "b": write.b_channel}
        self.reset()
        side.fabric.delay = self._delay

    def reset(self):
        self._starts = deque([0])        # read beat numbers at which a burst starts
        self._beats = 0                  # read beats the slave has started
        self._accepted = 0               # beats of the bursts accepted so far

    def set_pause(self, ch, generator):
        channel = self.channels[ch]
        channel.set_pause_generator(generator)
        if generator is None:
            channel.pause = False

    def burst_accepted(self, beats):
        """An AR of ``beats`` beats: the next burst starts after them.

        The AR of burst ``n - 1`` is seen at an edge before the one of burst ``n``,
        so burst ``n``'s start is known before the slave reads its first beat.
        """
        self._accepted += beats
        self._starts.append(self._accepted)

    def _pick(self, span):
        lo, hi = span
        return lo if lo == hi or self.rng is None else self.rng.randint(lo, hi)

    def _delay(self, kind, addr, length):
        if kind == "write":
            return self._pick(self.b_latency)
        beat = self._beats
        self._beats += 1
        while self._starts and self._starts[0] < beat:
            self._starts.popleft()
        if self._starts and self._starts[0] == beat:
            return self._pick(self.latency)
        return 0


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
        self.mem = PcieSide(self)
        self.mem.on_doorbell = self._doorbell
        self.axi = BusTiming(self.mem)
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
        """A CQE read: INCR, full aligned beats, 64 bytes or less, inside a configured ring
        (the whole beats around it allowed), not crossing 4 KiB; counted per queue."""
        dut, nb = self.dut, self.beat_bytes
        addr, length = int(dut.m_axi_araddr.value), int(dut.m_axi_arlen.value)
        size, burst = int(dut.m_axi_arsize.value), int(dut.m_axi_arburst.value)
        max_beats = max(1, 64 // nb) + (1 if nb > 16 else 0)
        if (1 << size != nb or length + 1 > max_beats or burst != 1
                or addr % min(nb, CQE_BYTES)):
            self._fail(f"CQE read araddr {addr:#x} arlen {length} arsize {size} arburst {burst}")
        beats = length + 1
        start, nbytes = addr - addr % nb, beats * nb
        self.axi.burst_accepted(beats)
        queue = self.mem.ring_of(start, nbytes)
        if queue is None:
            self._fail(f"read of {nbytes} bytes at {start:#x} outside every CQ ring")
            return
        if start // 4096 != (start + nbytes - 1) // 4096:
            self._fail(f"read of {nbytes} bytes at {start:#x} crosses 4 KiB")
        self.mem.reads[queue] += 1
        self.mem.beats[queue] += beats

    def _check_aw(self):
        """A doorbell write: one 4-byte INCR beat to a configured doorbell address."""
        dut = self.dut
        addr, length = int(dut.m_axi_awaddr.value), int(dut.m_axi_awlen.value)
        size, burst = int(dut.m_axi_awsize.value), int(dut.m_axi_awburst.value)
        if (size, length, burst) != (2, 0, 1) or addr % 4:
            self._fail(f"doorbell awaddr {addr:#x} awlen {length} awsize {size} awburst {burst}")
        if addr not in self.mem.doorbells:
            self._fail(f"write at {addr:#x} is not a doorbell")

    # -- knobs --

    def set_idle_generator(self, factory=None):
        """Pauses on the handler's inputs: ``i_msix`` and the AXI ``b`` / ``r`` channels."""
        self.msix.pause = factory() if factory else None
        for ch in ("b", "r"):
            self.axi.set_pause(ch, factory() if factory else None)

    def set_backpressure_generator(self, factory=None):
        """Pauses on the handler's outputs: ``o_cqe``, ``o_error``, AXI ``aw`` / ``w`` / ``ar``."""
        self.cqe_sink.pause = factory() if factory else None
        self.err_sink.pause = factory() if factory else None
        for ch in ("aw", "w", "ar"):
            self.axi.set_pause(ch, factory() if factory else None)

    def hold_cqe_output(self, hold=True):
        """Keep ``o_cqe.ready`` low until released (``hold=False``)."""
        self.cqe_sink.pause = itertools.repeat(1) if hold else None

    async def cycle_reset(self):
        self.axi.reset()
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
