"""Benchmarks of the whole engine (``nvmf_engine``) in simulated cycles.

One cocotb test, :func:`run_bench`, configures one target through the driver
(:func:`sim.replay.configure_device` on a TARGET built by :func:`bench_target`)
and runs the scenarios named in ``NVMF_BENCH`` (a JSON object, see
:mod:`sim.tools.bench`) one after the other, each on a quiet engine. A monitor
samples the top-level handshakes every cycle; the report (``NVMF_REPORT``, a
JSON file) holds, per scenario, the cycle counts the rates and latencies come
from. Limits and ratios are worked out by :mod:`sim.tools.bench`, not here.

Scenarios (``{"name": ..., ...}``):

``rate``      ``count`` data-less commands (``op``: ``flush`` or ``write_zeroes``),
              round robin over the small subsystem's QPs, all queued at once on
              the capsule stream (back to back), SSD with no latency.
``data``      ``count`` Reads or Writes (``op``) of ``size`` bytes with a keyed
              SGL, all queued at once, SSD with no latency.
``latency``   one command (``op``: ``flush``, ``read`` or ``write``, 4 KiB) alone:
              capsule last beat to the SQ-tail doorbell write, MSI-X write to
              the response.
``iops``      ``count`` 4 KiB Reads on an SSD limited to one command per
              ``interval`` cycles after a fixed ``latency``.

The SSD completes in service order (``SsdDevice(ordered=True)``); ``NVMF_BENCH_SSD=parallel``
gives the default model instead, in which every command in service moves its data at
once. ``NVMF_BENCH_PROFILE=1`` adds per-scenario FSM state counts (``--profile``).

Every response must succeed; a scenario that stops moving ends the run with a
``{"hung": true}`` result (the engine is wedged; :mod:`sim.tools.bench` runs the rest anew).
"""

import json
import os
import random
import time

import cocotb
from cocotb.simtime import get_sim_time
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

from rtl.formats import Cqe, Opcode, decode
from sim.cosim.clocks import BenchClocks
from sim.cosim.harness import params_from_env
from sim.cosim.regs import AxilRegs
from sim.devices.pcie_bus import PcieFabric
from sim.devices.rdma_bus import RdmaTransport
from sim.devices.ssd_bus import SsdDevice
from sim.devices.staging_bus import attach_staging
from sim.driver import NvmfDevice
from sim.replay import RING_BASE, RING_SPACE, configure_device, parse_target, plan_layout
from sim.traffic.capsules import keyed_sgl, make_sqe

SMALL_QPS = tuple(range(1, 9))       # QPs of the small subsystem (max_io_size 4 KiB)
BIG_QPS = (9, 10)                    # QPs of the big one (max_io_size 128 KiB)
RKEY, REGION_ADDR, REGION_SIZE = 0x1000, 0x1000_0000, 2 << 20
LBA = 4096
STALL_CYCLES = 50_000                # nothing completed for this long: a hang


def bench_target(params, deep=False):
    """The TARGET text of the bench: one SSD with six I/O queues, a subsystem for 4 KiB
    commands (a quarter of the staging memory, at most 512 KiB) on four of them and one
    for 128 KiB commands (the rest) on two; eight QPs on the first, two on the second.
    ``deep``: 256-entry queues and half of the staging for the 4 KiB subsystem, so that
    hundreds of 4 KiB commands can be outstanding (the deep IOPS row)."""
    qps = "".join(f"""
[[qp]]
qpn = {q}
subsystem = "{'small' if q in SMALL_QPS else 'big'}"
sqsize = 128
sqid = 1
""" for q in SMALL_QPS + BIG_QPS)
    small = params.staging_bytes // 2 if deep else min(params.staging_bytes // 4, 64 * 8192)
    entries = 256 if deep else 64
    return f"""format = 1
[engine]
data_width = {params.data_width}
staging_bytes = {params.staging_bytes}
contexts = {params.contexts}

[[ssd]]
name = "ssd0"
io_queues = 6
queue_entries = {entries}
latency_cycles = 0
  [[ssd.namespace]]
  nsid = 1
  lba_data_size = {LBA}
  nsze = {1 << 20}

[[subsystem]]
name = "small"
max_io_size = 4096
staging_bytes = {small}
  [[subsystem.namespace]]
  fe_nsid = 1
  ssd = "ssd0"
  nsid = 1
  queues = [0, 1, 2, 3]

[[subsystem]]
name = "big"
max_io_size = 131072
staging_bytes = {params.staging_bytes - small}
  [[subsystem.namespace]]
  fe_nsid = 1
  ssd = "ssd0"
  nsid = 1
  queues = [4, 5]
{qps}
[[region]]
rkey = {RKEY}
addr = {REGION_ADDR}
size = {REGION_SIZE}
"""


