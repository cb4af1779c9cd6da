"""`nvmf-offload replay`: contract details of docs/replay.md on the model backend.

Messages of exit status 2 name the file, the line and the full field path;
a TARGET value the driver refuses is reported with the driver's errno.
"""

import pytest

from sim.replay import EXIT_INPUT
from tb.unit.test_replay_model import message, run, small


@pytest.mark.parametrize("line_text, field", [
    ('{"dump_mem": {"rkey": 7, "offset": 0, "length": 2, "rkey": 7}}', "dump_mem.rkey"),
    ('{"fault": {"kind": "clear", "kind": "clear"}}', "fault.kind"),
    ('{"wait": "idle", "wait": "idle"}', "wait"),
])
def test_key_given_twice_is_named_by_its_trace_key_path(tmp_path, line_text, field):
    status, results, err, (_, trpath) = run(tmp_path, small(), ['{"wait": "idle"}', line_text])
    assert (status, results) == (EXIT_INPUT, None)
    assert err == message(trpath, 2, field, "key given twice on one line")
