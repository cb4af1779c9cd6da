"""pytest launcher of the engine top's cocotb tests, on Icarus and Verilator."""

import pytest

from rtl.params import EngineParams
from sim.cosim.harness import SIMULATORS, run_cocotb

MODULE = "tb.engine.cocotb_engine"
TOP = "nvmf_engine_front"


@pytest.mark.cocotb
@pytest.mark.parametrize("traffic", ["free", "backpressure"])
@pytest.mark.parametrize("width", [64, 128, 512], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("sim", SIMULATORS)
def test_engine_front_outcomes_match_model(sim, width, traffic):
    env = {"NVMF_SEED": str(width), "NVMF_COUNT": "150",
           "NVMF_BACKPRESSURE": "0.3" if traffic == "backpressure" else "0"}
    run_cocotb(sim, TOP, EngineParams(data_width=width), MODULE, testcase="run_mixed_traffic",
               extra_env=env)


@pytest.mark.cocotb
@pytest.mark.parametrize("testcase", ["run_qp_error_discards_until_reconfigured",
                                      "run_sqhd_wraps_at_sqsize",
                                      "run_namespace_being_unmapped_is_not_ready"],
                         ids=lambda t: t.removeprefix("run_"))
@pytest.mark.parametrize("sim", SIMULATORS)
def test_engine_front_directed(sim, testcase):
    run_cocotb(sim, TOP, EngineParams(), MODULE, testcase=testcase)
