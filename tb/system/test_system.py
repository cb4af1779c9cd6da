"""pytest launcher of the system tests (the whole engine with device models), both simulators."""

import pytest

from rtl.params import EngineParams
from sim.cosim.harness import SIMULATORS, run_cocotb

MODULE = "tb.system.cocotb_system"
TOP = "nvmf_engine"


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", SIMULATORS)
def test_write_then_read_back_through_the_engine(sim):
    run_cocotb(sim, TOP, EngineParams(), MODULE, testcase="run_write_then_read_back",
               extra_env={"NVMF_COUNT": "16"})


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", SIMULATORS)
def test_dataless_commands_take_no_staging_slot(sim):
    run_cocotb(sim, TOP, EngineParams(), MODULE,
               testcase="run_dataless_commands_take_no_staging_slot")
