# Over 700 lines: one test per outcome class, fault kind and invariant of docs/engine.md,
# each short, on shared TARGET fixtures.
"""The engine reference model (sim/model/engine.py) and the models around it.

Checks of docs/engine.md at transaction level: the outcome of every capsule
class, the namespace checks, SQHD, invalidate, execution through the SSD
model (PRPs, staging, SQ slots, phase tags, MSI-X and polling), every fault
kind, the exceptions of section 5, and the invariants (no leak at idle, a CQE
for an unknown CID, DMA outside the staging pages, hangs). The systems are
built from TARGET text through sim/replay/, so every one of them is
configured through the driver.
"""

import random

import pytest

from rtl.formats import (
    CQE_BYTES,
    Action,
    CmdDwords,
    Cqe,
    DsmRange,
    EventType,
    NamespaceEntry,
    Opcode,
    ParsedCommand,
    Reason,
    Sqe,
    Table,
    build_capsule,
    decode,
    encode,
    layout_bytes,
)
from sim.codec import Codec
from sim.devices.initiator import Initiator, RdmaStatus, first_mismatch, pattern
from sim.devices.namespace import SsdNamespace
from sim.devices.pcie import PcieError, PcieFabric, SparseMemory
from sim.devices.ssd import NvmeSsd, ProtocolError
from sim.model.engine import (
    EngineModel,
    InvariantError,
    prp_list_pages,
    result_key,
    strip_seq,
)
from sim.replay import ModelBackend, parse_target
from sim.traffic.capsules import dsm_ranges, icd_sgl, keyed_sgl, make_fabrics_sqe, make_sqe

RKEY = 0x10
RADDR = 0x100_0000
RSIZE = 0x80_0000

TARGET = """
format = 1
[engine]
max_io_size = {max_io}
[[ssd]]
name = "ssd0"
io_queues = 2
queue_entries = {entries}
latency_cycles = 100
cmd_timeout = {timeout}
polling = {polling}
  [[ssd.namespace]]
  nsid = 1
  lba_data_size = 512
  nsze = 65536
  [[ssd.namespace]]
  nsid = 7
  lba_data_size = 4096
  nsze = 4096
[[subsystem]]
name = "sub0"
staging_bytes = {staging}
max_io_size = {max_io}
  [[subsystem.namespace]]
  fe_nsid = 1
  ssd = "ssd0"
  nsid = 1
  [[subsystem.namespace]]
  fe_nsid = 2
  ssd = "ssd0"
  nsid = 7
  queues = [1]
  ops = ["read", "write", "flush"]
[[qp]]
qpn = 1
subsystem = "sub0"
sqsize = 16
sqid = 1
[[qp]]
qpn = 2
subsystem = "sub0"
sqsize = 16
sqid = 2
offload_only = true
[[region]]
rkey = 0x10
addr = 0x1000000
size = 0x800000
"""


def system(seed=0, entries=64, timeout=0, polling=False, staging=1 << 20, max_io=131072):
    text = TARGET.format(entries=entries, timeout=timeout, polling=str(polling).lower(),
                         staging=staging, max_io=max_io)
    backend = ModelBackend(seed)
    backend.configure(parse_target(text, "t.toml"))
    return backend


class Run:
    """Deliver capsules with increasing seq numbers; collect ordered results."""

    def __init__(self, backend):
        self.b = backend
        self.seq = 0

    def send(self, capsule, qpn=1):
        self.b.deliver(capsule, qpn, self.seq)
        self.seq += 1
        return self.seq - 1

    def idle(self):
        self.b.run_until_idle()
        return [strip_seq(r) for r in sorted(self.b.take_results(), key=result_key)]

    def one(self, capsule, qpn=1):
        self.send(capsule, qpn)
        return self.idle()


def read(cid, slba, nlb, off=0, nsid=1, length=None, invalidate=False, block=512):
    length = (nlb + 1) * block if length is None else length
    return make_sqe(Opcode.READ, cid, nsid, slba=slba, nlb=nlb,
                    sgl=keyed_sgl(RADDR + off, length, RKEY, invalidate))


def write(cid, slba, nlb, off=0, nsid=1, length=None, invalidate=False, block=512):
    length = (nlb + 1) * block if length is None else length
    return make_sqe(Opcode.WRITE, cid, nsid, slba=slba, nlb=nlb,
                    sgl=keyed_sgl(RADDR + off, length, RKEY, invalidate))


def cqe_of(record):
    return decode(Cqe, bytes.fromhex(record["response"]["cqe"]))


def status_of(record):
    s = cqe_of(record)["status"]
    return s["sct"], s["sc"], s["dnr"]


def kinds(results):
    return [next(iter(r)) for r in results]


# --- the initiator ------------------------------------------------------------------------------

def test_initiator_rdma_errors_are_statuses_not_exceptions():
    ini = Initiator([{"rkey": 1, "addr": 0x1000, "size": 0x100}])
    assert ini.rdma_read(1, 0x1000, 0x100).ok
    assert ini.rdma_read(1, 0x1001, 0x100).status == RdmaStatus.REM_ACCESS_ERR
    assert ini.rdma_read(1, 0xFFF, 1).status == RdmaStatus.REM_ACCESS_ERR
    assert ini.rdma_read(2, 0x1000, 1).status == RdmaStatus.REM_ACCESS_ERR
    assert ini.rdma_write(1, 0x10F0, bytes(0x20)) == RdmaStatus.REM_ACCESS_ERR
    assert ini.read(1, 0, 0x100) == bytes(0x100)        # the failed write changed nothing
    with pytest.raises(ValueError, match="beyond"):
        ini.read(1, 0xF0, 0x20)
    with pytest.raises(ValueError, match="not registered"):
        ini.write(9, 0, b"x")


