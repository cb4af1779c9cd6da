"""cocotb testbench of the SQ writer top (``nvmf_sq_writer`` = ``rtl.sq_writer.SqWriter``).

Three parts:

* ``SqWriterModel``: the reference model, written from ``docs/backend.md``
  ("SQ writer") and ``shared/spec/nvme-facts.md``, not from the RTL. Given
  the queue configurations and the SQE sequence it predicts each SQE's ring
  slot, the tail after it, which batches a back-to-back input forms, which
  writes fail, and the final contents of every ring.
* ``PcieSpace``: the PCIe fabric behind ``m_axi`` (the target of a
  cocotbext-axi ``AxiSlaveWrite``): a ring region and a doorbell BAR, both
  filled with random guard bytes; it records every doorbell write in order,
  every write outside both regions, and answers SLVERR to chosen writes.
* ``TB``: clock, reset, the AXI slave with pause generators on AW, W and B,
  drivers for ``i_sqe`` (with an idle generator), ``init_*`` and the
  backend-queue table (answering ``bq_rd_en`` one cycle later, holding its
  data otherwise), and an ``o_done`` sink with a back-pressure generator;
  ``Scoreboard`` matches the doorbell log and the ``o_done`` records with the
  model and compares the memory images byte for byte.
"""

import dataclasses
import itertools
import logging
import random
from collections import deque

import cocotb
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiSlaveWrite, AxiWriteBus
from cocotbext.axi.axi_channels import AxiAWMonitor

from rtl.formats import SQE_BYTES, BackendQueueEntry, SqDone, SqRequest, decode, encode
from sim.cosim.harness import params_from_env

CLOCK_NS = 4
MAX_BATCH = 8                           # SqWriter's default max_batch

RING_BASE = 0x0000_0042_1230_0000       # host memory holding the SQ rings (above 4 GiB)
RING_SPAN = 0x1_0000
BAR_BASE = 0x0000_0300_0010_0000        # an SSD's BAR0
BAR_SPAN = 0x2000
DB_BASE = BAR_BASE + 0x1000
DB_STRIDE = 0x1C                        # spreads the doorbells over every 4-byte lane

SLVERR = 2

_REQ = data.Layout.cast(SqRequest)
_QUEUE_OFFSET = _REQ["queue"].offset
_SQE_OFFSET = _REQ["sqe"].offset


def random_pause(rng, busy_fraction):
    """An endless pause pattern: 1 (pause) with probability ``busy_fraction``."""
    while True:
        yield int(rng.random() < busy_fraction)


def fixed_pause(busy):
    """A periodic pause pattern with the given fraction of paused cycles (None for 0)."""
    if busy <= 0:
        return None
    ones = round(busy * 8)
    return itertools.cycle([1] * ones + [0] * (8 - ones))


# --- reference model ---------------------------------------------------------------------------

@dataclasses.dataclass
class SqeRecord:
    """One SQE given to the writer, as the model sees it."""
    index: int
    queue: int
    sqe: bytes
    phase: int                 # batches never span a barrier (the input ran dry there)
    epoch: int                 # the queue's configuration count: batches never span an init
    usable: bool
    slot_addr: int = None      # where the SQE goes
    tail_after: int = None     # the queue's tail after it
    db_addr: int = None
    limit: int = 0             # most SQEs a batch of this queue holds
    write_fails: bool = False  # the SQE write is answered with an error


