"""pytest launcher of the CQ handler's cocotb tests, on Icarus and Verilator.

Every behaviour runs at data widths 64 (a CQE is two beats) and 128 (one
beat); the random multi-queue run also runs at 256 (a CQE is half a beat).
Test ids name the simulator, the width and the behaviour, e.g.
``test_cq_handler[icarus-w64-merged_msix]``.
"""

import pytest

from rtl.params import EngineParams
from sim.cosim.harness import SIMULATORS, run_cocotb

MODULE = "tb.cq_handler.cocotb_cq_handler"
TOP = "nvmf_cq_handler"

BEHAVIOURS = [
    "one_cqe_with_msix",
    "many_queues_with_wrap",
    "msix_before_all_posted",
    "merged_msix",
    "polling_without_msix",
    "stale_entry_never_emitted",
    "cqe_read_error",
    "doorbell_write_error",
    "bad_msix_ignored",
    "init_resets_head_and_phase",
    "init_during_drain",
    "bursts_at_ring_and_page_ends",
    "partial_burst",
    "read_error_mid_burst",
    "bad_msix_saturates",
    "busy_status",
    "restart_reads_like_a_new_run",
    "restart_with_nothing_taken",
    "doorbell_request_while_engine_takes",
    "doorbell_slot_kept_across_queues",
]

# behaviours also run with 40 % paused cycles on every input and output channel
UNDER_PRESSURE = ["many_queues_with_wrap", "polling_without_msix",
                  "bursts_at_ring_and_page_ends", "partial_burst", "read_error_mid_burst",
                  "init_during_drain"]


def _run(sim, width, behaviour, **env):
    run_cocotb(sim, TOP, EngineParams(data_width=width), MODULE, testcase=f"run_{behaviour}",
               extra_env={k: str(v) for k, v in env.items()})


@pytest.mark.cocotb
@pytest.mark.parametrize("behaviour", BEHAVIOURS)
@pytest.mark.parametrize("width", [64, 128], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("sim", SIMULATORS)
def test_cq_handler(sim, width, behaviour):
    _run(sim, width, behaviour, NVMF_SEED=width + len(behaviour))


@pytest.mark.cocotb
@pytest.mark.parametrize("behaviour", UNDER_PRESSURE)
@pytest.mark.parametrize("width", [64, 128], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("sim", SIMULATORS)
def test_cq_handler_under_backpressure(sim, width, behaviour):
    _run(sim, width, behaviour, NVMF_SEED=width + 3, NVMF_PRESSURE=0.4)


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", SIMULATORS)
def test_cq_handler_smoke_w256(sim):
    _run(sim, 256, "many_queues_with_wrap", NVMF_SEED=256, NVMF_PRESSURE=0.2)


@pytest.mark.cocotb
@pytest.mark.parametrize("behaviour", ["throughput_one_msix", "throughput_msix_each"])
@pytest.mark.parametrize("width", [64, 128, 256, 512], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("sim", SIMULATORS)
def test_cq_handler_throughput(sim, width, behaviour):
    """Cycles per CQE with a memory answering 2 cycles after AR (limits at 128 and 512)."""
    _run(sim, width, behaviour, NVMF_SEED=1)
