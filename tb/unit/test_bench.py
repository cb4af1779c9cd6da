"""``nvmf-offload bench``: record shape, limits and ratios, the docs markers (no simulator)."""

import json

import pytest

from sim.tools import bench

KEYS = {"metric", "data_width", "value", "limit", "ratio"}


def test_limits():
    assert bench.command_limit(128) == 0.25
    assert bench.command_limit(512) == 1.0
    assert bench.bytes_limit(128) == 16
    assert bench.bytes_limit(512) == 64
    assert bench.ssd_interval(1.6e6) == pytest.approx(156.25)
    assert bench.ssd_interval(2.5e6) == pytest.approx(100)
    assert bench.line_rate_iops() == pytest.approx(100e9 / 8 / 4096)     # ~3.05 M
    assert bench.iops_limit(1.6e6) == pytest.approx(1.6e6 / 250e6)
    assert bench.iops_limit(2.5e6) == pytest.approx(0.01)
    assert bench.iops_limit(5e6) == pytest.approx(100e9 / 8 / 4096 / 250e6)  # the line


def test_record_ratio_and_nulls():
    r = bench.record("engine_cmds_per_cycle_flush", 128, 0.125, bench.command_limit(128))
    assert set(r) == KEYS and r["ratio"] == 0.5 and r["limit"] == 0.25
    lat = bench.record("latency_msix_to_response_flush", 512, 9, digits=0)
    assert lat["limit"] is None and lat["ratio"] is None and lat["value"] == 9


def _report():
    steady = {"from": 1, "to": 7, "cycles": 60, "commands_per_cycle": 0.1,
              "bytes_per_cycle": 409.6}
    return {"data_width": 128, "cycles": 1000, "wall_seconds": 2.0, "cycles_per_second": 500,
            "scenarios": [
                {"kind": "latency", "op": "flush",
                 "result": {"capsule_to_sq_doorbell": 20, "msix_to_response": 15}},
                {"kind": "rate", "op": "flush", "count": 8, "result": {"steady": steady}},
                {"kind": "data", "op": "read", "size": 4096, "count": 8,
                 "result": {"steady": dict(steady, bytes_per_cycle=8.0)}},
                {"kind": "iops", "ssd_iops": 2.5e6, "interval": 100, "latency": 1000,
                 "count": 8, "result": {"steady": dict(steady, commands_per_cycle=0.005)}},
            ]}


def test_engine_records():
    records = bench.engine_records(128, _report(), "verilator")
    json.dumps(records)
    assert all(set(r) == KEYS and r["data_width"] == 128 for r in records)
    by = {r["metric"]: r for r in records}
    assert by["latency_capsule_to_sq_doorbell_flush"]["value"] == 20
    for name, r in by.items():
        if "latency" in name or name.startswith("sim_"):
            assert r["limit"] is None and r["ratio"] is None
        else:
            assert r["ratio"] == pytest.approx(r["value"] / r["limit"], abs=1e-4)
    assert by["engine_cmds_per_cycle_flush"]["ratio"] == 0.4
    assert by["engine_bytes_per_cycle_read_4k"]["ratio"] == 0.5
    assert by["engine_iops_4k_read_ssd2.5M"]["ratio"] == 0.5
    assert by["sim_cycles_per_second_verilator"]["value"] == 500


def test_scenarios_cover_every_metric():
    kinds = {(s["kind"], s.get("op"), s.get("size")) for s in bench.scenarios()}
    assert ("rate", "flush", None) in kinds
    for size in (4096, 131072):
        assert ("data", "read", size) in kinds and ("data", "write", size) in kinds
    assert {s["ssd_iops"] for s in bench.scenarios() if s["kind"] == "iops"} == {1.6e6, 2.5e6}
    assert len(bench.scenarios(quick=True)) <= len(bench.scenarios())


def test_replace_section_keeps_the_rest():
    text = "# Perf\n\nintro\n\n## Other\n\nkept\n"
    once = bench.replace_section(text, "engine", "table one")
    assert once.startswith(text.rstrip()) and "table one" in once
    twice = bench.replace_section(once + "\ntrailer\n", "engine", "table two")
    assert "table one" not in twice and "table two" in twice
    assert "kept" in twice and twice.rstrip().endswith("trailer")
    assert twice.count(bench.MARK_BEGIN.format("engine")) == 1


def test_a_hung_scenario_counts_as_nothing_done():
    report = {"scenarios": [{"kind": "data", "op": "read", "size": 131072, "count": 4,
                             "result": {"hung": True, "message": "0 of 4", "states": {}}}]}
    (r,) = bench.engine_records(128, report)
    assert r["metric"] == "engine_bytes_per_cycle_read_128k"
    assert r["value"] == 0.0 and r["ratio"] == 0.0 and r["limit"] == 16


def test_fsm_state_names_follow_the_source():
    states = bench.fsm_states(bench.ROOT / "rtl" / "backend", "retire")
    assert states[0] == "IDLE" and {"DECIDE", "RESPOND", "FREE"} <= set(states)
    assert bench.fsm_states(bench.ROOT / "rtl" / "backend", "no_such_fsm") == []


def test_profile_table_gives_fsm_states_and_stream_occupancy_per_command():
    report = {"scenarios": [{"kind": "rate", "op": "flush", "count": 4, "result": {
        "commands": 4, "overall_cycles": 20,
        "profile": {"backend.retire_state": {"0": 12, "1": 8},
                    "front.o_backend": {"go": 4, "stall": 8, "idle": 8}}}}]}
    lines = bench.profile_table(report).splitlines()
    assert lines[0] == "rate flush: 4 commands, 20 cycles (5.0 a command)"
    assert lines[1].split() == ["backend.retire_state", "IDLE", "3.0,", "DECIDE", "2.0"]
    assert lines[2].split() == ["front.o_backend", "go", "1.0,", "stall", "2.0,", "idle", "2.0"]