def _core(dut):
    """The single-clock engine inside ``dut`` (itself, or its ``core`` when split)."""
    return dut.core if hasattr(dut, "pcie_clk") else dut


class Stall(Exception):
    """A scenario stopped moving: the engine is wedged, the run ends there."""


class Monitor:
    """Samples the top-level handshakes every cycle (values as they were at the edge),
    each port on its own domain's clock; times are ``clk`` cycles."""

    def __init__(self, dut, pcie_clk=None):
        self.dut = dut
        self.pcie_clk = pcie_clk        # a split-clock engine's PCIe clock, else None
        self.cycle = 0
        self.capsule_first = []     # cycle of each capsule's first beat
        self.capsule_last = []      # cycle of each capsule's last beat
        self.resp = []              # cycle of each response beat
        self.pcie_aw, self.pcie_wlast = [], []      # (cycle, addr), cycle
        self.rdma_wr_beats = []     # cycle of each beat to the initiator (Read data out)
        self.p2p_r_beats = []       # cycle of each beat the SSD reads (Write data out)
        self.p2p_ar_beats = []      # beats of each read burst the SSD asks for
        self.p2p_aw, self.p2p_wlast = [], []
        self._in_capsule = False
        d = dut
        self._cap = (d.s_axis_capsule_tvalid, d.s_axis_capsule_tready, d.s_axis_capsule_tlast)
        self._resp = (d.m_axis_resp_tvalid, d.m_axis_resp_tready)
        self._rdma_wr = (d.m_axis_rdma_wr_tvalid, d.m_axis_rdma_wr_tready, self.rdma_wr_beats)
        self._p2p_r = (d.s_axi_p2p_rvalid, d.s_axi_p2p_rready, self.p2p_r_beats)
        self._ar = (d.s_axi_p2p_arvalid, d.s_axi_p2p_arready, d.s_axi_p2p_arlen)
        self._axi = [(getattr(d, f"{p}_awvalid"), getattr(d, f"{p}_awready"),
                      getattr(d, f"{p}_awaddr"), getattr(d, f"{p}_wvalid"),
                      getattr(d, f"{p}_wready"), getattr(d, f"{p}_wlast"), aw, wl)
                     for p, aw, wl in (("m_axi_pcie", self.pcie_aw, self.pcie_wlast),
                                       ("s_axi_p2p", self.p2p_aw, self.p2p_wlast))]
        cocotb.start_soon(self._run())

    async def _run(self):
        """One loop on ``clk``; a second on ``pcie_clk`` for the PCIe-side ports of a
        split-clock engine, stamped with the core cycles counted so far."""
        pcie_clk = self.pcie_clk
        if pcie_clk is not None:
            cocotb.start_soon(self._run_pcie(pcie_clk))
        clk = self.dut.clk
        while True:
            await RisingEdge(clk)
            self.cycle += 1
            self._sample_core(self.cycle)
            if pcie_clk is None:
                self._sample_pcie(self.cycle)

    async def _run_pcie(self, pcie_clk):
        while True:
            await RisingEdge(pcie_clk)
            self._sample_pcie(self.cycle)

    def _sample_core(self, now):
        cv, cr, cl = self._cap
        rv, rr = self._resp
        if int(cv.value) and int(cr.value):
            if not self._in_capsule:
                self.capsule_first.append(now)
                self._in_capsule = True
            if int(cl.value):
                self.capsule_last.append(now)
                self._in_capsule = False
        if int(rv.value) and int(rr.value):
            self.resp.append(now)
        valid, ready, beats = self._rdma_wr
        if int(valid.value) and int(ready.value):
            beats.append(now)

    def _sample_pcie(self, now):
        valid, ready, beats = self._p2p_r
        if int(valid.value) and int(ready.value):
            beats.append(now)
        if int(self._ar[0].value) and int(self._ar[1].value):
            self.p2p_ar_beats.append(int(self._ar[2].value) + 1)
        for awv, awr, awa, wv, wr, wl, aws, wls in self._axi:
            if int(awv.value) and int(awr.value):
                aws.append((now, int(awa.value)))
            if int(wv.value) and int(wr.value) and int(wl.value):
                wls.append(now)

    def data_reads(self, beat0, burst0):
        """Cycles of the SSD's read beats from ``beat0`` / burst ``burst0`` on, without the
        one-beat bursts (PRP list entries); bursts are answered in order."""
        out, i = [], beat0
        for n in self.p2p_ar_beats[burst0:]:
            if n > 1:
                out += self.p2p_r_beats[i:i + n]
            i += n
        return out

    def writes(self, which, addrs):
        """Cycles at which a write to one of ``addrs`` had both its AW and its last W
        handshake (the k-th last W beat belongs to the k-th AW)."""
        aws, wls = (self.pcie_aw, self.pcie_wlast) if which == "pcie" else (
            self.p2p_aw, self.p2p_wlast)
        return [max(a, w) for (a, addr), w in zip(aws, wls, strict=False) if addr in addrs]