def test_initiator_regions_share_memory_and_faults_count_down():
    ini = Initiator([{"rkey": 1, "addr": 0x1000, "size": 0x100},
                     {"rkey": 2, "addr": 0x1080, "size": 0x100}])
    ini.write(1, 0x80, b"abc")
    assert ini.read(2, 0, 3) == b"abc"
    ini.inject_error(2, "write", count=2)
    assert ini.rdma_write(2, 0x1080, b"z") == RdmaStatus.REM_OP_ERR
    assert ini.rdma_read(2, 0x1080, 1).data == b"a"      # a READ is not a WRITE
    assert ini.rdma_write(2, 0x1080, b"z") == RdmaStatus.REM_OP_ERR
    assert ini.rdma_write(2, 0x1080, b"z") == RdmaStatus.OK
    assert ini.read(1, 0x80, 3) == b"zbc"


def test_pattern_and_first_mismatch():
    assert pattern("a", 100)[:40] == pattern("a", 40)
    assert pattern("a", 64) != pattern("b", 64)
    assert first_mismatch(b"abc", b"abc") is None
    assert first_mismatch(b"abc", b"abd") == 2
    assert first_mismatch(b"abc", b"ab") == 2


# --- the SSD model ------------------------------------------------------------------------------

def test_ssd_namespace_is_sparse_and_zero_filled():
    ns = SsdNamespace(1, 512, 1 << 40)
    assert ns.read(123456789, 2) == bytes(1024)
    ns.write(5, pattern("x", 1024))
    assert ns.read(5, 2) == pattern("x", 1024)
    ns.deallocate(6, 1)
    assert ns.read(5, 2) == pattern("x", 512) + bytes(512)
    ns.write_zeroes(0, 10)
    assert ns.written_blocks == []
    with pytest.raises(ValueError, match="beyond nsze"):
        ns.read((1 << 40) - 1, 2)


def _ssd_on_fabric(entries=4, **kwargs):
    fabric = PcieFabric()
    staging = SparseMemory()
    fabric.map(0x10_0000, 0x10_0000, staging, "staging")
    fabric.map(0x20_0000, 0x1000, SparseMemory(), "sq")
    fabric.map(0x30_0000, 0x1000, SparseMemory(), "cq")
    ssd = NvmeSsd("d", [SsdNamespace(1, 512, 100)], io_queues=1, **kwargs)
    ssd.attach(fabric, 0x40_0000)
    ssd.create_io_queue(1, sq_addr=0x20_0000, sq_entries=entries, cq_addr=0x30_0000,
                        cq_entries=entries)
    return fabric, staging, ssd


def _submit(fabric, ssd, n, sqe):
    """The ``n``-th SQE (from 1) of a 4-entry SQ, and its tail doorbell."""
    fabric.write(0x20_0000 + (n - 1) % 4 * 64, sqe)
    fabric.write(0x40_0000 + ssd.sq_doorbell_offset(1), (n % 4).to_bytes(4, "little"))


def _cqe(fabric, slot):
    return decode(Cqe, fabric.read(0x30_0000 + slot * CQE_BYTES, CQE_BYTES))


def test_ssd_executes_with_prps_posts_phase_tagged_cqes_and_checks_ranges():
    fabric, staging, ssd = _ssd_on_fabric(latency_cycles=10)
    fabric.write(0x10_0000, pattern("w", 1024))
    _submit(fabric, ssd, 1, make_sqe(Opcode.WRITE, 7, 1, psdt=0, slba=3, nlb=1,
                                     sgl={"prp": {"prp1": 0x10_0000, "prp2": 0}}))
    _submit(fabric, ssd, 2, make_sqe(Opcode.READ, 8, 1, psdt=0, slba=99, nlb=1,
                                     sgl={"prp": {"prp1": 0x10_1000, "prp2": 0}}))
    _submit(fabric, ssd, 3, make_sqe(Opcode.READ, 9, 2, psdt=0, slba=0, nlb=0))
    assert ssd.next_event_time() == 0           # SQEs to fetch
    ssd.advance(0)
    assert ssd.next_event_time() == 10
    ssd.advance(9)
    assert _cqe(fabric, 0)["status"]["p"] == 0         # nothing posted yet
    ssd.advance(10)
    c = [_cqe(fabric, i) for i in range(3)]
    assert [x["cid"] for x in c] == [7, 8, 9]
    assert [x["status"]["p"] for x in c] == [1, 1, 1]
    assert [x["status"]["sc"] for x in c] == [0, 0x80, 0x0B]
    assert [x["sqhd"] for x in c] == [3, 3, 3]
    assert ssd.namespace(1).read(3, 2) == pattern("w", 1024)
    # Consume, then one more: it wraps to slot 3, then 0 with the phase flipped.
    fabric.write(0x40_0000 + ssd.cq_doorbell_offset(1), (3).to_bytes(4, "little"))
    _submit(fabric, ssd, 4, make_sqe(Opcode.FLUSH, 10, 1, psdt=0))
    _submit(fabric, ssd, 5, make_sqe(Opcode.FLUSH, 11, 1, psdt=0))
    ssd.advance(30)                             # fetched now, due at 40
    assert _cqe(fabric, 3)["status"]["p"] == 0
    ssd.advance(40)
    assert _cqe(fabric, 3)["status"]["p"] == 1 and _cqe(fabric, 3)["cid"] == 10
    assert _cqe(fabric, 0)["status"]["p"] == 0 and _cqe(fabric, 0)["cid"] == 11


