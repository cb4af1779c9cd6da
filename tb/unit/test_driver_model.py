# Over 700 lines: one test per row of the driver's errno table (docs/control-plane.md)
# and per register-access rule, each short, on shared fixtures.
"""The driver (sim/driver.py) on the control-plane reference model (sim/model/csr.py).

Checks of docs/control-plane.md: the register-access rules and table commands
of the model at the register level, events, counters and lookups on the
datapath side, and every driver call with every errno of the spec's "Driver"
table. Offsets and field positions come from the register map, entry layouts
from rtl/formats.py.
"""

import asyncio
import errno
import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtl.formats import (
    QP_OPS_ALL,
    CmdError,
    CmdOp,
    EventType,
    NamespaceEntry,
    NsCounters,
    NsIndexEntry,
    OpBit,
    SubsystemCounters,
    Table,
    decode,
    encode,
)
from rtl.params import EngineParams
from rtl.regmap import register_map
from sim.driver import (
    EventBatch,
    Namespace,
    NvmeCtrl,
    NvmeCtrlAttrs,
    NvmfCaps,
    NvmfDevice,
    NvmfError,
    OffloadType,
    Srq,
    SrqAttrs,
    ops_mask,
)
from sim.model.csr import OKAY, SLVERR, BusError, CsrModel, ModelRegs

P = EngineParams()
MAP = register_map(P)
COUNTER_MAX = (1 << 48) - 1


