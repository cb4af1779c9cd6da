"""What runs a trace: the reference model (:class:`ModelBackend`) in this process, or
the RTL engine in Icarus or Verilator (:class:`RtlBackend`), where the whole trace
runs inside one cocotb run (:mod:`sim.cosim.replay_bench`).
"""

import abc
import asyncio
import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from sim.clocks import ENV as CLOCKS_ENV
from sim.devices.initiator import Initiator
from sim.devices.namespace import SsdNamespace
from sim.devices.pcie import PcieFabric, SparseMemory
from sim.devices.ssd import NvmeSsd
from sim.driver import NvmfDevice, NvmfError
from sim.model.csr import CsrModel, ModelRegs
from sim.model.engine import EngineModel
from sim.replay.contract import (
    BACKENDS,
    EXIT_BACKEND,
    EXIT_INPUT,
    EXIT_INVARIANT,
    EXIT_OK,
    WAIT_BUDGET_CYCLES,
    BackendUnavailable,
)
from sim.replay.control import apply_control
from sim.replay.counters import read_counters
from sim.replay.layout import configure_device, plan_layout


class Backend(abc.ABC):
    """What runs a trace: the reference model, or (later) the RTL in a simulator.

    Every method but :meth:`configure` is called after it; :meth:`deliver` may be
    called many times before :meth:`run_until_idle`. Results are the tagged
    records of :mod:`sim.model.engine` (``{"seq": n, "<kind>": {...}}``); the runner
    sorts them with :func:`sim.model.engine.result_key`.
    """
    name = "?"
    reports_cycles = False      # True: responses carry "cycle" and the summary real cycles

    @abc.abstractmethod
    def configure(self, target, layout):
        """Build the system for ``target`` and configure it through the driver."""

    @abc.abstractmethod
    def write_mem(self, rkey, offset, data):
        """Set initiator memory."""

    @abc.abstractmethod
    def deliver(self, capsule, qpn, seq):
        """Hand one received SEND to the engine (returns once the engine accepted it)."""

    @abc.abstractmethod
    def run_until_idle(self, budget_cycles):
        """Run until nothing is outstanding; InvariantError on a hang or a broken invariant."""

    @abc.abstractmethod
    def take_results(self):
        """Tagged result records since the last call."""

    @abc.abstractmethod
    def dump_mem(self, rkey, offset, length):
        """Initiator memory bytes."""

    @abc.abstractmethod
    def dump_lba(self, ssd, nsid, slba, nlb):
        """An SSD's stored blocks (``nlb`` blocks, a count)."""

    @abc.abstractmethod
    def inject_fault(self, fault):
        """Arm a fault (a checked ``fault`` trace argument dict)."""

    @abc.abstractmethod
    def counters(self):
        """Every subsystem's and mapped namespace's counters (:mod:`sim.replay.counters`)."""

    @abc.abstractmethod
    def run_until_accepted(self, budget_cycles):
        """Run until every capsule delivered so far has passed the engine's namespace
        lookup (the point a control line waits for; ``docs/replay.md``); what is in
        flight stays in flight. InvariantError on a hang."""

    @abc.abstractmethod
    def control(self, kind, args):
        """Make the driver call of a control line (a checked trace argument dict), with
        what is in flight still in flight: None, or the driver's
        :class:`~sim.driver.NvmfError`."""

    @property
    @abc.abstractmethod
    def cycles(self):
        """Cycles simulated so far (the summary's ``cycles``)."""

    def close(self):  # noqa: B027 -- optional hook, nothing to release by default
        """Release simulator resources (waveform file, processes)."""


