"""pytest launcher of the control plane's cocotb tests, on Icarus and Verilator,
for the default parameter set and a small one (the two ``docs/`` advertise)."""

import pytest

from rtl.params import EngineParams
from sim.cosim.harness import SIMULATORS, run_cocotb

MODULE = "tb.control.cocotb_control"
TOP = "nvmf_control"

PARAM_SETS = {
    "default": EngineParams(),
    "small": EngineParams(qp_count=8, subsystems=2, backend_queues=2, srq_namespaces=4,
                          namespaces=4, event_depth=4, max_queue_depth=256),
}

TESTS = [
    "run_capabilities_match_parameters",
    "run_driver_calls_and_errnos",
    "run_register_access_rules",
    "run_lookups_match_model_during_map_unmap",
    "run_subsystem_isolation",
    "run_events_queue_overflow_and_irq",
    "run_counters_match_model",
    "run_reset_clears_tables",
    "run_every_table_read_port_matches_model",
    "run_config_pulses_follow_table_writes",
    "run_out_of_range_lookups_are_not_found_whatever_the_tables_hold",
]
# the table commands as software sees them (CMD_STATUS.busy), in a module of their own
CMD_MODULE = "tb.control.cocotb_control_cmd"
CMD_TESTS = [
    "run_cmd_busy_covers_the_whole_command",
    "run_cmd_done_means_every_lookup_sees_the_write",
]


@pytest.mark.cocotb
@pytest.mark.parametrize("testcase", TESTS + CMD_TESTS, ids=lambda t: t.removeprefix("run_"))
@pytest.mark.parametrize("param_set", sorted(PARAM_SETS))
@pytest.mark.parametrize("sim", SIMULATORS)
def test_control_plane(sim, param_set, testcase):
    module = CMD_MODULE if testcase in CMD_TESTS else MODULE
    run_cocotb(sim, TOP, PARAM_SETS[param_set], module, testcase=testcase)