def test_ssd_steps_are_bus_operations_a_testbench_can_run():
    fabric, staging, ssd = _ssd_on_fabric()
    fabric.write(0x10_0000, pattern("s", 512))
    _submit(fabric, ssd, 1, make_sqe(Opcode.WRITE, 4, 1, psdt=0, slba=7, nlb=0,
                                     sgl={"prp": {"prp1": 0x10_0000, "prp2": 0}}))
    ops = []
    gen = ssd.steps(0)
    reply = None
    while True:
        try:
            op = gen.send(reply)
        except StopIteration as stop:
            assert stop.value is True
            break
        ops.append(op[:2])
        if op[0] == "read":
            reply = fabric.read(op[1], op[2])
        elif op[0] == "read_batch":
            reply = [fabric.read(addr, n) for addr, n in op[1]]
        else:
            reply = fabric.write(op[1], op[2])
    # SQE fetch, the command's data in one batch (a bus face keeps it outstanding), CQE
    assert ops == [("read", 0x20_0000), ("read_batch", [(0x10_0000, 512)]),
                   ("write", 0x30_0000)]
    assert ssd.namespace(1).read(7, 1) == pattern("s", 512)


def test_ssd_reads_only_the_prp_list_entries_it_needs_and_follows_a_chain():
    # 20 KiB from a page-aligned PRP1: four more pages through a list whose first page
    # has room for two entries (the second chains to the next list page).
    fabric, _, ssd = _ssd_on_fabric()
    pages = [0x10_1000, 0x10_2000, 0x10_3000, 0x10_4000]
    first_list, next_list = 0x1A_0FF0, 0x1B_0000
    fabric.write(first_list, b"".join(a.to_bytes(8, "little") for a in (pages[0], next_list)))
    fabric.write(next_list, b"".join(a.to_bytes(8, "little") for a in pages[1:] + [0xBAD]))
    data = pattern("chained", 5 * 4096)
    for i, addr in enumerate([0x10_0000] + pages):
        fabric.write(addr, data[i * 4096:(i + 1) * 4096])
    _submit(fabric, ssd, 1, make_sqe(Opcode.WRITE, 4, 1, psdt=0, slba=0, nlb=39,
                                     sgl={"prp": {"prp1": 0x10_0000, "prp2": first_list}}))
    fabric.log = []
    ssd.advance(0)
    list_reads = [(addr, n) for _, kind, addr, n in fabric.log
                  if kind == "read" and addr in (first_list, next_list)]
    assert list_reads == [(first_list, 16), (next_list, 24)]     # not the 0xBAD entry
    assert _cqe(fabric, 0)["status"]["sc"] == 0
    assert ssd.namespace(1).read(0, 40) == data


def test_ssd_dma_error_is_a_data_transfer_error():
    fabric, _, ssd = _ssd_on_fabric()
    fabric.fail_next(0x10_0000, 4096, "read")
    _submit(fabric, ssd, 1, make_sqe(Opcode.WRITE, 4, 1, psdt=0, slba=7, nlb=0,
                                     sgl={"prp": {"prp1": 0x10_0000, "prp2": 0}}))
    ssd.advance(0)
    assert _cqe(fabric, 0)["status"]["sc"] == 0x04
    assert ssd.namespace(1).written_blocks == []


def test_ssd_refuses_invalid_doorbell_writes():
    fabric, _, ssd = _ssd_on_fabric()
    with pytest.raises(ProtocolError, match="not below"):
        fabric.write(0x40_0000 + ssd.sq_doorbell_offset(1), (4).to_bytes(4, "little"))
    with pytest.raises(ProtocolError, match="not posted"):
        fabric.write(0x40_0000 + ssd.cq_doorbell_offset(1), (1).to_bytes(4, "little"))
    with pytest.raises(PcieError, match="DECERR"):
        fabric.write(0x50_0000, b"1234")


def test_ssd_status_injection_skips_execution_and_counts_down():
    fabric, staging, ssd = _ssd_on_fabric()
    ssd.inject(1, status={"sct": 2, "sc": 0x81, "dnr": 1})
    fabric.write(0x10_0000, pattern("w", 512))
    sqe = make_sqe(Opcode.WRITE, 1, 1, psdt=0, slba=0, nlb=0,
                   sgl={"prp": {"prp1": 0x10_0000, "prp2": 0}})
    _submit(fabric, ssd, 1, sqe)
    _submit(fabric, ssd, 2, sqe)
    ssd.advance(0)
    first, second = _cqe(fabric, 0), _cqe(fabric, 1)
    assert (first["status"]["sct"], first["status"]["sc"], first["status"]["dnr"]) == (2, 0x81, 1)
    assert second["status"]["sc"] == 0
    assert ssd.pending_faults == []


