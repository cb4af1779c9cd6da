"""`nvmf-offload replay` on the model backend (sim/replay/, docs/replay.md).

Every exit status with the exact message (file, line, field), the examples
reproducing their expected results under several seeds, data integrity
through dump_mem / dump_lba, the ordering and format rules of the results,
and the command line.
"""

import io
import json
import re
from pathlib import Path

import pytest

from rtl.formats import Opcode
from sim import cli
from sim.devices.initiator import pattern
from sim.replay import (
    EXIT_INPUT,
    EXIT_INVARIANT,
    EXIT_OK,
    Backend,
    ModelBackend,
    RtlBackend,
    load_trace,
    parse_target,
    replay,
)
from sim.traffic.capsules import keyed_sgl, make_sqe

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "replay"
TRACES = ("basic", "errors", "sqhd", "faults", "control")

# A small target; tests replace or insert lines by number, so the numbers matter.
SMALL = [
    "format = 1",                   # 1
    "",                             # 2
    "[[ssd]]",                      # 3
    'name = "ssd0"',                # 4
    "latency_cycles = 10",          # 5
    "  [[ssd.namespace]]",          # 6
    "  nsid = 1",                   # 7
    "  nsze = 1000",                # 8
    "",                             # 9
    "[[subsystem]]",                # 10
    'name = "s"',                   # 11
    "  [[subsystem.namespace]]",    # 12
    "  fe_nsid = 1",                # 13
    '  ssd = "ssd0"',               # 14
    "  nsid = 1",                   # 15
    "",                             # 16
    "[[qp]]",                       # 17
    "qpn = 3",                      # 18
    'subsystem = "s"',              # 19
    "",                             # 20
    "[[region]]",                   # 21
    "rkey = 7",                     # 22
    "addr = 0x1000",                # 23
    "size = 0x10000",               # 24
]
READ_CAPSULE = make_sqe(Opcode.READ, 1, 1, sgl=keyed_sgl(0x1000, 512, 7)).hex()
WRITE_CAPSULE = make_sqe(Opcode.WRITE, 2, 1, sgl=keyed_sgl(0x1000, 512, 7)).hex()
READ_BACK_CAPSULE = make_sqe(Opcode.READ, 3, 1, sgl=keyed_sgl(0x1100, 512, 7)).hex()


def small(replace=None, insert=None, delete=()):
    """SMALL with ``replace`` {line: text}, ``insert`` {after line: [texts]}, ``delete``."""
    out = []
    for no, text in enumerate(SMALL, 1):
        if no in delete:
            continue
        out.append((replace or {}).get(no, text))
        out.extend((insert or {}).get(no, []))
    return "\n".join(out) + "\n"


def run(tmp_path, target, trace=(), backend="model", seed=0, waves=None):
    """Run replay with files in tmp_path: ``(status, results or None, stderr, paths)``."""
    tpath = tmp_path / "target.toml"
    tpath.write_text(target)
    trpath = tmp_path / "trace.jsonl"
    trpath.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                              for x in trace))
    out = tmp_path / "out.jsonl"
    err = io.StringIO()
    status = replay(str(tpath), str(trpath), backend=backend, out=str(out), seed=seed,
                    waves=waves, stderr=err)
    results = [json.loads(line) for line in out.read_text().splitlines()] \
        if out.exists() else None
    return status, results, err.getvalue(), (tpath, trpath)


def message(path, line, field, problem):
    where = f"{path}:{line}" if line is not None else f"{path}"
    return f"nvmf-offload replay: {where}: {field + ': ' if field else ''}{problem}\n"


# --- the examples ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 3, 12345])
@pytest.mark.parametrize("name", TRACES)
def test_example_reproduces_its_expected_results(tmp_path, name, seed):
    out = tmp_path / "out.jsonl"
    err = io.StringIO()
    status = replay(str(EXAMPLES / "target.toml"), str(EXAMPLES / f"{name}.jsonl"),
                    out=str(out), seed=seed, stderr=err)
    assert (status, err.getvalue()) == (EXIT_OK, "")
    assert out.read_text() == (EXAMPLES / f"{name}.expected.jsonl").read_text()


def _cqe(record):
    raw = bytes.fromhex(record["response"]["cqe"])
    return {"sqhd": int.from_bytes(raw[8:10], "little"), "cid": int.from_bytes(raw[12:14],
                                                                               "little"),
            "sc": raw[14] >> 1 | (raw[15] & 1) << 7}


