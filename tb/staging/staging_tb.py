"""cocotb testbench of the staging memory and P2P target (``nvmf_staging``).

* ``StagingModel``: the reference, written from ``docs/backend.md`` ("Staging
  memory and P2P target"): a ``bytearray`` for the memory, the window / MSI-X
  rules for every AXI burst, the expected MSI-X messages.
* ``TB``: clock, reset, cocotbext-axi's ``AxiMaster`` on ``s_axi_p2p`` (or,
  with ``raw=True``, bare channel models for bursts a compliant master never
  issues), drivers and collectors for ``i_wr`` / ``i_rd`` / ``o_rd`` /
  ``o_msix``, handshake counters, idle and back-pressure generators.
* ``RegionLocks``: concurrent operations only touch bytes no other in-flight
  operation writes, so every read has exactly one right answer.

The cocotb tests live in ``cocotb_staging.py``; ``test_staging.py`` launches them.
"""

import itertools
import logging

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster, AxiReadBus, AxiResp, AxiWriteBus
from cocotbext.axi.axi_channels import (
    AxiARSource,
    AxiARTransaction,
    AxiAWSource,
    AxiAWTransaction,
    AxiBSink,
    AxiRSink,
    AxiWSource,
    AxiWTransaction,
)
from cocotbext.axi.stream import define_stream

from rtl.formats import StagingRead, StagingWrite, StreamBeat, decode, encode, layout_bytes
from sim.cosim.harness import params_from_env

CLOCK_NS = 4
INCR, FIXED, WRAP = 1, 0, 2
PAGE = 4096          # an AXI burst never crosses a 4 KiB boundary
MAX_BEATS = 256      # nor carries more than 256 beats

# Amaranth streams appear as ``<port>__payload``, ``<port>__valid``, ``<port>__ready``
(AmaranthStreamBus, AmaranthStreamTransaction, AmaranthStreamSource, AmaranthStreamSink,
 _AmaranthStreamMonitor) = define_stream("AmaranthStream", signals=["payload", "valid", "ready"])


def uint(value):
    """A sampled signal value as an unsigned int (``LogicArray``, ``Logic`` or int)."""
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


def random_pause(rng, busy_fraction):
    """An endless pause pattern: 1 (pause) with probability ``busy_fraction``."""
    while True:
        yield int(rng.random() < busy_fraction)


def burst_pause(rng, busy_fraction, longest=12):
    """Pauses in runs of 1..``longest`` cycles, ``busy_fraction`` of the time on average."""
    if busy_fraction <= 0:
        yield from itertools.repeat(0)
    while True:
        run = rng.randint(1, longest)
        gap = max(1, round(run * (1 - busy_fraction) / busy_fraction))
        yield from itertools.repeat(1, run)
        yield from itertools.repeat(0, rng.randint(1, 2 * gap))


# --- reference model -------------------------------------------------------------------------

