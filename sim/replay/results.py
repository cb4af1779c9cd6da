"""The results writer: runs a trace on a backend and emits the result lines, ordered by
capsule within each segment between barriers, and the summary last.
"""


from sim.model.engine import InvariantError, result_key, strip_seq
from sim.replay.contract import WAIT_BUDGET_CYCLES
from sim.replay.control import control_error
from sim.replay.trace import CONTROL_KINDS

# --- running ------------------------------------------------------------------------------------

def run_trace(backend, trace, emit, budget_cycles=WAIT_BUDGET_CYCLES):
    """Run ``trace`` on a configured backend, calling ``emit(record)`` for each result line.

    Returns the summary record (also emitted, last). Raises InvariantError after
    emitting the results of the unfinished segment.
    """
    counts = {"capsules": 0, "responses": 0, "to_software": 0}
    refused = []                # control_error records of this segment, tagged

    def flush():
        results = backend.take_results() + refused
        refused.clear()
        for result in sorted(results, key=result_key):
            record = strip_seq(result)
            if "response" in record:
                counts["responses"] += 1
                if not backend.reports_cycles:
                    record["response"].pop("cycle", None)
            elif "to_software" in record:
                counts["to_software"] += 1
            emit(record)

    def barrier():
        try:
            backend.run_until_idle(budget_cycles)
        finally:
            flush()

    where = "end of trace"
    try:
        for item in trace:
            where = f"trace line {item.line}"
            a = item.args
            if item.kind == "capsule":
                backend.deliver(a["capsule"], a["qpn"], counts["capsules"])
                counts["capsules"] += 1
            elif item.kind == "write_mem":
                backend.write_mem(a["rkey"], a["offset"], a["data"])
            elif item.kind == "wait":
                barrier()
            elif item.kind == "dump_mem":
                barrier()
                data = backend.dump_mem(a["rkey"], a["offset"], a["length"])
                emit({"mem": {"rkey": a["rkey"], "offset": a["offset"], "data": data.hex()}})
            elif item.kind == "dump_lba":
                barrier()
                data = backend.dump_lba(a["ssd"], a["nsid"], a["slba"], a["nlb"])
                emit({"lba": {"ssd": a["ssd"], "nsid": a["nsid"], "slba": a["slba"],
                              "data": data.hex()}})
            elif item.kind == "fault":
                barrier()
                backend.inject_fault(a)
            elif item.kind in CONTROL_KINDS:
                # not a barrier: once the capsules before it are looked up, the call is
                # made with their commands in flight (docs/replay.md, "Control lines");
                # no results are flushed, the segment goes on
                backend.run_until_accepted(budget_cycles)
                error = backend.control(item.kind, a)
                if error is not None:
                    # between the outcomes of the capsules before it and after it
                    refused.append({"seq": counts["capsules"],
                                    "control_error": control_error(item.line, error)})
        where = "end of trace"
        barrier()
    except InvariantError as exc:
        try:
            flush()                     # what the unfinished segment produced, ordered
        except InvariantError:
            pass
        raise InvariantError(f"{where}: {exc}") from exc
    summary = {"summary": {"capsules": counts["capsules"], "responses": counts["responses"],
                           "to_software": counts["to_software"], "cycles": backend.cycles}}
    emit(summary)
    return summary