def test_control_example_follows_the_contract():
    """examples/replay/control.jsonl, read against docs/replay.md ("Control lines"): what
    was in flight at the unmap is served, what comes after goes to software (0x0B Invalid
    Namespace on the offload-only QP), refusals are control_error lines in trace order
    with the driver's errno, a re-mapped namespace serves the blocks written before, and
    qp_set starts the QP afresh."""
    got = _expected("control")
    kinds = [next(iter(r)) for r in got]
    assert kinds == ["response", "response", "to_software", "response", "control_error",
                     "control_error", "control_error", "response", "to_software", "response",
                     "control_error", "mem", "summary"]
    assert [(_cqe(r)["cid"], _cqe(r)["sc"]) for r in got[:2]] == [(1, 0), (2, 0)]
    assert got[2]["to_software"]["reason"] == "unknown_nsid"
    assert got[3]["response"]["qpn"] == 18 and _cqe(got[3])["sc"] == 0x0B
    assert [(r["control_error"]["line"], r["control_error"]["errno"])
            for r in got if "control_error" in r] == [(7, "ENOENT"), (8, "EBUSY"),
                                                       (10, "ENOENT"), (17, "EINVAL")]
    assert (_cqe(got[7])["cid"], _cqe(got[7])["sc"]) == (4, 0)
    assert got[8]["to_software"]["reason"] == "not_offloaded"
    assert (_cqe(got[9])["cid"], _cqe(got[9])["sqhd"]) == (6, 1)
    data = bytes.fromhex(got[11]["mem"]["data"])
    assert data[:4096] == bytes(4096)                         # cid 2 read unwritten blocks
    assert data[0x2000:0x3000] == pattern("control", 4096)    # cid 4: what cid 1 wrote


# SMALL with a second SSD queue and a second subsystem "t" that owns it.
TWO_SUBSYSTEMS = dict(insert={5: ["io_queues = 2"], 15: ["  queues = [0]"], 16: [
    "[[subsystem]]", 'name = "t"', "  [[subsystem.namespace]]", "  fe_nsid = 1",
    '  ssd = "ssd0"', "  nsid = 1", "  queues = [1]", ""]})


@pytest.mark.parametrize("line, errno_name, words", [
    ({"map": {"subsystem": "s", "fe_nsid": 2, "ssd": "ssd0", "nsid": 1, "queues": [1]}},
     "EINVAL", "queue 1 of ssd 'ssd0' serves subsystem 't', not 's'"),
    ({"map": {"subsystem": "s", "fe_nsid": 1, "ssd": "ssd0", "nsid": 1, "queues": [0]}},
     "EEXIST", "fe_nsid 1 is already mapped in srq 0"),
    ({"map": {"subsystem": "s", "fe_nsid": 0, "ssd": "ssd0", "nsid": 1, "queues": [0]}},
     "EINVAL", "fe_nsid 0"),
    ({"unmap": {"subsystem": "t", "fe_nsid": 2}}, "ENOENT",
     "fe_nsid 2 is not mapped in srq 1"),
    ({"qp_set": {"qpn": 3, "offload": False, "offload_only": True}}, "EINVAL",
     "offload_only True without offload"),
    ({"destroy_ctrl": {"ssd": "ssd0", "queue": 1}}, "EBUSY",
     "backend ctrl 1 still serves fe_nsids [1] of srq 1"),
])
def test_refused_control_line_is_a_control_error_and_the_trace_goes_on(tmp_path, line,
                                                                        errno_name, words):
    trace = [{"capsule": WRITE_CAPSULE, "qpn": 3}, line, {"capsule": READ_CAPSULE, "qpn": 3}]
    status, results, err, _ = run(tmp_path, small(**TWO_SUBSYSTEMS), trace)
    assert (status, err) == (EXIT_OK, "")
    assert [next(iter(r)) for r in results] == ["response", "control_error", "response",
                                                "summary"]
    refusal = results[1]["control_error"]
    assert (refusal["line"], refusal["errno"]) == (2, errno_name)
    assert words in refusal["message"], refusal["message"]


def test_example_through_the_command_line_on_stdout(capsys):
    status = cli.main(["replay", str(EXAMPLES / "target.toml"), str(EXAMPLES / "sqhd.jsonl"),
                       "--backend", "model", "--seed", "7"])
    captured = capsys.readouterr()
    assert status == EXIT_OK and captured.err == ""
    assert captured.out == (EXAMPLES / "sqhd.expected.jsonl").read_text()


def _expected(name):
    return [json.loads(x) for x in (EXAMPLES / f"{name}.expected.jsonl").read_text().splitlines()]


def _trace(name):
    target = parse_target((EXAMPLES / "target.toml").read_text(), "target.toml")
    return load_trace(EXAMPLES / f"{name}.jsonl", target)