class StagingModel:
    """The staging memory as ``docs/backend.md`` specifies it, burst by burst.

    AXI bursts are judged whole: a full-width INCR burst whose every beat lies
    in ``[staging_base, staging_base + staging_bytes)`` stores (reads) the
    bytes; a one-beat full-width INCR write at ``msix_addr`` is an MSI-X
    message (bytes 0-3 of its beat, little-endian); anything else answers
    SLVERR, writes nothing and reads zeros.
    """

    def __init__(self, params):
        self.base = params.staging_base
        self.size = params.staging_bytes
        self.msix_addr = params.msix_addr
        self.B = params.beat_bytes
        self.full_size = self.B.bit_length() - 1
        self.mem = bytearray(self.size)
        self.msix = []           # messages the RTL must emit, in order

    def burst_kind(self, addr, beats, size=None, burst=INCR):
        """``"store"``, ``"msix"`` or ``"error"`` for one AXI burst."""
        size = self.full_size if size is None else size
        if size != self.full_size or burst != INCR:
            return "error"
        first = addr - addr % self.B
        if self.base <= first and first + beats * self.B <= self.base + self.size:
            return "store"
        if addr == self.msix_addr and beats == 1:
            return "msix"
        return "error"

    # bursts of a byte-addressed transfer as an AXI master must cut it
    def bursts(self, addr, length):
        """``[(burst_addr, beats, first, count)]``: bytes ``data[first:first+count]``."""
        out = []
        done = 0
        while done < length:
            cur = addr + done
            beat0 = cur - cur % self.B
            page_end = (cur // PAGE + 1) * PAGE
            end = min(addr + length, page_end, beat0 + MAX_BEATS * self.B)
            beats = -(-(end - beat0) // self.B)
            out.append((cur, beats, done, end - cur))
            done = end - addr
        return out

    def axi_write(self, addr, data):
        """A master-level write: returns the response the master reports."""
        resp = AxiResp.OKAY
        for burst_addr, beats, first, count in self.bursts(addr, len(data)):
            kind = self.burst_kind(burst_addr, beats)
            chunk = data[first:first + count]
            if kind == "store":
                off = burst_addr - self.base
                self.mem[off:off + count] = chunk
            elif kind == "msix":
                lanes = bytearray(self.B)
                lane = burst_addr % self.B
                lanes[lane:lane + count] = chunk
                self.msix.append(int.from_bytes(lanes[:4], "little"))
            else:
                resp = AxiResp.SLVERR
        return resp

    def axi_read(self, addr, length):
        """A master-level read: ``(data, response)``."""
        out = bytearray()
        resp = AxiResp.OKAY
        for burst_addr, beats, _, count in self.bursts(addr, length):
            if self.burst_kind(burst_addr, beats) == "store":
                off = burst_addr - self.base
                out += self.mem[off:off + count]
            else:
                out += bytes(count)
                resp = AxiResp.SLVERR
        return bytes(out), resp

    def raw_write(self, addr, beats, size=None, burst=INCR):
        """A channel-level burst ``beats = [(data_int, strobe_int)]``: the expected ``bresp``."""
        kind = self.burst_kind(addr, len(beats), size, burst)
        if kind == "store":
            word = (addr - self.base) // self.B
            for i, (value, strobe) in enumerate(beats):
                raw = value.to_bytes(self.B, "little")
                for lane in range(self.B):
                    if strobe >> lane & 1:
                        self.mem[(word + i) * self.B + lane] = raw[lane]
        elif kind == "msix":
            self.msix.append(beats[0][0] & 0xFFFF_FFFF)
        return AxiResp.SLVERR if kind == "error" else AxiResp.OKAY

    def raw_read(self, addr, beats, size=None, burst=INCR):
        """A channel-level burst: ``([beat bytes], rresp)``."""
        if self.burst_kind(addr, beats, size, burst) == "store":
            word = (addr - self.base) // self.B
            return [bytes(self.mem[(word + i) * self.B:(word + i + 1) * self.B])
                    for i in range(beats)], AxiResp.OKAY
        return [bytes(self.B)] * beats, AxiResp.SLVERR

    def internal_write(self, offset, value, keep):
        """One ``i_wr`` beat (``offset`` beat-aligned, inside the memory)."""
        raw = value.to_bytes(self.B, "little")
        for lane in range(self.B):
            if keep >> lane & 1:
                self.mem[(offset + lane) % self.size] = raw[lane]

    def internal_read(self, offset, beats):
        """The bytes of one ``i_rd`` request (words wrap at the end of the memory)."""
        words = self.size // self.B
        first = offset // self.B
        return b"".join(bytes(self.mem[((first + i) % words) * self.B:][:self.B])
                        for i in range(beats))


# --- concurrency ---------------------------------------------------------------------------

class RegionLocks:
    """Byte ranges of the staging memory held by in-flight operations.

    A writer excludes everyone from its bytes, a reader excludes writers, so
    the model is exact whatever order the RTL serves concurrent operations in.
    """

    def __init__(self, clk):
        self.clk = clk
        self.held = []
        self.waits = 0

    def _free(self, lo, hi, write):
        return all(hi <= l or h <= lo or (not write and not w) for l, h, w in self.held)

    async def acquire(self, lo, hi, write):
        while not self._free(lo, hi, write):
            self.waits += 1
            await RisingEdge(self.clk)
        entry = (lo, hi, write)
        self.held.append(entry)
        return entry

    def release(self, entry):
        self.held.remove(entry)


class HandshakeCounter:
    """Counts the cycles in which ``valid`` and ``ready`` are both high (``TB`` samples it
    once a cycle); with ``record``, also logs their cycle numbers."""

    def __init__(self, valid, ready, record=False):
        self.valid, self.ready = valid, ready
        self.count = 0
        self.cycles = [] if record else None
        self.changed = Event()

    def sample(self, cycle):
        v, r = self.valid.value, self.ready.value
        if v.is_resolvable and r.is_resolvable and uint(v) and uint(r):
            self.count += 1
            if self.cycles is not None:
                self.cycles.append(cycle)
            self.changed.set()

    async def wait_for(self, count):
        while self.count < count:
            self.changed.clear()
            await self.changed.wait()


class HoldChecker:
    """Stream / AXI rule on an output: once ``valid`` is high it stays high, with the
    same payload, until the cycle ``ready`` takes it (``TB`` samples it once a cycle)."""

    def __init__(self, name, valid, ready, payload):
        self.name = name
        self.valid, self.ready, self.payload = valid, ready, payload
        self.waiting = None      # the payload offered and not taken at the last edge

    def sample(self, cycle):
        v, r = self.valid.value, self.ready.value
        offered = v.is_resolvable and uint(v)
        payload = tuple(str(p.value) for p in self.payload) if offered else None
        if self.waiting is not None:
            assert offered, f"{self.name}: valid dropped before ready at cycle {cycle}"
            assert payload == self.waiting, (
                f"{self.name}: payload changed while waiting at cycle {cycle}")
        taken = r.is_resolvable and uint(r)
        self.waiting = payload if offered and not taken else None


# --- bus models --------------------------------------------------------------------------------

class RawAxi:
    """Channel-level AXI4 master: one burst at a time, any address, size or burst type."""

    def __init__(self, dut, clk, rst):
        wbus = AxiWriteBus.from_prefix(dut, "s_axi_p2p")
        rbus = AxiReadBus.from_prefix(dut, "s_axi_p2p")
        self.aw = AxiAWSource(wbus.aw, clk, rst)
        self.w = AxiWSource(wbus.w, clk, rst)
        self.b = AxiBSink(wbus.b, clk, rst)
        self.ar = AxiARSource(rbus.ar, clk, rst)
        self.r = AxiRSink(rbus.r, clk, rst)
        self.channels = (self.aw, self.w, self.b, self.ar, self.r)
        for channel in self.channels:
            channel.log.setLevel(logging.WARNING)

    async def write(self, addr, beats, size, burst=INCR, awid=0):
        """``beats = [(data, strobe)]``; returns ``(bresp, bid)``."""
        await self.aw.send(AxiAWTransaction(awid=awid, awaddr=addr, awlen=len(beats) - 1,
                                            awsize=size, awburst=burst))
        for i, (value, strobe) in enumerate(beats):
            await self.w.send(AxiWTransaction(wdata=value, wstrb=strobe,
                                              wlast=int(i == len(beats) - 1)))
        b = await self.b.recv()
        return AxiResp(uint(b.bresp)), uint(b.bid)

    async def read(self, addr, beats, size, burst=INCR, arid=0):
        """Returns ``[(rdata bytes, rresp, rlast, rid)]`` for ``beats`` beats."""
        await self.ar.send(AxiARTransaction(arid=arid, araddr=addr, arlen=beats - 1,
                                            arsize=size, arburst=burst))
        out = []
        nbytes = len(self.r.bus.rdata) // 8
        for _ in range(beats):
            r = await self.r.recv()
            out.append((uint(r.rdata).to_bytes(nbytes, "little"), AxiResp(uint(r.rresp)),
                        uint(r.rlast), uint(r.rid)))
        return out


class InternalPorts:
    """Drivers of ``i_wr`` / ``i_rd`` and collectors of ``o_rd`` / ``o_msix``.

    ``write`` returns once every beat was accepted; ``read`` returns the
    request's packet (checking its framing); several callers may overlap,
    each waits for its own beats (the RTL answers in request order).
    """

    def __init__(self, tb):
        dut, clk, rst = tb.dut, tb.dut.clk, tb.dut.rst
        self.tb = tb
        self.W = tb.params.data_width
        self.B = tb.params.beat_bytes
        bus = lambda name: AmaranthStreamBus.from_prefix(dut, name, bus_separator="__")  # noqa: E731
        self.wr = AmaranthStreamSource(bus("i_wr"), clk, rst)
        self.rd = AmaranthStreamSource(bus("i_rd"), clk, rst)
        self.rd_out = AmaranthStreamSink(bus("o_rd"), clk, rst)
        self.msix = AmaranthStreamSink(bus("o_msix"), clk, rst)
        for model in (self.wr, self.rd, self.rd_out, self.msix):
            model.log.setLevel(logging.WARNING)
        self.wr_layout = StagingWrite(self.W)
        self.beat_layout = StreamBeat(self.W)
        self.wr_sent = 0
        self.pending = []            # (beats, Event) per i_rd request, in order
        self.read_beats = 0
        cocotb.start_soon(self._collect())

    async def write(self, offset, beats):
        """``beats = [(data, keep)]`` to consecutive words from byte ``offset``."""
        for i, (value, keep) in enumerate(beats):
            raw = encode(self.wr_layout, {"offset": offset + i * self.B, "data": value,
                                          "keep": keep})
            self.wr.send_nowait(AmaranthStreamTransaction(payload=int.from_bytes(raw, "little")))
        self.wr_sent += len(beats)
        await self.tb.iw_beats.wait_for(self.wr_sent)

    async def read(self, offset, beats):
        """One ``i_rd`` request; a zero-beat request is sent and answers nothing."""
        raw = encode(StagingRead, {"offset": offset, "beats": beats})
        done = Event()
        packet = []
        if beats:
            self.pending.append((beats, done, packet))
        self.rd.send_nowait(AmaranthStreamTransaction(payload=int.from_bytes(raw, "little")))
        if not beats:
            return b""
        await done.wait()
        return packet[0]

    async def _collect(self):
        nbytes = layout_bytes(self.beat_layout)
        packet = bytearray()
        count = 0
        while True:
            obj = await self.rd_out.recv()
            beat = decode(self.beat_layout, uint(obj.payload).to_bytes(nbytes, "little"))
            assert self.pending, f"o_rd beat without a request: {beat}"
            assert beat["keep"] == (1 << self.B) - 1, f"o_rd keep {beat['keep']:#x}"
            packet += beat["data"].to_bytes(self.B, "little")
            count += 1
            self.read_beats += 1
            want, done, result = self.pending[0]
            assert bool(beat["last"]) == (count == want), (
                f"o_rd last={beat['last']} on beat {count} of a {want}-beat request")
            if beat["last"]:
                self.pending.pop(0)
                result.append(bytes(packet))
                done.set()
                packet = bytearray()
                count = 0

    def msix_messages(self):
        out = []
        while not self.msix.empty():
            out.append(uint(self.msix.recv_nowait().payload))
        return out


def _set_pauses(channels, factory):
    for channel in channels:
        channel.set_pause_generator(factory() if factory else None)
        if factory is None:
            channel.pause = False    # a removed generator leaves its last value behind


class TB:
    """Clock, reset and every bus model of ``nvmf_staging``."""

    def __init__(self, dut, raw=False):
        self.dut = dut
        self.params = params_from_env()
        self.log = dut._log
        self.model = StagingModel(self.params)
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.cycle = 0
        # beat counters of the four memory users (and B), sampled by one coroutine
        self.w_beats = HandshakeCounter(dut.s_axi_p2p_wvalid, dut.s_axi_p2p_wready, True)
        self.r_beats = HandshakeCounter(dut.s_axi_p2p_rvalid, dut.s_axi_p2p_rready, True)
        self.iw_beats = HandshakeCounter(dut.i_wr__valid, dut.i_wr__ready, True)
        self.ir_beats = HandshakeCounter(dut.o_rd__valid, dut.o_rd__ready, True)
        self.b_beats = HandshakeCounter(dut.s_axi_p2p_bvalid, dut.s_axi_p2p_bready, True)
        self.ar_beats = HandshakeCounter(dut.s_axi_p2p_arvalid, dut.s_axi_p2p_arready, True)
        self.rd_requests = HandshakeCounter(dut.i_rd__valid, dut.i_rd__ready, True)
        self._counters = (self.w_beats, self.r_beats, self.iw_beats, self.ir_beats,
                          self.b_beats, self.ar_beats, self.rd_requests)
        ax = lambda n: getattr(dut, f"s_axi_p2p_{n}")  # noqa: E731
        self._checkers = (
            HoldChecker("o_rd", dut.o_rd__valid, dut.o_rd__ready, [dut.o_rd__payload]),
            HoldChecker("o_msix", dut.o_msix__valid, dut.o_msix__ready, [dut.o_msix__payload]),
            HoldChecker("R", ax("rvalid"), ax("rready"),
                        [ax("rdata"), ax("rresp"), ax("rlast"), ax("rid")]),
            HoldChecker("B", ax("bvalid"), ax("bready"), [ax("bresp"), ax("bid")]),
        )
        cocotb.start_soon(self._count())
        if raw:
            self.axi = None
            self.raw = RawAxi(dut, dut.clk, dut.rst)
            self._idle_channels = [self.raw.aw, self.raw.w, self.raw.ar]
            self._bp_channels = [self.raw.b, self.raw.r]
        else:
            self.raw = None
            self.axi = AxiMaster(AxiBus.from_prefix(dut, "s_axi_p2p"), dut.clk, dut.rst)
            for channel in (self.axi.write_if.aw_channel, self.axi.write_if.w_channel,
                            self.axi.write_if.b_channel, self.axi.read_if.ar_channel,
                            self.axi.read_if.r_channel):
                channel.log.setLevel(logging.WARNING)
            self.axi.write_if.log.setLevel(logging.WARNING)
            self.axi.read_if.log.setLevel(logging.WARNING)
            self._idle_channels = [self.axi.write_if.aw_channel, self.axi.write_if.w_channel,
                                   self.axi.read_if.ar_channel]
            self._bp_channels = [self.axi.write_if.b_channel, self.axi.read_if.r_channel]
        self.ports = InternalPorts(self)
        self._idle_channels += [self.ports.wr, self.ports.rd]
        self._bp_channels += [self.ports.rd_out, self.ports.msix]
        self.locks = RegionLocks(dut.clk)

    async def _count(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1
            for counter in self._counters + self._checkers:
                counter.sample(self.cycle)

    def channel_states(self):
        """``valid``/``ready`` of every channel, for a stall report."""
        names = ["s_axi_p2p_aw", "s_axi_p2p_w", "s_axi_p2p_b", "s_axi_p2p_ar", "s_axi_p2p_r"]
        out = {}
        for prefix in names:
            v = getattr(self.dut, f"{prefix}valid").value
            r = getattr(self.dut, f"{prefix}ready").value
            out[prefix.removeprefix("s_axi_p2p_")] = f"{v}{r}"
        for port in ("i_wr", "i_rd", "o_rd", "o_msix"):
            v = getattr(self.dut, f"{port}__valid").value
            r = getattr(self.dut, f"{port}__ready").value
            out[port] = f"{v}{r}"
        return out

    def start_watchdog(self, limit=5000):
        """Fail with a report when no beat moves on any port for ``limit`` cycles."""
        async def watch():
            last = None
            quiet = 0
            while True:
                await ClockCycles(self.dut.clk, 100)
                now = tuple(c.count for c in self._counters)
                quiet = quiet + 100 if now == last else 0
                last = now
                busy = self.locks.held or self.ports.pending
                assert not (busy and quiet >= limit), (
                    f"no beat moved for {quiet} cycles at cycle {self.cycle}: "
                    f"channels (valid, ready) {self.channel_states()}; locks {self.locks.held}; "
                    f"internal reads pending {[b for b, _, _ in self.ports.pending]}")
        return cocotb.start_soon(watch())

    def set_idle_generator(self, factory=None):
        """``factory()``: a fresh pause pattern for each input (AW, W, AR, i_wr, i_rd)."""
        _set_pauses(self._idle_channels, factory)

    def set_backpressure_generator(self, factory=None):
        """``factory()``: a fresh pause pattern for each output (B, R, o_rd, o_msix)."""
        _set_pauses(self._bp_channels, factory)

    async def cycle_reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    # --- checked operations (model and RTL in step) ---------------------------------------

    def addr(self, offset):
        """Bus address of staging byte ``offset``."""
        return self.params.staging_base + offset

    async def axi_write(self, addr, data, tag=""):
        resp = await self.axi.write(addr, data)
        want = self.model.axi_write(addr, data)
        assert resp.resp == want, (
            f"{tag}: write {len(data)} B at {addr:#x} answered {resp.resp!r}, model {want!r}")
        return resp.resp

    async def axi_read(self, addr, length, tag=""):
        resp = await self.axi.read(addr, length)
        want, want_resp = self.model.axi_read(addr, length)
        got = bytes(resp.data)
        assert resp.resp == want_resp, (
            f"{tag}: read {length} B at {addr:#x} answered {resp.resp!r}, model {want_resp!r}")
        if got != want:
            first = next(i for i in range(length) if got[i] != want[i])
            raise AssertionError(
                f"{tag}: read {length} B at {addr:#x}: first difference at byte {first} "
                f"(address {addr + first:#x}): rtl {got[first:first + 16].hex()} "
                f"model {want[first:first + 16].hex()}")
        return got

    async def internal_write(self, offset, beats):
        await self.ports.write(offset, beats)
        for i, (value, keep) in enumerate(beats):
            self.model.internal_write(offset + i * self.params.beat_bytes, value, keep)

    async def internal_read(self, offset, beats, tag=""):
        got = await self.ports.read(offset, beats)
        want = self.model.internal_read(offset, beats)
        if got != want:
            first = next(i for i in range(len(want)) if got[i] != want[i])
            raise AssertionError(
                f"{tag}: internal read of {beats} beats at {offset:#x}: first difference at "
                f"byte {first}: rtl {got[first:first + 16].hex()} "
                f"model {want[first:first + 16].hex()}")
        return got

    async def check_whole_memory(self, tag="final"):
        """Every byte, through the internal read port and through AXI."""
        B = self.params.beat_bytes
        await self.internal_read(0, self.params.staging_bytes // B, tag=f"{tag} (internal)")
        if self.axi is not None:
            await self.axi_read(self.addr(0), self.params.staging_bytes, tag=f"{tag} (axi)")

    async def check_msix(self, settle=20):
        """The messages seen on ``o_msix`` equal the model's, in order; none are pending."""
        await ClockCycles(self.dut.clk, settle)
        got = self.ports.msix_messages()
        want, self.model.msix = self.model.msix, []
        assert got == want, f"o_msix {[hex(x) for x in got]}, model {[hex(x) for x in want]}"
        return len(got)