class ModelBackend(Backend):
    """The transaction-level reference model (:class:`sim.model.engine.EngineModel`).

    ``seed`` draws each SSD command's extra service time (up to half of
    ``latency_cycles``): outcomes of a race-free trace do not depend on it.
    """
    name = "model"
    reports_cycles = False

    def __init__(self, seed=0):
        self.seed = seed
        self.engine = None

    def configure(self, target, layout=None):
        if layout is None:
            layout = plan_layout(target)
        self.target = target
        self.layout = layout
        params = target.params
        self.csr = CsrModel(params)
        self.device = NvmfDevice(ModelRegs(self.csr), params)
        self.handles = asyncio.run(configure_device(self.device, target, layout))
        self.fabric = PcieFabric()
        self.initiator = Initiator([{"rkey": r.rkey, "addr": r.addr, "size": r.size}
                                    for r in target.regions])
        self.ssds = {}
        for spec in target.ssds:
            ssd = NvmeSsd(spec.name, [SsdNamespace(n.nsid, n.lba_data_size, n.nsze)
                                      for n in spec.namespaces],
                          io_queues=spec.io_queues, max_queue_entries=1 << 16,
                          latency_cycles=spec.latency_cycles,
                          jitter_cycles=spec.latency_cycles // 2,
                          rng=random.Random(f"{self.seed}/{spec.name}"))
            ssd.attach(self.fabric, layout.bars[spec.name])
            self.ssds[spec.name] = ssd
        for plan in layout.queues:
            ssd_spec = target.ssd(plan.ssd)
            ring = f"{plan.ssd} queue {plan.queue}"
            self.fabric.map(plan.sq_addr, plan.entries * 64, SparseMemory(), f"{ring} SQ")
            self.fabric.map(plan.cq_addr, plan.entries * 16, SparseMemory(), f"{ring} CQ")
            self.ssds[plan.ssd].create_io_queue(
                plan.queue + 1, sq_addr=plan.sq_addr, sq_entries=plan.entries,
                cq_addr=plan.cq_addr, cq_entries=plan.entries,
                msix_addr=None if ssd_spec.polling else layout.msix_addr,
                msix_data=None if ssd_spec.polling else plan.msix_data)
        self.engine = EngineModel(self.csr, self.fabric, self.initiator, self.ssds)
        for qp in target.qps:
            self.engine.qp_enabled(qp.qpn)

    def write_mem(self, rkey, offset, data):
        self.initiator.write(rkey, offset, data)

    def deliver(self, capsule, qpn, seq):
        self.engine.deliver(capsule, qpn, seq)

    def run_until_idle(self, budget_cycles=WAIT_BUDGET_CYCLES):
        return self.engine.run_until_idle(budget_cycles)

    def run_until_accepted(self, budget_cycles=WAIT_BUDGET_CYCLES):
        """Nothing to run: the model looks a capsule up when it is delivered."""

    def take_results(self):
        return self.engine.take_results()

    def dump_mem(self, rkey, offset, length):
        return self.initiator.read(rkey, offset, length)

    def dump_lba(self, ssd, nsid, slba, nlb):
        return self.ssds[ssd].namespace(nsid).read(slba, nlb)

    def inject_fault(self, fault):
        fault = dict(fault)
        kind = fault.pop("kind")
        if kind == "ssd_timeout" and "delay_cycles" in fault:
            fault["delay"] = fault.pop("delay_cycles")
        if kind == "pci_error":
            ctrl = self.handles["ctrls"][(fault.pop("ssd"), fault.pop("queue"))]
            fault["queue"] = ctrl.index
            fault.pop("delay_cycles", None)     # when the error comes: timing only
        if kind == "unsolicited_cqe":
            self.ssds[fault["ssd"]].post_unsolicited(fault["queue"] + 1, fault["cid"],
                                                     sc=fault["sc"],
                                                     delay=fault.get("delay_cycles", 0))
            return
        self.engine.inject_fault(kind, **fault)

    def counters(self):
        """The counters of every subsystem and mapped namespace (:mod:`sim.replay.counters`)."""
        return asyncio.run(read_counters(self.device, self.handles))

    def control(self, kind, args):
        try:
            asyncio.run(apply_control(self.device, self.handles, self.target, kind, args))
        except NvmfError as exc:
            return exc
        if kind == "qp_set":
            self.engine.qp_enabled(args["qpn"])
        return None

    @property
    def cycles(self):
        return 0        # the model has no clock: docs/replay.md, "Results"