@pytest.mark.parametrize("layout", [Sqe, Cqe, DsmRange, CmdDwords, ParsedCommand])
def test_codec_matches_the_generic_encode_and_decode(layout):
    codec = Codec(layout)
    rng = random.Random(str(layout))
    size = layout_bytes(layout)
    for _ in range(20):
        raw = rng.randbytes(size)
        if layout is ParsedCommand:                   # keep the enum fields valid
            fields = decode(layout, bytes(size))
            fields.update(cid=rng.randrange(1 << 16), action=Action.SOFTWARE,
                          reason=Reason.FUSED, sgl_address=rng.randrange(1 << 64),
                          cdw={"raw": [rng.randrange(1 << 32) for _ in range(6)]})
            raw = encode(layout, fields)
        assert codec.decode(raw) == decode(layout, raw)
    fields = decode(layout, raw)
    for view in ("dptr", "cdw"):                      # a union takes one view
        if view in fields:
            fields[view] = {"raw": fields[view]["raw"]} if view == "cdw" else \
                {"keyed": fields[view]["keyed"]}
    if layout is CmdDwords:
        fields = {"rw": fields["rw"]}
    assert codec.encode(fields) == encode(layout, fields)


def test_prp_list_pages():
    assert [prp_list_pages(n) for n in (0, 1, 2, 3, 513, 514, 1024, 1025)] == \
        [0, 0, 0, 1, 1, 2, 2, 3]


# --- data integrity ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bytes_read_back_equal_bytes_written(seed):
    rng = random.Random(seed)
    b = system(seed=seed)
    run = Run(b)
    written = {}
    for i in range(12):
        nsid, block, nsze = rng.choice(((1, 512, 65536), (2, 4096, 4096)))
        nlb = rng.randrange(32 if block == 4096 else 256)
        slba = rng.randrange(nsze - nlb)
        data = pattern((seed, i), (nlb + 1) * block)
        off = i * 0x20000
        b.write_mem(RKEY, off, data)
        run.send(write(i, slba, nlb, off, nsid=nsid, block=block))
        run.idle()
        written[(nsid, slba)] = (nlb, data)
        ssd_nsid = 1 if nsid == 1 else 7
        assert b.dump_lba("ssd0", ssd_nsid, slba, nlb + 1) == data
    for i, ((nsid, slba), (nlb, _)) in enumerate(written.items()):
        block = 512 if nsid == 1 else 4096
        run.send(read(100 + i, slba, nlb, 0x400000 + i * 0x20000, nsid=nsid, block=block))
    results = run.idle()
    assert len(results) == len(written)
    assert all(status_of(r) == (0, 0, 0) for r in results)
    for i, (_, data) in enumerate(written.values()):
        assert b.dump_mem(RKEY, 0x400000 + i * 0x20000, len(data)) == data
    assert b.engine.leaks()["staging_pages"] == 0


def test_in_capsule_write_lands_on_the_ssd():
    b = system()
    data = pattern("icd", 1536)
    sqe = make_sqe(Opcode.WRITE, 3, 1, slba=40, nlb=2, sgl=icd_sgl(16, 1536))
    r = Run(b).one(build_capsule(sqe, bytes(16) + data + b"tail"))
    assert status_of(r[0]) == (0, 0, 0)
    assert b.dump_lba("ssd0", 1, 40, 3) == data
    counters = b.csr.counters(Table.NS_COUNTERS, 0)
    assert (counters["write_cmds"], counters["write_blocks"], counters["icd_writes"]) == (1, 3, 1)


def test_largest_transfer_fills_exactly_one_prp_list_page():
    # PRP_MAX_IO_BYTES = 2 MiB + 4 KiB = 513 pages: PRP1 and a list page of 512 entries,
    # none of them a chain pointer (a larger max_io_size is refused at elaboration).
    from rtl.formats import PRP_MAX_IO_BYTES
    size = PRP_MAX_IO_BYTES
    b = system(max_io=size, staging=8 << 20)
    data = pattern("chain", size)
    b.write_mem(RKEY, 0, data)
    run = Run(b)
    nlb = size // 512 - 1
    assert status_of(run.one(write(1, 0, nlb, 0, length=size))[0]) == (0, 0, 0)
    assert b.dump_lba("ssd0", 1, 0, nlb + 1) == data
    assert status_of(run.one(read(2, 0, nlb, size, length=size))[0]) == (0, 0, 0)
    assert b.dump_mem(RKEY, size, size) == data


def test_write_zeroes_flush_and_dsm_deallocate():
    b = system()
    b.write_mem(RKEY, 0, pattern("d", 8 * 512))
    run = Run(b)
    run.one(write(1, 0, 7))
    b.write_mem(RKEY, 0x10000, dsm_ranges([(6, 2, 0)]))
    run.send(make_sqe(Opcode.WRITE_ZEROES, 2, 1, slba=0, nlb=1))
    run.send(make_sqe(Opcode.FLUSH, 3, 1))
    run.send(make_sqe(Opcode.DSM, 4, 1, nr=0, ad=1, sgl=keyed_sgl(RADDR + 0x10000, 16, RKEY)))
    assert [status_of(r) for r in run.idle()] == [(0, 0, 0)] * 3
    expect = bytes(1024) + pattern("d", 8 * 512)[1024:3072] + bytes(1024)
    assert b.dump_lba("ssd0", 1, 0, 8) == expect
    c = b.csr.counters(Table.NS_COUNTERS, 0)
    assert (c["flushes"], c["write_zeroes"], c["dsm"], c["errors"]) == (1, 1, 1, 0)


