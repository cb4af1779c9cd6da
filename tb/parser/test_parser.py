"""pytest launcher of the capsule parser's cocotb tests, on Icarus and Verilator.

Test ids name the simulator, the data width and what is exercised, e.g.
``test_random_capsules_match_model[icarus-w128-backpressure]``.
"""

import pytest

from rtl.params import EngineParams
from sim.cosim.harness import SIMULATORS, run_cocotb
from tb.parser.cases import CASES

MODULE = "tb.parser.cocotb_parser"
BENCH = "sim.cosim.parser_bench"     # the runs the command line makes, tested here too
TOP = "nvmf_parser"

# (name, idle fraction on the input, back-pressure fraction on each output)
TRAFFIC = {
    "free": (0.0, 0.0),
    "idle": (0.4, 0.0),
    "backpressure": (0.0, 0.5),
    "idle_backpressure": (0.3, 0.3),
}


def _run(sim, width, testcase, module=MODULE, **env):
    params = EngineParams(data_width=width)
    run_cocotb(sim, TOP, params, module, testcase=testcase,
               extra_env={k: str(v) for k, v in env.items()})


@pytest.mark.cocotb
@pytest.mark.parametrize("traffic", ["free", "idle_backpressure"])
@pytest.mark.parametrize("width", [64, 128, 256, 512], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("sim", SIMULATORS)
def test_random_capsules_match_model(sim, width, traffic):
    idle, bp = TRAFFIC[traffic]
    _run(sim, width, "run_random_stream", BENCH, NVMF_SEED=width + len(traffic), NVMF_COUNT=160,
         NVMF_IDLE=idle, NVMF_BACKPRESSURE=bp)


@pytest.mark.cocotb
@pytest.mark.parametrize("traffic", ["idle", "backpressure"])
@pytest.mark.parametrize("sim", SIMULATORS)
def test_random_capsules_match_model_under_pressure_w128(sim, traffic):
    idle, bp = TRAFFIC[traffic]
    _run(sim, 128, "run_random_stream", BENCH, NVMF_SEED=7 + len(traffic), NVMF_COUNT=160,
         NVMF_IDLE=idle, NVMF_BACKPRESSURE=bp)


@pytest.mark.cocotb
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("sim", SIMULATORS)
def test_directed_capsule_outcome(sim, case):
    _run(sim, 128, "run_directed_case", NVMF_CASE=case)


@pytest.mark.cocotb
@pytest.mark.parametrize("width", [64, 512], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("sim", SIMULATORS)
def test_single_sqe_capsules_sustain_one_per_sqe_beat_count(sim, width):
    _run(sim, width, "run_throughput", BENCH, NVMF_COUNT=300)


CORNER_CASES = [
    "run_unaligned_data_ending_at_capsule_end",
    "run_offset_high_bits_answer_sgl_offset_invalid",
    "run_huge_capsule_length_saturates",
    "run_long_data_stall_fills_the_packet_fifo",
    "run_qpn_is_sampled_on_the_first_beat",
]


@pytest.mark.cocotb
@pytest.mark.parametrize("testcase", CORNER_CASES, ids=lambda t: t.removeprefix("run_"))
@pytest.mark.parametrize("width", [64, 256], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("sim", SIMULATORS)
def test_parser_corner_case(sim, width, testcase):
    _run(sim, width, testcase)


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", SIMULATORS)
def test_waves_are_written_in_the_run_directory(sim):
    """``NVMF_WAVES``: Icarus's FST or Verilator's VCD lands in the test's run directory."""
    results = run_cocotb(sim, TOP, EngineParams(data_width=128), MODULE,
                         testcase="run_directed_case", waves=True,
                         extra_env={"NVMF_CASE": sorted(CASES)[0]})
    dump = results.parent / (f"{TOP}.fst" if sim == "icarus" else "dump.vcd")
    assert dump.exists() and dump.stat().st_size > 0, f"no waveform at {dump}"