def test_basic_example_reads_back_what_it_wrote():
    mem = {r["mem"]["offset"]: bytes.fromhex(r["mem"]["data"])
           for r in _expected("basic") if "mem" in r}
    lba = [(r["lba"]["ssd"], r["lba"]["slba"], bytes.fromhex(r["lba"]["data"]))
           for r in _expected("basic") if "lba" in r]
    written = {(i.args["rkey"], i.args["offset"]): i.args["data"] for i in _trace("basic")
               if i.kind == "write_mem"}
    a, c, big = (written[(0x1000, off)] for off in (0, 0x30000, 0x40000))
    b = bytes.fromhex(json.loads((EXAMPLES / "basic.jsonl").read_text().splitlines()[2])
                      ["capsule"])[64:]                        # the in-capsule data
    assert a == pattern("basic/a", 4096) and len(b) == 1024
    assert lba[0] == ("ssd0", 0, a) and lba[1] == ("ssd0", 100, b) and lba[2] == ("ssd1", 5, c)
    assert mem[0x10000] == a and mem[0x20000] == b            # Reads into other memory
    assert mem[0x50000] == c and mem[0x60000] == big          # 4 KiB blocks, a PRP list
    # Write Zeroes on 0-1, DSM deallocate on 4-5: those read as zeroes, the rest remains.
    assert lba[3][2] == bytes(1024) + a[1024:2048] + bytes(1024) + a[3072:]


def test_results_follow_the_format_rules():
    hexes = re.compile(r"[0-9a-f]*")
    for name in TRACES:
        results = _expected(name)
        assert list(results[-1]) == ["summary"]
        assert all(len(r) == 1 for r in results)
        summary = results[-1]["summary"]
        assert summary["cycles"] == 0
        assert summary["responses"] == sum("response" in r for r in results)
        assert summary["to_software"] == sum("to_software" in r for r in results)
        capsules = sum(i.kind == "capsule" for i in _trace(name))
        assert summary["capsules"] == capsules
        for r in results:
            if "response" in r:
                assert list(r["response"]) == ["qpn", "cqe", "invalidate_rkey"]  # no cycle
                assert len(r["response"]["cqe"]) == 32
            for body in r.values():
                for key in ("cqe", "capsule", "data"):
                    if key in body:
                        assert hexes.fullmatch(body[key])


def test_results_are_ordered_by_capsule_within_a_segment():
    # Per segment, the CIDs of the examples' responses rise with the capsule order.
    for name in ("basic", "errors", "sqhd"):
        cids = []
        for r in _expected(name):
            if "response" in r:
                cids.append(int.from_bytes(bytes.fromhex(r["response"]["cqe"])[12:14],
                                           "little"))
        assert cids == sorted(cids), name


def test_faults_example_shows_every_fault_kind():
    events = [r["event"]["type"] for r in _expected("faults") if "event" in r]
    assert events == ["QP_FATAL", "QP_FATAL", "NVME_TIMEOUT", "NVME_TIMEOUT", "NVME_PCI_ERR"]
    kinds = {i.args["kind"] for i in _trace("faults") if i.kind == "fault"}
    assert kinds == {"ssd_status", "rdma_error", "ssd_timeout", "pci_error"}


# --- exit status 1, 3 and the backend interface ------------------------------------------------

def test_hang_is_exit_status_1_with_the_results_so_far(tmp_path):
    trace = [{"capsule": READ_CAPSULE, "qpn": 3}, {"wait": "idle"},
             {"fault": {"kind": "ssd_timeout", "ssd": "ssd0", "nsid": 1, "mode": "never"}},
             {"capsule": READ_CAPSULE, "qpn": 3},
             {"dump_mem": {"rkey": 7, "offset": 0, "length": 4}}]
    status, results, err, _ = run(tmp_path, small(), trace)
    assert status == EXIT_INVARIANT
    assert [list(r) for r in results] == [["response"]]        # no summary
    assert re.fullmatch(r"nvmf-offload replay: invariant violated: trace line 5: hang at "
                        r"cycle \d+: 1 command\(s\) outstanding on backend queues, first seq 1 "
                        r"on queue 0 \(cmd_timeout none\), and nothing is scheduled to make "
                        r"progress\n", err)


def test_timeout_turns_the_lost_command_into_a_response(tmp_path):
    target = small(insert={5: ["cmd_timeout = 1000"]})
    trace = [{"fault": {"kind": "ssd_timeout", "ssd": "ssd0", "nsid": 1, "mode": "never"}},
             {"capsule": READ_CAPSULE, "qpn": 3}]
    status, results, err, _ = run(tmp_path, target, trace)
    assert (status, err) == (EXIT_OK, "")
    assert results[0]["response"]["cqe"] == "00000000000000000100010001000c00"
    assert results[1] == {"event": {"type": "NVME_TIMEOUT", "object": 0}}


def test_malformed_input_is_rejected_before_a_simulator_starts(tmp_path):
    status, _, err, (tpath, _) = run(tmp_path, small(replace={1: "format = 3"}),
                                     backend="icarus")
    assert status == EXIT_INPUT and "unsupported format 3" in err