# --- outcomes and checks -----------------------------------------------------------------------

@pytest.mark.parametrize("name, sqe, expect", [
    ("read_lba_out_of_range", read(1, 65535, 1), (0, 0x80, 1)),
    ("read_slba_wraps", read(1, (1 << 64) - 1, 0), (0, 0x80, 1)),
    ("write_lba_out_of_range", write(1, 65500, 99), (0, 0x80, 1)),
    ("write_zeroes_out_of_range", make_sqe(Opcode.WRITE_ZEROES, 1, 1, slba=65536, nlb=0),
     (0, 0x80, 1)),
    ("read_over_max_io_size", read(1, 0, 256), (0, 0x02, 1)),
    ("write_over_max_io_size_and_sgl_mismatch", write(1, 0, 256, length=512), (0, 0x02, 1)),
    ("read_sgl_length_mismatch", read(1, 0, 7, length=4095), (0, 0x0F, 1)),
    ("write_sgl_length_mismatch", write(1, 0, 0, length=1024), (0, 0x0F, 1)),
    ("read_on_4k_namespace_sgl_mismatch", read(1, 0, 0, nsid=2, length=512), (0, 0x0F, 1)),
])
def test_namespace_checks_answer_with_dnr_and_leave_the_ssd_untouched(name, sqe, expect):
    b = system()
    r = Run(b).one(sqe)
    assert kinds(r) == ["response"] and status_of(r[0]) == expect
    assert b.ssds["ssd0"].fetched == []
    assert b.csr.counters(Table.NS_COUNTERS, 0 if "4k" not in name else 1)["errors"] == 1


def test_dsm_range_beyond_nsze_is_checked_once_in_staging():
    b = system()
    b.write_mem(RKEY, 0, dsm_ranges([(0, 8, 0), (65530, 7, 0)]))
    r = Run(b).one(make_sqe(Opcode.DSM, 9, 1, nr=1, ad=1, sgl=keyed_sgl(RADDR, 32, RKEY)))
    assert status_of(r[0]) == (0, 0x80, 1)
    assert b.ssds["ssd0"].fetched == []
    assert b.engine.leaks()["staging_pages"] == 0


def test_dsm_brings_its_whole_sgl_into_staging_and_uses_the_range_list():
    b = system()
    b.write_mem(RKEY, 0, pattern("keep", 8 * 512))
    run = Run(b)
    run.one(write(1, 0, 7))
    b.write_mem(RKEY, 0x10000, dsm_ranges([(2, 3, 0)]) + pattern("junk", 8192 - 16))
    r = run.one(make_sqe(Opcode.DSM, 2, 1, nr=0, ad=1,
                         sgl=keyed_sgl(RADDR + 0x10000, 8192, RKEY)))
    assert status_of(r[0]) == (0, 0, 0)
    assert b.initiator.log[-1].op == "read" and b.initiator.log[-1].length == 8192
    data = pattern("keep", 8 * 512)
    assert b.dump_lba("ssd0", 1, 0, 8) == data[:1024] + bytes(1536) + data[2560:]


def test_unknown_nsid_goes_to_software_or_answers_0x0b_on_offload_only():
    b = system()
    run = Run(b)
    cap = read(5, 0, 0, nsid=9)
    assert run.one(cap) == [{"to_software": {"qpn": 1, "capsule": cap.hex(),
                                             "reason": "unknown_nsid"}}]
    r = run.one(read(6, 0, 0, nsid=0), qpn=2)
    assert status_of(r[0]) == (0, 0x0B, 1)
    assert b.csr.counters(Table.SUBSYSTEM_COUNTERS, 0)["unknown_ns"] == 2


def test_namespace_not_ready_answers_0x82():
    b = system()
    slot = 0
    entry = decode(NamespaceEntry, b.csr.entry(Table.NAMESPACE, slot))
    entry["ready"] = 0
    b.csr.set_entry(Table.NAMESPACE, slot,
                    int.from_bytes(encode(NamespaceEntry, entry), "little"))
    r = Run(b).one(read(1, 0, 0))
    assert status_of(r[0]) == (0, 0x82, 0)
    assert b.csr.counters(Table.NS_COUNTERS, slot)["errors"] == 1


def test_op_disabled_in_the_namespace():
    b = system()
    run = Run(b)
    cap = make_sqe(Opcode.WRITE_ZEROES, 1, 2, slba=0, nlb=0)
    assert run.one(cap) == [{"to_software": {"qpn": 1, "capsule": cap.hex(),
                                             "reason": "op_disabled"}}]
    assert run.one(cap, qpn=2) == [{"qp_error": {"qpn": 2, "reason": "op_disabled"}},
                                   {"event": {"type": "UNSUPPORTED_NVMF_OP", "object": 2}}]
    assert run.one(read(2, 0, 0), qpn=2) == [{"qp_error": {"qpn": 2, "reason": "qp_in_error"}}]