def asynctest(fn):
    """Run an ``async def`` test with asyncio.run (no pytest-asyncio here)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def off(name):
    return MAP[name].offset


def fields(name, value):
    reg = MAP[name]
    return {f.name: (value >> f.lsb) & ((1 << f.width) - 1) for f in reg.fields}


def pack(name, **values):
    reg = MAP[name]
    return sum(v << reg.field(k).lsb for k, v in values.items())


def _num(x):
    return getattr(x, "value", x)


def cmd(op, tbl, index):
    return pack("CMD", op=_num(op), tbl=_num(tbl), index=index)


def status(model):
    value, resp = model.read(off("CMD_STATUS"))
    assert resp == OKAY
    return fields("CMD_STATUS", value)


def run_cmd(model, op, tbl, index):
    assert model.write(off("CMD"), cmd(op, tbl, index)) == OKAY
    return CmdError(status(model)["error"])


def result(model, words=16):
    return sum(model.read(off(f"RESULT[{i}]"))[0] << (32 * i) for i in range(words))


def write_arg(model, value):
    for i in range(16):
        assert model.write(off(f"ARG[{i}]"), (value >> (32 * i)) & 0xFFFF_FFFF) == OKAY


def raw(layout, **values):
    return int.from_bytes(encode(layout, values), "little")


class FaultyRegs(ModelRegs):
    """ModelRegs whose reads of some offsets are rewritten: ``read_hooks[offset](value)``."""

    def __init__(self, model, read_hooks=None):
        super().__init__(model)
        self.read_hooks = dict(read_hooks or {})

    async def read(self, offset):
        value = await super().read(offset)
        hook = self.read_hooks.get(offset)
        return hook(value) if hook else value


class SpyRegs(ModelRegs):
    """ModelRegs that calls ``on_cmd()`` after every CMD write (a look between steps)."""

    def __init__(self, model, on_cmd):
        super().__init__(model)
        self.on_cmd = on_cmd

    async def write(self, offset, value):
        await super().write(offset, value)
        if offset == off("CMD"):
            self.on_cmd()


async def open_device(params=P, regs_cls=ModelRegs, **kwargs):
    model = CsrModel(params)
    regs = regs_cls(model, **kwargs)
    dev = await NvmfDevice(regs).open()
    return model, dev


def srq_attrs(**overrides):
    values = dict(ops=QP_OPS_ALL, max_namespaces=8, ioccsz=260, icdoff=0, max_io_size=131072,
                  queue_depth=128, staging_addr=0x1_0000_0000, staging_len=1 << 20)
    values.update(overrides)
    return SrqAttrs(**values)


def ctrl_attrs(**overrides):
    values = dict(sq_addr=0x2000_0000, sq_entries=64, cq_addr=0x2001_0000, cq_entries=64,
                  sq_db_addr=0xF000_1008, cq_db_addr=0xF000_100C)
    values.update(overrides)
    return NvmeCtrlAttrs(**values)


async def expect(err, text, coro):
    """Await ``coro``; it must raise NvmfError with ``err`` and ``text`` in its message."""
    with pytest.raises(NvmfError) as info:
        await coro
    assert info.value.errno == err, info.value
    assert text in info.value.strerror, info.value
    assert isinstance(info.value, OSError)
    return info.value


async def srq_with_ctrl(dev, **srq_overrides):
    srq = await dev.create_srq(srq_attrs(**srq_overrides))
    ctrl = await dev.create_nvme_ctrl(srq, ctrl_attrs())
    return srq, ctrl


# ============================================================================================
# Model: register access
# ============================================================================================

def test_constant_registers_read_their_rdl_reset_values():
    model = CsrModel(P)
    for reg in MAP.registers:
        if all(f.hw == "na" for f in reg.fields):
            assert model.read(reg.offset) == (reg.reset, OKAY), reg.name
    assert model.read(off("ID"))[0] == 0x4E564D46


def test_capabilities_follow_the_elaboration_parameters():
    params = EngineParams(subsystems=2, qp_count=8, namespaces=5, event_depth=4)
    model = CsrModel(params)
    regmap = register_map(params)
    assert model.read(regmap["CAP_MAX_SRQS"].offset)[0] == 2
    assert model.read(regmap["CAP_MAX_QPS"].offset)[0] == 8
    assert model.read(regmap["CAP_MAX_NAMESPACES"].offset)[0] == 5
    assert model.read(regmap["CAP_EVENT_DEPTH"].offset)[0] == 4


def test_address_bits_1_0_are_ignored_on_read_and_write():
    model = CsrModel(P)
    for low in range(4):
        assert model.read(off("ID") + low) == (0x4E564D46, OKAY)
    assert model.write(off("ARG[2]") + 3, 0x1234_5678) == OKAY
    assert model.read(off("ARG[2]") + 1) == (0x1234_5678, OKAY)


@pytest.mark.parametrize("offset", [0x008, 0x00C, 0x070, 0x07C, 0x08C, 0x0B0, 0x180, 0xFFC])
def test_read_of_an_unmapped_address_is_slverr_with_zero_data(offset):
    model = CsrModel(P)
    assert offset not in MAP.by_offset()
    assert model.read(offset) == (0, SLVERR)


@pytest.mark.parametrize("name", ["CMD", "EVENT_CTRL"])
def test_read_of_a_register_without_readable_field_is_slverr(name):
    model = CsrModel(P)
    assert not MAP[name].readable
    assert model.read(off(name)) == (0, SLVERR)


@pytest.mark.parametrize("offset", [0x008, 0x050, 0x180, 0x1000])
def test_write_to_an_unmapped_address_is_slverr(offset):
    model = CsrModel(P)
    assert model.write(offset, 0xFFFF_FFFF) == SLVERR


@pytest.mark.parametrize("name", ["ID", "VERSION", "CAP_MAX_QPS", "CMD_STATUS", "EVENT_STATUS",
                                  "EVENT_HEAD", "EVENT_LOST", "RESULT[0]", "RESULT[15]"])
def test_write_to_a_register_without_writable_field_is_slverr_and_changes_nothing(name):
    model = CsrModel(P)
    model.push_event(EventType.QP_FATAL, 3)
    before = [model.read(r.offset) for r in MAP.registers]
    assert model.write(off(name), 0xFFFF_FFFF) == SLVERR
    assert [model.read(r.offset) for r in MAP.registers] == before


@pytest.mark.parametrize("strobe", [0b0000, 0b0001, 0b0111, 0b1110, 0b1000])
def test_write_with_partial_strobe_is_slverr_and_changes_nothing(strobe):
    model = CsrModel(P)
    model.push_event(EventType.NVME_TIMEOUT, 1)
    assert model.write(off("ARG[0]"), 0xAAAA_AAAA, strobe) == SLVERR
    assert model.write(off("IRQ_ENABLE"), 1, strobe) == SLVERR
    assert model.write(off("EVENT_CTRL"), pack("EVENT_CTRL", pop=1), strobe) == SLVERR
    assert model.write(off("CMD"), cmd(CmdOp.WRITE, Table.QP, 0), strobe) == SLVERR
    assert model.read(off("ARG[0]"))[0] == 0
    assert model.read(off("IRQ_ENABLE"))[0] == 0
    assert fields("EVENT_STATUS", model.read(off("EVENT_STATUS"))[0])["count"] == 1
    assert status(model)["error"] == 0


def test_cmd_write_while_busy_is_slverr_and_changes_nothing():
    model = CsrModel(P)
    write_arg(model, 0x1)
    model.hold_busy()
    assert status(model)["busy"] == 1
    assert model.write(off("CMD"), cmd(CmdOp.WRITE, Table.NS_INDEX, 0)) == SLVERR
    assert model.write(off("CMD"), cmd(0, 0, 0)) == SLVERR
    model.hold_busy(False)
    assert model.entry(Table.NS_INDEX, 0) == 0
    assert status(model) == {"busy": 0, "error": 0}


def test_busy_is_zero_after_reset_and_after_every_command():
    model = CsrModel(P)
    assert status(model)["busy"] == 0
    run_cmd(model, CmdOp.READ, Table.QP, 0)
    assert status(model)["busy"] == 0


def test_arg_reads_back_what_was_written_and_result_is_read_only():
    model = CsrModel(P)
    for i in range(16):
        assert model.write(off(f"ARG[{i}]"), 0x0101_0101 * i) == OKAY
    assert [model.read(off(f"ARG[{i}]"))[0] for i in range(16)] == \
        [0x0101_0101 * i for i in range(16)]
    assert model.write(off("RESULT[3]"), 5) == SLVERR
    assert model.read(off("RESULT[3]")) == (0, OKAY)


def test_irq_enable_holds_only_its_enable_bit():
    model = CsrModel(P)
    assert model.write(off("IRQ_ENABLE"), 0xFFFF_FFFF) == OKAY
    assert model.read(off("IRQ_ENABLE")) == (pack("IRQ_ENABLE", enable=1), OKAY)
    assert model.write(off("IRQ_ENABLE"), 0) == OKAY
    assert model.read(off("IRQ_ENABLE")) == (0, OKAY)


def test_reset_clears_tables_windows_irq_enable_and_events():
    model = CsrModel(P)
    write_arg(model, (1 << 512) - 1)
    run_cmd(model, CmdOp.WRITE, Table.SUBSYSTEM, 1)
    run_cmd(model, CmdOp.READ, Table.SUBSYSTEM, 1)
    model.write(off("IRQ_ENABLE"), 1)
    for _ in range(P.event_depth + 1):
        model.push_event(EventType.QP_FATAL, 1)
    model.count(Table.NS_COUNTERS, 0, 0, 1)
    model.reset()
    for reg in MAP.registers:
        if reg.readable:
            assert model.read(reg.offset) == (reg.reset, OKAY), reg.name
    assert all(not any(entries) for entries in model.tables.values())
    assert not model.irq


def test_model_regs_raise_bus_error_on_slverr():
    async def body():
        regs = ModelRegs(CsrModel(P))
        with pytest.raises(BusError):
            await regs.read(off("CMD"))
        with pytest.raises(BusError):
            await regs.write(off("ID"), 0)
        assert await regs.read(off("ID")) == 0x4E564D46
    asyncio.run(body())


# ============================================================================================
# Model: table commands
# ============================================================================================

@pytest.mark.parametrize("op", [0, 4, 0x80, 0xFF])
def test_cmd_with_an_unknown_op_ends_bad_op(op):
    model = CsrModel(P)
    assert run_cmd(model, op, Table.SUBSYSTEM, 0) == CmdError.BAD_OP


@pytest.mark.parametrize("tbl", [7, 8, 0xFF])
def test_cmd_with_an_unknown_table_ends_bad_table(tbl):
    model = CsrModel(P)
    assert run_cmd(model, CmdOp.READ, tbl, 0) == CmdError.BAD_TABLE


@pytest.mark.parametrize("table", list(Table))
def test_cmd_with_index_at_the_table_size_ends_bad_index(table):
    model = CsrModel(P)
    size = model.sizes[table]
    assert run_cmd(model, CmdOp.READ, table, size - 1) == CmdError.NONE
    assert run_cmd(model, CmdOp.READ, table, size) == CmdError.BAD_INDEX
    assert run_cmd(model, CmdOp.READ, table, 0xFFFF) == CmdError.BAD_INDEX


def test_table_sizes_are_those_of_the_spec():
    params = EngineParams(subsystems=3, qp_count=10, backend_queues=5, srq_namespaces=6,
                          namespaces=7)
    assert CsrModel(params).sizes == {
        Table.SUBSYSTEM: 3, Table.QP: 10, Table.BACKEND_QUEUE: 5, Table.NS_INDEX: 18,
        Table.NAMESPACE: 7, Table.NS_COUNTERS: 7, Table.SUBSYSTEM_COUNTERS: 3}


@pytest.mark.parametrize("table", [Table.NS_COUNTERS, Table.SUBSYSTEM_COUNTERS])
def test_cmd_write_to_a_counter_table_ends_read_only(table):
    model = CsrModel(P)
    write_arg(model, 0x1234)
    assert run_cmd(model, CmdOp.WRITE, table, 0) == CmdError.READ_ONLY
    assert model.entry(table, 0) == 0


@pytest.mark.parametrize("table", [t for t in Table if t not in
                                   (Table.NS_COUNTERS, Table.SUBSYSTEM_COUNTERS)])
def test_cmd_read_clear_of_a_non_counter_table_ends_bad_op(table):
    model = CsrModel(P)
    model.set_entry(table, 0, 0x5A)
    assert run_cmd(model, CmdOp.READ_CLEAR, table, 0) == CmdError.BAD_OP
    assert model.entry(table, 0) == 0x5A
    assert result(model) == 0


def test_cmd_checks_run_in_the_spec_order():
    model = CsrModel(P)
    assert run_cmd(model, 0, 9, 0xFFFF) == CmdError.BAD_OP          # op before table
    assert run_cmd(model, CmdOp.WRITE, 9, 0xFFFF) == CmdError.BAD_TABLE  # table before index
    assert run_cmd(model, CmdOp.WRITE, Table.NS_COUNTERS, 0xFFFF) == CmdError.BAD_INDEX
    assert run_cmd(model, CmdOp.READ_CLEAR, Table.QP, 0xFFFF) == CmdError.BAD_INDEX


def test_failed_cmd_leaves_result_and_tables_unchanged():
    model = CsrModel(P)
    model.set_entry(Table.QP, 1, 0x77)
    run_cmd(model, CmdOp.READ, Table.QP, 1)
    write_arg(model, 0xFFFF)
    tables = {t: list(e) for t, e in model.tables.items()}
    for bad in ((0, Table.QP, 1), (CmdOp.WRITE, 9, 1), (CmdOp.WRITE, Table.QP, 64),
                (CmdOp.WRITE, Table.NS_COUNTERS, 0), (CmdOp.READ_CLEAR, Table.QP, 1)):
        assert run_cmd(model, *bad) != CmdError.NONE
        assert result(model) == 0x77
        assert model.tables == tables


def test_next_successful_cmd_clears_the_error():
    model = CsrModel(P)
    assert run_cmd(model, 0, 0, 0) == CmdError.BAD_OP
    assert run_cmd(model, CmdOp.READ, Table.QP, 0) == CmdError.NONE


@pytest.mark.parametrize("table", [t for t in Table if t not in
                                   (Table.NS_COUNTERS, Table.SUBSYSTEM_COUNTERS)])
def test_write_keeps_the_low_entry_width_bits_and_read_zero_extends(table):
    model = CsrModel(P)
    width = model.widths[table]
    write_arg(model, (1 << 512) - 1)
    assert run_cmd(model, CmdOp.WRITE, table, 1) == CmdError.NONE
    assert model.entry(table, 1) == (1 << width) - 1
    write_arg(model, 0)
    assert run_cmd(model, CmdOp.READ, table, 1) == CmdError.NONE
    assert result(model) == (1 << width) - 1


def test_write_then_read_round_trips_an_entry_little_endian():
    model = CsrModel(P)
    entry = raw(NamespaceEntry, valid=1, ready=1, ops=0b10110, lba_shift=12, subsystem=2,
                fe_nsid=7, backend_nsid=0xDEAD_BEEF, nsze=0x1234_5678_9ABC, queues=0b101)
    write_arg(model, entry)
    assert model.read(off("ARG[0]"))[0] == entry & 0xFFFF_FFFF
    assert run_cmd(model, CmdOp.WRITE, Table.NAMESPACE, 3) == CmdError.NONE
    assert model.decoded(Table.NAMESPACE, 3)["backend_nsid"] == 0xDEAD_BEEF
    assert run_cmd(model, CmdOp.READ, Table.NAMESPACE, 3) == CmdError.NONE
    assert result(model) == entry


@pytest.mark.parametrize("table", [Table.NS_COUNTERS, Table.SUBSYSTEM_COUNTERS])
def test_read_clear_returns_the_counters_and_zeroes_them(table):
    model = CsrModel(P)
    model.count(table, 1, 0, 42)
    assert run_cmd(model, CmdOp.READ_CLEAR, table, 1) == CmdError.NONE
    layout = NsCounters if table == Table.NS_COUNTERS else SubsystemCounters
    first = list(decode(layout, 0))[0]
    assert decode(layout, result(model))[first] == 42
    assert model.entry(table, 1) == 0
    assert run_cmd(model, CmdOp.READ, table, 1) == CmdError.NONE
    assert result(model) == 0


# ============================================================================================
# Model: events, irq, counters
# ============================================================================================

def event_status(model):
    return fields("EVENT_STATUS", model.read(off("EVENT_STATUS"))[0])


def test_events_queue_in_order_and_pop_removes_the_head():
    model = CsrModel(P)
    assert model.read(off("EVENT_HEAD")) == (0, OKAY)
    model.push_event(EventType.NVME_TIMEOUT, 3)
    model.push_event(EventType.QP_FATAL, 0xABCDEF)
    assert event_status(model) == {"count": 2, "overflow": 0}
    head = fields("EVENT_HEAD", model.read(off("EVENT_HEAD"))[0])
    assert head == {"kind": EventType.NVME_TIMEOUT.value, "object": 3}
    assert model.write(off("EVENT_CTRL"), pack("EVENT_CTRL", pop=1)) == OKAY
    head = fields("EVENT_HEAD", model.read(off("EVENT_HEAD"))[0])
    assert head == {"kind": EventType.QP_FATAL.value, "object": 0xABCDEF}
    model.write(off("EVENT_CTRL"), pack("EVENT_CTRL", pop=1))
    assert event_status(model)["count"] == 0
    assert model.read(off("EVENT_HEAD")) == (0, OKAY)


def test_pop_of_an_empty_queue_has_no_effect():
    model = CsrModel(P)
    assert model.write(off("EVENT_CTRL"), pack("EVENT_CTRL", pop=1)) == OKAY
    assert event_status(model) == {"count": 0, "overflow": 0}


def test_event_at_a_full_queue_is_dropped_and_never_silent():
    model = CsrModel(P)
    for i in range(P.event_depth):
        assert model.push_event(EventType.UNSUPPORTED_NVMF_OP, i)
    assert event_status(model) == {"count": P.event_depth, "overflow": 0}
    assert not model.push_event(EventType.QP_FATAL, 99)
    assert not model.push_event(EventType.QP_FATAL, 100)
    assert event_status(model) == {"count": P.event_depth, "overflow": 1}
    assert model.read(off("EVENT_LOST")) == (2, OKAY)
    objects = []
    while event_status(model)["count"]:
        objects.append(fields("EVENT_HEAD", model.read(off("EVENT_HEAD"))[0])["object"])
        model.write(off("EVENT_CTRL"), pack("EVENT_CTRL", pop=1))
    assert objects == list(range(P.event_depth))
    assert event_status(model)["overflow"] == 1           # sticky after draining


def test_clear_overflow_clears_only_the_flag():
    model = CsrModel(P)
    for i in range(P.event_depth + 1):
        model.push_event(EventType.NVME_PCI_ERR, i)
    assert model.write(off("EVENT_CTRL"), pack("EVENT_CTRL", clear_overflow=1)) == OKAY
    assert event_status(model) == {"count": P.event_depth, "overflow": 0}
    assert model.read(off("EVENT_LOST")) == (1, OKAY)


def test_event_lost_saturates():
    model = CsrModel(P)
    for i in range(P.event_depth):
        model.push_event(EventType.NVME_PCI_ERR, i)
    model.event_lost = 0xFFFF_FFFE
    model.push_event(EventType.NVME_PCI_ERR, 0)
    model.push_event(EventType.NVME_PCI_ERR, 0)
    assert model.read(off("EVENT_LOST")) == (0xFFFF_FFFF, OKAY)


def test_event_object_must_fit_24_bits():
    with pytest.raises(ValueError, match="16777216"):
        CsrModel(P).push_event(EventType.QP_FATAL, 1 << 24)


def test_irq_is_high_while_enabled_and_the_queue_is_not_empty():
    model = CsrModel(P)
    assert not model.irq
    model.push_event(EventType.QP_FATAL, 1)
    assert not model.irq                                  # not enabled
    model.write(off("IRQ_ENABLE"), pack("IRQ_ENABLE", enable=1))
    assert model.irq
    model.write(off("EVENT_CTRL"), pack("EVENT_CTRL", pop=1))
    assert not model.irq                                  # empty
    model.push_event(EventType.QP_FATAL, 2)
    assert model.irq
    model.write(off("IRQ_ENABLE"), 0)
    assert not model.irq


def test_count_adds_to_the_field_in_declaration_order():
    model = CsrModel(P)
    names = list(decode(NsCounters, 0))
    for number in range(len(names)):
        model.count(Table.NS_COUNTERS, 2, number, number + 1)
    counters = model.decoded(Table.NS_COUNTERS, 2)
    assert [counters[n] for n in names] == list(range(1, len(names) + 1))
    model.count(Table.SUBSYSTEM_COUNTERS, 1, 0, 7)
    model.count(Table.SUBSYSTEM_COUNTERS, 1, 0, 3)
    assert model.decoded(Table.SUBSYSTEM_COUNTERS, 1) == {"unknown_ns": 10}


def test_counters_saturate_at_2_48_minus_1_without_touching_neighbours():
    model = CsrModel(P)
    model.count(Table.NS_COUNTERS, 0, 3, COUNTER_MAX - 1)
    model.count(Table.NS_COUNTERS, 0, 3, 5)
    model.count(Table.NS_COUNTERS, 0, 4, 1 << 60)
    counters = model.decoded(Table.NS_COUNTERS, 0)
    names = list(counters)
    assert counters[names[3]] == COUNTER_MAX
    assert counters[names[4]] == COUNTER_MAX
    assert counters[names[2]] == 0 and counters[names[5]] == 0
    model.count(Table.SUBSYSTEM_COUNTERS, 0, 0, COUNTER_MAX + 1)
    assert model.decoded(Table.SUBSYSTEM_COUNTERS, 0)["unknown_ns"] == COUNTER_MAX


@pytest.mark.parametrize("args", [(Table.QP, 0, 0, 1), (Table.NS_COUNTERS, 32, 0, 1),
                                  (Table.NS_COUNTERS, 0, 10, 1), (Table.NS_COUNTERS, 0, 0, -1)])
def test_count_rejects_a_bad_increment(args):
    with pytest.raises(ValueError):
        CsrModel(P).count(*args)


# ============================================================================================
# Model: lookups
# ============================================================================================

def test_qp_lookup_returns_the_entry_and_zero_at_or_above_qp_count():
    model = CsrModel(P)
    model.set_entry(Table.QP, 63, (1 << 79) - 1)
    entry = model.qp_entry(63)
    assert entry["attrs"]["offload"] == 1 and entry["sqid"] == 0xFFFF
    zero = model.qp_entry(0)
    assert model.qp_entry(64) == zero and model.qp_entry(1 << 23) == zero
    assert zero["attrs"]["offload"] == 0


def put_ns(model, subsystem, fe_nsid, slot, valid=1, ready=1, tag_sub=None, tag_nsid=None):
    model.set_entry(Table.NS_INDEX, subsystem * P.srq_namespaces + fe_nsid - 1,
                    raw(NsIndexEntry, valid=1, slot=slot))
    model.set_entry(Table.NAMESPACE, slot, raw(
        NamespaceEntry, valid=valid, ready=ready, ops=QP_OPS_ALL, lba_shift=9,
        subsystem=subsystem if tag_sub is None else tag_sub,
        fe_nsid=fe_nsid if tag_nsid is None else tag_nsid, backend_nsid=1, nsze=100))


def test_ns_lookup_hits_a_mapped_namespace():
    model = CsrModel(P)
    put_ns(model, 2, 5, 9)
    status_, slot, entry = model.ns_lookup(2, 5)
    assert (status_, slot) == ("HIT", 9)
    assert entry == model.decoded(Table.NAMESPACE, 9)


def test_ns_lookup_answers_not_ready_while_ready_is_0():
    model = CsrModel(P)
    put_ns(model, 1, 3, 4, ready=0)
    status_, slot, entry = model.ns_lookup(1, 3)
    assert (status_, slot, entry["ready"], entry["valid"]) == ("NOT_READY", 4, 0, 1)


@pytest.mark.parametrize("case", ["subsystem_out_of_range", "fe_nsid_0", "fe_nsid_too_big",
                                  "index_invalid", "namespace_invalid", "other_subsystem_tag",
                                  "other_fe_nsid_tag", "invalid_and_not_ready",
                                  "fe_nsid_negative"])
def test_ns_lookup_not_found_cases(case):
    model = CsrModel(P)
    zero = ("NOT_FOUND", 0, decode(NamespaceEntry, 0))
    put_ns(model, 0, 16, 1)
    put_ns(model, 1, 1, 2)
    sub, nsid = 1, 1
    if case == "subsystem_out_of_range":
        sub = P.subsystems
    elif case == "fe_nsid_0":
        nsid = 0
    elif case == "fe_nsid_too_big":
        sub, nsid = 0, 17
    elif case == "index_invalid":
        nsid = 2
    elif case == "namespace_invalid":
        put_ns(model, 1, 1, 2, valid=0, ready=1)
    elif case == "other_subsystem_tag":
        put_ns(model, 1, 1, 2, tag_sub=0)
    elif case == "other_fe_nsid_tag":
        put_ns(model, 1, 1, 2, tag_nsid=2)
    elif case == "invalid_and_not_ready":
        put_ns(model, 1, 1, 2, valid=0, ready=0)
    elif case == "fe_nsid_negative":
        put_ns(model, 0, 15, 3)                  # what index -1 of subsystem 1 would reach
        nsid = -1
    assert model.ns_lookup(sub, nsid) == zero
    assert model.ns_lookup(0, 16)[0] == "HIT"


def test_ns_lookup_with_a_slot_beyond_the_table_is_not_found():
    model = CsrModel(P)
    model.set_entry(Table.NS_INDEX, 0, raw(NsIndexEntry, valid=1, slot=P.namespaces))
    assert model.ns_lookup(0, 1)[0] == "NOT_FOUND"


SMALL = EngineParams(subsystems=3, srq_namespaces=4, namespaces=6)


@settings(max_examples=60, deadline=None)
@given(index=st.lists(st.tuples(st.booleans(), st.integers(0, 7)), min_size=12, max_size=12),
       namespaces=st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 3),
                                     st.integers(0, 5)), min_size=6, max_size=6))
def test_subsystem_isolation_holds_for_any_table_contents(index, namespaces):
    model = CsrModel(SMALL)
    for i, (valid, slot) in enumerate(index):
        model.set_entry(Table.NS_INDEX, i, raw(NsIndexEntry, valid=int(valid), slot=slot))
    for slot, (valid, ready, sub, nsid) in enumerate(namespaces):
        model.set_entry(Table.NAMESPACE, slot, raw(
            NamespaceEntry, valid=int(valid), ready=int(ready), subsystem=sub, fe_nsid=nsid))
    for sub in range(SMALL.subsystems + 1):
        for nsid in range(SMALL.srq_namespaces + 2):
            status_, slot, entry = model.ns_lookup(sub, nsid)
            if status_ == "NOT_FOUND":
                assert (slot, entry) == (0, decode(NamespaceEntry, 0))
            else:
                assert (entry["subsystem"], entry["fe_nsid"], entry["valid"]) == (sub, nsid, 1)
                assert entry["ready"] == (status_ == "HIT")


@asynctest
async def test_subsystem_isolation_with_the_same_fe_nsids_mapped_in_every_subsystem():
    model, dev = await open_device()
    srqs = []
    for s in range(P.subsystems):
        srq, ctrl = await srq_with_ctrl(dev)
        srqs.append(srq)
        for fe_nsid in (1, 2, 16):
            await dev.map_nvmf_nsid([ctrl], fe_nsid, 512, 100 * s + fe_nsid, 1000)
    # A stale index entry of subsystem 0 aimed at a namespace of subsystem 1.
    stale = srqs[1].namespaces[2].slot
    model.set_entry(Table.NS_INDEX, 0 * P.srq_namespaces + 3 - 1,
                    raw(NsIndexEntry, valid=1, slot=stale))
    for sub in range(P.subsystems):
        for fe_nsid in range(0, P.srq_namespaces + 2):
            status_, slot, entry = model.ns_lookup(sub, fe_nsid)
            if fe_nsid in (1, 2, 16):
                assert status_ == "HIT"
                assert (entry["subsystem"], entry["fe_nsid"]) == (sub, fe_nsid)
                assert entry["backend_nsid"] == 100 * sub + fe_nsid
                assert slot == srqs[sub].namespaces[fe_nsid].slot
            else:
                assert status_ == "NOT_FOUND"


# ============================================================================================
# Driver: open and capabilities
# ============================================================================================

@asynctest
async def test_open_reads_the_capabilities_with_rfc_names():
    model, dev = await open_device()
    caps = dev.caps
    assert isinstance(caps, NvmfCaps)
    assert caps == await dev.query_caps()
    assert caps.offload_type == (OffloadType.WRITE | OffloadType.READ | OffloadType.READ_WRITE
                                 | OffloadType.READ_WRITE_FLUSH | OffloadType.WRITE_ZEROES
                                 | OffloadType.DSM)
    assert (caps.max_backend_ctrls_total, caps.max_srq_backend_ctrls) == (8, 8)
    assert caps.max_srq_namespaces == 16
    assert caps.min_staging_buf_size == 65536
    assert caps.max_io_sz == 131072
    assert (caps.min_nvme_queue_depth, caps.max_nvme_queue_depth) == (2, 1024)
    assert (caps.min_ioccsz, caps.max_ioccsz, caps.max_icdoff) == (4, 260, 0)
    assert caps.lba_data_size_supported == P.lba_size_bitmap
    assert caps.lba_data_sizes() == (512, 4096)
    assert caps.supports_lba_data_size(4096) and not caps.supports_lba_data_size(1024)
    assert caps.max_namespaces == 32
    assert caps.supports_non_offloaded_ops is True
    assert (caps.max_srqs, caps.max_qps, caps.event_depth) == (4, 64, 16)
    assert caps.offloadable_ops() == QP_OPS_ALL
    assert caps.external_staging is True and caps.staging_align == 4096
    assert (caps.staging_bus, caps.staging_engine, caps.staging_size) == (
        P.staging_base, P.staging_axi_base, P.staging_bytes)


@asynctest
async def test_on_chip_staging_reports_its_bus_address_as_the_engine_address():
    params = EngineParams(staging_mode="onchip")
    _, dev = await open_device(params)
    assert dev.caps.external_staging is False
    assert dev.caps.staging_engine == dev.caps.staging_bus == params.staging_base


@asynctest
async def test_create_srq_checks_the_engine_address_against_the_bus_address():
    """Two addresses for one region: the engine's on m_axi_stg, the SSDs' bus address; the
    engine reaches bus address staging_bus + k at staging_engine + k and nowhere else."""
    params = EngineParams(staging_axi_base=0x40_0000_0000)
    model, dev = await open_device(params)
    bus = params.staging_base + 0x10000
    await expect(errno.EINVAL, "staging_engine_addr 0x10000 is not where",
                 dev.create_srq(srq_attrs(staging_addr=bus, staging_len=65536,
                                          staging_engine_addr=0x10000)))
    assert model.entry(Table.SUBSYSTEM, 0) == 0
    srq = await dev.create_srq(srq_attrs(staging_addr=bus, staging_len=65536,
                                         staging_engine_addr=0x40_0001_0000))
    assert model.decoded(Table.SUBSYSTEM, srq.index)["staging_addr"] == bus


@asynctest
async def test_driver_takes_table_sizes_from_capability_registers_not_params():
    params = EngineParams(subsystems=2, qp_count=8, namespaces=3, backend_queues=2,
                          lba_sizes=(512, 1024, 65536))
    model = CsrModel(params)
    dev = await NvmfDevice(ModelRegs(model)).open()      # default params: the map only
    assert (dev.caps.max_srqs, dev.caps.max_qps, dev.caps.max_namespaces) == (2, 8, 3)
    assert dev.caps.lba_data_sizes() == (512, 1024, 65536)
    await dev.create_srq(srq_attrs())
    await dev.create_srq(srq_attrs())
    await expect(errno.ENOSPC, "2", dev.create_srq(srq_attrs()))
    await expect(errno.EINVAL, "qpn 8", dev.qp_set_nvmf(8, None))


@asynctest
async def test_open_waits_for_busy_to_clear():
    model = CsrModel(P)
    polls = {"n": 0}

    def busy_for_a_while(value):
        polls["n"] += 1
        return value | pack("CMD_STATUS", busy=1) if polls["n"] <= 50 else value

    regs = FaultyRegs(model, {off("CMD_STATUS"): busy_for_a_while})
    dev = await NvmfDevice(regs).open()
    assert polls["n"] == 51
    assert dev.caps.max_srqs == 4


@asynctest
async def test_open_raises_etimedout_when_busy_never_clears():
    model = CsrModel(P)
    model.hold_busy()
    err = await expect(errno.ETIMEDOUT, "busy", NvmfDevice(ModelRegs(model)).open())
    assert "polls" in err.strerror
    err = await expect(errno.ETIMEDOUT, "7 polls",
                       NvmfDevice(ModelRegs(model), reset_poll_limit=7).open())


@asynctest
async def test_open_raises_enodev_on_a_wrong_id():
    regs = FaultyRegs(CsrModel(P), {off("ID"): lambda v: 0xDEAD_BEEF})
    await expect(errno.ENODEV, "0xdeadbeef", NvmfDevice(regs).open())


@asynctest
async def test_calls_before_open_raise_ebadf():
    dev = NvmfDevice(ModelRegs(CsrModel(P)))
    await expect(errno.EBADF, "open", dev.create_srq(srq_attrs()))


# ============================================================================================
# Driver: table commands and hardware disagreement
# ============================================================================================

@asynctest
async def test_command_goes_through_arg_cmd_and_cmd_status():
    model, dev = await open_device()
    regs = dev.regs
    regs.log.clear()
    await dev.qp_set_nvmf(5, None)
    writes = [(o, v) for kind, o, v in regs.log if kind == "write"]
    assert writes[-1] == (off("CMD"), cmd(CmdOp.WRITE, Table.QP, 5))
    assert [o for o, _ in writes[:-1]] == [off("ARG[0]"), off("ARG[1]"), off("ARG[2]")]
    assert regs.log[-1][:2] == ("read", off("CMD_STATUS"))


@asynctest
async def test_command_error_raises_eio_naming_the_command():
    # The driver is told of more subsystems than the hardware has: a disagreement.
    model = CsrModel(P)
    regs = FaultyRegs(model, {off("CAP_MAX_SRQS"): lambda v: v + 1})
    dev = await NvmfDevice(regs).open()
    for _ in range(P.subsystems):
        await dev.create_srq(srq_attrs())
    err = await expect(errno.EIO, "SUBSYSTEM_COUNTERS[4]", dev.create_srq(srq_attrs()))
    assert "BAD_INDEX" in err.strerror


@asynctest
async def test_command_that_never_finishes_raises_etimedout_naming_it():
    model = CsrModel(P)
    stuck = {"on": False}
    regs = FaultyRegs(model, {off("CMD_STATUS"): lambda v: v | stuck["on"]})
    dev = await NvmfDevice(regs, cmd_poll_limit=5).open()
    stuck["on"] = True
    await expect(errno.ETIMEDOUT, "WRITE QP[3]", dev.qp_set_nvmf(3, None))


# ============================================================================================
# Driver: subsystems
# ============================================================================================

@asynctest
async def test_create_srq_writes_a_subsystem_entry():
    model, dev = await open_device()
    attrs = srq_attrs(ops=ops_mask(OpBit.READ, OpBit.WRITE), max_namespaces=5, ioccsz=8,
                      max_io_size=65536, queue_depth=32, staging_addr=0xABC_D000,
                      staging_len=65536)
    srq = await dev.create_srq(attrs)
    assert isinstance(srq, Srq) and srq.index == 0
    assert model.decoded(Table.SUBSYSTEM, 0) == {
        "valid": 1, "ops": 0b110, "reserved0": 0, "max_namespaces": 5, "ioccsz": 8,
        "icdoff": 0, "queue_depth": 32, "max_io_size": 65536, "staging_addr": 0xABC_D000,
        "staging_len": 65536}
    second = await dev.create_srq(srq_attrs())
    assert second.index == 1


@asynctest
async def test_create_srq_starts_with_zero_counters():
    model, dev = await open_device()
    model.count(Table.SUBSYSTEM_COUNTERS, 0, 0, 9)
    srq = await dev.create_srq(srq_attrs())
    assert await dev.srq_counters(srq) == {"unknown_ns": 0}


@pytest.mark.parametrize("field,value,text", [
    ("ops", 0, "ops 0x0"),
    ("ops", 0x20, "ops 0x20"),
    ("ops", 0x3F, "ops 0x3f"),
    ("ops", "all", "'all'"),
    ("ops", OpBit.READ, "OpBit.READ"),
    ("max_namespaces", 0, "max_namespaces 0"),
    ("max_namespaces", 17, "max_namespaces 17"),
    ("ioccsz", 3, "ioccsz 3"),
    ("ioccsz", 261, "ioccsz 261"),
    ("icdoff", 1, "icdoff 1"),
    ("max_io_size", 0, "max_io_size 0"),
    ("max_io_size", 131073, "max_io_size 131073"),
    ("queue_depth", 1, "queue_depth 1"),
    ("queue_depth", 65537, "queue_depth 65537"),
    ("staging_len", 65535, "staging_len 65535"),
    ("staging_addr", 0x1_0000_0800, "0x100000800"),
    ("staging_addr", -4096, "-0x1000"),
    ("staging_len", None, "None"),
])
@asynctest
async def test_create_srq_rejects_a_bad_attribute_with_einval(field, value, text):
    model, dev = await open_device()
    await expect(errno.EINVAL, text, dev.create_srq(srq_attrs(**{field: value})))
    assert model.entry(Table.SUBSYSTEM, 0) == 0


@asynctest
async def test_create_srq_rejects_icdoff_that_leaves_no_room_for_the_sqe():
    model, dev = await open_device(EngineParams(max_icdoff=8))
    await expect(errno.EINVAL, "icdoff 1", dev.create_srq(srq_attrs(ioccsz=4, icdoff=1)))
    srq = await dev.create_srq(srq_attrs(ioccsz=5, icdoff=1))
    assert model.decoded(Table.SUBSYSTEM, srq.index)["icdoff"] == 1


@asynctest
async def test_create_srq_refuses_a_max_io_size_one_prp_list_page_cannot_describe():
    """The engine never chains PRP lists: a transfer needing more than PRP1 and one list
    page's 512 entries is refused, whatever the engine's CAP_MAX_IO_SZ says."""
    from rtl.formats import PRP_MAX_IO_BYTES
    model, dev = await open_device(EngineParams(max_io_size=PRP_MAX_IO_BYTES,
                                                min_staging_bytes=1 << 22,
                                                staging_bytes=1 << 23))
    too_big = PRP_MAX_IO_BYTES + 1
    await expect(errno.EINVAL, f"max_io_size {too_big} needs more PRP entries",
                 dev.create_srq(srq_attrs(max_io_size=too_big, staging_len=1 << 22)))
    assert model.entry(Table.SUBSYSTEM, 0) == 0
    srq = await dev.create_srq(srq_attrs(max_io_size=PRP_MAX_IO_BYTES, staging_len=1 << 22))
    assert model.decoded(Table.SUBSYSTEM, srq.index)["max_io_size"] == PRP_MAX_IO_BYTES


def test_engine_params_refuse_a_max_io_size_beyond_one_prp_list_page():
    from rtl.formats import PRP_MAX_IO_BYTES
    with pytest.raises(ValueError, match="max_io_size"):
        EngineParams(max_io_size=PRP_MAX_IO_BYTES + 4096)
    assert EngineParams(max_io_size=PRP_MAX_IO_BYTES).max_io_size == 2 * 1024 * 1024 + 4096


@asynctest
async def test_create_srq_rejects_a_staging_buffer_wrapping_64_bits():
    model, dev = await open_device()
    addr = (1 << 64) - 4096
    await expect(errno.EINVAL, hex(addr), dev.create_srq(srq_attrs(staging_addr=addr)))


@asynctest
async def test_create_srq_rejects_ops_the_device_does_not_offload():
    model = CsrModel(P)
    cap = MAP["CAP_OFFLOAD_TYPES"]
    regs = FaultyRegs(model, {cap.offset: lambda v: 1 << cap.field("read").lsb})
    dev = await NvmfDevice(regs).open()
    assert dev.caps.offloadable_ops() == ops_mask(OpBit.READ)
    await expect(errno.EINVAL, "ops 0x6", dev.create_srq(srq_attrs(ops=0b110)))
    await dev.create_srq(srq_attrs(ops=ops_mask(OpBit.READ)))


@asynctest
async def test_create_srq_rejects_attrs_of_the_wrong_type():
    model, dev = await open_device()
    await expect(errno.EINVAL, "{'ops': 1}", dev.create_srq({"ops": 1}))


@asynctest
async def test_create_srq_raises_enospc_when_no_subsystem_is_free():
    model, dev = await open_device()
    for _ in range(P.subsystems):
        await dev.create_srq(srq_attrs())
    await expect(errno.ENOSPC, str(P.subsystems), dev.create_srq(srq_attrs()))


@asynctest
async def test_destroy_srq_clears_its_entry_and_frees_the_index():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    await dev.destroy_srq(srq)
    assert model.entry(Table.SUBSYSTEM, 0) == 0
    again = await dev.create_srq(srq_attrs())
    assert again.index == 0


@asynctest
async def test_destroy_srq_raises_enoent_when_not_created():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    await dev.destroy_srq(srq)
    await expect(errno.ENOENT, "Srq(index=0)", dev.destroy_srq(srq))
    _, other = await open_device()
    foreign = await other.create_srq(srq_attrs())
    await expect(errno.ENOENT, "Srq(index=0)", dev.destroy_srq(foreign))


@pytest.mark.parametrize("user", ["ctrl", "namespace", "qp"])
@asynctest
async def test_destroy_srq_raises_ebusy_while_in_use(user):
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    if user == "ctrl":
        await dev.create_nvme_ctrl(srq, ctrl_attrs())
        text = "backend ctrls [0]"
    elif user == "namespace":
        ctrl = await dev.create_nvme_ctrl(srq, ctrl_attrs())
        await dev.map_nvmf_nsid(ctrl, 4, 512, 1, 10)
        text = "fe_nsids [4]"
    else:
        await dev.qp_set_nvmf(9, srq, sqsize=16, sqid=1)
        text = "QPNs [9]"
    await expect(errno.EBUSY, text, dev.destroy_srq(srq))
    assert model.decoded(Table.SUBSYSTEM, srq.index)["valid"] == 1


# ============================================================================================
# Driver: backend queues
# ============================================================================================

@asynctest
async def test_create_nvme_ctrl_writes_a_backend_queue_entry():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    await dev.create_srq(srq_attrs())
    ctrl = await dev.create_nvme_ctrl(srq, ctrl_attrs(msix_data=0x55, sq_tail_init=3,
                                                      cq_head_init=63, cmd_timeout=1000))
    assert isinstance(ctrl, NvmeCtrl) and ctrl.index == 0 and ctrl.srq is srq
    entry = model.decoded(Table.BACKEND_QUEUE, 0)
    assert entry == {
        "valid": 1, "polling": 0, "reserved0": 0, "subsystem": 0, "sq_entries": 64,
        "cq_entries": 64, "sq_addr": 0x2000_0000, "cq_addr": 0x2001_0000,
        "sq_db_addr": 0xF000_1008, "cq_db_addr": 0xF000_100C, "sq_tail_init": 3,
        "cq_head_init": 63, "cmd_timeout": 1000, "msix_data": 0x55}
    srq1 = dev._srqs[1]
    polled = await dev.create_nvme_ctrl(srq1, ctrl_attrs())
    entry = model.decoded(Table.BACKEND_QUEUE, polled.index)
    assert (entry["polling"], entry["msix_data"], entry["subsystem"]) == (1, 0, 1)


@asynctest
async def test_create_nvme_ctrl_raises_enoent_for_an_srq_not_created():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    await dev.destroy_srq(srq)
    await expect(errno.ENOENT, "Srq(index=0)", dev.create_nvme_ctrl(srq, ctrl_attrs()))


@pytest.mark.parametrize("overrides,text", [
    ({"sq_entries": 1}, "sq_entries 1"),
    ({"sq_entries": 1025}, "sq_entries 1025"),
    ({"cq_entries": 1}, "cq_entries 1"),
    ({"cq_entries": 1025}, "cq_entries 1025"),
    ({"sq_addr": 0x2000_0020}, "sq_addr 0x20000020"),
    ({"cq_addr": 0x2001_0008}, "cq_addr 0x20010008"),
    ({"sq_db_addr": 0xF000_1002}, "sq_db_addr 0xf0001002"),
    ({"cq_db_addr": 0xF000_1001}, "cq_db_addr 0xf0001001"),
    ({"sq_addr": 1 << 64}, "0x10000000000000000"),
    ({"sq_tail_init": 64}, "sq_tail_init 64"),
    ({"cq_head_init": 64}, "cq_head_init 64"),
    ({"cq_head_init": -1}, "cq_head_init -1"),
    ({"cmd_timeout": 1 << 32}, "cmd_timeout 4294967296"),
    ({"msix_data": 0x77, "polling": True}, "msix_data 0x77"),
    ({"msix_data": None, "polling": False}, "msix_data None"),
    ({"msix_data": 1 << 32}, "msix_data 0x100000000"),
    ({"sq_entries": 64.0}, "64.0"),
])
@asynctest
async def test_create_nvme_ctrl_rejects_a_bad_attribute_with_einval(overrides, text):
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    await expect(errno.EINVAL, text, dev.create_nvme_ctrl(srq, ctrl_attrs(**overrides)))
    assert model.entry(Table.BACKEND_QUEUE, 0) == 0


@asynctest
async def test_create_nvme_ctrl_raises_enospc_when_no_backend_queue_is_free():
    model, dev = await open_device()
    srq_a = await dev.create_srq(srq_attrs())
    srq_b = await dev.create_srq(srq_attrs())
    for i in range(P.backend_queues):
        await dev.create_nvme_ctrl(srq_a if i % 2 else srq_b, ctrl_attrs())
    await expect(errno.ENOSPC, str(P.backend_queues), dev.create_nvme_ctrl(srq_a, ctrl_attrs()))


@asynctest
async def test_create_nvme_ctrl_raises_enospc_at_max_srq_backend_ctrls():
    cap = off("CAP_MAX_SRQ_BACKEND_CTRLS")
    model, dev = await open_device(regs_cls=FaultyRegs, read_hooks={cap: lambda v: 2})
    srq = await dev.create_srq(srq_attrs())
    for _ in range(2):
        await dev.create_nvme_ctrl(srq, ctrl_attrs())
    await expect(errno.ENOSPC, "max_srq_backend_ctrls 2", dev.create_nvme_ctrl(srq, ctrl_attrs()))
    other = await dev.create_srq(srq_attrs())
    await dev.create_nvme_ctrl(other, ctrl_attrs())


@asynctest
async def test_destroy_nvme_ctrl_clears_its_entry():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    await dev.destroy_nvme_ctrl(ctrl)
    assert model.entry(Table.BACKEND_QUEUE, ctrl.index) == 0
    await dev.destroy_srq(srq)


@asynctest
async def test_destroy_nvme_ctrl_raises_enoent_when_not_created():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    await dev.destroy_nvme_ctrl(ctrl)
    await expect(errno.ENOENT, "NvmeCtrl(index=0", dev.destroy_nvme_ctrl(ctrl))


@asynctest
async def test_destroy_nvme_ctrl_raises_ebusy_while_a_namespace_uses_it():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    await dev.map_nvmf_nsid([ctrl], 6, 4096, 2, 50)
    await expect(errno.EBUSY, "fe_nsids [6]", dev.destroy_nvme_ctrl(ctrl))
    await dev.unmap_nvmf_nsid(srq, 6)
    await dev.destroy_nvme_ctrl(ctrl)


# ============================================================================================
# Driver: namespaces
# ============================================================================================

@asynctest
async def test_map_nvmf_nsid_writes_the_namespace_and_index_entries():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs(ops=0b00111))
    c0 = await dev.create_nvme_ctrl(srq, ctrl_attrs())
    c1 = await dev.create_nvme_ctrl(srq, ctrl_attrs())
    ns = await dev.map_nvmf_nsid([c0, c1], 16, 4096, 0x10, (1 << 64) - 1, ops=0b00110)
    assert isinstance(ns, Namespace) and ns.fe_nsid == 16 and ns.slot == 0
    assert model.decoded(Table.NAMESPACE, 0) == {
        "valid": 1, "ready": 1, "ops": 0b00110, "lba_shift": 12, "reserved0": 0,
        "subsystem": srq.index, "reserved1": 0, "fe_nsid": 16, "backend_nsid": 0x10,
        "nsze": (1 << 64) - 1, "queues": 0b11}
    assert model.decoded(Table.NS_INDEX, srq.index * 16 + 15) == {"valid": 1, "slot": 0}
    status_, slot, entry = model.ns_lookup(srq.index, 16)
    assert (status_, slot) == ("HIT", 0)
    ns2 = await dev.map_nvmf_nsid(c1, 1, 512, 0xFFFF_FFFE, 1)
    assert model.decoded(Table.NAMESPACE, ns2.slot)["ops"] == 0b00111   # default: srq ops
    assert model.decoded(Table.NAMESPACE, ns2.slot)["lba_shift"] == 9


@asynctest
async def test_map_writes_the_namespace_before_its_index_entry():
    model = CsrModel(P)
    seen = []
    regs = SpyRegs(model, lambda: seen.append(model.ns_lookup(0, 2)[0]))
    dev = await NvmfDevice(regs).open()
    srq, ctrl = await srq_with_ctrl(dev)
    seen.clear()
    ns = await dev.map_nvmf_nsid([ctrl], 2, 512, 1, 8)
    assert seen == ["NOT_FOUND", "NOT_FOUND", "HIT"]         # READ_CLEAR, NAMESPACE, NS_INDEX
    assert await dev.ns_counters(ns) == decode(NsCounters, 0)


@asynctest
async def test_map_starts_the_namespace_with_zero_counters():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    model.count(Table.NS_COUNTERS, 0, 1, 1234)
    ns = await dev.map_nvmf_nsid([ctrl], 1, 512, 1, 8)
    assert ns.slot == 0
    assert model.entry(Table.NS_COUNTERS, 0) == 0


@pytest.mark.parametrize("case,text", [
    ("ctrls_empty", "[]"),
    ("ctrls_not_a_list", "'c'"),
    ("ctrl_not_created", "NvmeCtrl(index=1"),
    ("ctrls_of_two_subsystems", "NvmeCtrl(index=1, srq=1)"),
    ("fe_nsid_0", "fe_nsid 0 is out of range 1..16"),
    ("fe_nsid_17", "fe_nsid 17 is out of range 1..16"),
    ("fe_nsid_str", "'1'"),
    ("nvme_nsid_0", "nvme_nsid 0x0"),
    ("nvme_nsid_broadcast", "nvme_nsid 0xffffffff"),
    ("nsze_0", "nsze 0"),
    ("nsze_2_64", f"nsze {1 << 64}"),
    ("ops_outside_srq", "ops 0x8"),
    ("lba_not_int", "'512'"),
])
@asynctest
async def test_map_nvmf_nsid_rejects_a_bad_argument_with_einval(case, text):
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs(ops=0b00110))
    ctrl = await dev.create_nvme_ctrl(srq, ctrl_attrs())
    args = dict(ctrls=[ctrl], fe_nsid=1, lba_data_size=512, nvme_nsid=1, nsze=100, ops=None)
    if case == "ctrls_empty":
        args["ctrls"] = []
    elif case == "ctrls_not_a_list":
        args["ctrls"] = "c"
    elif case == "ctrl_not_created":
        gone = await dev.create_nvme_ctrl(srq, ctrl_attrs())
        await dev.destroy_nvme_ctrl(gone)
        args["ctrls"] = [ctrl, gone]
    elif case == "ctrls_of_two_subsystems":
        other = await dev.create_srq(srq_attrs())
        args["ctrls"] = [ctrl, await dev.create_nvme_ctrl(other, ctrl_attrs())]
    elif case == "fe_nsid_0":
        args["fe_nsid"] = 0
    elif case == "fe_nsid_17":
        args["fe_nsid"] = 17
    elif case == "fe_nsid_str":
        args["fe_nsid"] = "1"
    elif case == "nvme_nsid_0":
        args["nvme_nsid"] = 0
    elif case == "nvme_nsid_broadcast":
        args["nvme_nsid"] = 0xFFFF_FFFF
    elif case == "nsze_0":
        args["nsze"] = 0
    elif case == "nsze_2_64":
        args["nsze"] = 1 << 64
    elif case == "ops_outside_srq":
        args["ops"] = 0b01000
    elif case == "lba_not_int":
        args["lba_data_size"] = "512"
    await expect(errno.EINVAL, text, dev.map_nvmf_nsid(**args))
    assert not any(model.tables[Table.NS_INDEX]) and not any(model.tables[Table.NAMESPACE])


@pytest.mark.parametrize("size", [1024, 513, 0, 2048, 1 << 20])
@asynctest
async def test_map_nvmf_nsid_raises_enotsup_for_an_unsupported_lba_data_size(size):
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    err = await expect(errno.ENOTSUP, f"lba_data_size {size}",
                       dev.map_nvmf_nsid([ctrl], 1, size, 1, 100))
    assert "512, 4096" in err.strerror


@asynctest
async def test_map_nvmf_nsid_raises_eexist_for_a_mapped_fe_nsid():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    await dev.map_nvmf_nsid([ctrl], 3, 512, 1, 100)
    await expect(errno.EEXIST, "fe_nsid 3", dev.map_nvmf_nsid([ctrl], 3, 512, 2, 100))
    other, octrl = await srq_with_ctrl(dev)
    await dev.map_nvmf_nsid([octrl], 3, 512, 1, 100)            # another subsystem: fine


@asynctest
async def test_map_nvmf_nsid_raises_enospc_at_the_subsystem_max_namespaces():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev, max_namespaces=2)
    await dev.map_nvmf_nsid([ctrl], 1, 512, 1, 100)
    await dev.map_nvmf_nsid([ctrl], 9, 512, 2, 100)
    await expect(errno.ENOSPC, "max_namespaces 2", dev.map_nvmf_nsid([ctrl], 4, 512, 3, 100))


@asynctest
async def test_map_nvmf_nsid_raises_enospc_when_no_slot_is_free():
    model, dev = await open_device(EngineParams(namespaces=2))
    a, ca = await srq_with_ctrl(dev)
    b, cb = await srq_with_ctrl(dev)
    await dev.map_nvmf_nsid([ca], 1, 512, 1, 100)
    await dev.map_nvmf_nsid([cb], 1, 512, 1, 100)
    await expect(errno.ENOSPC, "fe_nsid 2", dev.map_nvmf_nsid([ca], 2, 512, 2, 100))
    await dev.unmap_nvmf_nsid(b, 1)
    ns = await dev.map_nvmf_nsid([ca], 2, 512, 2, 100)
    assert ns.slot == 1


@asynctest
async def test_unmap_answers_not_ready_then_clears_index_then_namespace():
    model = CsrModel(P)
    seen = []
    regs = SpyRegs(model, lambda: seen.append(
        (model.ns_lookup(1, 5)[0], model.entry(Table.NS_INDEX, P.srq_namespaces + 4) != 0,
         model.entry(Table.NAMESPACE, 0) != 0)))
    dev = await NvmfDevice(regs).open()
    await dev.create_srq(srq_attrs())
    srq, ctrl = await srq_with_ctrl(dev)
    ns = await dev.map_nvmf_nsid([ctrl], 5, 512, 1, 100)
    assert ns.slot == 0 and srq.index == 1
    seen.clear()
    await dev.unmap_nvmf_nsid(srq, 5)
    assert seen == [("NOT_READY", True, True), ("NOT_FOUND", False, True),
                    ("NOT_FOUND", False, False)]


@asynctest
async def test_unmap_nvmf_nsid_frees_the_fe_nsid_for_a_new_mapping():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    await dev.map_nvmf_nsid([ctrl], 5, 512, 1, 100)
    await dev.unmap_nvmf_nsid(srq, 5)
    assert model.ns_lookup(srq.index, 5)[0] == "NOT_FOUND"
    ns = await dev.map_nvmf_nsid([ctrl], 5, 4096, 2, 100)
    assert model.ns_lookup(srq.index, 5)[2]["backend_nsid"] == 2 and ns.slot == 0


@asynctest
async def test_unmap_nvmf_nsid_raises_enoent_when_not_mapped():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    await expect(errno.ENOENT, "fe_nsid 5", dev.unmap_nvmf_nsid(srq, 5))
    await dev.map_nvmf_nsid([ctrl], 5, 512, 1, 100)
    await dev.unmap_nvmf_nsid(srq, 5)
    await expect(errno.ENOENT, "fe_nsid 5", dev.unmap_nvmf_nsid(srq, 5))


@asynctest
async def test_unmap_nvmf_nsid_raises_enoent_for_an_srq_not_created():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    await dev.destroy_srq(srq)
    await expect(errno.ENOENT, "Srq(index=0)", dev.unmap_nvmf_nsid(srq, 1))


@pytest.mark.parametrize("fe_nsid", [0, 17, -1])
@asynctest
async def test_unmap_nvmf_nsid_raises_einval_for_fe_nsid_out_of_range(fe_nsid):
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    await expect(errno.EINVAL, f"fe_nsid {fe_nsid} is out of range 1..16",
                 dev.unmap_nvmf_nsid(srq, fe_nsid))


# ============================================================================================
# Driver: QPs
# ============================================================================================

@asynctest
async def test_qp_set_nvmf_writes_attrs_from_the_subsystem():
    model, dev = await open_device()
    await dev.create_srq(srq_attrs())
    srq = await dev.create_srq(srq_attrs(ops=0b10011, ioccsz=100, queue_depth=64))
    await dev.qp_set_nvmf(42, srq, offload_only=True, sqsize=64, sqid=3)
    assert model.qp_entry(42) == {
        "attrs": {"offload": 1, "offload_only": 1, "ops": 0b10011, "ioccsz": 100, "icdoff": 0},
        "subsystem": 1, "sqsize": 64, "sqid": 3}
    await dev.qp_set_nvmf(43, srq, sqsize=1, sqid=65535)
    assert model.qp_entry(43)["attrs"]["offload_only"] == 0
    assert srq.qps == {42, 43}


@pytest.mark.parametrize("how", ["srq_none", "offload_false"])
@asynctest
async def test_qp_set_nvmf_disables_offload(how):
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    await dev.qp_set_nvmf(7, srq, sqsize=16, sqid=1)
    if how == "srq_none":
        await dev.qp_set_nvmf(7, None)
    else:
        await dev.qp_set_nvmf(7, srq, offload=False)
    assert model.entry(Table.QP, 7) == 0
    assert model.qp_entry(7)["attrs"]["offload"] == 0
    await dev.destroy_srq(srq)                       # no QP uses it any more


@asynctest
async def test_qp_set_nvmf_moves_a_qp_between_subsystems():
    model, dev = await open_device()
    a = await dev.create_srq(srq_attrs())
    b = await dev.create_srq(srq_attrs())
    await dev.qp_set_nvmf(7, a, sqsize=16, sqid=1)
    await dev.qp_set_nvmf(7, b, sqsize=16, sqid=1)
    assert model.qp_entry(7)["subsystem"] == b.index
    await dev.destroy_srq(a)
    await expect(errno.EBUSY, "QPNs [7]", dev.destroy_srq(b))


@pytest.mark.parametrize("kwargs,text", [
    ({"qpn": 64}, "qpn 64"),
    ({"qpn": -1}, "qpn -1"),
    ({"sqsize": 0}, "sqsize 0"),
    ({"sqsize": 129}, "sqsize 129"),
    ({"sqsize": None}, "sqsize None"),
    ({"sqid": 0}, "sqid 0"),
    ({"sqid": 65536}, "sqid 65536"),
    ({"sqid": None}, "sqid None"),
    ({"offload": False, "offload_only": True}, "offload_only True"),
    ({"srq": None, "offload_only": True}, "offload_only True"),
    ({"offload": 1}, "offload must be True or False, not 1"),
    ({"srq": 0}, "srq must be an Srq or None, not 0"),
])
@asynctest
async def test_qp_set_nvmf_rejects_a_bad_argument_with_einval(kwargs, text):
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs(queue_depth=128))
    args = dict(qpn=5, srq=srq, sqsize=16, sqid=1)
    args.update(kwargs)
    await expect(errno.EINVAL, text, dev.qp_set_nvmf(**args))
    assert not any(model.tables[Table.QP])


@asynctest
async def test_qp_set_nvmf_requires_offload_only_without_non_offloaded_ops_support():
    cap = off("CAP_FLAGS")
    model, dev = await open_device(regs_cls=FaultyRegs, read_hooks={cap: lambda v: 0})
    assert dev.caps.supports_non_offloaded_ops is False
    srq = await dev.create_srq(srq_attrs())
    await expect(errno.EINVAL, "offload_only False", dev.qp_set_nvmf(1, srq, sqsize=8, sqid=1))
    await dev.qp_set_nvmf(1, srq, offload_only=True, sqsize=8, sqid=1)


@asynctest
async def test_qp_set_nvmf_raises_enoent_for_an_srq_not_created():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    await dev.destroy_srq(srq)
    await expect(errno.ENOENT, "Srq(index=0)", dev.qp_set_nvmf(5, srq, sqsize=8, sqid=1))


@asynctest
async def test_queue_depth_65536_is_stored_as_zero_in_16_bit_fields():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs(queue_depth=65536))
    assert model.decoded(Table.SUBSYSTEM, srq.index)["queue_depth"] == 0
    await dev.qp_set_nvmf(1, srq, sqsize=65536, sqid=1)
    assert model.qp_entry(1)["sqsize"] == 0


# ============================================================================================
# Driver: events and counters
# ============================================================================================

@asynctest
async def test_read_events_pops_every_queued_event_in_order():
    model, dev = await open_device()
    assert await dev.read_events() == EventBatch([], False)
    model.push_event(EventType.NVME_TIMEOUT, 2)
    model.push_event(EventType.NVME_PCI_ERR, 7)
    model.push_event(EventType.UNSUPPORTED_NVMF_OP, 0x123456)
    model.push_event(EventType.QP_FATAL, 63)
    events, lost = await dev.read_events()
    assert events == [(EventType.NVME_TIMEOUT, 2), (EventType.NVME_PCI_ERR, 7),
                      (EventType.UNSUPPORTED_NVMF_OP, 0x123456), (EventType.QP_FATAL, 63)]
    assert lost is False
    assert len(model.events) == 0


@asynctest
async def test_read_events_reports_a_loss_once_and_clears_the_flag():
    model, dev = await open_device()
    for i in range(P.event_depth + 3):
        model.push_event(EventType.QP_FATAL, i)
    batch = await dev.read_events()
    assert batch.lost is True
    assert [obj for _, obj in batch.events] == list(range(P.event_depth))
    assert model.event_overflow == 0
    assert await dev.read_events() == EventBatch([], False)
    assert model.read(off("EVENT_LOST")) == (3, OKAY)


@asynctest
async def test_read_events_raises_eio_for_an_unknown_kind():
    model = CsrModel(P)
    regs = FaultyRegs(model, {off("EVENT_HEAD"): lambda v: (v & ~0xFF) | 9})
    dev = await NvmfDevice(regs).open()
    model.push_event(EventType.QP_FATAL, 1)
    await expect(errno.EIO, "kind 9", dev.read_events())


@asynctest
async def test_ns_counters_read_and_read_clear():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    ns = await dev.map_nvmf_nsid([ctrl], 1, 512, 1, 100)
    names = list(decode(NsCounters, 0))
    model.count(Table.NS_COUNTERS, ns.slot, names.index("read_cmds"), 3)
    model.count(Table.NS_COUNTERS, ns.slot, names.index("backend_errors"), COUNTER_MAX + 9)
    counters = await dev.ns_counters(ns)
    assert counters["read_cmds"] == 3 and counters["backend_errors"] == COUNTER_MAX
    assert await dev.ns_counters(ns, clear=True) == counters
    assert await dev.ns_counters(ns) == decode(NsCounters, 0)


@asynctest
async def test_srq_counters_read_and_read_clear():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    model.count(Table.SUBSYSTEM_COUNTERS, srq.index, 0, 11)
    assert await dev.srq_counters(srq) == {"unknown_ns": 11}
    assert await dev.srq_counters(srq, clear=True) == {"unknown_ns": 11}
    assert await dev.srq_counters(srq) == {"unknown_ns": 0}


@asynctest
async def test_ns_counters_raise_enoent_when_not_mapped():
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    ns = await dev.map_nvmf_nsid([ctrl], 1, 512, 1, 100)
    await dev.unmap_nvmf_nsid(srq, 1)
    await expect(errno.ENOENT, "fe_nsid=1", dev.ns_counters(ns))


@asynctest
async def test_srq_counters_raise_enoent_when_not_created():
    model, dev = await open_device()
    srq = await dev.create_srq(srq_attrs())
    await dev.destroy_srq(srq)
    await expect(errno.ENOENT, "Srq(index=0)", dev.srq_counters(srq))


@asynctest
async def test_nvmf_error_is_an_oserror_with_errno_and_message():
    model, dev = await open_device()
    err = await expect(errno.EINVAL, "fe_nsid 0 is out of range 1..16",
                       dev.unmap_nvmf_nsid(await dev.create_srq(srq_attrs()), 0))
    assert err.args == (errno.EINVAL, err.strerror)
    assert err.message == err.strerror


@asynctest
async def test_unmap_frees_the_namespace_slot_only_after_the_fence_clears():
    """unmap clears ready and the index entry, flips FENCE.epoch, and clears the NAMESPACE
    entry only once FENCE.other (the old epoch's commands without an outcome) reads 0."""
    model, dev = await open_device()
    srq, ctrl = await srq_with_ctrl(dev)
    await dev.map_nvmf_nsid([ctrl], 5, 512, 1, 100)
    left = {0: 3}                        # epoch 0: three commands still in flight
    polls = []

    def source(epoch):
        polls.append((epoch, model.entry(Table.NAMESPACE, 0) != 0,
                      model.ns_lookup(srq.index, 5)[0]))
        left[epoch] = max(0, left.get(epoch, 0) - 1)
        return left[epoch] + 1 if left[epoch] else 0

    model.fence_source = source
    await dev.unmap_nvmf_nsid(srq, 5)
    assert model.fence_epoch == 1
    # the read before the flip shows epoch 1 as the other; then three polls of epoch 0
    assert [p[0] for p in polls] == [1, 0, 0, 0]
    assert all(entry and status == "NOT_FOUND" for _, entry, status in polls)
    assert model.entry(Table.NAMESPACE, 0) == 0


@asynctest
async def test_fence_raises_etimedout_naming_the_count_when_it_never_clears():
    model = CsrModel(P)
    dev = await NvmfDevice(ModelRegs(model), fence_poll_limit=5).open()
    model.fence_source = lambda epoch: 2
    await expect(errno.ETIMEDOUT, "FENCE.other still 2 after 5 polls", dev.fence())