def test_backend_interface():
    assert issubclass(ModelBackend, Backend) and issubclass(RtlBackend, Backend)
    assert ModelBackend.reports_cycles is False and RtlBackend.reports_cycles is True


def test_waves_with_the_model_is_a_note(tmp_path):
    status, results, err, _ = run(tmp_path, small(), [], waves="w.fst")
    assert status == EXIT_OK
    assert err == "nvmf-offload replay: --waves w.fst: the model backend has no waveforms; " \
                  "ignored\n"
    assert results == [{"summary": {"capsules": 0, "responses": 0, "to_software": 0,
                                    "cycles": 0}}]


# --- exit status 2: TARGET --------------------------------------------------------------------

KNOWN_SSD = "cmd_timeout, io_queues, latency_cycles, name, namespace, polling, queue_entries"


@pytest.mark.parametrize("edit, line, field, problem", [
    ({"replace": {5: "latency = 10"}}, 5, "ssd[0].latency", f"unknown key (known: {KNOWN_SSD})"),
    ({"replace": {8: '  nsze = "big"'}}, 8, "ssd[0].namespace[0].nsze",
     "must be an integer in 1..18446744073709551615, not 'big'"),
    ({"replace": {8: "  nsze = 0"}}, 8, "ssd[0].namespace[0].nsze",
     "0 is out of range 1..18446744073709551615"),
    ({"delete": (4,)}, 3, "ssd[0].name", "missing (required)"),
    ({"replace": {1: "format = 2"}}, 1, "format",
     "unsupported format 2: this tool reads format = 1"),
    ({"replace": {1: 'format = "1"'}}, 1, "format",
     "unsupported format '1': this tool reads format = 1"),
    ({"replace": {14: '  ssd = "ssd9"'}}, 14, "subsystem[0].namespace[0].ssd",
     "'ssd9' names no [[ssd]]"),
    ({"replace": {15: "  nsid = 2"}}, 15, "subsystem[0].namespace[0].nsid",
     "ssd 'ssd0' has no namespace 2"),
    ({"insert": {15: ["  queues = [0, 1]"]}}, 16, "subsystem[0].namespace[0].queues",
     "queue 1 is not one of ssd 'ssd0''s io_queues (0..0)"),
    ({"insert": {15: ["  queues = []"]}}, 16, "subsystem[0].namespace[0].queues",
     "must be a non-empty list of integers in 0..1023, not []"),
    ({"insert": {11: ['ops = ["read", "erase"]']}}, 12, "subsystem[0].ops",
     "'erase' is not an operation name (flush, write, read, write_zeroes, dsm)"),
    ({"replace": {19: 'subsystem = "t"'}}, 19, "qp[0].subsystem", "'t' names no [[subsystem]]"),
    ({"delete": (19,)}, 17, "qp[0].subsystem", "missing (required when offload = true)"),
    ({"insert": {19: ["offload = 1"]}}, 20, "qp[0].offload", "must be true or false, not 1"),
    ({"insert": {24: ["[[region]]", "rkey = 7", "addr = 0", "size = 1"]}}, 26, "region[1].rkey",
     "rkey 0x7 appears in another [[region]]"),
    ({"insert": {24: ["[[qp]]", "qpn = 3", "offload = false"]}}, 26, "qp[1].qpn",
     "qpn 3 appears in another [[qp]]"),
    ({"replace": {24: "size = 0xffffffffffffffff"}}, 24, "region[0].size",
     "addr 0x1000 + size 18446744073709551615 wraps the 64-bit address space"),
    ({"insert": {1: ["[engine]", "qp_cout = 3"]}}, 3, "engine.qp_cout", None),
    ({"insert": {1: ["[engine]", "data_width = 100"]}}, 3, "engine.data_width",
     "data_width must be one of (64, 128, 256, 512), not 100"),
    ({"insert": {1: ["[engine]", "lba_sizes = 512"]}}, 3, "engine.lba_sizes",
     "must be a list of integers, not 512"),
    ({"insert": {24: ["[[disk]]", "name = 1"]}}, 25, "disk",
     "unknown key (known: format, engine, ssd, subsystem, qp, region)"),
    ({"insert": {2: ['region = "x"']}, "delete": (21, 22, 23, 24)}, 3, "region",
     "must be an array of tables ([[region]])"),
])
def test_malformed_target_names_file_line_and_field(tmp_path, edit, line, field, problem):
    status, results, err, (tpath, _) = run(tmp_path, small(**edit))
    assert (status, results) == (EXIT_INPUT, None)
    if problem is None:
        assert err.startswith(f"nvmf-offload replay: {tpath}:{line}: {field}: unknown key")
    else:
        assert err == message(tpath, line, field, problem)