class SqWriterModel:
    """The SQ writer as the specification describes it.

    ``configure`` is a table write plus an ``init`` pulse: the tail restarts at
    ``sq_tail_init``. ``submit`` returns the record of one SQE. A queue is
    usable when its entry is valid, its index is in the table, ``sq_addr`` is
    64-byte and ``sq_db_addr`` 4-byte aligned and the tail is below
    ``sq_entries``; other SQEs write nothing and report ``ok = 0``.
    """

    def __init__(self, backend_queues, max_batch=MAX_BATCH):
        self.backend_queues = backend_queues
        self.max_batch = max_batch
        self.entries = {}
        self.tails = {}
        self.records = []
        self.phase = 0
        self.epochs = {}                 # queue -> configurations so far
        self.inits = []                  # (records submitted before it, queue)
        self.sqe_fail_rules = set()      # (slot address, n): the n-th write there fails
        self.slot_writes = {}            # slot address -> SQE writes so far

    def configure(self, queue, entry):
        self.entries[queue] = dict(entry)
        self.tails[queue] = entry.get("sq_tail_init", 0)
        self.epochs[queue] = self.epochs.get(queue, 0) + 1
        self.inits.append((len(self.records), queue))

    def barrier(self):
        self.phase += 1

    def usable(self, queue):
        e = self.entries.get(queue)
        return (e is not None and queue < self.backend_queues and e.get("valid", 0) == 1
                and e["sq_addr"] % SQE_BYTES == 0 and e["sq_db_addr"] % 4 == 0
                and self.tails[queue] < e["sq_entries"])

    def submit(self, queue, sqe):
        rec = SqeRecord(len(self.records), queue, bytes(sqe), self.phase,
                        self.epochs.get(queue, 0), self.usable(queue))
        if rec.usable:
            e = self.entries[queue]
            tail = self.tails[queue]
            rec.slot_addr = e["sq_addr"] + tail * SQE_BYTES
            tail = (tail + 1) % e["sq_entries"]
            self.tails[queue] = tail
            rec.tail_after = tail
            rec.db_addr = e["sq_db_addr"]
            rec.limit = min(self.max_batch, e["sq_entries"] - 1)
            n = self.slot_writes.get(rec.slot_addr, 0)
            self.slot_writes[rec.slot_addr] = n + 1
            rec.write_fails = (rec.slot_addr, n) in self.sqe_fail_rules
        self.records.append(rec)
        return rec

    def same_batch_possible(self, first, rec):
        """Could ``rec`` join the batch ``first`` opened (same queue, phase, configuration)?"""
        return (rec.usable and rec.queue == first.queue and rec.phase == first.phase
                and rec.epoch == first.epoch)

    def expected_batches(self):
        """Batches (lists of record indices, in the order their doorbells are rung) when
        every SQE waits at ``i_sqe`` as soon as the previous one is taken and the writer
        never runs out of batch or record space: an SQE joins the open batch of its queue
        (SQEs of other queues may come between); a batch closes when it holds the batch
        limit or its queue is re-initialised, and every older batch closes with it;
        every batch closes when the input runs dry (a barrier)."""
        batches, open_ = [], {}          # open_: queue -> index into batches
        inits = sorted(self.inits)

        def close_upto(b):
            for q, k in list(open_.items()):
                if k <= b:
                    del open_[q]

        phase = None
        for rec in self.records:
            while inits and inits[0][0] <= rec.index:
                _, q = inits.pop(0)
                if q in open_:
                    close_upto(open_[q])
            if rec.phase != phase:
                open_.clear()
                phase = rec.phase
            if not rec.usable:
                continue
            k = open_.get(rec.queue)
            if k is None:
                k = open_[rec.queue] = len(batches)
                batches.append([])
            batches[k].append(rec.index)
            if len(batches[k]) >= rec.limit:
                close_upto(k)
        return batches

    def ring_image(self, initial):
        """The ring region after every SQE that did not fail was written, in order."""
        image = bytearray(initial)
        for rec in self.records:
            if rec.usable and not rec.write_fails:
                off = rec.slot_addr - RING_BASE
                image[off:off + SQE_BYTES] = rec.sqe
        return image


# --- the PCIe side ----------------------------------------------------------------------------

class PcieError(Exception):
    """Raised by the memory model to make the AXI slave answer SLVERR."""


@dataclasses.dataclass
class DoorbellWrite:
    addr: int
    value: int
    failed: bool
    cycle: int


