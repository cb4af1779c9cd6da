# Over 700 lines: one replay backend whose monitors (responses, hand-offs, QP errors, events,
# RDMA and PCIe traffic) all update the same per-capsule record of what each capsule got.
"""The simulator side of ``nvmf-offload replay --backend icarus|verilator``.

One cocotb test, :func:`run_replay`, runs a whole trace on the RTL engine
(``nvmf_engine``). :class:`sim.replay.RtlBackend` launches it through
:func:`sim.cosim.harness.run_cocotb` with

- ``NVMF_REPLAY_TARGET``, ``NVMF_REPLAY_TRACE``: the files, read with
  :mod:`sim.replay`'s own parsers (they were checked before the simulator
  started);
- ``NVMF_REPLAY_OUT``: where the results go, one JSON object a line, written
  as they are produced; ``NVMF_REPLAY_OUT`` + ``.status`` gets the verdict
  (``{"status": 0|1|2, "message": ...}``);
- ``NVMF_REPLAY_SEED``: seeds the SSDs' service times and the idles and
  back-pressure of every interface (capsule, response, software and QP-error
  streams, the RDMA streams, every channel of ``m_axi_pcie``, ``s_axi_p2p`` and
  ``s_axil_csr``), as ``docs/replay.md`` says.

The engine is surrounded by the bus faces of the device models
(:mod:`sim.devices.ssd_bus`, :mod:`~sim.devices.pcie_bus`, :mod:`~sim.devices.rdma_bus`)
built from the TARGET (SSDs, the PCIe fabric with the rings and BARs at the
addresses of :func:`sim.replay.plan_layout`, the RDMA transport over a
:class:`sim.devices.initiator.Initiator`), and configured through
:class:`sim.driver.NvmfDevice` over AXI4-Lite with
:func:`sim.replay.configure_device`, exactly as the model backend is.

:class:`RtlReplay` is a :class:`sim.replay.Backend`: the trace runs through
:func:`sim.replay.run_trace` itself (in a :func:`cocotb.task.bridge` thread;
each backend call resumes the simulation), so the result order, the
barriers, the summary and the failure output are the model backend's.

Outcomes leave the engine without the capsule's position in the trace; they
are tied back to it (``docs/replay.md``, "The simulator backends"):

- a response by ``(qpn, CID)`` among the capsules without an outcome (the
  expected SQHD breaks a tie between equal CIDs); none: a response for an
  unknown CID (exit status 1);
- a capsule handed to software by its QPN and bytes;
- ``qp_error`` ``rdma_error`` by the failed RDMA WRITE descriptor; every other
  ``qp_error`` comes from the front end, which decides a QP's capsules in
  order: at each barrier they go, in order, to the capsules of that QP still
  without an outcome;
- an event by its type and object to the capsule whose outcome it goes with
  (UNSUPPORTED_NVMF_OP, QP_FATAL: the QP's error outcome or its failed RDMA
  READ; NVME_TIMEOUT, NVME_PCI_ERR: an Internal Error response of a command
  submitted on that backend queue, as seen in the SQE writes on the fabric).
"""

