"""`write_mem` after capsules that use the same initiator memory, on the model backend
(docs/replay.md, "Ordering"; the same trace runs on the RTL in
``tb/replay/test_replay_rtl.py``)."""

import io
import json

import pytest

from sim.replay import EXIT_OK, replay
from tb.replay import write_mem_order


def run_model(tmp_path, seed):
    tpath, trpath, out = (tmp_path / n for n in ("target.toml", "trace.jsonl", "out.jsonl"))
    tpath.write_text(write_mem_order.target())
    trpath.write_text("\n".join(write_mem_order.trace()) + "\n")
    err = io.StringIO()
    status = replay(str(tpath), str(trpath), out=str(out), seed=seed, stderr=err)
    assert (status, err.getvalue()) == (EXIT_OK, "")
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("seed", [0, 3])
def test_write_mem_is_not_seen_by_earlier_capsules_and_reads_land_after_it(tmp_path, seed):
    results = run_model(tmp_path, seed)
    responses = [bytes.fromhex(r["response"]["cqe"]) for r in results if "response" in r]
    assert [int.from_bytes(cqe[12:14], "little") for cqe in responses] == [1, 2, 3]
    assert all(int.from_bytes(cqe[14:16], "little") >> 1 == 0 for cqe in responses)
    assert [r for r in results if "lba" in r or "mem" in r] == write_mem_order.expected()