def test_target_without_format_names_the_file_and_field(tmp_path):
    status, _, err, (tpath, _) = run(tmp_path, small(delete=(1,)))
    assert status == EXIT_INPUT
    assert err == message(tpath, None, "format", "missing (required): this tool reads "
                                                 "format = 1")


def test_target_toml_syntax_error_names_the_line(tmp_path):
    status, _, err, (tpath, _) = run(tmp_path, small(replace={11: 'name = "s'}))
    assert status == EXIT_INPUT
    assert err == message(tpath, 11, None, "TOML syntax error: Illegal character '\\n'")


def test_staging_memory_is_sized_for_the_windows_unless_given():
    target = parse_target(small(insert={11: ["staging_bytes = 1048576"]}), "t.toml")
    assert target.params.staging_bytes == 1 << 20
    target = parse_target(small(insert={11: ["staging_bytes = 65536"]}), "t.toml")
    assert target.params.staging_bytes == 262144          # the default already holds it


@pytest.mark.parametrize("edit, line, field, problem", [
    ({"insert": {1: ["[engine]", "staging_bytes = 65536"], 11: ["staging_bytes = 131072"]}},
     14, "subsystem[0].staging_bytes",
     "the staging windows need 131072 bytes; the engine's staging memory ([engine] "
     "staging_bytes) has 65536"),
    ({"insert": {11: ["staging_bytes = 4294967295"]}}, 12, "subsystem[0].staging_bytes",
     "the staging windows need 4294967296 bytes, more than the engine's staging memory can "
     "have: staging_bytes must be in 4096..2**28, not 4294967296"),
    ({"insert": {1: ["[engine]", "staging_base = 0x020000000000"]}}, 3, "engine.staging_base",
     "0x20000000000 overlaps the rings, which replay places at [0x20000000000, "
     "0x30000000000)"),
])
def test_staging_memory_must_hold_the_windows(tmp_path, edit, line, field, problem):
    status, _, err, (tpath, _) = run(tmp_path, small(**edit))
    assert status == EXIT_INPUT
    assert err == message(tpath, line, field, problem)


def test_ssd_queue_shared_by_two_subsystems_is_refused(tmp_path):
    target = small(insert={15: ["[[subsystem]]", 'name = "u"', "[[subsystem.namespace]]",
                                "fe_nsid = 1", 'ssd = "ssd0"', "nsid = 1"]})
    status, _, err, (tpath, _) = run(tmp_path, target)
    assert err == message(tpath, 18, "subsystem[1].namespace[0].queues",
                          "queue 0 of ssd 'ssd0' already serves subsystem 's': an I/O queue "
                          "pair serves one subsystem")


@pytest.mark.parametrize("edit, line, field, problem", [
    ({"replace": {13: "  fe_nsid = 99"}}, 13, "subsystem[0].namespace[0].fe_nsid",
     "map_nvmf_nsid refused it: EINVAL: fe_nsid 99 is out of range 1..16"),
    ({"insert": {7: ["  lba_data_size = 2048"]}}, 8, "ssd[0].namespace[0].lba_data_size",
     "map_nvmf_nsid refused it: ENOTSUP: lba_data_size 2048 is not supported "
     "(supported: [512, 4096])"),
    ({"insert": {15: ["  [[subsystem.namespace]]", "  fe_nsid = 1", '  ssd = "ssd0"',
                      "  nsid = 1"]}}, 17, "subsystem[0].namespace[1].fe_nsid",
     "map_nvmf_nsid refused it: EEXIST: fe_nsid 1 is already mapped in srq 0"),
    ({"insert": {11: ["max_namespaces = 1"], 15: ["  [[subsystem.namespace]]", "  fe_nsid = 2",
                                                  '  ssd = "ssd0"', "  nsid = 1"]}},
     17, "subsystem[0].namespace[1]",
     "map_nvmf_nsid refused it: ENOSPC: srq 0 already has its max_namespaces 1; fe_nsid 2 "
     "does not fit"),
    ({"insert": {11: ["ioccsz = 300"]}}, 12, "subsystem[0].ioccsz",
     "create_srq refused it: EINVAL: ioccsz 300 is out of range 4..260"),
    ({"insert": {11: ["staging_bytes = 4096"]}}, 12, "subsystem[0].staging_bytes",
     "create_srq refused it: EINVAL: staging_len 4096 is shorter than min_staging_buf_size "
     "65536"),
    ({"insert": {5: ["queue_entries = 2048"]}}, 6, "ssd[0].queue_entries",
     "create_nvme_ctrl (ssd 'ssd0' queue 0) refused it: EINVAL: sq_entries 2048 is out of "
     "range 2..1024"),
    ({"insert": {11: ["queue_depth = 4"], 19: ["sqsize = 8"]}}, 21, "qp[0].sqsize",
     "qp_set_nvmf refused it: EINVAL: sqsize 8 is out of range 1..4"),
    ({"replace": {18: "qpn = 64"}}, 18, "qp[0].qpn",
     "qp_set_nvmf refused it: EINVAL: qpn 64 is out of range 0..63"),
    ({"insert": {19: ["offload = false", "offload_only = true"]}}, 21, "qp[0].offload_only",
     "qp_set_nvmf refused it: EINVAL: offload_only True without offload (offload False, "
     "srq None)"),
])
def test_driver_refusal_is_exit_status_2_with_its_errno(tmp_path, edit, line, field, problem):
    status, results, err, (tpath, _) = run(tmp_path, small(**edit))
    assert (status, results) == (EXIT_INPUT, None)
    assert err == message(tpath, line, field, problem)


