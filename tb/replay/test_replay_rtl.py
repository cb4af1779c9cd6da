"""`nvmf-offload replay` on the RTL (``--backend icarus|verilator``, docs/replay.md).

Each test runs the command line (:func:`sim.cli.main`) on a simulator and on the
model, and compares the results line by line with the ``cycle`` fields and the
summary's ``cycles`` left out: they must be identical. The example target is
built once per simulator and pytest process (``tb/conftest.py`` keeps the tests of
one simulator on one xdist worker); writing its Verilog and the Verilator build
are most of the time.
"""

import json
import os
from pathlib import Path

import pytest

from rtl.params import load_params
from sim import cli
from sim.replay import EXIT_INVARIANT, EXIT_OK, parse_target
from sim.replay.counters import ENV as COUNTERS_ENV
from sim.traffic import tracegen
from tb.replay import write_mem_order

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "replay"
TARGET = EXAMPLES / "target.toml"


def _replay(tmp_path, trace, backend, *extra, target=TARGET, counters=None):
    """Exit status and results; with ``counters`` (a dict), the engine's counters at the
    end go in ``counters[backend]`` (sim/replay/counters.py)."""
    out = tmp_path / f"{Path(trace).stem}.{backend}.jsonl"
    where = tmp_path / f"{Path(trace).stem}.{backend}.counters.json"
    saved = os.environ.get(COUNTERS_ENV)
    os.environ[COUNTERS_ENV] = str(where) if counters is not None else ""
    try:
        status = cli.main(["replay", str(target), str(trace), "--backend", backend,
                           "--out", str(out), *extra])
    finally:
        if saved is None:
            os.environ.pop(COUNTERS_ENV)
        else:
            os.environ[COUNTERS_ENV] = saved
    if counters is not None and where.exists():
        counters[backend] = json.loads(where.read_text())
    lines = out.read_text().splitlines() if out.exists() else []
    return status, [json.loads(line) for line in lines]


def _timeless(results):
    out = []
    for record in results:
        record = json.loads(json.dumps(record))
        if "response" in record:
            record["response"].pop("cycle", None)
        if "summary" in record:
            record["summary"]["cycles"] = 0
        out.append(record)
    return out


def _check_cycles(results):
    """Every response has a cycle; the summary's cycles cover them all."""
    cycles = [r["response"]["cycle"] for r in results if "response" in r]
    assert all(isinstance(c, int) and c > 0 for c in cycles), cycles
    total = results[-1]["summary"]["cycles"]
    assert total >= max(cycles, default=0) > 0 or not cycles


def _counter_differences(rtl, model):
    """``{(subsystem, fe_nsid or None, counter): (rtl, model)}`` where they differ."""
    out = {}
    for sub in sorted(set(rtl) | set(model)):
        a, b = rtl.get(sub, {}), model.get(sub, {})
        tables = [(None, a.get("counters", {}), b.get("counters", {}))]
        for fe in sorted(set(a.get("namespaces", {})) | set(b.get("namespaces", {}))):
            tables.append((fe, a.get("namespaces", {}).get(fe), b.get("namespaces", {}).get(fe)))
        for fe, x, y in tables:
            if x is None or y is None:
                out[(sub, fe, "mapped")] = (x is not None, y is not None)
                continue
            for name in sorted(set(x) | set(y)):
                if x.get(name) != y.get(name):
                    out[(sub, fe, name)] = (x.get(name), y.get(name))
    return out


def _same_as_model(tmp_path, trace, sim, *extra, target=TARGET, counters=None):
    """The RTL's results equal the model's (cycles aside), and so do the engine's
    counters of every subsystem and mapped namespace, read through the driver at the
    end (left in ``counters[backend]`` when a dict is given)."""
    counters = {} if counters is None else counters
    status, rtl = _replay(tmp_path, trace, sim, *extra, target=target, counters=counters)
    model_status, model = _replay(tmp_path, trace, "model", target=target, counters=counters)
    assert (status, model_status) == (EXIT_OK, EXIT_OK)
    assert set(counters) == {sim, "model"}, "a backend wrote no counters"
    gap = _counter_differences(counters[sim], counters["model"])
    assert not gap, (
        f"{Path(trace).name}: counters (RTL, model) differ: {gap}")
    assert all("cycle" not in r.get("response", {}) for r in model)
    _check_cycles(rtl)
    got, want = _timeless(rtl), model
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        assert a == b, f"{Path(trace).name}: result line {i + 1} differs:\nRTL   {a}\nmodel {b}"
    assert len(got) == len(want)
    return rtl


