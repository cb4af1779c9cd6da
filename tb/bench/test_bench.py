"""Smoke test of the engine bench harness (``sim/cosim/engine_bench.py``) on both simulators:
a few commands on the default engine (DATA_W 128, the build the system tests use); the
metrics are positive and the ratios follow from the limits. Nothing about wall-clock time
is asserted."""

import pytest

from rtl.params import EngineParams
from sim.cosim.harness import SIMULATORS
from sim.tools import bench

SMOKE = [{"kind": "latency", "op": "flush"},
         {"kind": "rate", "op": "flush", "count": 8},
         {"kind": "data", "op": "read", "size": 4096, "count": 4},
         {"kind": "data", "op": "write", "size": 4096, "count": 4}]


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", SIMULATORS)
def test_bench_harness_smoke(sim):
    report = bench.run_engine(sim, 128, SMOKE, params=EngineParams())
    assert [sc["kind"] for sc in report["scenarios"]] == [sc["kind"] for sc in SMOKE]
    assert not any(sc["result"].get("hung") for sc in report["scenarios"])
    records = bench.engine_records(128, report, sim)
    by = {r["metric"]: r for r in records}
    assert set(by) == {"latency_capsule_to_sq_doorbell_flush", "latency_msix_to_response_flush",
                       "engine_cmds_per_cycle_flush", "engine_bytes_per_cycle_read_4k",
                       "engine_bytes_per_cycle_write_4k", f"sim_cycles_per_second_{sim}"}
    for r in records:
        assert r["value"] > 0, r
        if "latency" in r["metric"] or r["metric"].startswith("sim_"):
            assert r["limit"] is None and r["ratio"] is None
        else:
            assert r["ratio"] == pytest.approx(r["value"] / r["limit"], abs=2e-3), r
    assert by["engine_cmds_per_cycle_flush"]["limit"] == 0.25
    assert by["engine_bytes_per_cycle_read_4k"]["limit"] == 16
    # a command's bytes cannot leave faster than one beat a cycle
    assert by["engine_bytes_per_cycle_read_4k"]["ratio"] <= 1.0
