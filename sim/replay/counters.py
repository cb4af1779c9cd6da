"""The engine's counters at the end of a replay, read through the driver on any backend.

Not part of the results contract: a test hook. With ``NVMF_REPLAY_COUNTERS`` set to a
path, every backend writes there, after the trace ran to its end, what
:func:`read_counters` returns, so that a test can compare the RTL's counters with the
model's after the same workload.
"""

import json
import os

__all__ = ["ENV", "read_counters", "write_counters"]

ENV = "NVMF_REPLAY_COUNTERS"


async def read_counters(dev, handles):
    """``{subsystem: {"counters": {...}, "namespaces": {fe_nsid: {...}}}}`` of every
    subsystem and of every namespace mapped now (``docs/control-plane.md``)."""
    out = {}
    for name, srq in handles["srqs"].items():
        namespaces = {}
        for fe_nsid, ns in sorted(srq.namespaces.items()):
            namespaces[str(fe_nsid)] = await dev.ns_counters(ns)
        out[name] = {"counters": await dev.srq_counters(srq), "namespaces": namespaces}
    return out


def write_counters(counters):
    """Write ``counters`` where ``NVMF_REPLAY_COUNTERS`` says, if it says."""
    path = os.environ.get(ENV)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(counters, f, indent=1, sort_keys=True, default=int)