@pytest.mark.cocotb
@pytest.mark.parametrize("sim, trace", [
    (sim, trace) for sim in ("icarus", "verilator")
    for trace in ("smoke", "sqhd", "errors", "basic", "faults", "control")
])
def test_example_matches_the_model(tmp_path, sim, trace):
    _same_as_model(tmp_path, EXAMPLES / f"{trace}.jsonl", sim, "--seed", "3")


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", ["verilator"])
def test_a_hang_is_exit_status_1_with_the_results_so_far(tmp_path, capsys, sim):
    """A command the SSD never completes on a queue without cmd_timeout: both backends
    stop at that barrier with exit status 1 and the same partial results."""
    smoke = (EXAMPLES / "smoke.jsonl").read_text().splitlines()
    trace = tmp_path / "hang.jsonl"
    fault = {"fault": {"kind": "ssd_timeout", "ssd": "ssd0", "nsid": 1, "mode": "never"}}
    trace.write_text("\n".join(smoke[:4] + [json.dumps(fault)] + smoke[7:8]) + "\n")
    status, rtl = _replay(tmp_path, trace, sim)
    rtl_err = capsys.readouterr().err
    model_status, model = _replay(tmp_path, trace, "model")
    model_err = capsys.readouterr().err
    assert (status, model_status) == (EXIT_INVARIANT, EXIT_INVARIANT)
    assert "invariant violated" in rtl_err and "hang" in rtl_err, rtl_err
    assert "hang" in model_err
    assert _timeless(rtl) == model
    assert not any("summary" in r for r in rtl)


def _generated(tmp_path, name, target, lines):
    target_path, trace_path = tmp_path / f"{name}.toml", tmp_path / f"{name}.jsonl"
    target_path.write_text(target)
    trace_path.write_text("\n".join(lines) + "\n")
    return target_path, trace_path


# A random workload of sim/traffic/tracegen.py per simulator: Verilator 150 capsules in bursts
# of up to 64, every size up to max_io_size (128 KiB in both subsystems with seed 12, whose ssd1
# is polled; three commands of 128 KiB); Icarus a short one (it is ~100x slower).
RANDOM_WORKLOADS = {
    "verilator": {"seed": 12, "capsules": 150, "max_qd": 64},
    "icarus": {"seed": 5, "capsules": 24, "max_qd": 12, "max_blocks": 16},
}


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_random_workload_matches_the_model_and_the_shadow(tmp_path, monkeypatch, sim):
    """Same results as the model, and every capsule's outcome and every byte read or
    stored as the generator's own shadow says (tracegen.check); the external staging
    memory is slow to take writes in (see the large-command test)."""
    monkeypatch.setenv("NVMF_STG_LATE_WRITES", "300")
    kwargs = dict(RANDOM_WORKLOADS[sim])
    target, lines, exp = tracegen.generate(kwargs.pop("seed"), **kwargs)
    target_path, trace_path = _generated(tmp_path, "random", target, lines)
    rtl = _same_as_model(tmp_path, trace_path, sim, "--seed", "5", target=target_path)
    problems = tracegen.check(rtl, exp)
    assert not problems, "\n".join(problems[:20])


# Every other named configuration of configs/ (default is the workloads above): the whole
# engine built at it and a short random workload, on both simulators.
CONFIG_WORKLOADS = {
    "verilator": {"seed": 21, "capsules": 60, "max_qd": 16},
    "icarus": {"seed": 22, "capsules": 16, "max_qd": 6, "max_blocks": 4},
}


# not named configurations: on-chip staging at 512 bits (the two staging modes at both
# widths the FPGA flow builds), and 64 MiB of external staging (two 32 MiB windows; small
# has 64 KiB): (TOML, each subsystem's window)
UNNAMED = {"onchip512": ("[engine]\ndata_width = 512\nstaging_mode = \"onchip\"\n", None),
           "staging64m": ("[engine]\nstaging_bytes = 67108864\n", 32 << 20)}


# Named shapes built with another test's staging size, so that both run on one engine
# build (each is one to three minutes of a Verilator CI run): wide512 with the
# large-command test's 8 MiB (two 4 MiB windows, LARGE_WINDOW below). The workload keeps
# its own 512 KiB windows, which its commands fill.
LARGE_WINDOW = 4 << 20
SHARED_STAGING = {"wide512": 2 * LARGE_WINDOW}


