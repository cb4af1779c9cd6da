"""pytest launcher of the staging memory's cocotb tests, on Icarus and Verilator.

Every test runs on two parameter sets, both with a 16 KiB memory so
whole-memory checks stay fast: ``w64`` at the default bus addresses, and
``w128`` with a window that is not aligned to its size and ``msix_addr`` right
after its end (a burst leaving the window runs straight into the MSI-X
address). The random mix also runs at 512 bits.
"""

import pytest

from rtl.params import EngineParams
from sim.cosim.harness import SIMULATORS, run_cocotb

MODULE = "tb.staging.cocotb_staging"
TOP = "nvmf_staging"

PARAM_SETS = {
    "w64": EngineParams(data_width=64, staging_bytes=16384, staging_mode="onchip"),
    "w128": EngineParams(data_width=128, staging_bytes=16384, staging_mode="onchip",
                         staging_base=0x0000_0080_0000_5000, msix_addr=0x0000_0080_0000_9000),
}
# one wide set, for the random mix only: 64-byte beats (a 4 KiB page is 64 beats), the
# MSI-X address below the window
WIDE = EngineParams(data_width=512, staging_bytes=32768, staging_base=0x0000_0123_4567_8000,
                    staging_mode="onchip",
                    msix_addr=0x0000_0000_FEE0_0000)

# (idle fraction on every input channel, back-pressure fraction on every output channel)
TRAFFIC = {"free": (0.0, 0.0), "idle_backpressure": (0.3, 0.4)}


def _run(sim, param_set, testcase, **env):
    run_cocotb(sim, TOP, PARAM_SETS[param_set], MODULE, testcase=testcase,
               extra_env={k: str(v) for k, v in env.items()})


@pytest.mark.cocotb
@pytest.mark.parametrize("traffic", sorted(TRAFFIC))
@pytest.mark.parametrize("param_set", sorted(PARAM_SETS))
@pytest.mark.parametrize("sim", SIMULATORS)
def test_random_mix_matches_model(sim, param_set, traffic):
    idle, bp = TRAFFIC[traffic]
    _run(sim, param_set, "run_random_mix", NVMF_SEED=11 + len(traffic) + len(param_set),
         NVMF_COUNT=32, NVMF_IDLE=idle, NVMF_BACKPRESSURE=bp)


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", SIMULATORS)
def test_random_mix_matches_model_w512(sim):
    run_cocotb(sim, TOP, WIDE, MODULE, testcase="run_random_mix",
               extra_env={"NVMF_SEED": "512", "NVMF_COUNT": "30", "NVMF_IDLE": "0.3",
                          "NVMF_BACKPRESSURE": "0.4"})


@pytest.mark.cocotb
@pytest.mark.parametrize("traffic", sorted(TRAFFIC))
@pytest.mark.parametrize("param_set", sorted(PARAM_SETS))
@pytest.mark.parametrize("sim", SIMULATORS)
def test_axi_byte_granular_writes_keep_guard_bytes(sim, param_set, traffic):
    idle, bp = TRAFFIC[traffic]
    _run(sim, param_set, "run_axi_sweep_with_guard_bytes", NVMF_SEED=3 + len(traffic),
         NVMF_IDLE=idle, NVMF_BACKPRESSURE=bp)


DIRECTED = {
    "outside_window_answers_slverr": ("run_outside_window_answers_slverr", {}),
    "bursts_crossing_window_end": ("run_bursts_crossing_window_end",
                                   {"NVMF_IDLE": 0.2, "NVMF_BACKPRESSURE": 0.3}),
    "msix_messages_in_order": ("run_msix_messages_in_order", {}),
    "internal_ports": ("run_internal_ports", {"NVMF_IDLE": 0.2, "NVMF_BACKPRESSURE": 0.3}),
    "throughput_and_alternation": ("run_throughput_and_alternation", {}),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("case", sorted(DIRECTED))
@pytest.mark.parametrize("param_set", sorted(PARAM_SETS))
@pytest.mark.parametrize("sim", SIMULATORS)
def test_staging_directed(sim, param_set, case):
    testcase, env = DIRECTED[case]
    _run(sim, param_set, testcase, NVMF_SEED=5, **env)
