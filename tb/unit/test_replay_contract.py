"""`nvmf-offload replay`: contract details of docs/replay.md on the model backend.

Messages of exit status 2 name the file, the line and the full field path;
a TARGET value the driver refuses is reported with the driver's errno.
"""

import json

import pytest

from rtl.formats import Opcode
from sim.replay import EXIT_INPUT, EXIT_OK
from sim.traffic.capsules import keyed_sgl, make_sqe
from tb.unit.test_replay_model import ROOT, message, run, small


@pytest.mark.parametrize("line_text, field", [
    ('{"dump_mem": {"rkey": 7, "offset": 0, "length": 2, "rkey": 7}}', "dump_mem.rkey"),
    ('{"fault": {"kind": "clear", "kind": "clear"}}', "fault.kind"),
    ('{"wait": "idle", "wait": "idle"}', "wait"),
])
def test_key_given_twice_is_named_by_its_trace_key_path(tmp_path, line_text, field):
    status, results, err, (_, trpath) = run(tmp_path, small(), ['{"wait": "idle"}', line_text])
    assert (status, results) == (EXIT_INPUT, None)
    assert err == message(trpath, 2, field, "key given twice on one line")


@pytest.mark.parametrize("edit, line, field, problem", [
    ({"insert": {19: ["sqsize = 0"]}}, 20, "qp[0].sqsize",
     "qp_set_nvmf refused it: EINVAL: sqsize 0 is out of range 1..65536"),
    ({"insert": {19: ["sqid = 0"]}}, 20, "qp[0].sqid",
     "qp_set_nvmf refused it: EINVAL: sqid 0 is out of range 1..65535"),
    ({"replace": {18: "qpn = -1"}}, 18, "qp[0].qpn",
     "qp_set_nvmf refused it: EINVAL: qpn -1 is out of range 0..63"),
    ({"insert": {11: ["queue_depth = 1"]}}, 12, "subsystem[0].queue_depth",
     "create_srq refused it: EINVAL: queue_depth 1 is out of range 2..65536"),
    ({"insert": {19: ["sqsize = 70000"]}}, 20, "qp[0].sqsize",
     "create_srq refused it: EINVAL: queue_depth 70000 is out of range 2..65536"),
    ({"insert": {11: ["max_namespaces = 0"]}}, 12, "subsystem[0].max_namespaces",
     "create_srq refused it: EINVAL: max_namespaces 0 is out of range 1..16"),
    ({"insert": {11: ["max_io_size = 0"]}}, 12, "subsystem[0].max_io_size",
     "create_srq refused it: EINVAL: max_io_size 0 is out of range 1..131072"),
    ({"insert": {11: ["ioccsz = 70000"]}}, 12, "subsystem[0].ioccsz",
     "create_srq refused it: EINVAL: ioccsz 70000 is out of range 4..260"),
    ({"replace": {13: "  fe_nsid = 0"}}, 13, "subsystem[0].namespace[0].fe_nsid",
     "map_nvmf_nsid refused it: EINVAL: fe_nsid 0 is out of range 1..16"),
    ({"replace": {18: 'qpn = "3"'}}, 18, "qp[0].qpn", "must be an integer, not '3'"),
])
def test_value_the_driver_refuses_is_reported_with_its_errno(tmp_path, edit, line, field,
                                                              problem):
    status, results, err, (tpath, _) = run(tmp_path, small(**edit))
    assert (status, results) == (EXIT_INPUT, None)
    assert err == message(tpath, line, field, problem)


@pytest.mark.parametrize("edit, line, field, problem", [
    ({"insert": {5: ["queue_entries = 1"]}}, 6, "ssd[0].queue_entries",
     "create_nvme_ctrl (ssd 'ssd0' queue 0) refused it: EINVAL: sq_entries 1 is out of "
     "range 2..1024"),
    ({"insert": {5: ["cmd_timeout = -1"]}}, 6, "ssd[0].cmd_timeout",
     "create_nvme_ctrl (ssd 'ssd0' queue 0) refused it: EINVAL: cmd_timeout -1 is out of "
     "range 0..4294967295"),
    ({"insert": {8: ["  lba_data_size = 256"]}}, 9, "ssd[0].namespace[0].lba_data_size",
     "map_nvmf_nsid refused it: ENOTSUP: lba_data_size 256 is not supported "
     "(supported: [512, 4096])"),
    ({"insert": {8: ["  lba_data_size = 1000"]}}, 9, "ssd[0].namespace[0].lba_data_size",
     "1000 is not a power of two"),
    # an SSD (namespace) no subsystem uses: the driver never sees it, replay's own ranges
    ({"insert": {8: ["[[ssd]]", 'name = "ssd1"', "queue_entries = 1"]}}, 11,
     "ssd[1].queue_entries", "1 is out of range 2..65536"),
    ({"insert": {8: ["[[ssd]]", 'name = "ssd1"', "  [[ssd.namespace]]", "  nsid = 1",
                     "  nsze = 8", "  lba_data_size = 256"]}}, 14,
     "ssd[1].namespace[0].lba_data_size", "256 is out of range 512..65536"),
])
def test_ssd_values_the_driver_checks_are_its_refusals(tmp_path, edit, line, field, problem):
    status, results, err, (tpath, _) = run(tmp_path, small(**edit))
    assert (status, results) == (EXIT_INPUT, None)
    assert err == message(tpath, line, field, problem)


def _write(cid, slba):
    return make_sqe(Opcode.WRITE, cid, 1, sgl=keyed_sgl(0x1000, 512, 7), slba=slba).hex()


def test_cq_access_faults_are_races_with_more_than_one_command_as_documented(tmp_path):
    """A cq_doorbell / cqe_read fault fails whatever is outstanding when the first
    completion comes: with one capsule after it the results do not depend on the seed,
    with several they do (docs/replay.md, "Faults", says so)."""
    text = (ROOT / "docs" / "replay.md").read_text()
    assert "(`cqe_read`, `cq_doorbell`) come in completion order" in " ".join(text.split())
    fault = {"fault": {"kind": "pci_error", "ssd": "ssd0", "queue": 0,
                       "access": "cq_doorbell"}}
    target = small(replace={5: "latency_cycles = 200"})

    def outcomes(capsules):
        trace = [fault] + [{"capsule": _write(i + 1, 8 * i), "qpn": 3}
                           for i in range(capsules)]
        seen = set()
        for seed in range(8):
            status, results, _, _ = run(tmp_path, target, trace, seed=seed)
            assert status == EXIT_OK
            seen.add(json.dumps(results))
        return seen

    assert len(outcomes(1)) == 1
    assert len(outcomes(3)) > 1
