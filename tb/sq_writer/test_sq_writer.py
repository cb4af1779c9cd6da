"""pytest launcher of the SQ writer's cocotb tests, on Icarus and Verilator.

Test ids name the simulator, the data width, the test and the traffic, e.g.
``test_sq_writer_directed[icarus-w64-coalescing]``. Also checks the reference
model alone (no simulator).
"""

import pytest

from rtl.params import EngineParams
from rtl.sq_writer import SqWriter
from sim.cosim.harness import SIMULATORS, run_cocotb

MODULE = "tb.sq_writer.cocotb_sq_writer"
TOP = "nvmf_sq_writer"

# name -> (idle fraction on i_sqe, pause fraction on AW, W, B and o_done)
TRAFFIC = {
    "none": (0.0, 0.0),
    "backpressure": (0.0, 0.4),
    "idle_backpressure": (0.3, 0.3),
}

DIRECTED = [
    "run_single_sqe",
    "run_wraparound_several_queues",
    "run_coalescing",
    "run_sqe_write_error",
    "run_doorbell_write_error",
    "run_init_restarts_tail",
    "run_init_during_batch_ends_it",
    "run_unusable_queue_reports_failure",
    "run_unusable_sqes_pass_while_w_stalls",
    "run_round_robin_coalescing",
    "run_init_while_busy",
    "run_writes_outstanding_up_to_the_limit",
    "run_two_writes_wait_for_aw",
]


def _run(sim, width, testcase, traffic, seed):
    idle, bp = TRAFFIC[traffic]
    run_cocotb(sim, TOP, EngineParams(data_width=width), MODULE, testcase=testcase,
               extra_env={"NVMF_SEED": str(seed), "NVMF_IDLE": str(idle), "NVMF_BP": str(bp)})


@pytest.mark.cocotb
@pytest.mark.parametrize("testcase", DIRECTED, ids=lambda t: t.removeprefix("run_"))
@pytest.mark.parametrize("width", [64, 128], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("sim", SIMULATORS)
def test_sq_writer_directed(sim, width, testcase):
    """Directed behaviour under random back-pressure on AW, W, B and o_done."""
    _run(sim, width, testcase, "backpressure", seed=width + DIRECTED.index(testcase))


RANDOM = [(64, "backpressure"), (64, "idle_backpressure"),
          (128, "backpressure"), (128, "idle_backpressure"),
          (256, "idle_backpressure"), (512, "backpressure"), (512, "idle_backpressure")]


@pytest.mark.cocotb
@pytest.mark.parametrize(("width", "traffic"), RANDOM,
                         ids=[f"w{w}-{t}" for w, t in RANDOM])
@pytest.mark.parametrize("sim", SIMULATORS)
def test_sq_writer_random_traffic(sim, width, traffic):
    """Seeded random traffic; batches exact when i_sqe never idles."""
    _run(sim, width, "run_random_traffic", traffic, seed=3 * width + len(traffic))


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_max_batch_is_validated():
    with pytest.raises(ValueError, match=r"max_batch must be an integer in 1\.\.255, not 0"):
        SqWriter(EngineParams(), max_batch=0)


@pytest.mark.cocotb
@pytest.mark.parametrize("width", [128, 512], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("sim", SIMULATORS)
def test_sq_writer_throughput(sim, width):
    """64 SQEs round robin over 4 queues, always-ready slave, B two cycles after the data:
    taken at one per 4 * 1.05 cycles at DATA_W 128 (one per 2 at 512), all reported
    within 64 * 4 * 1.05 + 48 cycles (64 * 2 + 48)."""
    _run(sim, width, "run_throughput", "none", seed=width)


def test_model_batches():
    """The model's batching: an SQE joins its queue's open batch (other queues' SQEs may come
    between); a batch is cut at min(8, sq_entries - 1) and then closes every older one."""
    from tb.sq_writer.sq_writer_tb import SqWriterModel

    model = SqWriterModel(backend_queues=4)
    model.configure(0, {"valid": 1, "sq_addr": 0x1000, "sq_entries": 4, "sq_db_addr": 0x100,
                        "sq_tail_init": 3})
    model.configure(1, {"valid": 1, "sq_addr": 0x2000, "sq_entries": 64, "sq_db_addr": 0x104,
                        "sq_tail_init": 0})
    tails = [model.submit(0, bytes(64)).tail_after for _ in range(5)]
    assert tails == [0, 1, 2, 3, 0]
    for _ in range(10):
        model.submit(1, bytes(64))
    model.submit(2, bytes(64))                    # not configured: unusable
    model.submit(0, bytes(64))
    assert model.expected_batches() == [[0, 1, 2], [3, 4], list(range(5, 13)), [13, 14], [16]]
    assert model.records[1].slot_addr == 0x1000
    model.configure(1, model.entries[1])          # an init closes queue 1's batch and older
    model.submit(1, bytes(64))
    assert model.expected_batches()[-3:] == [[13, 14], [16], [17]]