# --- exit status 2: TRACE ---------------------------------------------------------------------

@pytest.mark.parametrize("line_text, field, problem", [
    ('{"capsule": "00", "qpn": 3, "x": 1}', "x",
     "unknown key (known: capsule, write_mem, wait, dump_mem, dump_lba, fault, unmap, map, "
     "qp_set, destroy_ctrl, and qpn with capsule)"),
    ('{"dump": {}}', "dump", "unknown key (known: capsule, write_mem, wait, dump_mem, dump_lba, "
                             "fault, unmap, map, qp_set, destroy_ctrl, and qpn with capsule)"),
    ('{"qpn": 3}', "qpn", "only goes with a capsule"),
    ('{"wait": "idle", "qpn": 3}', "qpn", "only goes with a capsule, not with wait"),
    ('{}', None, "empty object: expected one of capsule, write_mem, wait, dump_mem, dump_lba, "
                 "fault, unmap, map, qp_set, destroy_ctrl"),
    ('[1]', None, "expected a JSON object, not [1]"),
    ('hello', None, "not valid JSON: Expecting value (column 1)"),
    ('{"capsule": "00", "qpn": NaN}', None, "not valid JSON: NaN is not a JSON number"),
    ('{"capsule": "00", "capsule": "01", "qpn": 3}', "capsule", "key given twice on one line"),
    ('{"wait": "idle", "capsule": "00"}', "capsule",
     "one action a line: wait and capsule on one line"),
    ('{"capsule": "0g", "qpn": 3}', "capsule", "not hex: 'g' at position 1"),
    ('{"capsule": "abc", "qpn": 3}', "capsule",
     "odd number of hex digits (3): bytes take two"),
    ('{"capsule": "", "qpn": 3}', "capsule", "empty: a capsule has at least one byte"),
    ('{"capsule": 12, "qpn": 3}', "capsule", "must be a string of hex digits, not 12"),
    ('{"capsule": "00"}', "qpn", "missing (required)"),
    ('{"capsule": "00", "qpn": 3.0}', "qpn", "must be an integer in 0..16777215, not 3.0"),
    ('{"capsule": "00", "qpn": true}', "qpn", "must be an integer in 0..16777215, not true"),
    ('{"capsule": "00", "qpn": 16777216}', "qpn", "16777216 is out of range 0..16777215"),
    ('{"wait": "forever"}', "wait", 'must be "idle", not "forever"'),
    ('{"write_mem": {"rkey": 8, "offset": 0, "data": "00"}}', "write_mem.rkey",
     "rkey 8 (0x8) is not a [[region]] of {target}"),
    ('{"write_mem": {"rkey": 7, "offset": 0}}', "write_mem.data", "missing (required)"),
    ('{"write_mem": {"rkey": 7, "offset": 0, "data": "0"}}', "write_mem.data",
     "odd number of hex digits (1): bytes take two"),
    ('{"write_mem": [1]}', "write_mem", "must be a JSON object, not [1]"),
    ('{"dump_mem": {"rkey": 7, "offset": 65535, "length": 2}}', "dump_mem.offset",
     "offset 65535 + length 2 is beyond the 65536 bytes of rkey 7"),
    ('{"dump_mem": {"rkey": 7, "offset": -1, "length": 2}}', "dump_mem.offset",
     "-1 is out of range 0..18446744073709551615"),
    ('{"dump_mem": {"rkey": 7, "offset": 0, "length": 2, "x": 0}}', "dump_mem.x",
     "unknown key (known: rkey, offset, length)"),
    ('{"dump_lba": {"ssd": "ssd0", "nsid": 1, "slba": 999, "nlb": 2}}', "dump_lba.nlb",
     "slba 999 + nlb 2 is beyond nsze 1000 of ssd 'ssd0' nsid 1"),
    ('{"dump_lba": {"ssd": "ssd1", "nsid": 1, "slba": 0, "nlb": 2}}', "dump_lba.ssd",
     "'ssd1' names no [[ssd]] of {target}"),
    ('{"dump_lba": {"ssd": "ssd0", "nsid": 2, "slba": 0, "nlb": 2}}', "dump_lba.nsid",
     "ssd 'ssd0' has no namespace 2"),
    ('{"fault": {"kind": "meteor"}}', "fault.kind",
     'must be one of "ssd_status", "ssd_timeout", "rdma_error", "pci_error", '
     '"unsolicited_cqe", "clear", not "meteor"'),
    ('{"fault": {"ssd": "ssd0"}}', "fault.kind", "missing (required)"),
    ('{"fault": {"kind": "clear", "count": 2}}', "fault.count", "unknown key (known: kind)"),
    ('{"fault": {"kind": "ssd_status", "ssd": "ssd0", "nsid": 1}}', "fault.sc",
     "missing (required)"),
    ('{"fault": {"kind": "ssd_status", "ssd": "ssd0", "nsid": 1, "sc": 256}}', "fault.sc",
     "256 is out of range 0..255"),
    ('{"fault": {"kind": "ssd_status", "ssd": "ssd0", "nsid": 1, "sc": 1, "count": 0}}',
     "fault.count", "0 is out of range 1..4294967295"),
    ('{"fault": {"kind": "ssd_timeout", "ssd": "ssd0", "nsid": 1, "mode": "never", '
     '"delay_cycles": 5}}', "fault.delay_cycles", 'only goes with mode "late"'),
    ('{"fault": {"kind": "ssd_timeout", "ssd": "ssd0", "nsid": 1, "mode": "late"}}',
     "fault.delay_cycles", "missing (required)"),
    ('{"fault": {"kind": "rdma_error", "rkey": 7, "op": "send"}}', "fault.op",
     'must be one of "read", "write", not "send"'),
    ('{"fault": {"kind": "pci_error", "ssd": "ssd0", "queue": 0, "access": "bar"}}',
     "fault.access", 'must be one of "sqe_write", "sq_doorbell", "cqe_read", "cq_doorbell", '
                     'not "bar"'),
    ('{"fault": {"kind": "pci_error", "ssd": "ssd0", "queue": 1, "access": "cqe_read"}}',
     "fault.queue", "1 is out of range 0..0"),
    # control lines: TARGET names and types are the trace's (exit 2); values, the driver's
    ('{"unmap": {"subsystem": "t", "fe_nsid": 1}}', "unmap.subsystem",
     '"t" names no [[subsystem]] of {target}'),
    ('{"unmap": {"fe_nsid": 1}}', "unmap.subsystem", "missing (required)"),
    ('{"unmap": {"subsystem": "s"}}', "unmap.fe_nsid", "missing (required)"),
    ('{"unmap": {"subsystem": "s", "fe_nsid": "1"}}', "unmap.fe_nsid",
     'must be an integer in 0..4294967295, not "1"'),
    ('{"unmap": {"subsystem": "s", "fe_nsid": 1, "ssd": "ssd0"}}', "unmap.ssd",
     "unknown key (known: subsystem, fe_nsid)"),
    ('{"map": {"subsystem": "s", "fe_nsid": 1, "ssd": "ssd0", "nsid": 1}}', "map.queues",
     "missing (required)"),
    ('{"map": {"subsystem": "s", "fe_nsid": 1, "ssd": "ssd0", "nsid": 1, "queues": []}}',
     "map.queues", "must be a non-empty list of integers, not []"),
    ('{"map": {"subsystem": "s", "fe_nsid": 1, "ssd": "ssd0", "nsid": 1, "queues": [1]}}',
     "map.queues", "queue 1 is out of range 0..0 (ssd 'ssd0' has 1 I/O queues)"),
    ('{"map": {"subsystem": "s", "fe_nsid": 1, "ssd": "ssd0", "nsid": 2, "queues": [0]}}',
     "map.nsid", "ssd 'ssd0' has no namespace 2"),
    ('{"qp_set": {"qpn": 4, "offload": true}}', "qp_set.qpn",
     "QPN 4 is not a [[qp]] of {target} (its subsystem, sqsize and sqid come from there)"),
    ('{"qp_set": {"qpn": 3}}', "qp_set.offload", "missing (required)"),
    ('{"qp_set": {"qpn": 3, "offload": 1}}', "qp_set.offload", "must be true or false, not 1"),
    ('{"destroy_ctrl": {"ssd": "ssd9", "queue": 0}}', "destroy_ctrl.ssd",
     '"ssd9" names no [[ssd]] of {target}'),
    ('{"destroy_ctrl": {"ssd": "ssd0", "queue": 1}}', "destroy_ctrl.queue",
     "1 is out of range 0..0"),
])
def test_malformed_trace_names_file_line_and_field(tmp_path, line_text, field, problem):
    trace = ['{"wait": "idle"}', "", line_text, '{"wait": "idle"}']
    status, results, err, (tpath, trpath) = run(tmp_path, small(), trace)
    assert (status, results) == (EXIT_INPUT, None)
    assert err == message(trpath, 3, field, problem.format(target=tpath))