# FSM state registers of the serialising units, by hierarchy (Verilator: --public-flat-rw)
PROFILE_FSMS = (("backend", "admit_state"), ("backend", "submit_state"),
                ("backend", "retire_state"), ("sq_writer", "sq_state"),
                ("cq_handler", "cq_state"), ("staging", "axi_write_state"))


# internal streams of the command path, upstream first: (unit, stream name)
PROFILE_STREAMS = (("parser", "i_capsule"), ("parser", "o_cmd"), ("front", "ns_req"),
                   ("front", "ns_resp"), ("parser", "i_verdict"), ("front", "o_backend"),
                   ("sq_writer", "i_sqe"))


class Profiler:
    """Counts the cycles each FSM of :data:`PROFILE_FSMS` spends in each state (by
    encoding; :func:`sim.tools.bench.fsm_states` names them) and each stream of
    :data:`PROFILE_STREAMS` spends moving (``go``), stalled (valid, not ready:
    ``stall``) or empty (``idle``) while ``on`` is set."""

    def __init__(self, dut):
        self.handles = {}
        for unit, name in PROFILE_FSMS:
            try:            # an FSM the RTL no longer has is left out
                self.handles[f"{unit}.{name}"] = getattr(getattr(_core(dut), unit), name)
            except AttributeError:
                continue
        self.streams = {}
        for unit, name in PROFILE_STREAMS:
            try:
                block = getattr(_core(dut), unit)
                self.streams[f"{unit}.{name}"] = (getattr(block, f"{name}__valid"),
                                                  getattr(block, f"{name}__ready"))
            except AttributeError:
                continue
        self.counts = {}
        self.on = False
        self.dut = dut
        cocotb.start_soon(self._run())

    def take(self):
        out, self.counts = self.counts, {}
        return out

    async def _run(self):
        items = list(self.handles.items())
        while True:
            await RisingEdge(self.dut.clk)
            if not self.on:
                continue
            for key, handle in items:
                per = self.counts.setdefault(key, {})
                value = str(int(handle.value))
                per[value] = per.get(value, 0) + 1
            for key, (valid, ready) in self.streams.items():
                per = self.counts.setdefault(key, {})
                state = ("go" if int(ready.value) else "stall") if int(valid.value) else "idle"
                per[state] = per.get(state, 0) + 1


# internal handshakes a lone command passes, in order (valid, ready; None: always ready)
TRACE_POINTS = (
    ("parser_cmd", "parser", "o_cmd__valid", "o_cmd__ready"),
    ("backend_admit", "backend", "i_cmd__valid", "i_cmd__ready"),
    ("sq_writer_sqe", "sq_writer", "i_sqe__valid", "i_sqe__ready"),
    ("cq_msix", "cq_handler", "i_msix__valid", None),
    ("cq_cqe", "cq_handler", "o_cqe__valid", "o_cqe__ready"),
    ("backend_resp", "backend", "o_resp__valid", "o_resp__ready"),
)


class Tracer:
    """The cycle of every handshake of :data:`TRACE_POINTS` while ``on`` (the signals a
    simulator does not expose are left out)."""

    def __init__(self, dut, core_ns=4):
        self.dut = dut
        self.core_ps = round(core_ns * 1000)
        self.points = []
        for name, unit, valid, ready in TRACE_POINTS:
            try:
                block = getattr(_core(dut), unit)
                handles = (getattr(block, valid), getattr(block, ready) if ready else None)
            except AttributeError:
                continue
            self.points.append((name, *handles))
        self.events = {}
        self.on = False
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.dut.clk)
            if not self.on:
                continue
            for name, valid, ready in self.points:
                if int(valid.value) and (ready is None or int(ready.value)):
                    self.events.setdefault(name, []).append(self.now())

    def now(self):
        return int(get_sim_time("ps")) // self.core_ps