def test_parser_outcomes_and_the_sticky_qp_error():
    b = system()
    run = Run(b)
    fab = make_fabrics_sqe(1, 1)
    assert run.one(fab)[0]["to_software"]["reason"] == "fabrics"
    assert run.one(b"\x01" * 10)[0]["to_software"]["reason"] == "runt"
    assert run.one(fab, qpn=30)[0]["to_software"]["reason"] == "not_offloaded"
    huge = build_capsule(make_sqe(Opcode.WRITE, 1, 1, sgl=icd_sgl(0, 5000)), bytes(5000))
    assert run.one(huge, qpn=40)[0]["to_software"]["reason"] == "not_offloaded"
    assert run.one(huge) == [{"qp_error": {"qpn": 1, "reason": "oversize"}},
                             {"event": {"type": "QP_FATAL", "object": 1}}]
    assert run.one(read(1, 0, 0)) == [{"qp_error": {"qpn": 1, "reason": "qp_in_error"}}]
    b.engine.qp_enabled(1)                   # software re-enabled it with qp_set_nvmf
    r = run.one(read(1, 0, 0))
    assert status_of(r[0]) == (0, 0, 0) and cqe_of(r[0])["sqhd"] == 1


def test_sqhd_is_the_qp_head_after_each_capsule_whatever_the_timing():
    outcomes = None
    for seed in range(4):
        rng = random.Random(99)
        b = system(seed=seed, entries=4, staging=65536)
        run = Run(b)
        sent = []
        for i in range(40):
            choice = rng.randrange(4)
            if choice == 0:
                cap = read(i, rng.randrange(1000), rng.randrange(64), i * 0x8000)
            elif choice == 1:
                cap = write(i, rng.randrange(1000), rng.randrange(64), i * 0x8000)
            elif choice == 2:
                cap = read(i, 70000, 0)                          # 0x80, answered at once
            else:
                cap = b"\x02" * 20                               # runt: advances sq_head
            run.send(cap)
            sent.append(cap)
        results = run.idle()
        responses = [r for r in results if "response" in r]
        for r in responses:
            cqe = cqe_of(r)
            assert cqe["sqhd"] == (cqe["cid"] + 1) % 16 and cqe["sqid"] == 1
        if outcomes is None:
            outcomes = results
        assert results == outcomes             # identical under every seed
        assert b.engine.leaks() == {"staging_pages": 0, "contexts": 0, "abandoned": 0,
                                    "sq_slots": {}}


def test_invalidate_rkey_on_every_response_to_an_invalidate_capsule():
    b = system()
    run = Run(b)
    ok = run.one(read(1, 0, 0, invalidate=True))
    bad = run.one(read(2, 0, 0, invalidate=True, length=7))          # 0x0F
    plain = run.one(read(3, 0, 0))
    assert ok[0]["response"]["invalidate_rkey"] == RKEY
    assert bad[0]["response"]["invalidate_rkey"] == RKEY and status_of(bad[0])[1] == 0x0F
    assert plain[0]["response"]["invalidate_rkey"] is None


def test_queues_are_used_round_robin_and_polling_gives_the_same_results():
    results = []
    for polling in (False, True):
        b = system(polling=polling)
        run = Run(b)
        for i in range(6):
            run.send(read(i, i, 0, i * 512))
        results.append(run.idle())
        assert [qid for qid, _ in b.ssds["ssd0"].fetched] == [1, 2, 1, 2, 1, 2]
    assert results[0] == results[1]


def test_back_pressure_on_staging_and_sq_slots_never_drops():
    # 16 staging pages; a 16 KiB command takes 4 data pages and a PRP list page, so three
    # fit at a time. Each of the two queues has two SQ slots, so 512-byte Reads wait for
    # slots instead.
    small = system(entries=3, staging=65536)
    big = system()
    outs = []
    for b in (small, big):
        b.write_mem(RKEY, 0, pattern("bp", 0x28000))
        run = Run(b)
        for i in range(10):
            run.send(write(i, i * 32, 31, i * 0x4000))
        out = run.idle()                  # (a Read of blocks being written would race)
        for i in range(10):
            run.send(read(10 + i, i * 32, 31, 0x100000 + i * 0x4000))
        for i in range(16):
            run.send(read(20 + i, i, 0, 0x200000 + i * 512))
        outs.append(out + run.idle())
        assert b.dump_mem(RKEY, 0x100000, 0x28000) == pattern("bp", 0x28000)
        assert b.dump_mem(RKEY, 0x200000, 16 * 512) == pattern("bp", 16 * 512)
        assert b.engine.leaks()["staging_pages"] == 0
    assert small.engine.stats["waits_for_staging"] and small.engine.stats["waits_for_sq_slot"]
    assert not big.engine.stats["waits_for_staging"]
    assert outs[0] == outs[1]


def test_counters_count_executed_commands():
    b = system()
    b.write_mem(RKEY, 0, pattern("c", 4096))
    run = Run(b)
    run.send(write(1, 0, 7))
    run.send(read(2, 0, 3, 0x8000))
    run.send(read(3, 0, 1, 0x9000))
    run.idle()
    c = b.csr.counters(Table.NS_COUNTERS, 0)
    assert (c["write_cmds"], c["write_blocks"], c["read_cmds"], c["read_blocks"]) == \
        (1, 8, 2, 6)


# --- faults and exceptions ----------------------------------------------------------------------