def test_unused_ssd_queue_cannot_take_a_pci_fault(tmp_path):
    target = small(insert={5: ["io_queues = 2"], 15: ["  queues = [1]"]})
    trace = ['{"fault": {"kind": "pci_error", "ssd": "ssd0", "queue": 0, "access": "sqe_write"}}']
    status, _, err, (_, trpath) = run(tmp_path, target, trace)
    assert err == message(trpath, 1, "fault.queue", "queue 0 of ssd 'ssd0' serves no subsystem "
                                                    "namespace")


def test_unreadable_files_and_output(tmp_path):
    err = io.StringIO()
    missing = tmp_path / "missing.toml"
    assert replay(str(missing), str(missing), stderr=err) == EXIT_INPUT
    assert err.getvalue() == f"nvmf-offload replay: {missing}: cannot read: No such file or " \
                             f"directory\n"
    tpath = tmp_path / "t.toml"
    tpath.write_text(small())
    trpath = tmp_path / "t.jsonl"
    trpath.write_bytes(b'{"wait": "idle"}\n{"capsule": "\xff"}\n')
    err = io.StringIO()
    assert replay(str(tpath), str(trpath), stderr=err) == EXIT_INPUT
    assert err.getvalue() == f"nvmf-offload replay: {trpath}:2: not valid UTF-8\n"
    trpath.write_text('{"wait": "idle"}\n')
    err = io.StringIO()
    out = tmp_path / "no" / "such" / "dir.jsonl"
    assert replay(str(tpath), str(trpath), out=str(out), stderr=err) == EXIT_INPUT
    assert err.getvalue() == f"nvmf-offload replay: {out}: cannot write: No such file or " \
                             f"directory\n"