class PcieSpace:
    """Ring memory and doorbell BAR behind ``m_axi``; the AXI slave calls ``write``.

    Error injection: ``fail_nth(base, size, n)`` answers SLVERR to the ``n``-th
    (from 0) burst whose first bytes land at ``base``, for every byte of it in
    ``[base, base + size)``; nothing of those bytes is stored.
    """

    def __init__(self, tb, rng):
        self.tb = tb
        self.ring = bytearray(rng.randbytes(RING_SPAN))
        self.bar = bytearray(rng.randbytes(BAR_SPAN))
        self.ring_initial = bytes(self.ring)
        self.bar_initial = bytes(self.bar)
        self.doorbell_addrs = set()
        self.doorbells = []          # DoorbellWrite, in the order the slave saw them
        self.stray = []              # writes outside both regions
        self.rules = []              # [base, size, n, hits, active]
        self.covered = {}            # doorbell address -> SQE records covered so far
        self.visibility_errors = []  # doorbells that found an SQE not yet written or answered

    def fail_nth(self, base, size, n):
        self.rules.append([base, size, n, 0, False])

    def _fails(self, address, length):
        failed = False
        for rule in self.rules:
            base, size, n = rule[:3]
            if address == base:
                rule[3] += 1
                rule[4] = rule[3] - 1 == n
            if rule[4] and base <= address and address + length <= base + size:
                failed = True
        return failed

    def _check_visible(self, address, value):
        """At a doorbell write: every SQE of that queue up to the new tail must already
        have been written (bytes in the ring unless its write failed) and answered (B)."""
        tb = self.tb
        recs = [r for r in tb.model.records if r.usable and r.db_addr == address]
        n = self.covered.get(address, 0)
        for k in range(n, min(n + MAX_BATCH, len(recs))):
            if recs[k].tail_after == value:
                self.covered[address] = k + 1
                break
        else:
            self.visibility_errors.append(f"doorbell {value} at {address:#x} covers no SQE run")
            return
        for r in recs[n:k + 1]:
            aw = tb.sqe_aw_index.get(r.index)
            if aw is None or tb.b_handshakes <= aw:
                self.visibility_errors.append(
                    f"doorbell {value} at {address:#x}: SQE {r.index} "
                    f"{'not written' if aw is None else 'not answered'} yet")
            elif not r.write_fails:
                # the traffic may lap a small ring: a later SQE of the queue (already
                # written) may have replaced this one in its slot
                off = r.slot_addr - RING_BASE
                later = [x.sqe for x in recs[k + 1:] if x.slot_addr == r.slot_addr
                         and x.index in tb.sqe_aw_index]
                if bytes(self.ring[off:off + SQE_BYTES]) not in [r.sqe, *later]:
                    self.visibility_errors.append(
                        f"doorbell {value} at {address:#x}: SQE {r.index} not in the ring")

    async def write(self, address, data):
        data = bytes(data)
        failed = self._fails(address, len(data))
        if address in self.doorbell_addrs and len(data) == 4:
            value = int.from_bytes(data, "little")
            self.doorbells.append(DoorbellWrite(address, value, failed, self.tb.cycle))
            self._check_visible(address, value)
        if failed:
            raise PcieError(f"injected error at {address:#x}")
        for base, mem in ((RING_BASE, self.ring), (BAR_BASE, self.bar)):
            if base <= address and address + len(data) <= base + len(mem):
                mem[address - base:address - base + len(data)] = data
                return
        self.stray.append((address, data))


# --- testbench ----------------------------------------------------------------------------------

def _entry_bits(fields):
    return int.from_bytes(encode(BackendQueueEntry, fields), "little")