def test_fault_ssd_status_passes_through_and_counts_backend_errors():
    b = system()
    b.engine.inject_fault("ssd_status", ssd="ssd0", nsid=1, sct=1, sc=0x80, dnr=0, m=1)
    run = Run(b)
    r = run.one(read(1, 0, 0))
    cqe = cqe_of(r[0])
    assert (cqe["status"]["sct"], cqe["status"]["sc"], cqe["status"]["m"],
            cqe["status"]["p"]) == (1, 0x80, 1, 0)
    assert b.initiator.log == []               # no RDMA WRITE after a failed Read
    # the SSD's status: a backend error of an executed Read, no blocks moved, not an
    # error the engine made (docs/engine.md, the namespace counters)
    c = b.csr.counters(Table.NS_COUNTERS, 0)
    assert (c["errors"], c["backend_errors"], c["read_cmds"], c["read_blocks"]) == (0, 1, 1, 0)
    assert status_of(run.one(read(2, 0, 0))[0]) == (0, 0, 0)
    c = b.csr.counters(Table.NS_COUNTERS, 0)
    assert (c["backend_errors"], c["read_cmds"], c["read_blocks"]) == (1, 2, 1)


def test_fault_rdma_read_error_answers_0x04_and_kills_the_qp():
    b = system()
    b.engine.inject_fault("rdma_error", rkey=RKEY, op="read")
    run = Run(b)
    r = run.one(write(1, 0, 0))
    assert r == [r[0], {"event": {"type": "QP_FATAL", "object": 1}}]
    assert status_of(r[0]) == (0, 0x04, 0)
    assert b.ssds["ssd0"].fetched == []
    assert run.one(read(2, 0, 0))[0] == {"qp_error": {"qpn": 1, "reason": "qp_in_error"}}
    assert b.engine.leaks()["staging_pages"] == 0


def test_rdma_access_outside_the_region_is_an_rdma_error():
    b = system()
    r = Run(b).one(write(1, 0, 0, off=RSIZE - 256))
    assert status_of(r[0]) == (0, 0x04, 0)
    assert r[1] == {"event": {"type": "QP_FATAL", "object": 1}}


def test_fault_rdma_write_error_is_a_qp_error():
    b = system()
    b.engine.inject_fault("rdma_error", rkey=RKEY, op="write")
    r = Run(b).one(read(1, 0, 0, invalidate=True))
    assert r == [{"qp_error": {"qpn": 1, "reason": "rdma_error"}},
                 {"event": {"type": "QP_FATAL", "object": 1}}]
    assert b.engine.leaks()["staging_pages"] == 0


def test_fault_timeout_late_cqe_is_dropped_and_everything_freed():
    b = system(timeout=1000)
    # the CQE comes after the timeout and before the reclaim at twice it
    b.engine.inject_fault("ssd_timeout", ssd="ssd0", nsid=1, mode="late", delay=1500)
    b.write_mem(RKEY, 0, pattern("late", 512))
    run = Run(b)
    r = run.one(write(1, 3, 0))
    assert status_of(r[0]) == (0, 0x06, 0)
    assert r[1]["event"]["type"] == "NVME_TIMEOUT"
    assert b.engine.stats["late_cqes_dropped"] == 1
    assert b.dump_lba("ssd0", 1, 3, 1) == pattern("late", 512)
    assert b.engine.leaks() == {"staging_pages": 0, "contexts": 0, "abandoned": 0,
                                "sq_slots": {}}
    # The context is reused with a new generation; later commands are fine.
    assert [status_of(x) for x in run.one(read(2, 3, 0))] == [(0, 0, 0)]


def test_fault_timeout_never_keeps_the_context_and_staging_reserved():
    b = system(timeout=1000)
    b.engine.inject_fault("ssd_timeout", ssd="ssd0", nsid=1, mode="never")
    run = Run(b)
    r = run.one(read(1, 0, 7))
    assert status_of(r[0]) == (0, 0x06, 0) and r[1] == {
        "event": {"type": "NVME_TIMEOUT", "object": 0}}
    leaks = b.engine.leaks()
    assert (leaks["staging_pages"], leaks["contexts"], leaks["abandoned"]) == (1, 1, 1)
    assert status_of(run.one(read(2, 0, 7))[0]) == (0, 0, 0)


def test_a_command_given_up_is_reclaimed_at_twice_the_timeout_and_its_cqe_dropped_later():
    """A Flush (no staging) whose CQE comes at 5x the timeout: answered 0x06 at the
    timeout, reclaimed at twice it (the queue counts it lost), its CQE dropped when it
    comes; nothing is held after, and the queue serves the next command."""
    b = system(timeout=1000)
    b.engine.inject_fault("ssd_timeout", ssd="ssd0", nsid=1, mode="late", delay=5000)
    run = Run(b)
    r = run.one(make_sqe(Opcode.FLUSH, 1, 1))       # idle once the SSD is done too
    assert status_of(r[0]) == (0, 0x06, 0) and len(r) == 2
    assert b.engine.now > 5000
    assert b.engine.stats["lost_cqes_dropped"] == 1
    assert b.engine.stats["reclaimed"] == 1
    assert b.engine.leaks() == {"staging_pages": 0, "contexts": 0, "abandoned": 0,
                                "sq_slots": {}}
    assert all(q.lost == 0 for q in b.engine._queues.values())
    assert [status_of(x) for x in run.one(read(2, 3, 0))] == [(0, 0, 0)]


def test_never_completing_command_without_timeout_is_a_hang():
    b = system()
    b.engine.inject_fault("ssd_timeout", ssd="ssd0", nsid=1, mode="never")
    run = Run(b)
    run.send(read(1, 0, 0))
    with pytest.raises(InvariantError, match="hang.*cmd_timeout none.*nothing is scheduled"):
        run.idle()