def test_command_line_exit_statuses(tmp_path, capsys):
    tpath = tmp_path / "t.toml"
    tpath.write_text(small())
    trpath = tmp_path / "t.jsonl"
    capsule = json.dumps({"capsule": READ_CAPSULE, "qpn": 3})
    trpath.write_text(capsule + '\n{"bogus": 1}\n')
    assert cli.main(["replay", str(tpath), str(trpath)]) == EXIT_INPUT
    assert capsys.readouterr().out == ""
    trpath.write_text(capsule + "\n")
    assert cli.main(["replay", str(tpath), str(trpath)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0]) == {"response": {
        "qpn": 3, "cqe": "00000000000000000100010001000000", "invalidate_rkey": None}}
    assert json.loads(lines[-1]) == {"summary": {"capsules": 1, "responses": 1,
                                                 "to_software": 0, "cycles": 0}}
    with pytest.raises(SystemExit) as exc:
        cli.main(["replay", str(tpath)])
    assert exc.value.code == 2


# --- behaviour through replay ------------------------------------------------------------------

def test_dump_lba_and_dump_mem_are_barriers(tmp_path):
    data = pattern("barrier", 512)
    trace = [{"write_mem": {"rkey": 7, "offset": 0, "data": data.hex()}},
             {"capsule": WRITE_CAPSULE, "qpn": 3},
             {"dump_lba": {"ssd": "ssd0", "nsid": 1, "slba": 0, "nlb": 1}},
             {"capsule": READ_BACK_CAPSULE, "qpn": 3},
             {"dump_mem": {"rkey": 7, "offset": 0x100, "length": 512}}]
    status, results, err, _ = run(tmp_path, small(), trace)
    assert (status, err) == (EXIT_OK, "")
    assert [next(iter(r)) for r in results] == ["response", "lba", "response", "mem",
                                                "summary"]
    assert results[1]["lba"] == {"ssd": "ssd0", "nsid": 1, "slba": 0, "data": data.hex()}
    assert results[3]["mem"] == {"rkey": 7, "offset": 0x100, "data": data.hex()}


def test_events_follow_their_capsule_outcome(tmp_path):
    target = small(insert={19: ["offload_only = true"]})
    fabrics = "7f" + "00" * 63
    trace = [{"capsule": fabrics, "qpn": 3}, {"capsule": READ_CAPSULE, "qpn": 3}]
    status, results, _, _ = run(tmp_path, target, trace)
    assert results[:3] == [{"qp_error": {"qpn": 3, "reason": "fabrics"}},
                           {"event": {"type": "UNSUPPORTED_NVMF_OP", "object": 3}},
                           {"qp_error": {"qpn": 3, "reason": "qp_in_error"}}]