class TB:
    """Clock, reset, bus models and drivers of ``nvmf_sq_writer``."""

    def __init__(self, dut, seed=1):
        self.dut = dut
        self.params = params_from_env()
        self.log = dut._log
        self.rng = random.Random(seed)
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.space = PcieSpace(self, self.rng)
        bus = AxiWriteBus.from_prefix(dut, "m_axi")
        self.axi = AxiSlaveWrite(bus, dut.clk, dut.rst, target=self.space)
        self.aw_monitor = AxiAWMonitor(bus.aw, dut.clk, dut.rst)
        for log in (self.axi.log, self.axi.aw_channel.log, self.axi.w_channel.log,
                    self.axi.b_channel.log, self.aw_monitor.log):
            log.setLevel(logging.ERROR)   # one line per burst and per injected error otherwise
        self.model = SqWriterModel(self.params.backend_queues)
        self.table = {}                   # queue -> BackendQueueEntry bits
        self.sqe_queue = deque()          # payloads waiting for i_sqe
        self.done = []                    # decoded o_done records
        self.sqe_taken = 0
        self.take_cycles = []             # cycle of each i_sqe handshake
        self.idle_gen = None
        self.done_pause_gen = None
        self.cycle = 0
        self._ring_cursor = RING_BASE + 0x100
        self.handshakes = []              # ("aw", cycle, address), ("w", cycle, wlast), ("b", ...)
        self.b_handshakes = 0
        self.sqe_aw_index = {}            # record index -> position of its AW among all AWs
        self._aw_count = 0
        self._sqe_aws = 0
        dut.i_sqe__valid.value = 0
        dut.i_sqe__payload.value = 0
        dut.o_done__ready.value = 0
        dut.init_valid.value = 0
        dut.init_queue.value = 0
        dut.bq_rd_data.value = 0
        cocotb.start_soon(self._count())

    async def _count(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    # --- idle and back-pressure ------------------------------------------------------------------

    def set_idle_generator(self, generator=None):
        """Idle cycles between SQEs offered on ``i_sqe``."""
        self.idle_gen = generator

    def set_backpressure_generator(self, aw=None, w=None, b=None, done=None):
        """AW / W not ready, B not valid, ``o_done`` not ready."""
        self.axi.aw_channel.set_pause_generator(aw)
        self.axi.w_channel.set_pause_generator(w)
        self.axi.b_channel.set_pause_generator(b)
        self.done_pause_gen = done

    def random_pressure(self, idle=0.0, bp=0.0):
        seed = self.rng.randrange(1 << 30)
        if idle:
            self.set_idle_generator(random_pause(random.Random(seed), idle))
        if bp:
            self.set_backpressure_generator(*(random_pause(random.Random(seed + i), bp)
                                              for i in range(1, 5)))

    async def cycle_reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)
        cocotb.start_soon(self._drive_sqe())
        cocotb.start_soon(self._sink_done())
        cocotb.start_soon(self._table_port())
        cocotb.start_soon(self._watch_handshakes())

    # --- drivers ----------------------------------------------------------------------------------

    def _paused(self, gen):
        return gen is not None and next(gen)

    async def _drive_sqe(self):
        dut = self.dut
        while True:
            if not self.sqe_queue or self._paused(self.idle_gen):
                dut.i_sqe__valid.value = 0
                await RisingEdge(dut.clk)
                continue
            dut.i_sqe__payload.value = self.sqe_queue.popleft()
            dut.i_sqe__valid.value = 1
            while True:
                await ReadOnly()
                taken = int(dut.i_sqe__ready.value) == 1
                if taken:
                    self.take_cycles.append(self.cycle)
                await RisingEdge(dut.clk)
                if taken:
                    break
            self.sqe_taken += 1

    async def _sink_done(self):
        dut = self.dut
        while True:
            ready = not self._paused(self.done_pause_gen)
            dut.o_done__ready.value = int(ready)
            await ReadOnly()
            if ready and int(dut.o_done__valid.value) == 1:
                raw = dut.o_done__payload.value.to_unsigned()
                self.done.append((decode(SqDone, raw), self.cycle))
            await RisingEdge(dut.clk)

    async def _table_port(self):
        """A synchronous table read port: data the cycle after ``en``, held otherwise."""
        dut = self.dut
        while True:
            await ReadOnly()
            en = int(dut.bq_rd_en.value) == 1
            addr = dut.bq_rd_addr.value.to_unsigned() if en else 0
            await RisingEdge(dut.clk)
            if en:
                dut.bq_rd_data.value = (self.table.get(addr, 0)
                                        if addr < self.params.backend_queues else 0)

    async def _watch_handshakes(self):
        """Cycle of every AW, W and B handshake, for the doorbell-after-responses rule."""
        dut = self.dut
        while True:
            await ReadOnly()
            if int(dut.m_axi_awvalid.value) and int(dut.m_axi_awready.value):
                addr = dut.m_axi_awaddr.value.to_unsigned()
                self.handshakes.append(("aw", self.cycle, addr))
                if addr not in self.space.doorbell_addrs:
                    usable = [r for r in self.model.records if r.usable]
                    if self._sqe_aws < len(usable):
                        self.sqe_aw_index[usable[self._sqe_aws].index] = self._aw_count
                    self._sqe_aws += 1
                self._aw_count += 1
            if int(dut.m_axi_wvalid.value) and int(dut.m_axi_wready.value):
                self.handshakes.append(("w", self.cycle, int(dut.m_axi_wlast.value)))
            if int(dut.m_axi_bvalid.value) and int(dut.m_axi_bready.value):
                self.handshakes.append(("b", self.cycle, None))
                self.b_handshakes += 1
            await RisingEdge(dut.clk)

    # --- configuration and stimulus --------------------------------------------------------------

    def alloc_ring(self, entries):
        """A 64-byte aligned ring in the ring region, behind 1..3 SQE slots of guard bytes."""
        addr = self._ring_cursor + SQE_BYTES * self.rng.randint(1, 3)
        self._ring_cursor = addr + entries * SQE_BYTES
        assert self._ring_cursor + 0x100 <= RING_BASE + RING_SPAN, "ring region exhausted"
        return addr

    @staticmethod
    def db_addr(queue):
        return DB_BASE + DB_STRIDE * queue

    async def configure(self, queue, entries, tail_init=0, sq_addr=None, db_addr=None,
                        valid=1, init=True):
        """Write the table entry and pulse ``init`` for it (mirrored into the model)."""
        fields = {
            "valid": valid, "subsystem": 0, "sq_entries": entries, "cq_entries": entries,
            "sq_addr": self.alloc_ring(entries) if sq_addr is None else sq_addr,
            "cq_addr": 0x7777_0000, "sq_db_addr": self.db_addr(queue) if db_addr is None
            else db_addr, "cq_db_addr": 0x7777_1000, "sq_tail_init": tail_init,
            "cq_head_init": 0, "cmd_timeout": 0, "msix_data": queue,
        }
        if queue < self.params.backend_queues:
            self.table[queue] = _entry_bits(fields)
        self.space.doorbell_addrs.add(fields["sq_db_addr"])
        if init:
            await self.pulse_init(queue)
        self.model.configure(queue, fields)
        return fields

    async def reinit(self, queue):
        """Pulse ``init`` for a queue whose entry is unchanged: its tail restarts."""
        await self.pulse_init(queue)
        self.model.configure(queue, self.model.entries[queue])

    async def pulse_init(self, queue):
        self.dut.init_queue.value = queue
        self.dut.init_valid.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.init_valid.value = 0

    def submit(self, queue, sqe=None):
        """Queue one SQE for ``i_sqe`` (random bytes unless given); returns its model record."""
        if sqe is None:
            sqe = self.rng.randbytes(SQE_BYTES)
        rec = self.model.submit(queue, sqe)
        self.sqe_queue.append((queue << _QUEUE_OFFSET)
                              | (int.from_bytes(sqe, "little") << _SQE_OFFSET))
        return rec

    def fail_sqe_write(self, queue, slot, n=0):
        """The ``n``-th SQE write to ``slot`` of ``queue``'s ring answers SLVERR."""
        addr = self.model.entries[queue]["sq_addr"] + slot * SQE_BYTES
        self.space.fail_nth(addr, SQE_BYTES, n)
        self.model.sqe_fail_rules.add((addr, n))

    def fail_doorbell(self, queue, n=0):
        """The ``n``-th doorbell write of ``queue`` answers SLVERR."""
        self.space.fail_nth(self.model.entries[queue]["sq_db_addr"], 4, n)

    async def wait_done(self, budget=None):
        """Until ``o_done`` gave a record for every SQE submitted; then a quiet period."""
        want = len(self.model.records)
        budget = budget or 3000 + 400 * want
        start = self.cycle
        while len(self.done) < want:
            assert self.cycle - start < budget, (
                f"{len(self.done)} of {want} o_done records after {budget} cycles "
                f"({self.sqe_taken} SQEs taken)")
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 30)
        assert len(self.done) == want, f"{len(self.done) - want} o_done record(s) too many"
        self.model.barrier()