# Which shapes each simulator runs: all of them on Icarus; on Verilator, whose build of each
# shape takes one to three minutes of the CI run, the named ones, and the two unnamed shapes too
# with NVMF_REPLAY_ALL_SHAPES=1 (docs/verification.md)
SHAPES = ["small", "wide512", "onchip", "onchip512", "staging64m"]
VERILATOR_SHAPES = SHAPES if os.environ.get("NVMF_REPLAY_ALL_SHAPES") else [
    c for c in SHAPES if c not in UNNAMED]


@pytest.mark.cocotb
@pytest.mark.parametrize("sim, config", [("icarus", c) for c in SHAPES]
                         + [("verilator", c) for c in VERILATOR_SHAPES])
def test_named_configuration_runs_a_random_workload(tmp_path, sim, config):
    """The configuration's [engine] table in the TARGET (a smaller shape where its tables
    are small): the model's results and counters, and the generator's own shadow."""
    kwargs = dict(CONFIG_WORKLOADS[sim])
    name, text = config, None
    if config in SHARED_STAGING:
        engine = dict(vars(load_params(config)), staging_bytes=SHARED_STAGING[config])
        text = "[engine]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in engine.items())
    if config in UNNAMED:
        text, window = UNNAMED[config]
        if window:
            kwargs["staging"] = window
    if text is not None:
        path = tmp_path / "configs" / f"{name}.toml"
        path.parent.mkdir()
        path.write_text(text)
        config = str(path)
    target, lines, exp = tracegen.generate(kwargs.pop("seed"), config=config, **kwargs)
    params = load_params(config)
    assert parse_target(target).params.data_width == params.data_width
    if name in SHARED_STAGING:            # the build shared with the large-command test
        assert parse_target(target).params.staging_bytes == SHARED_STAGING[name]
    target_path, trace_path = _generated(tmp_path, Path(config).stem, target, lines)
    rtl = _same_as_model(tmp_path, trace_path, sim, "--seed", "6", target=target_path)
    problems = tracegen.check(rtl, exp)
    assert not problems, "\n".join(problems[:20])