class Bench:
    def __init__(self, dut):
        self.dut = dut
        self.params = params_from_env()
        self.clocks = BenchClocks(dut)
        self.clocks.start()
        clk, rst = self.clocks.core
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_csr"), *self.clocks.csr)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_capsule"), clk, rst)
        self.resp = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_resp"), clk, rst)
        self.exc = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_exc"), clk, rst)
        self.qp_err = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_qp_err"), clk, rst)
        self.fabric = PcieFabric(dut, *self.clocks.pcie, host_base=RING_BASE,
                                 host_size=RING_SPACE)
        self.p2p = AxiMaster(AxiBus.from_prefix(dut, "s_axi_p2p"), *self.clocks.pcie)
        # external staging: a RAM on m_axi_stg that the SSD reaches directly
        self.staging = attach_staging(dut, clk, rst, self.params)
        dma = self.p2p
        if self.staging is not None:
            dma = self.staging.dma(self.p2p)
            self.staging.now = lambda: self.monitor.cycle
        self.rdma = RdmaTransport(dut, clk, rst)
        for model in (self.source, self.resp, self.exc, self.qp_err, self.axil.write_if,
                      self.axil.read_if, self.p2p.write_if, self.p2p.read_if):
            model.log.setLevel("WARNING")
        spec = json.loads(os.environ.get("NVMF_BENCH", "{}"))
        self.target = parse_target(bench_target(self.params, spec.get("deep", False)), "bench")
        self.target.params = self.params
        self.layout = plan_layout(self.target)
        spec = self.target.ssds[0]
        self.ssd = SsdDevice(self, "ssd0", self.fabric, 0, dma, self.layout.msix_addr,
                             latency=0, bar=self.layout.bars["ssd0"],
                             ordered=os.environ.get("NVMF_BENCH_SSD", "ordered") == "ordered")
        for ns in spec.namespaces:
            self.ssd.add_namespace(ns.nsid, ns.lba_data_size, ns.nsze)
        for plan in self.layout.queues:
            self.ssd.create_io_queue(plan.queue + 1, plan.sq_addr, plan.entries, plan.cq_addr,
                                     plan.entries, plan.msix_data)
        self.sq_doorbells = {q.sq_db_addr for q in self.layout.queues}
        self.rdma.add_region(RKEY, REGION_ADDR, REGION_SIZE)
        self.cid = 0
        self.monitor = None

    async def start(self):
        await self.clocks.reset()
        self.device = NvmfDevice(AxilRegs(self.axil), self.params)
        await configure_device(self.device, self.target, self.layout)
        self.monitor = Monitor(self.dut, self.clocks.pcie[0] if self.clocks.split else None)
        self.profiler = Profiler(self.dut) if os.environ.get("NVMF_BENCH_PROFILE") else None
        self.tracer = Tracer(self.dut, self.clocks.core_ns)

    @property
    def now(self):
        return self.monitor.cycle

    def capsule(self, op, index, size=LBA, big=False, rng=None):
        """A capsule of ``op`` for command ``index``: (bytes, qpn); with ``rng``, at a
        random block (else the blocks follow each other)."""
        self.cid = (self.cid + 1) & 0xFFFF
        qps = BIG_QPS if big else SMALL_QPS
        qpn = qps[index % len(qps)]
        nlb = size // LBA - 1
        slba = (index * (size // LBA)) % (1 << 19)
        if rng is not None:
            slba = rng.randrange(0, 1 << 19, size // LBA)
        if op == "flush":
            return make_sqe(Opcode.FLUSH, self.cid, 1), qpn
        if op == "write_zeroes":
            return make_sqe(Opcode.WRITE_ZEROES, self.cid, 1, slba=slba, nlb=nlb), qpn
        addr = REGION_ADDR + (index * size) % REGION_SIZE
        opcode = Opcode.READ if op == "read" else Opcode.WRITE
        return make_sqe(opcode, self.cid, 1, slba=slba, nlb=nlb,
                        sgl=keyed_sgl(addr, size, RKEY)), qpn

    async def run(self, capsules):
        """Queue ``capsules`` back to back; wait for every response and a quiet engine.
        Returns (index of the first capsule, index of the first response) in the
        monitor's lists."""
        mon = self.monitor
        cap0, resp0 = len(mon.capsule_first), len(mon.resp)
        if self.profiler is not None:
            self.profiler.take()
            self.profiler.on = True
        for data, qpn in capsules:
            self.source.send_nowait(AxiStreamFrame(data, tuser=qpn))
        want = resp0 + len(capsules)
        seen, since = len(mon.resp), self.now
        self.peak_in_flight = 0
        while len(mon.resp) < want:
            await ClockCycles(self.dut.clk, 16)
            self.peak_in_flight = max(self.peak_in_flight, self.ssd.busy)
            if len(mon.resp) != seen:
                seen, since = len(mon.resp), self.now
            elif self.now - since > STALL_CYCLES:
                raise Stall(f"{len(mon.resp) - resp0} of {len(capsules)} responses, then "
                            f"nothing for {STALL_CYCLES} cycles (cycle {self.now})")
        if self.profiler is not None:
            self.profiler.on = False
        while not (self.ssd.idle and self.rdma.quiet and self.source.idle()):
            await ClockCycles(self.dut.clk, 16)
        await ClockCycles(self.dut.clk, 64)          # trailing CQ doorbells
        while not self.resp.empty():
            cqe = decode(Cqe, bytes(self.resp.recv_nowait().tdata))
            status = cqe["status"]
            assert status["sc"] == 0 and status["sct"] == 0, f"response {cqe}"
        assert self.exc.empty() and self.qp_err.empty(), "a capsule left the offload path"
        return cap0, resp0

    @staticmethod
    def slope(times, scale=1):
        """Events a cycle after the first quarter of them (the warm-up left out): from
        the event at index ``len // 4`` to the last one; times ``scale``."""
        k0, k1 = len(times) // 4, len(times) - 1
        span = times[k1] - times[k0] if k1 > k0 else 0
        return {"from": k0, "to": k1, "cycles": span,
                "per_cycle": (k1 - k0) * scale / span if span else None}

    def steady(self, resp0, count, beats=None, size=0):
        """Commands a cycle: the slope of the responses. Bytes a cycle: the slope of
        the data beats at the end of the data path (``beats``, cycle of each)."""
        out = {"responses": self.slope(self.monitor.resp[resp0:resp0 + count])}
        out["commands_per_cycle"] = out["responses"]["per_cycle"]
        if beats is not None:
            # responses can bunch (retirement serves CQEs before finished RDMA WRITEs):
            # with data, a command counts when its bytes have left the data path
            out["beats"] = self.slope(beats, self.params.beat_bytes)
            out["bytes_per_cycle"] = out["beats"]["per_cycle"]
            out["commands_per_cycle"] = out["bytes_per_cycle"] / size if size else None
        return out

    async def scenario_throughput(self, sc, ops):
        count = sc["count"]
        size = sc.get("size", 0)
        big = size > 4096
        rng = random.Random(sc["seed"]) if "seed" in sc else None
        capsules = [self.capsule(ops, i, size or LBA, big, rng) for i in range(count)]
        mon = self.monitor
        wr0, rd0, ar0 = len(mon.rdma_wr_beats), len(mon.p2p_r_beats), len(mon.p2p_ar_beats)
        stg0 = len(self.staging.beats["read"]) if self.staging is not None else 0
        cap0, resp0 = await self.run(capsules)
        first = mon.capsule_first[cap0]
        last = mon.resp[resp0 + count - 1]
        per = size if ops in ("read", "write") else 0
        # a Write's data path ends where the SSD reads staging: through s_axi_p2p (on-chip
        # staging) or straight from the external memory
        ssd_reads = (mon.data_reads(rd0, ar0) if self.staging is None
                     else self.staging.beats["read"][stg0:])
        beats = {"read": mon.rdma_wr_beats[wr0:], "write": ssd_reads}.get(ops)
        if beats is not None:
            want = count * -(-per // self.params.beat_bytes)
            assert len(beats) == want, f"{len(beats)} data beats out, {want} expected"
        return {"commands": count, "size": per, "first_beat": first, "last_response": last,
                "peak_in_flight": self.peak_in_flight,
                "overall_cycles": last - first + 1,
                "overall_bytes_per_cycle": count * per / (last - first + 1),
                "steady": self.steady(resp0, count, beats, per)}

    async def scenario_latency(self, sc):
        op = sc["op"]
        mon = self.monitor
        p2p0, pcie0 = len(mon.p2p_wlast), len(mon.pcie_wlast)
        self.tracer.events = {}
        self.tracer.on = True
        cap0, resp0 = await self.run([self.capsule(op, 0)])
        self.tracer.on = False
        end = mon.capsule_last[cap0]
        # the internal handshakes, in cycles after the capsule's last beat (the tracer's
        # clock: simulated time; the monitor's cycle count started later)
        offset = self.tracer.now() - self.now
        trace = {name: [t - offset - end for t in times]
                 for name, times in self.tracer.events.items()}
        dbs = [t for t in mon.writes("pcie", self.sq_doorbells) if t >= end]
        msix = [t for t in mon.writes("p2p", {self.layout.msix_addr}) if t >= end]
        response = mon.resp[resp0]
        assert dbs and msix, f"no doorbell ({dbs}) or MSI-X ({msix}) seen"
        return {"op": op, "capsule_last": end, "sq_doorbell": dbs[0], "msix": msix[0],
                "response": response, "capsule_to_sq_doorbell": dbs[0] - end,
                "msix_to_response": response - msix[0],
                "capsule_to_response": response - end,
                "trace": trace,
                "pcie_aw": [(t - end, a) for t, a in mon.pcie_aw if t >= end][:8],
                "pcie_wlast": [t - end for t in mon.pcie_wlast if t >= end][:8],
                "p2p_aw": [(t - end, a) for t, a in mon.p2p_aw if t >= end][:8],
                "p2p_wlast": [t - end for t in mon.p2p_wlast if t >= end][:8],
                "pcie_writes": len(mon.pcie_wlast) - pcie0,
                "p2p_writes": len(mon.p2p_wlast) - p2p0}

    async def scenario_iops(self, sc):
        self.ssd.interval, self.ssd.latency = sc["interval"], sc["latency"]
        self.ssd._next_start = 0.0
        try:
            return dict(await self.scenario_throughput(dict(sc, size=LBA), "read"),
                        interval=sc["interval"], latency=sc["latency"])
        finally:
            self.ssd.interval, self.ssd.latency = None, 0


def _fsm_states(dut):
    """Where each FSM of :data:`PROFILE_FSMS` the RTL has sits now."""
    out = {}
    for unit, name in PROFILE_FSMS:
        try:
            out[f"{unit}.{name}"] = int(getattr(getattr(dut, unit), name).value)
        except AttributeError:
            continue
    return out


@cocotb.test()
async def run_bench(dut):
    """Run the scenarios of ``NVMF_BENCH`` and write their cycle counts to ``NVMF_REPORT``."""
    spec = json.loads(os.environ["NVMF_BENCH"])
    bench = Bench(dut)
    await bench.start()
    results = []
    wall0, cycle0 = time.perf_counter(), bench.now
    for sc in spec["scenarios"]:
        kind = sc["kind"]
        try:
            if kind == "rate":
                out = await bench.scenario_throughput(sc, sc.get("op", "flush"))
            elif kind == "data":
                out = await bench.scenario_throughput(sc, sc["op"])
            elif kind == "latency":
                out = await bench.scenario_latency(sc)
            elif kind == "iops":
                out = await bench.scenario_iops(sc)
            else:
                raise ValueError(f"unknown scenario kind {kind!r}")
        except Stall as exc:
            # the engine is wedged: report the scenario as hung (with where each unit's
            # FSM sits) and end the run; sim/tools/bench.py runs the rest on a fresh engine
            out = {"hung": True, "message": str(exc), "states": _fsm_states(dut)}
            dut._log.warning("bench %s: hung: %s", sc, out)
            results.append(dict(sc, result=out))
            break
        if bench.profiler is not None:
            out["profile"] = bench.profiler.take()
        results.append(dict(sc, result=out))
        dut._log.info("bench %s: %s", sc, out)
    wall = time.perf_counter() - wall0
    report = {"data_width": bench.params.data_width, "scenarios": results,
              "cycles": bench.now - cycle0, "wall_seconds": wall,
              "cycles_per_second": (bench.now - cycle0) / wall if wall else None}
    with open(os.environ["NVMF_REPORT"], "w") as f:
        json.dump(report, f)