class Scoreboard:
    """Checks what the RTL did against ``SqWriterModel``.

    ``strict``: the SQEs were offered back to back, so the doorbells (batches
    and their order) must be exactly the model's ``expected_batches``;
    otherwise each doorbell must close a batch that the specification allows
    (consecutive SQEs of one queue under one configuration, at most the batch
    limit, value = the model's tail after the batch's last SQE).
    """

    def __init__(self, tb):
        self.tb = tb

    def batches_from_doorbells(self):
        """Split each queue's SQEs into batches using the doorbell log; check each doorbell.
        Returns (record indices, doorbell) in doorbell order, then unusable SQEs alone."""
        records = self.tb.model.records
        waiting = {}
        for r in records:
            if r.usable:
                waiting.setdefault(r.db_addr, deque()).append(r.index)
        batches = []
        for db in self.tb.space.doorbells:
            run = waiting.get(db.addr)
            assert run, f"doorbell {db} without an SQE"
            first = records[run[0]]
            indices = []
            while True:
                assert run, f"doorbell value {db.value} at {db.addr:#x} closes no batch"
                rec = records[run.popleft()]
                indices.append(rec.index)
                assert (len(indices) <= first.limit
                        and self.tb.model.same_batch_possible(first, rec)), (
                    f"doorbell value {db.value} at {db.addr:#x} closes no batch starting at "
                    f"SQE {first.index}: SQE {rec.index} cannot join")
                if rec.tail_after == db.value:
                    break
            batches.append((indices, db))
        left = {hex(a): list(v) for a, v in waiting.items() if v}
        assert not left, f"SQEs never covered by a doorbell: {left}"
        batches += [([r.index], None) for r in records if not r.usable]
        return batches

    def check(self, strict=True):
        tb = self.tb
        model = tb.model
        records = model.records
        space = tb.space
        assert not space.stray, f"writes outside the rings and BAR: {space.stray[:4]}"
        assert tb.sqe_taken == len(records)
        assert not space.visibility_errors, space.visibility_errors[:4]

        # o_done: one per SQE, in order
        got = [rec for rec, _ in tb.done]
        assert [d["queue"] for d in got] == [r.queue for r in records], (
            "o_done queue sequence differs from the SQE sequence")

        batches = self.batches_from_doorbells()
        if strict:
            want = model.expected_batches()
            have = [b for b, db in batches if db is not None]
            assert have == want, f"batches (from the doorbells) {have} != model {want}"
        for indices, db in batches:
            ok = all(records[k].usable and not records[k].write_fails for k in indices)
            ok = ok and db is not None and not db.failed
            for k in indices:
                assert got[k]["ok"] == int(ok), (
                    f"SQE {k} (queue {records[k].queue}): ok={got[k]['ok']}, expected {int(ok)}")
                if db is not None:
                    assert tb.done[k][1] > db.cycle, f"SQE {k}: o_done before its doorbell"
        self.check_doorbell_order(batches)

        # every doorbell failed exactly when a rule says so (rules count per address)
        per_addr = {}
        for db in space.doorbells:
            n = per_addr.get(db.addr, 0)
            per_addr[db.addr] = n + 1
            expected = any(r[0] == db.addr and r[1] == 4 and r[2] == n for r in space.rules)
            assert db.failed == expected, f"doorbell {db} failed={db.failed}"

        # the last doorbell at each address carries the tail after the last SQE it covers
        last_db, last_tail = {}, {}
        for db in space.doorbells:
            last_db[db.addr] = db.value
        for r in records:
            if r.usable:
                last_tail[r.db_addr] = r.tail_after
        assert last_db == last_tail, f"final doorbells {last_db} != model tails {last_tail}"

        # memory: every SQE byte in the rings, every guard byte, every BAR byte
        want_ring = model.ring_image(space.ring_initial)
        if bytes(space.ring) != bytes(want_ring):
            bad = next(k for k in range(RING_SPAN) if space.ring[k] != want_ring[k])
            owner = [r.index for r in records
                     if r.usable and r.slot_addr <= RING_BASE + bad < r.slot_addr + SQE_BYTES]
            raise AssertionError(
                f"ring region differs first at {RING_BASE + bad:#x} (SQE(s) {owner}): "
                f"{space.ring[bad]:#04x} != {want_ring[bad]:#04x}")
        want_bar = bytearray(space.bar_initial)
        for db in space.doorbells:
            if not db.failed:
                off = db.addr - BAR_BASE
                want_bar[off:off + 4] = db.value.to_bytes(4, "little")
        assert bytes(space.bar) == bytes(want_bar), "BAR bytes other than the doorbells changed"

        # AXI attributes of every write burst
        beat_bytes = tb.params.beat_bytes
        bursts = []
        while not tb.aw_monitor.empty():
            bursts.append(tb.aw_monitor.recv_nowait())
        sqe_writes = sum(1 for r in records if r.usable)
        assert len(bursts) == sqe_writes + len(space.doorbells), (
            f"{len(bursts)} AW, expected {sqe_writes} SQE writes + "
            f"{len(space.doorbells)} doorbells")
        slots = iter(r.slot_addr for r in records if r.usable)
        for aw in bursts:
            addr, length, size = int(aw.awaddr), int(aw.awlen), int(aw.awsize)
            assert int(aw.awburst) == 1, f"burst type {int(aw.awburst)} at {addr:#x}"
            if addr in space.doorbell_addrs:
                assert (length, size) == (0, 2), f"doorbell at {addr:#x}: len {length} size {size}"
            else:
                assert addr == next(slots), f"SQE write at {addr:#x} out of order"
                assert (length, 1 << size) == (SQE_BYTES // beat_bytes - 1, beat_bytes), (
                    f"SQE write at {addr:#x}: awlen {length} awsize {size}")
        return batches

    def check_doorbell_order(self, batches):
        """Every write answered; a doorbell's AW and W go out only after the B of every SQE
        write of its queue up to its tail; W bursts follow the AW order."""
        tb = self.tb
        aws = [(c, a) for k, c, a in tb.handshakes if k == "aw"]
        bs = [c for k, c, _ in tb.handshakes if k == "b"]
        w_first, start = [], True
        for kind, cycle, last in tb.handshakes:
            if kind == "w":
                if start:
                    w_first.append(cycle)
                start = bool(last)
        assert len(aws) == len(bs) == len(w_first), (
            f"{len(aws)} AW, {len(w_first)} W bursts, {len(bs)} B")
        db_aws = [k for k, (_, a) in enumerate(aws) if a in tb.space.doorbell_addrs]
        with_db = [(indices, db) for indices, db in batches if db is not None]
        assert len(db_aws) == len(with_db)
        for k, (indices, db) in zip(db_aws, with_db, strict=True):
            issued = min(aws[k][0], w_first[k])
            queue = tb.model.records[indices[0]].queue
            for rec in tb.model.records[:indices[-1] + 1]:
                if rec.usable and rec.queue == queue:
                    j = tb.sqe_aw_index[rec.index]
                    assert j < k and bs[j] < issued, (
                        f"doorbell {db.value} at {db.addr:#x} issued in cycle {issued} before "
                        f"the B of SQE {rec.index} (cycle {bs[j]})")
