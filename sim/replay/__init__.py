"""``nvmf-offload replay``: push a capsule trace through the engine, report what it did.

The public contract is ``docs/replay.md`` (format 1). One module a step:

- :mod:`~sim.replay.contract`: the format number, exit statuses, configuration bus
  addresses and the two errors (:class:`ReplayInputError`, exit status 2;
  :class:`BackendUnavailable`, exit status 3);
- :mod:`~sim.replay.target` and :mod:`~sim.replay.trace`: read and validate
  ``TARGET.toml`` (:func:`load_target`) and ``TRACE.jsonl`` (:func:`load_trace`);
  every problem names the file, the line where one is known, and the field;
- :mod:`~sim.replay.layout`: the bus addresses of the staging windows, the rings,
  the SSD BARs and the MSI-X message (:func:`plan_layout`), and the driver calls
  that configure the engine (:func:`configure_device`, :class:`sim.driver.NvmfDevice`):
  the same calls a user makes, so a TARGET the driver refuses is reported with its
  errno;
- :mod:`~sim.replay.control`: the driver call of each control line (``unmap``,
  ``map``, ``qp_set``, ``destroy_ctrl``), a refusal being a ``control_error``;
- :mod:`~sim.replay.counters`: the engine's counters at the end, a test hook
  (``NVMF_REPLAY_COUNTERS``);
- :mod:`~sim.replay.backends`: what runs the trace, the reference model
  (:class:`ModelBackend`) in this process or the RTL engine in Icarus or Verilator
  (:class:`RtlBackend`, the whole trace inside one cocotb run of
  :mod:`sim.cosim.replay_bench`);
- :mod:`~sim.replay.results`: the results writer (:func:`run_trace`): one JSON object
  a line, ordered by capsule within each segment between barriers, the summary last;
- :mod:`~sim.replay.command`: the command itself (:func:`replay`, exit status 0, or 1
  when the engine broke an invariant).
"""

from sim.model.engine import InvariantError
from sim.replay.backends import Backend, ModelBackend, RtlBackend, make_backend
from sim.replay.command import add_arguments, main, replay
from sim.replay.contract import (
    BACKENDS,
    BAR_BASE,
    EXIT_BACKEND,
    EXIT_INPUT,
    EXIT_INVARIANT,
    EXIT_OK,
    FORMAT,
    OP_NAMES,
    RING_BASE,
    RING_SPACE,
    WAIT_BUDGET_CYCLES,
    BackendUnavailable,
    ReplayInputError,
)
from sim.replay.layout import Layout, check_with_driver, configure_device, plan_layout
from sim.replay.results import run_trace
from sim.replay.target import (
    QpSpec,
    RegionSpec,
    SsdNamespaceSpec,
    SsdSpec,
    SubsystemNamespaceSpec,
    SubsystemSpec,
    Target,
    load_target,
    parse_target,
)
from sim.replay.trace import TraceItem, load_trace, parse_trace

__all__ = [
    "FORMAT", "EXIT_OK", "EXIT_INVARIANT", "EXIT_INPUT", "EXIT_BACKEND", "BACKENDS",
    "RING_BASE", "RING_SPACE", "BAR_BASE",
    "ReplayInputError", "BackendUnavailable", "InvariantError",
    "Target", "SsdSpec", "SsdNamespaceSpec", "SubsystemSpec", "SubsystemNamespaceSpec",
    "QpSpec", "RegionSpec", "TraceItem", "Layout",
    "load_target", "parse_target", "load_trace", "parse_trace", "plan_layout",
    "configure_device", "check_with_driver", "Backend", "ModelBackend", "RtlBackend",
    "make_backend",
    "run_trace", "replay", "add_arguments", "main",
    "WAIT_BUDGET_CYCLES", "OP_NAMES",
]
