"""Random replay workloads (sim/traffic/tracegen.py) on the model backend: no simulator.

Each seed's TARGET and TRACE go through ``nvmf-offload replay --backend model``
(:func:`sim.cli.main`); the results must pass :func:`sim.traffic.tracegen.check`, which
knows what every capsule should get and what every byte should be from its
own shadow of the blocks, not from the model. The check itself is checked
against results with one thing wrong.
"""

import copy
import json
from pathlib import Path

import pytest

from rtl.params import load_params
from sim import cli
from sim.driver import NvmfDevice
from sim.replay import EXIT_OK, load_target, parse_target, parse_trace
from sim.replay.counters import ENV as COUNTERS_ENV
from sim.traffic import tracegen

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TARGET = ROOT / "examples" / "replay" / "target.toml"


def run_model(tmp_path, target, lines, seed=0):
    (tmp_path / "t.toml").write_text(target)
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.jsonl"
    status = cli.main(["replay", str(tmp_path / "t.toml"), str(tmp_path / "t.jsonl"),
                       "--backend", "model", "--seed", str(seed), "--out", str(out)])
    return status, [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("seed", range(30))
def test_random_workload_on_the_model_passes_the_integrity_check(tmp_path, seed):
    target, lines, exp = tracegen.generate(seed, capsules=120)
    status, results = run_model(tmp_path, target, lines, seed=seed)
    assert status == EXIT_OK
    problems = tracegen.check(results, exp)
    assert not problems, "\n".join(problems[:20])


def test_generation_is_deterministic_and_valid():
    a = tracegen.generate(7, capsules=80)
    b = tracegen.generate(7, capsules=80)
    assert a[0] == b[0] and a[1] == b[1]
    assert tracegen.generate(8, capsules=80)[1] != a[1]
    target = parse_target(a[0], "gen.toml")
    parse_trace("\n".join(a[1]), target, "gen.jsonl")


def test_the_engine_parameters_are_the_example_targets():
    """So the simulators reuse the example target's build (no extra Verilator build)."""
    example = load_target(EXAMPLE_TARGET).params
    for seed in range(10):
        assert parse_target(tracegen.generate_target(seed).text).params == example


@pytest.mark.parametrize("config", ["default", "small", "wide512"])
def test_workload_for_each_named_configuration_passes_on_the_model(tmp_path, config):
    """The TARGET carries the configuration's parameters, fits its tables (QPNs, queues,
    namespaces, staging, transfer and capsule sizes), and the model passes the check."""
    target, lines, exp = tracegen.generate(7, capsules=60, config=config)
    params = load_params(config)
    parsed = parse_target(target)
    assert parsed.params.data_width == params.data_width
    assert all(qp.qpn < params.qp_count for qp in parsed.qps)
    assert sum(len(s.namespaces) for s in parsed.subsystems) <= params.namespaces
    assert all(s.max_io_size <= params.max_io_size for s in parsed.subsystems)
    status, results = run_model(tmp_path, target, lines)
    assert status == EXIT_OK and tracegen.check(results, exp) == []


def _burst_depths(lines):
    """Capsules between consecutive ``wait`` lines of a trace."""
    burst, depths = 0, set()
    for line in lines:
        rec = json.loads(line)
        if "capsule" in rec:
            burst += 1
        elif "wait" in rec:
            depths.add(burst)
            burst = 0
    return depths


def test_workloads_cover_the_mix():
    """Over a few seeds: every served opcode and form, both block sizes, both SSDs and
    subsystems, every QP, bursts of 1 and 64 capsules, transfers of one block and of
    max_io_size, every bad input."""
    labels, blocks, qpns, ssds, qds, lbas = set(), set(), set(), set(), set(), set()
    dsm_past = set()                # Dataset Management with a range past nsze: keyed, ICD
    for seed in range(6):
        _, lines, exp = tracegen.generate(seed, capsules=250)
        shape = tracegen.generate_target(seed)
        labels |= set(exp.stats())
        qpns |= {c.qpn for c in exp.capsules}
        qds |= _burst_depths(lines)
        ssds |= {rec["dump_lba"]["ssd"] for rec in map(json.loads, lines) if "dump_lba" in rec}
        for c in exp.capsules:
            raw = bytes.fromhex(c.capsule)
            qp = shape.qps[c.qpn]
            nsid = int.from_bytes(raw[4:8], "little")
            if raw[0] == 0x09 and c.outcome.status == (0, 0x80):
                dsm_past.add("icd" if raw[24 + 15] >> 4 == 0 else "keyed")
            if raw[0] in (0x01, 0x02) and qp.offload and nsid in shape.subs[qp.sub].namespaces:
                ns = shape.subs[qp.sub].namespaces[nsid]
                n = int.from_bytes(raw[48:50], "little") + 1
                lbas.add(ns.lba)
                if c.outcome.status == tracegen.SUCCESS:
                    blocks.add("one" if n == 1 else
                               "max" if n * ns.lba == shape.subs[qp.sub].max_io_size else "some")
    assert labels >= {"read", "write", "write_icd", "flush", "write_zeroes", "dsm", "dsm_icd",
                      "bad_lba_range", "bad_over_max_io", "bad_unknown_nsid", "not_offloaded"}
    assert blocks == {"one", "some", "max"}
    assert dsm_past == {"icd", "keyed"}
    assert lbas == {512, 4096}
    assert ssds == {"ssd0", "ssd1"}
    assert qpns == {17, 18, 19, 33, 34, 50}
    assert 1 in qds
    # a control line splits its burst in two: the full depth shows without them
    _, lines, _ = tracegen.generate(0, capsules=250, control_rate=0)
    assert max(_burst_depths(lines)) == 64


def test_workloads_interleave_control_lines():
    """Over a few seeds: every control line, served and refused (each errno the
    generator expects), among capsules of a burst; capsules for an unmapped namespace
    expect software, or 0x0B on the offload-only QP."""
    kinds, errnos, unmapped = set(), set(), set()
    for seed in range(6):
        _, lines, exp = tracegen.generate(seed, capsules=120, control_rate=0.6)
        for i, line in enumerate(lines):
            kind = next(iter(json.loads(line)))
            if kind in ("unmap", "map", "qp_set", "destroy_ctrl"):
                kinds.add(kind)
                assert "capsule" in lines[i - 1] or "capsule" in lines[i + 1] or \
                    "write_mem" in lines[i + 1], "a control line between capsules"
        errnos |= {e for _, e in exp.control_errors}
        unmapped |= {(c.label, c.outcome.kind, c.outcome.status) for c in exp.capsules
                     if c.outcome.reason == "unknown_nsid" or c.outcome.status == (0, 0x0B)}
    assert kinds == {"unmap", "map", "qp_set", "destroy_ctrl"}
    assert errnos == {"ENOENT", "EEXIST", "EBUSY", "EINVAL"}
    assert {k for _, k, _ in unmapped} == {"to_software", "response"}


def test_the_check_catches_what_is_wrong(tmp_path):
    target, lines, exp = tracegen.generate(3, capsules=60)
    status, results = run_model(tmp_path, target, lines)
    assert status == EXIT_OK and tracegen.check(results, exp) == []

    def broken(change):
        bad = copy.deepcopy(results)
        change(bad)
        return tracegen.check(bad, exp)

    def flip_lba_byte(rs):
        rec = next(r["lba"] for r in rs if "lba" in r and any(
            d.kind == "lba" and not d.undefined for d in exp.dumps))
        data = bytearray.fromhex(rec["data"])
        data[len(data) // 2] ^= 0x40
        rec["data"] = data.hex()

    def flip_mem_byte(rs):
        rec = next(r["mem"] for r in rs if "mem" in r)
        data = bytearray.fromhex(rec["data"])
        data[0] ^= 1
        rec["data"] = data.hex()

    def drop_response(rs):
        rs.remove(next(r for r in rs if "response" in r))

    def duplicate_response(rs):
        rs.insert(0, copy.deepcopy(next(r for r in rs if "response" in r)))

    def fail_a_command(rs):
        rec = next(r["response"] for r in rs if "response" in r)
        cqe = bytearray.fromhex(rec["cqe"])
        cqe[14] |= 0x06 << 1
        rec["cqe"] = cqe.hex()

    for change in (flip_lba_byte, flip_mem_byte, drop_response, duplicate_response,
                   fail_a_command):
        assert broken(change), change.__name__

    # control lines: a refusal missing, or one the generator did not expect
    target, lines, exp = tracegen.generate(3, capsules=80, max_qd=8, control_rate=1.0)
    status, results = run_model(tmp_path, target, lines)
    assert status == EXIT_OK and tracegen.check(results, exp) == [] and exp.control_errors
    refusal = next(r for r in results if "control_error" in r)
    assert tracegen.check([r for r in results if r is not refusal], exp)
    extra = {"control_error": dict(refusal["control_error"], line=1, errno="EIO")}
    assert tracegen.check(results + [extra], exp)


def test_ssd_status_fault_passes_dw0_and_status_bits_and_the_check_sees_them(tmp_path):
    target, lines, exp = tracegen.fault_workload("ssd_status")
    assert any('"dw0": 3735928559' in line for line in lines)
    status, results = run_model(tmp_path, target, lines)
    assert status == EXIT_OK and tracegen.check(results, exp) == []
    dw0 = (0xDEADBEEF).to_bytes(4, "little")
    faulted = next(r["response"] for r in results
                   if "response" in r and bytes.fromhex(r["response"]["cqe"])[:4] == dw0)
    for byte, bit in ((0, 1), (15, 0x40), (15, 0x10)):      # DW0, More, CRD
        cqe = bytearray.fromhex(faulted["cqe"])
        cqe[byte] ^= bit
        saved, faulted["cqe"] = faulted["cqe"], cqe.hex()
        assert tracegen.check(results, exp), (byte, bit)
        faulted["cqe"] = saved


@pytest.mark.parametrize("kind", tracegen.FAULT_KINDS)
def test_fault_workload_on_the_model(tmp_path, kind):
    target, lines, exp = tracegen.fault_workload(kind)
    status, results = run_model(tmp_path, target, lines)
    assert status == EXIT_OK
    problems = tracegen.check(results, exp)
    assert not problems, "\n".join(problems)
    assert exp.events or kind in ("ssd_status", "unsolicited_cqe")   # these raise none


def _run_model_counted(tmp_path, target, lines, monkeypatch):
    where = tmp_path / "counters.json"
    monkeypatch.setenv(COUNTERS_ENV, str(where))
    status, results = run_model(tmp_path, target, lines)
    return status, results, json.loads(where.read_text())


def test_control_lines_under_load_on_the_model_serve_in_flight_commands_and_fresh_counters(
        tmp_path, monkeypatch):
    """tracegen.control_under_load: unmap, map, qp_set and destroy_ctrl made with commands
    at the SSD; every capsule gets what the generator says, every byte is its shadow's,
    and the namespace mapped again counts only what came after its map."""
    target, lines, exp = tracegen.control_under_load()
    status, results, counters = _run_model_counted(tmp_path, target, lines, monkeypatch)
    assert status == EXIT_OK
    assert not tracegen.check(results, exp)
    assert exp.counters and not tracegen.check_counters(counters, exp)


def test_without_the_command_fence_a_reused_namespace_slot_counts_old_responses(
        tmp_path, monkeypatch):
    """The check bites: a driver whose unmap frees the slot without waiting on the fence
    lets the in-flight commands of the unmapped namespace count into the namespace the
    next map puts in that slot (burst 1 of control_under_load)."""
    async def no_fence(self):
        return None

    monkeypatch.setattr(NvmfDevice, "fence", no_fence)
    target, lines, exp = tracegen.control_under_load()
    first = next(i for i, line in enumerate(lines) if '"destroy_ctrl"' in line)
    cut = max(i for i in range(first) if '"dump_' in lines[i] or '"wait"' in lines[i])
    status, _, counters = _run_model_counted(tmp_path, target, lines[:cut + 1], monkeypatch)
    assert status == EXIT_OK
    problems = tracegen.check_counters(counters, exp)
    assert any("write_cmds" in p for p in problems), problems


def test_large_commands_outstanding_on_the_model_pass_the_check(tmp_path):
    """tracegen.large_outstanding on the model: every Write's bytes read back, with the
    first burst's Writes spread over at least three QPs of both subsystems."""
    target, lines, exp = tracegen.large_outstanding(2, count=24)
    assert len({c.qpn for c in exp.capsules}) >= 3
    assert len({tracegen.generate_target(2).qps[c.qpn].sub for c in exp.capsules}) == 2
    status, results = run_model(tmp_path, target, lines)
    assert status == EXIT_OK
    problems = tracegen.check(results, exp)
    assert not problems, "\n".join(problems[:20])