# The engine built with three clock domains (core, PCIe, CSR) at unrelated periods, a
# different ratio on each simulator: the PCIe side slower than the core on Verilator,
# faster on Icarus; the CSR bus slowest on both.
CLOCK_WORKLOADS = {
    "verilator": ({"seed": 31, "capsules": 80, "max_qd": 16}, "4,5.3,13"),
    "icarus": ({"seed": 32, "capsules": 16, "max_qd": 6, "max_blocks": 4}, "6.4,3.9,11.1"),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_three_unrelated_clocks_match_the_model_and_the_shadow(tmp_path, sim):
    """``--clocks CORE,PCIE,CSR``: every AXI port crosses to its own clock; the results,
    the counters and every byte are the model's (cycles are the core clock's)."""
    kwargs, clocks = CLOCK_WORKLOADS[sim]
    kwargs = dict(kwargs)
    target, lines, exp = tracegen.generate(kwargs.pop("seed"), **kwargs)
    target_path, trace_path = _generated(tmp_path, "clocks", target, lines)
    rtl = _same_as_model(tmp_path, trace_path, sim, "--seed", "8", "--clocks", clocks,
                         target=target_path)
    problems = tracegen.check(rtl, exp)
    assert not problems, "\n".join(problems[:20])


# Control lines in every burst (unmap, map back, qp_set, refusals), small transfers.
CONTROL_WORKLOADS = {
    "verilator": {"seed": 3, "capsules": 60, "max_qd": 8, "max_blocks": 8},
    "icarus": {"seed": 2, "capsules": 30, "max_qd": 6, "max_blocks": 4},
}


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_control_lines_among_capsules_match_the_model_and_the_shadow(tmp_path, sim):
    """A random workload with a control line in every burst: the model's results (the
    control_error lines included) and the generator's own expectations."""
    kwargs = dict(CONTROL_WORKLOADS[sim])
    target, lines, exp = tracegen.generate(kwargs.pop("seed"), control_rate=1.0, **kwargs)
    assert exp.control_errors and any('"unmap"' in line for line in lines)
    target_path, trace_path = _generated(tmp_path, "control", target, lines)
    rtl = _same_as_model(tmp_path, trace_path, sim, "--seed", "4", target=target_path)
    problems = tracegen.check(rtl, exp)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_control_lines_under_load_match_the_model_and_the_generator(tmp_path, sim):
    """tracegen.control_under_load: unmap (with the command fence), map into the same
    namespace slot, qp_set on and off, and destroy_ctrl, each made while the commands
    before it are at the SSD. Results and counters equal the model's, every capsule gets
    what the generator says, and the namespace mapped again counts only what came after
    its map (not the responses of the in-flight commands from before the unmap)."""
    target, lines, exp = tracegen.control_under_load()
    target_path, trace_path = _generated(tmp_path, "under_load", target, lines)
    counters = {}
    rtl = _same_as_model(tmp_path, trace_path, sim, "--seed", "3", target=target_path,
                         counters=counters)
    problems = tracegen.check(rtl, exp) + tracegen.check_counters(counters[sim], exp)
    assert not problems, "\n".join(problems)


# Large commands outstanding together: (config, Writes) per simulator
LARGE_WORKLOADS = {"verilator": [("wide512", 16)], "icarus": [("wide512", 16)]}


@pytest.mark.cocotb
@pytest.mark.parametrize("sim, config, count", [
    (sim, config, count) for sim, runs in LARGE_WORKLOADS.items() for config, count in runs])
def test_large_commands_outstanding_together_return_every_byte(tmp_path, monkeypatch, sim,
                                                              config, count):
    """tracegen.large_outstanding: max_io_size Writes (128 KiB: 33 staging pages each) on
    four QPs of two subsystems, all in flight together in 4 MiB of external staging per
    subsystem (31 of 128 KiB each), then Reads of the same blocks: the model's results
    and counters, and every byte as the generator's shadow says. The staging memory is
    slow to take writes in (NVMF_STG_LATE_WRITES): a doorbell rung before its data's
    write response would let the SSD read stale bytes."""
    monkeypatch.setenv("NVMF_STG_LATE_WRITES", "300")
    target, lines, exp = tracegen.large_outstanding(2, config=config, count=count,
                                                    staging=LARGE_WINDOW)
    target_path, trace_path = _generated(tmp_path, f"large_{config}", target, lines)
    rtl = _same_as_model(tmp_path, trace_path, sim, "--seed", "2", target=target_path)
    problems = tracegen.check(rtl, exp)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.cocotb
@pytest.mark.parametrize("config", ["default", "small", "wide512"])
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_dsm_ranges_past_the_namespace_are_refused_at_every_width(tmp_path, sim, config):
    """tracegen.dsm_range_checks at 128, 64 and 512 bits: a list with a range past nsze
    (first, middle or last, or wrapping 64 bits) gets 0x80 from the engine with the SSD
    untouched, whole lists in range are executed, bytes after the list are not ranges;
    the model's results and counters, and the generator's expectations."""
    target, lines, exp = tracegen.dsm_range_checks(config=config)
    target_path, trace_path = _generated(tmp_path, f"dsm_{config}", target, lines)
    rtl = _same_as_model(tmp_path, trace_path, sim, "--seed", "9", target=target_path)
    problems = tracegen.check(rtl, exp)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.cocotb
@pytest.mark.parametrize("kind", tracegen.FAULT_KINDS)
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_fault_matches_the_model(tmp_path, sim, kind):
    """One directed trace per fault kind (tracegen.fault_workload): the model's results,
    the status the faulted capsule must get (SSD status passed through, 0x06 Internal
    Error, 0x04 Data Transfer Error, an rdma_error QP error, then 0x82 Namespace Not
    Ready once a namespace's only queue failed) and exactly the events expected
    (NVME_TIMEOUT, QP_FATAL, NVME_PCI_ERR)."""
    target, lines, exp = tracegen.fault_workload(kind)
    target_path, trace_path = _generated(tmp_path, kind, target, lines)
    rtl = _same_as_model(tmp_path, trace_path, sim, "--seed", "2", target=target_path)
    problems = tracegen.check(rtl, exp)
    assert not problems, "\n".join(problems)


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_write_mem_after_capsules_that_use_the_memory_matches_the_model(tmp_path, sim):
    """A write_mem over a keyed Write's data before its RDMA READ, and over a Read's
    buffer while its command is outstanding (tb/replay/write_mem_order.py): the Writes
    store the bytes from before the write_mem, the Read's data ends up in the buffer."""
    target_path, trace_path = _generated(tmp_path, "write_mem", write_mem_order.target(),
                                         write_mem_order.trace())
    rtl = _same_as_model(tmp_path, trace_path, sim, "--seed", "1", target=target_path)
    assert [r for r in rtl if "lba" in r or "mem" in r] == write_mem_order.expected()