def test_hang_past_the_cycle_budget():
    b = system()
    b.engine.inject_fault("ssd_timeout", ssd="ssd0", nsid=1, mode="late", delay=50_000)
    b.deliver(read(1, 0, 0), 1, 0)
    with pytest.raises(InvariantError, match="not idle within the budget of 10000 cycles"):
        b.run_until_idle(10_000)


def test_command_larger_than_the_staging_window_is_reported_as_a_hang():
    b = system(staging=65536, max_io=131072)
    b.deliver(read(1, 0, 255), 1, 0)               # 128 KiB: 32 pages + a list page > 16
    with pytest.raises(InvariantError, match="needs 33 staging pages.*has 16"):
        b.run_until_idle()


@pytest.mark.parametrize("access", ["sqe_write", "sq_doorbell", "cqe_read", "cq_doorbell"])
def test_fault_pci_error_answers_outstanding_commands_and_kills_the_queue(access):
    b = system()
    b.engine.inject_fault("pci_error", queue=0, access=access)
    run = Run(b)
    for i in range(4):
        run.send(read(i, i, 0, i * 512))
    results = run.idle()
    events = [r["event"] for r in results if "event" in r]
    assert events == [{"type": "NVME_PCI_ERR", "object": 0}]
    statuses = [status_of(r) for r in results if "response" in r]
    assert len(statuses) == 4 and (0, 0x06, 0) in statuses
    # The namespace keeps its other queue; later commands all go there.
    before = len(b.ssds["ssd0"].fetched)
    assert all(status_of(r) == (0, 0, 0) for r in run.one(read(9, 0, 0)))
    assert [qid for qid, _ in b.ssds["ssd0"].fetched[before:]] == [2]


def test_namespace_whose_queues_all_failed_answers_0x82():
    b = system()
    b.engine.inject_fault("pci_error", queue=1, access="sqe_write")    # nsid 2's only queue
    run = Run(b)
    r = run.one(read(1, 0, 0, nsid=2, block=4096))
    assert status_of(r[0]) == (0, 0x06, 0)
    assert status_of(run.one(read(2, 0, 0, nsid=2, block=4096))[0]) == (0, 0x82, 0)


def test_fault_clear_disarms_everything():
    b = system()
    b.engine.inject_fault("ssd_status", ssd="ssd0", nsid=1, sc=0x81)
    b.engine.inject_fault("rdma_error", rkey=RKEY, op="write")
    b.engine.inject_fault("pci_error", queue=0, access="cqe_read")
    b.engine.inject_fault("clear")
    assert status_of(Run(b).one(read(1, 0, 0))[0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="unknown fault kind"):
        b.engine.inject_fault("meteor")


def test_events_stay_queued_without_draining():
    b = system()
    b.engine.drain_events = False
    Run(b).one(make_fabrics_sqe(1, 1), qpn=2)
    assert list(b.csr.events) == [(EventType.UNSUPPORTED_NVMF_OP, 2)]


# --- invariants ---------------------------------------------------------------------------------

def test_dma_into_staging_no_command_owns_is_an_invariant_violation():
    b = system(staging=65536)         # a 64 KiB window in the 256 KiB staging memory
    staging = b.layout.staging["sub0"]
    assert staging == b.target.params.staging_base
    with pytest.raises(InvariantError, match="belongs to no command"):
        b.fabric.write(staging + 8192, b"x" * 16, source="ssd0")
    with pytest.raises(InvariantError, match="outside every staging window"):
        b.fabric.write(staging + 0x20000, b"x", source="ssd0")
    with pytest.raises(PcieError, match="DECERR"):
        b.fabric.write(staging + 0x40000, b"x", source="ssd0")


def test_cqe_for_no_command_is_dropped_and_the_queue_goes_on():
    """An SSD posting a CQE nobody asked for (the CID of the context just freed, one
    beyond every context): consumed and dropped, no result, and the queue still works."""
    b = system()
    plan = b.layout.queues[0]
    run = Run(b)
    first = run.one(read(1, 0, 0))
    ssd = b.ssds[plan.ssd]
    for cid in (0, 0x1234):
        ssd.post_unsolicited(plan.queue + 1, cid)
        assert run.idle() == []
    assert b.engine.stats["unknown_cqes_dropped"] == 2
    assert ssd.queues[plan.queue + 1].cq_head == 3          # all three consumed
    assert first[0]["response"]["cqe"][24:28] == "0100"      # CID 1, success
    second = run.one(read(2, 0, 0))
    cqe = decode(Cqe, bytes.fromhex(second[0]["response"]["cqe"]))
    assert (cqe["cid"], cqe["status"]["sc"], cqe["status"]["sct"]) == (2, 0, 0)


def test_seq_must_increase_and_capsules_must_not_be_empty():
    b = system()
    b.deliver(read(1, 0, 0), 1, 5)
    with pytest.raises(ValueError, match="seq"):
        b.deliver(read(1, 0, 0), 1, 5)
    with pytest.raises(ValueError, match="empty"):
        b.deliver(b"", 1, 6)


def test_engine_model_needs_a_power_of_two_context_count():
    with pytest.raises(ValueError, match="power of two"):
        EngineModel(system().csr, PcieFabric(), Initiator(), contexts=3)