import collections
import json
import logging
import os
import random

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import (
    AxiBus,
    AxiLiteBus,
    AxiLiteMaster,
    AxiMaster,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

from rtl.formats import Reason
from sim.cosim.clocks import BenchClocks
from sim.cosim.regs import AxilRegs
from sim.cosim.replay_capsule import DeliveredCapsule
from sim.devices.initiator import Initiator, RdmaStatus
from sim.devices.pcie_bus import PcieFabric
from sim.devices.rdma_bus import RdmaTransport
from sim.devices.ssd_bus import SsdDevice
from sim.devices.staging_bus import attach_staging
from sim.driver import NvmfDevice, NvmfError
from sim.replay import (
    RING_BASE,
    RING_SPACE,
    WAIT_BUDGET_CYCLES,
    Backend,
    InvariantError,
    ReplayInputError,
    configure_device,
    load_target,
    load_trace,
    plan_layout,
    run_trace,
)
from sim.replay.control import apply_control
from sim.replay.counters import read_counters, write_counters

__all__ = ["RtlReplay", "run_replay"]

POLL_CYCLES = 16            # how often a wait looks at the state
SETTLE_CYCLES = 64          # idle must hold this long (an event or a doorbell may trail)
QUIET_CYCLES = 20_000       # nothing moving for this long (beyond any cmd_timeout): a hang
PAUSE = 0.125               # share of cycles with an input idle or back-pressure

SERVED_BY_FRONT = ("qp_in_error", "oversize", "rdma_error")
INTERNAL_ERROR = (0, 0x06)
OP_READ, OP_WRITE, OP_DSM = 0x02, 0x01, 0x09


def _pauses(rng):
    while True:
        yield rng.random() < PAUSE


class RtlReplay(Backend):
    """The RTL engine in a simulator with the device models around it, as a replay backend.

    The synchronous :class:`sim.replay.Backend` methods run in the bridge thread
    of :func:`run_replay`; those that need simulated time resume the simulation
    (:func:`cocotb.task.resume`) until they are done.
    """
    reports_cycles = True

    def __init__(self, dut, target, layout, seed=0):
        self.name = "rtl"
        self.dut = dut
        self.target = target
        self.layout = layout
        self.params = target.params
        self.seed = seed
        self.clocks = BenchClocks(dut)
        self.clk = dut.clk
        self.log = dut._log
        self.capsules = {}                      # seq -> DeliveredCapsule
        self.pending = {}                       # seq -> DeliveredCapsule without an outcome
        self.qperr = collections.defaultdict(list)      # qpn -> front qp_error records
        self.events = []                        # (type name, object), this segment
        self.results = []                       # tagged records, this segment
        self.errors = []                        # invariant violations seen by the monitors
        self.segment = 0                        # first seq of this segment
        self.segment_rdma = 0                   # initiator.log index where it began
        self.activity = 0
        self.events_busy = False
        self._sq_heads = {}
        self.faulted = False                    # a fault was armed (USE_BUSY check off)
        self._sqe_parts = {}                    # (queue, slot) -> [bytearray, failed]
        self._last_submit = {}                  # backend queue -> seq of its last SQE
        self._pci_failed = {}                   # backend queue -> seq whose access failed
        self._rings = []                        # (lo, hi, queue, what)
        for plan in layout.queues:
            self._rings += [(plan.sq_addr, plan.sq_addr + plan.entries * 64, plan.order, "sq"),
                            (plan.cq_addr, plan.cq_addr + plan.entries * 16, plan.order, "cq"),
                            (plan.sq_db_addr, plan.sq_db_addr + 4, plan.order, "sq_db"),
                            (plan.cq_db_addr, plan.cq_db_addr + 4, plan.order, "cq_db")]
        # nothing moving for longer than any timeout, plus the longest transfer (an RDMA
        # WRITE waiting for the engine's data counts as quiet; its beats as no activity)
        longest = 4 * target.params.max_io_size // target.params.beat_bytes
        self.quiet_limit = (QUIET_CYCLES + longest
                            + max([s.cmd_timeout for s in target.ssds] + [0]))

    # --- set-up ---------------------------------------------------------------------------------

    def _rng(self, what):
        return random.Random(f"{self.seed}/{what}")

    async def start(self):
        """Clock, bus models, device models, reset, then the driver's configuration."""
        dut, (clk, rst) = self.dut, self.clocks.core
        pcie_clk, pcie_rst = self.clocks.pcie
        self.clocks.start()
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_csr"), *self.clocks.csr)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_capsule"), clk, rst)
        self.resp = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_resp"), clk, rst)
        self.exc = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_exc"), clk, rst)
        self.qp_err = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_qp_err"), clk, rst)
        self.fabric = PcieFabric(dut, pcie_clk, pcie_rst, host_base=RING_BASE,
                                 host_size=RING_SPACE)
        self.fabric.on_access = self._pcie_access
        self.p2p = AxiMaster(AxiBus.from_prefix(dut, "s_axi_p2p"), pcie_clk, pcie_rst)
        # external staging: a RAM on m_axi_stg (core clock), which the SSDs reach directly
        self.staging = attach_staging(dut, clk, rst, self.params)
        self.initiator = Initiator([{"rkey": r.rkey, "addr": r.addr, "size": r.size}
                                    for r in self.target.regions])
        self.rdma = RdmaTransport(dut, clk, rst, initiator=self.initiator)
        self.rdma.on_failure = self._rdma_failure
        for model in (self.source, self.resp, self.exc, self.qp_err, self.axil.write_if,
                      self.axil.read_if, self.p2p.write_if, self.p2p.read_if):
            model.log.setLevel(logging.WARNING)
        for name, model in (("capsule", self.source), ("resp", self.resp), ("exc", self.exc),
                            ("qp_err", self.qp_err), ("rdma_rd", self.rdma.rd),
                            ("rdma_wr", self.rdma.wr)):
            model.set_pause_generator(_pauses(self._rng(name)))
        # Every other interface too, each channel with a seeded stream of its own: the PCIe
        # fabric (the AXI4 slave on m_axi_pcie), the SSDs' peer-to-peer master on s_axi_p2p,
        # the RDMA command and status streams, the CSR bus. One task sets them all each
        # cycle (a pause generator per channel would be a task per channel).
        buses = {"pcie": self.fabric.slave, "p2p": self.p2p, "csr": self.axil}
        if self.staging is not None:
            buses["stg"] = self.staging.ram
        paused = [(getattr(getattr(port, side), f"{ch}_channel"),
                   _pauses(self._rng(f"{bus}_{ch}")))
                  for bus, port in buses.items()
                  for side, chs in (("write_if", ("aw", "w", "b")), ("read_if", ("ar", "r")))
                  for ch in chs]
        paused += [(self.rdma.cmd, _pauses(self._rng("rdma_cmd"))),
                   (self.rdma.sts, _pauses(self._rng("rdma_sts")))]

        # Guard: every internal staging write (in-capsule and RDMA READ data, PRP lists)
        # lies inside a subsystem's staging window; sampled in the same per-cycle task.
        # The SSDs' writes come through s_axi_p2p, whose window check answers SLVERR.
        core = dut.core if hasattr(dut, "pcie_clk") else dut
        port = core.staging if self.staging is None else core.staging_axi
        try:
            wr_valid, wr_ready = port.i_wr__valid, port.i_wr__ready
            wr_payload = port.i_wr__payload
        except AttributeError as exc:
            raise InvariantError(f"the staging write port is not visible to the test bench "
                                 f"({exc}): the staging guard cannot run") from None
        base = self.params.staging_base
        windows = [(self.layout.staging[sub.name] - base,
                    self.layout.staging[sub.name] - base + sub.staging_bytes)
                   for sub in self.target.subsystems]

        def guard():
            if int(wr_valid.value) and int(wr_ready.value):
                offset = int(wr_payload.value) & 0xFFFF_FFFF
                if not any(lo <= offset < hi for lo, hi in windows):
                    self.errors.append(f"staging write at offset {offset:#x}, outside every "
                                       f"subsystem's window {windows}")

        async def pause_all():
            edge = RisingEdge(clk)
            while True:
                for channel, pauses in paused:
                    channel.pause = next(pauses)
                await edge
                guard()

        cocotb.start_soon(pause_all())
        self.ssds = {}
        for i, spec in enumerate(self.target.ssds):
            dma = self.p2p if self.staging is None else self.staging.dma(self.p2p)
            ssd = SsdDevice(self, spec.name, self.fabric, i, dma, self.layout.msix_addr,
                            latency=spec.latency_cycles, bar=self.layout.bars[spec.name],
                            rng=self._rng(spec.name), jitter=spec.latency_cycles // 2,
                            on_error=self._ssd_error)
            for ns in spec.namespaces:
                ssd.add_namespace(ns.nsid, ns.lba_data_size, ns.nsze)
            self.ssds[spec.name] = ssd
        for plan in self.layout.queues:
            polling = self.target.ssd(plan.ssd).polling
            self.ssds[plan.ssd].create_io_queue(plan.queue + 1, plan.sq_addr, plan.entries,
                                                plan.cq_addr, plan.entries,
                                                None if polling else plan.msix_data)

        await self.clocks.reset()
        self.regs = AxilRegs(self.axil)
        self.device = NvmfDevice(self.regs, self.params)
        self.handles = await configure_device(self.device, self.target, self.layout)
        await self.regs.write(self.device.regmap["IRQ_ENABLE"].offset, 1)
        for qp in self.target.qps:
            if qp.offload:
                self._sq_heads[qp.qpn] = (0, qp.sqsize)
        for monitor in (self._responses, self._software, self._qp_errors, self._events):
            cocotb.start_soon(monitor())

    def configure(self, target, layout):
        raise NotImplementedError("RtlReplay is configured by start() inside the simulation")

    # --- time -----------------------------------------------------------------------------------

    def _now(self):
        """Cycles of the core clock so far."""
        return int(get_sim_time("ps")) // round(self.clocks.core_ns * 1000)

    async def _cycles(self):
        return self._now()

    @property
    def cycles(self):
        return resume(self._cycles)()

    def _quiet_devices(self):
        return (all(s.idle for s in self.ssds.values()) and self.rdma.quiet
                and not self.fabric.stalled)

    def _busy_report(self):
        parts = []
        if not self.source.idle():
            parts.append("a capsule not accepted by the engine")
        if self.pending:
            first = min(self.pending)
            parts.append(f"{len(self.pending)} capsule(s) without an outcome, first seq {first}")
        busy = [n for n, s in self.ssds.items() if not s.idle]
        if busy:
            parts.append(f"{', '.join(busy)} with commands in service")
        if not self.rdma.quiet:
            parts.append("an RDMA operation in progress")
        return "; ".join(parts) or "idle"

    def _raise_errors(self):
        if self.errors:
            raise InvariantError(self.errors[0])

    async def _wait(self, done, what, budget):
        """Run until ``done()``; a hang (over ``budget`` cycles, or nothing moving with the
        devices quiet for longer than any timeout could take) is an InvariantError."""
        start = self._now()
        mark, since = self.activity, start
        while True:
            self._raise_errors()
            if done():
                return
            now = self._now()
            if now - start > budget:
                raise InvariantError(f"hang: {what} not within the budget of {budget} cycles "
                                     f"({self._busy_report()})")
            if self.activity != mark or not self._quiet_devices():
                mark, since = self.activity, now
            elif now - since > self.quiet_limit:
                raise InvariantError(f"hang at cycle {now}: {what}, and nothing has moved for "
                                     f"{now - since} cycles ({self._busy_report()})")
            await ClockCycles(self.clk, POLL_CYCLES)

    # --- Backend: actions -----------------------------------------------------------------------

    def write_mem(self, rkey, offset, data):
        resume(self._write_mem)(rkey, offset, bytes(data))

    async def _write_mem(self, rkey, offset, data):
        """``write_mem`` as the model does it (docs/replay.md, "Ordering"): the capsules before
        it never see it, and the Reads of this segment write over it.

        The model reads a Write's (DSM's) data when the capsule is dispatched, which is at
        its delivery, and does a Read's RDMA WRITE when the SSD completes it, which is in
        the next barrier. So first run until no capsule before this line can still RDMA
        READ these bytes; then set only the bytes that no RDMA WRITE of this segment has
        written already (those that come later overwrite them by themselves).
        """
        base = self.initiator.region(rkey).addr + offset
        end = base + len(data)
        await self._wait(lambda: not self._readers(base, end),
                         f"write_mem: the RDMA READs of the capsules before it "
                         f"({len(data)} bytes at rkey {rkey:#x} offset {offset:#x})",
                         WAIT_BUDGET_CYCLES)
        data = bytearray(data)
        for op in self.initiator.log[self.segment_rdma:]:
            lo, hi = max(op.addr, base), min(op.addr + op.length, end)
            if op.op == "write" and op.status == RdmaStatus.OK and lo < hi:
                data[lo - base:hi - base] = self.initiator.read(rkey, offset + lo - base,
                                                                hi - lo)
        self.initiator.write(rkey, offset, data)

    def _readers(self, base, end):
        """Capsules without an outcome that may still RDMA READ bytes of ``[base, end)``:
        keyed Writes and DSMs, except those of a QP whose capsules without an outcome the
        front end has all put in error (at the barrier, docs/replay.md)."""
        waiting = collections.Counter(c.qpn for c in self.pending.values())
        return [c for c in self.pending.values()
                if c.opcode in (OP_WRITE, OP_DSM) and c.sgl is not None
                and c.sgl[0] < end and base < c.sgl[0] + c.sgl_length
                and waiting[c.qpn] > len(self.qperr.get(c.qpn, ()))]

    def dump_mem(self, rkey, offset, length):
        return self.initiator.read(rkey, offset, length)

    def dump_lba(self, ssd, nsid, slba, nlb):
        return self.ssds[ssd].namespaces[nsid].read(slba, nlb)

    def deliver(self, capsule, qpn, seq):
        resume(self._deliver)(bytes(capsule), qpn, seq)

    async def _deliver(self, capsule, qpn, seq):
        sqhd = None
        if qpn in self._sq_heads:
            head, size = self._sq_heads[qpn]
            head = (head + 1) % size
            self._sq_heads[qpn] = (head, size)
            sqhd = head
        c = DeliveredCapsule.of(seq, qpn, capsule, sqhd)
        self.capsules[seq] = c
        self.pending[seq] = c
        await self.source.send(AxiStreamFrame(capsule, tuser=qpn))
        await self._wait(self.source.idle, f"capsule seq {seq} accepted", WAIT_BUDGET_CYCLES)

    def inject_fault(self, fault):
        kind = fault["kind"]
        self.faulted |= kind != "clear"
        count = fault.get("count", 1)
        if kind == "ssd_status":
            status = {k: fault[k] for k in ("sct", "sc", "dnr", "crd", "m")}
            self.ssds[fault["ssd"]].inject(fault["nsid"], status=status, count=count,
                                           dw0=fault.get("dw0", 0))
        elif kind == "ssd_timeout":
            if fault["mode"] == "never":
                self.ssds[fault["ssd"]].inject(fault["nsid"], never=True, count=count)
            else:
                self.ssds[fault["ssd"]].inject(fault["nsid"], delay=fault["delay_cycles"],
                                               count=count)
        elif kind == "rdma_error":
            self.initiator.inject_error(fault["rkey"], fault["op"], count=count)
        elif kind == "pci_error":
            plan = self.layout.queue(fault["ssd"], fault["queue"])
            base, size, rw, unit = {
                "sqe_write": (plan.sq_addr, plan.entries * 64, "write", 64),
                "sq_doorbell": (plan.sq_db_addr, 4, "write", 4),
                "cqe_read": (plan.cq_addr, plan.entries * 16, "read", 16),
                "cq_doorbell": (plan.cq_db_addr, 4, "write", 4),
            }[fault["access"]]
            self.fabric.fail_next(base, size, rw, count=count, unit=unit,
                                  delay=fault.get("delay_cycles", 0))
        elif kind == "unsolicited_cqe":
            self.ssds[fault["ssd"]].post_unsolicited(fault["queue"] + 1, fault["cid"],
                                                     sc=fault["sc"],
                                                     delay=fault.get("delay_cycles", 0))
        elif kind == "clear":
            for ssd in self.ssds.values():
                ssd.clear_faults()
            self.initiator.clear_faults()
            self.fabric.clear_faults()
        else:
            raise ValueError(f"unknown fault kind {kind!r}")

    def counters(self):
        return resume(read_counters)(self.device, self.handles)

    def control(self, kind, args):
        return resume(self._control)(kind, args)

    async def _control(self, kind, args):
        await self._check_busy(f"before the {kind} control line")
        try:
            await apply_control(self.device, self.handles, self.target, kind, args)
        except NvmfError as exc:
            return exc
        if kind == "qp_set":           # the engine starts the QP afresh: sq_head 0
            qp = next(q for q in self.target.qps if q.qpn == args["qpn"])
            if args["offload"]:
                self._sq_heads[qp.qpn] = (0, qp.sqsize)
            else:
                self._sq_heads.pop(qp.qpn, None)
        return None

    async def _check_busy(self, when):
        """An SSD with commands in service (before and after the read) means a backend
        queue owes CQEs: ``USE_BUSY.backend_queues`` must say so. Not after a fault (a
        command lost to a silent SSD legitimately clears it, ``docs/registers.md``)."""
        def in_service():
            return {name for name, ssd in self.ssds.items() if not ssd.idle}

        before = in_service()
        if self.faulted or not before:
            return
        use = await self.device.resource_use()
        held = sorted(before & in_service())
        if held and not use["backend_queues"]:
            self.errors.append(f"cycle {self._now()}, {when}: {', '.join(held)} holds "
                               f"commands but USE_BUSY.backend_queues is 0")

    def run_until_idle(self, budget_cycles=WAIT_BUDGET_CYCLES):
        return resume(self._run_until_idle)(budget_cycles)

    async def _run_until_idle(self, budget):
        start = self._now()
        stable = [0]

        def settled():
            if self._idle():
                stable[0] += POLL_CYCLES
            else:
                stable[0] = 0
            return stable[0] >= SETTLE_CYCLES

        await self._wait(settled, "the barrier's idle", budget)
        self.segment_rdma = len(self.initiator.log)     # what write_mem goes under restarts
        self._finalize()
        self._raise_errors()
        if self.pending:
            missing = sorted(self.pending)[:8]
            raise InvariantError(f"capsule(s) seq {missing} accepted without an outcome")
        leaks = await self.device.leaks()
        if leaks:
            raise InvariantError(f"leak at quiescence (cycle {self._now()}): "
                                 + "; ".join(leaks))
        return self._now() - start

    def run_until_accepted(self, budget_cycles=WAIT_BUDGET_CYCLES):
        return resume(self._run_until_accepted)(budget_cycles)

    async def _run_until_accepted(self, budget):
        await self._wait(self._accepted, "every capsule looked up", budget)
        self._raise_errors()

    def _accepted(self):
        """Every capsule delivered has passed the namespace lookup: it has its outcome, or
        its command reached the SSD (its SQE) or the initiator (the RDMA READ of its data),
        which only a served command does, or it is one of its QP's front-end QP errors."""
        if not self.source.idle():
            return False
        reads = {(op.addr, op.rkey) for op in self.initiator.log[self.segment_rdma:]
                 if op.op == "read"}
        waiting = collections.Counter(
            c.qpn for c in self.pending.values()
            if c.queue is None and (c.sgl is None or c.sgl not in reads))
        # the front end's QP errors are given to their capsules at the barrier (_finalize)
        return all(n <= len(self.qperr.get(qpn, ())) for qpn, n in waiting.items())

    def _idle(self):
        if not self.source.idle() or self.events_busy or int(self.dut.irq.value):
            return False
        if not (self.resp.empty() and self.exc.empty() and self.qp_err.empty()):
            return False
        if not self._quiet_devices():
            return False
        waiting = collections.Counter(c.qpn for c in self.pending.values())
        return all(n <= len(self.qperr.get(qpn, ())) for qpn, n in waiting.items())

    def take_results(self):
        self._finalize()
        out, self.results = self.results, []
        self.segment = max(self.capsules, default=-1) + 1
        return out

    # --- monitors -------------------------------------------------------------------------------

    def _outcome(self, c, kind, record):
        c.outcome, c.record = kind, record
        self.pending.pop(c.seq, None)
        self.results.append({"seq": c.seq, kind: record})
        self.activity += 1

    def _orphan(self, kind, record, why):
        """An outcome that belongs to no capsule: an invariant violation, reported with it."""
        self.errors.append(why)
        seq = max(self.capsules, default=0)
        self.results.append({"seq": seq, kind: record})
        self.activity += 1

    async def _responses(self):
        while True:
            frame = await self.resp.recv()
            cycle = self._now()
            cqe = bytes(frame.tdata)[:16]
            user = frame.tuser[-1] if isinstance(frame.tuser, list) else frame.tuser
            user = int(user)
            qpn, invalidate, rkey = user & 0xFFFFFF, user >> 24 & 1, user >> 25
            record = {"qpn": qpn, "cqe": cqe.hex(),
                      "invalidate_rkey": rkey if invalidate else None, "cycle": cycle}
            cid = int.from_bytes(cqe[12:14], "little")
            sqhd = int.from_bytes(cqe[8:10], "little")
            found = [c for c in self.pending.values() if c.qpn == qpn and c.cid == cid]
            if not found:
                self._orphan("response", record, f"cycle {cycle}: a response on QP {qpn} for "
                                                 f"CID {cid:#06x}, which no capsule without "
                                                 f"an outcome has (an unknown CID)")
                continue
            exact = [c for c in found if c.sqhd == sqhd]
            self._outcome(min(exact or found, key=lambda c: c.seq), "response", record)

    async def _software(self):
        while True:
            frame = await self.exc.recv()
            data = bytes(frame.tdata)
            user = frame.tuser[-1] if isinstance(frame.tuser, list) else frame.tuser
            user = int(user)
            qpn = user & 0xFFFFFF
            record = {"qpn": qpn, "capsule": data.hex(), "reason": _reason(user >> 24 & 0xF)}
            found = [c for c in self.pending.values() if c.qpn == qpn and c.data == data]
            if not found:
                self._orphan("to_software", record, f"cycle {self._now()}: a capsule handed "
                                                    f"to software on QP {qpn} that no capsule "
                                                    f"without an outcome matches")
                continue
            self._outcome(min(found, key=lambda c: c.seq), "to_software", record)

    async def _qp_errors(self):
        while True:
            frame = await self.qp_err.recv()
            word = int.from_bytes(bytes(frame.tdata)[:4], "little")
            qpn = word & 0xFFFFFF
            record = {"qpn": qpn, "reason": _reason(word >> 24 & 0xF)}
            if record["reason"] != "rdma_error":
                self.qperr[qpn].append(record)      # the front end's: in order (finalize)
                self.activity += 1
                continue
            found = [c for c in self.pending.values() if c.qpn == qpn]
            failed = [c for c in found if c.rdma_failed == "write"]
            reads = [c for c in found if c.opcode == OP_READ]
            if not (failed or reads):
                self._orphan("qp_error", record, f"cycle {self._now()}: qp_error rdma_error "
                                                 f"on QP {qpn}, which has no Read without an "
                                                 f"outcome")
                continue
            self._outcome(min(failed or reads, key=lambda c: c.seq), "qp_error", record)

    async def _events(self):
        while True:
            if not int(self.dut.irq.value):
                await RisingEdge(self.dut.irq)
            self.events_busy = True
            batch = await self.device.read_events()
            self.events += [(kind.name, obj) for kind, obj in batch.events]
            self.activity += len(batch.events)
            if batch.lost:
                self.errors.append(f"cycle {self._now()}: events were lost (the event queue "
                                   f"overflowed before it was read)")
            self.events_busy = False
            await ClockCycles(self.clk, 1)

    def _rdma_failure(self, op, desc):
        self.activity += 1
        ops = (OP_READ,) if op == "write" else (OP_WRITE, OP_DSM)
        found = [c for c in self.pending.values()
                 if c.qpn == desc["qpn"] and c.opcode in ops and c.rdma_failed is None]
        exact = [c for c in found if c.sgl == (desc["addr"], desc["rkey"])]
        if exact or found:
            min(exact or found, key=lambda c: c.seq).rdma_failed = op

    def _ssd_error(self, ssd, exc):
        self.errors.append(f"cycle {self._now()}: {ssd.name}: {exc}")

    def _pcie_access(self, kind, addr, data, failed):
        if kind == "write":
            self.activity += 1
        ring = next((r for r in self._rings if r[0] <= addr < r[1]), None)
        if ring is None:
            return
        lo, _, queue, what = ring
        if what == "sq" and kind == "write":
            slot, offset = divmod(addr - lo, 64)
            part = self._sqe_parts.setdefault((queue, slot), [bytearray(64), False])
            part[0][offset:offset + len(data)] = data
            part[1] |= failed
            if offset + len(data) >= 64:
                del self._sqe_parts[(queue, slot)]
                self._submitted(queue, bytes(part[0]), part[1])
        elif failed:
            self._pci_failed.setdefault(queue, self._last_submit.get(queue))

    def _submitted(self, queue, sqe, failed):
        found = [c for c in self.pending.values()
                 if c.queue is None and c.opcode == sqe[0] and len(c.data) >= 64
                 and c.data[40:64] == sqe[40:64]]
        if not found:
            return
        c = min(found, key=lambda c: c.seq)
        c.queue = queue
        self._last_submit[queue] = c.seq
        if failed:
            self._pci_failed.setdefault(queue, c.seq)

    # --- tying outcomes and events to capsules ----------------------------------------------

    def _finalize(self):
        """Give the front end's QP errors to the capsules still without an outcome (in
        order, per QP), and each event to the capsule it goes with."""
        for qpn in list(self.qperr):
            records = self.qperr.pop(qpn)
            waiting = sorted((c for c in self.pending.values() if c.qpn == qpn),
                             key=lambda c: c.seq)
            for c, record in zip(waiting, records, strict=False):
                self._outcome(c, "qp_error", record)
            for record in records[len(waiting):]:
                self._orphan("qp_error", record, f"qp_error {record['reason']} on QP {qpn}: "
                                                 f"no capsule of that QP is left without an "
                                                 f"outcome")
        events, self.events = self.events, []
        order = ("UNSUPPORTED_NVMF_OP", "QP_FATAL", "NVME_TIMEOUT", "NVME_PCI_ERR")
        for kind, obj in sorted(events, key=lambda e: order.index(e[0])
                                if e[0] in order else len(order)):
            seq = self._event_owner(kind, obj)
            if seq in self.capsules:
                self.capsules[seq].events.add(kind)
            self.results.append({"seq": seq, "event": {"type": kind, "object": obj}})

    def _event_owner(self, kind, obj):
        mine = [c for seq, c in sorted(self.capsules.items())
                if seq >= self.segment and kind not in c.events]

        def reason(c):
            return c.record["reason"] if c.outcome == "qp_error" else None

        if kind == "UNSUPPORTED_NVMF_OP":
            found = [c for c in mine if c.qpn == obj and c.outcome == "qp_error"
                     and reason(c) not in SERVED_BY_FRONT]
        elif kind == "QP_FATAL":
            found = [c for c in mine if c.qpn == obj and (
                reason(c) in ("oversize", "rdma_error") or c.rdma_failed == "read")]
        elif kind == "NVME_TIMEOUT":
            found = [c for c in mine if c.queue == obj and c.status() == INTERNAL_ERROR]
        elif kind == "NVME_PCI_ERR":
            found = [c for c in mine if c.queue == obj and c.status() == INTERNAL_ERROR
                     and "NVME_TIMEOUT" not in c.events]
            if not found and self._pci_failed.get(obj) is not None:
                return self._pci_failed[obj]
        else:
            found = []
        if found:
            return found[0].seq
        same_qp = [c for c in mine if c.qpn == obj]
        if kind in ("UNSUPPORTED_NVMF_OP", "QP_FATAL") and same_qp:
            return same_qp[-1].seq
        return max(self.capsules, default=0)