class RtlBackend(Backend):
    """The RTL engine (``nvmf_engine``) in Icarus Verilog or Verilator, with modelled SSDs,
    PCIe fabric and initiator around it.

    A whole trace runs inside one cocotb run (:func:`sim.cosim.harness.run_cocotb`, test
    ``sim.cosim.replay_bench:run_replay``): there the testbench is a
    :class:`Backend` (:class:`sim.cosim.replay_bench.RtlReplay`) that builds the
    bus faces of the device models (:mod:`sim.devices.ssd_bus`, :mod:`~sim.devices.pcie_bus`,
    :mod:`~sim.devices.rdma_bus`) from the TARGET, configures the engine
    with :func:`configure_device` through the driver over AXI4-Lite, and runs
    :func:`run_trace`. :meth:`run` launches it, copies the results out and maps the
    verdict to the exit status; the step-by-step :class:`Backend` methods are not
    available out here (the simulator runs in its own process).
    """
    reports_cycles = True
    TOP = "nvmf_engine"
    MODULE = "sim.cosim.replay_bench"
    TESTCASE = "run_replay"

    def __init__(self, simulator, seed=0, waves=None, clocks=None):
        self.name = simulator
        self.seed = seed
        self.waves = waves
        self.clocks = clocks            # sim.clocks.ClockPeriods, or None: one 4 ns clock

    @staticmethod
    def available(simulator):
        """``(ok, why)``: whether this simulator backend can run here."""
        try:
            from sim.cosim.harness import sim_env
        except ImportError as exc:
            return False, (f"--backend {simulator}: the cocotb test bench cannot be loaded "
                           f"({exc}); use --backend model")
        sim_env()
        exe = "iverilog" if simulator == "icarus" else "verilator"
        if shutil.which(exe) is None:
            return False, (f"--backend {simulator}: {exe} not found on PATH (./bootstrap.sh "
                           f"setup installs it); use --backend model")
        return True, ""

    def _whole_traces_only(self, *args, **kwargs):
        raise NotImplementedError(f"--backend {self.name} runs whole traces in the "
                                  f"simulator: use RtlBackend.run()")

    configure = write_mem = deliver = run_until_idle = take_results = _whole_traces_only
    run_until_accepted = _whole_traces_only
    dump_mem = dump_lba = inject_fault = control = counters = _whole_traces_only

    @property
    def cycles(self):
        return self._whole_traces_only()

    def _build_dir(self, params, waves):
        from sim.cosim.harness import build_dir
        return build_dir(self.name, self.TOP, params, waves)

    def run(self, target, target_path, trace_path, stream, say):
        """Run the trace; write the results to ``stream``; return the exit status."""
        from sim.cosim.harness import run_cocotb

        work = Path(tempfile.mkdtemp(prefix="nvmf-replay-"))
        results = work / "results.jsonl"
        status_file = work / "results.jsonl.status"
        log = work / "sim.log"
        env = {"NVMF_REPLAY_TARGET": str(Path(target_path).resolve()),
               "NVMF_REPLAY_TRACE": str(Path(trace_path).resolve()),
               "NVMF_REPLAY_OUT": str(results), "NVMF_REPLAY_SEED": str(self.seed)}
        params = target.params
        if self.clocks is not None:
            params = self.clocks.params(params)
            env[CLOCKS_ENV] = self.clocks.text()
        failure = None
        try:
            run_cocotb(self.name, self.TOP, params, self.MODULE, testcase=self.TESTCASE,
                       extra_env=env, waves=self.waves is not None, log_file=log,
                       vcd=str(self.waves).lower().endswith(".vcd"))
        except (AssertionError, RuntimeError, SystemExit, OSError,
                subprocess.SubprocessError) as exc:
            failure = exc
        verdict = None
        if status_file.exists():
            verdict = json.loads(status_file.read_text(encoding="utf-8"))
        if verdict is not None and verdict["status"] == EXIT_INPUT:
            shutil.rmtree(work, ignore_errors=True)
            say(verdict["message"])
            return EXIT_INPUT
        if verdict is None and not log.exists():
            shutil.rmtree(work, ignore_errors=True)
            bdir = self._build_dir(params, self.waves is not None)
            say(f"--backend {self.name}: the simulator could not be built or started "
                f"({failure}); see {bdir / 'build.log'}")
            return EXIT_BACKEND
        if results.exists():
            stream.write(results.read_text(encoding="utf-8"))
            stream.flush()
        if self.waves is not None:
            self._copy_waves(params, say)
        if verdict is None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            say(f"invariant violated: the simulation ended without a verdict ({failure}); "
                f"simulator log {log}, ending:\n{tail}")
            return EXIT_INVARIANT
        if verdict["status"] == EXIT_OK and failure is None:
            shutil.rmtree(work, ignore_errors=True)
            return EXIT_OK
        message = verdict["message"] or f"the simulation failed ({failure})"
        say(f"invariant violated: {message} (simulator log: {log})")
        return EXIT_INVARIANT

    def _copy_waves(self, params, say):
        bdir = self._build_dir(params, True)
        # the newest waveform of this build's run directories: this run's
        found = sorted((p for ext in ("*.fst", "*.vcd") for p in (bdir / "run").rglob(ext)),
                       key=lambda p: p.stat().st_mtime)[-1:]
        if not found:
            say(f"--waves {self.waves}: the simulator wrote no waveform in {bdir}")
            return
        try:
            shutil.copyfile(found[0], self.waves)
        except OSError as exc:
            say(f"--waves {self.waves}: cannot write: {exc.strerror}")


def make_backend(name, seed=0, waves=None, clocks=None):
    """The backend called ``name`` (BackendUnavailable when it cannot run here)."""
    if name == "model":
        return ModelBackend(seed)
    if name in ("icarus", "verilator"):
        ok, why = RtlBackend.available(name)
        if not ok:
            raise BackendUnavailable(why)
        return RtlBackend(name, seed, waves, clocks)
    raise BackendUnavailable(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