def _reason(value):
    try:
        return Reason(value).name.lower()
    except ValueError:
        return f"reason_{value}"


def _write_status(path, status, message=""):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"status": status, "message": message}, f)


@cocotb.test()
async def run_replay(dut):
    """Run the trace of ``NVMF_REPLAY_TRACE`` on the target of ``NVMF_REPLAY_TARGET``."""
    out_path = os.environ["NVMF_REPLAY_OUT"]
    status_path = out_path + ".status"
    seed = int(os.environ.get("NVMF_REPLAY_SEED", "0"))
    try:
        target = load_target(os.environ["NVMF_REPLAY_TARGET"])
        trace = load_trace(os.environ["NVMF_REPLAY_TRACE"], target)
        layout = plan_layout(target)
    except ReplayInputError as exc:
        _write_status(status_path, 2, str(exc))
        raise AssertionError(str(exc)) from None
    with open(out_path, "w", encoding="utf-8") as out:
        def emit(record):
            out.write(json.dumps(record) + "\n")
            out.flush()

        bench = RtlReplay(dut, target, layout, seed)
        try:
            await bench.start()
        except ReplayInputError as exc:
            message = f"the RTL's control plane refused a TARGET the driver model accepts: {exc}"
            _write_status(status_path, 1, message)
            raise AssertionError(message) from None
        try:
            await bridge(run_trace)(bench, trace, emit)
        except InvariantError as exc:
            _write_status(status_path, 1, str(exc))
            raise AssertionError(f"invariant violated: {exc}") from None
        write_counters(await read_counters(bench.device, bench.handles))
    _write_status(status_path, 0)
    dut._log.info("replay done: %d capsules, %d cycles", len(bench.capsules), bench._now())
