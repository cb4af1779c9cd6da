"""cocotb tests of ``nvmf_control``; launched by ``tb/control/test_control.py``.

The driver (``sim.driver.NvmfDevice``) runs over ``TeeRegs``: every register
access goes to the RTL and to the reference model and must agree.
"""

import errno
import os
import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from rtl.formats import QP_OPS_ALL, CmdError, CmdOp, EventType, NsLookupStatus, OpBit
from rtl.formats import Table as T
from sim.cosim.regs import TeeRegs
from sim.driver import NvmeCtrlAttrs, NvmfDevice, NvmfError, SrqAttrs
from sim.model.csr import CsrModel
from tb.control.control_tb import CFG_PULSES, READ_PORTS, TB


async def _wait_sweep(tb):
    """After reset the RTL clears its tables (busy = 1); wait on the RTL alone."""
    offset = tb.model.regmap["CMD_STATUS"].offset
    for _ in range(1000):
        resp = await tb.axil.read(offset, 4)
        if not int.from_bytes(resp.data, "little") & 1:
            return
    raise AssertionError("CMD_STATUS.busy never cleared after reset")


async def _open(tb):
    await tb.cycle_reset()
    await _wait_sweep(tb)
    regs = TeeRegs(tb)
    dev = NvmfDevice(regs, tb.params)
    await dev.open()
    return dev, regs


def _srq_attrs(dev, **kw):
    caps = dev.caps
    attrs = dict(ops=QP_OPS_ALL, max_namespaces=caps.max_srq_namespaces,
                 ioccsz=caps.max_ioccsz, icdoff=0, max_io_size=caps.max_io_sz,
                 queue_depth=128, staging_addr=0x8000_0000,
                 staging_len=caps.min_staging_buf_size)
    attrs.update(kw)
    return SrqAttrs(**attrs)


def _ctrl_attrs(index, **kw):
    attrs = dict(sq_addr=0x1_0000_0000 + index * 0x10000, sq_entries=64,
                 cq_addr=0x1_0000_8000 + index * 0x10000, cq_entries=64,
                 sq_db_addr=0xF000_1000 + 8 * index, cq_db_addr=0xF000_1004 + 8 * index,
                 cmd_timeout=1000, msix_data=0x40 + index)
    attrs.update(kw)
    return NvmeCtrlAttrs(**attrs)


async def _expect_errno(err, coro, fragment=None):
    try:
        await coro
    except NvmfError as exc:
        assert exc.errno == err, f"errno {errno.errorcode.get(exc.errno)}, expected " \
                                 f"{errno.errorcode[err]}: {exc}"
        if fragment is not None:
            assert str(fragment) in str(exc), f"message {exc} does not name {fragment}"
        return exc
    raise AssertionError(f"expected {errno.errorcode[err]}, the call succeeded")


async def _dump_all_tables(tb, dev):
    """READ every entry of every table on RTL and model (TeeRegs compares)."""
    for table, size in tb.model.sizes.items():
        for index in range(size):
            await dev._read_entry(table, index)


@cocotb.test()
async def run_capabilities_match_parameters(dut):
    """query_caps() reports what the elaboration parameters promise."""
    tb = TB(dut)
    dev, _ = await _open(tb)
    p = tb.params
    caps = await dev.query_caps()
    assert caps.max_qps == p.qp_count
    assert caps.max_srqs == p.subsystems
    assert caps.max_backend_ctrls_total == p.backend_queues
    assert caps.max_srq_namespaces == p.srq_namespaces
    assert caps.max_namespaces == p.namespaces
    assert caps.max_io_sz == p.max_io_size
    assert caps.max_ioccsz == p.max_capsule_bytes // 16 and caps.min_ioccsz == 4
    assert caps.max_icdoff == p.max_icdoff
    assert (caps.min_nvme_queue_depth, caps.max_nvme_queue_depth) == \
        (p.min_queue_depth, p.max_queue_depth)
    assert caps.lba_data_sizes() == tuple(sorted(set(p.lba_sizes)))
    assert caps.supports_non_offloaded_ops
    assert int(caps.offload_type) == 0x3F
    assert caps.event_depth == p.event_depth


@cocotb.test()
async def run_driver_calls_and_errnos(dut):
    """Every driver call and every errno, RTL and model in lock-step, tables compared."""
    tb = TB(dut)
    dev, regs = await _open(tb)
    caps = dev.caps
    # create_srq and its errors
    await _expect_errno(errno.EINVAL, dev.create_srq(_srq_attrs(dev, ioccsz=3)), 3)
    await _expect_errno(errno.EINVAL, dev.create_srq(_srq_attrs(dev, max_namespaces=0)))
    await _expect_errno(errno.EINVAL, dev.create_srq(
        _srq_attrs(dev, staging_len=caps.min_staging_buf_size - 4096)))
    srqs = [await dev.create_srq(_srq_attrs(dev, staging_addr=0x8000_0000 + i * 0x100_0000))
            for i in range(caps.max_srqs)]
    await _expect_errno(errno.ENOSPC, dev.create_srq(_srq_attrs(dev)))
    await dev.destroy_srq(srqs.pop())
    a = srqs[0]
    b = srqs[1] if len(srqs) > 1 else None
    # backend controllers
    await _expect_errno(errno.EINVAL, dev.create_nvme_ctrl(a, _ctrl_attrs(0, sq_entries=1)), 1)
    await _expect_errno(errno.EINVAL,
                        dev.create_nvme_ctrl(a, _ctrl_attrs(0, sq_addr=0x1_0000_0020)))
    ctrls = [await dev.create_nvme_ctrl(a, _ctrl_attrs(i))
             for i in range(caps.max_backend_ctrls_total)]
    await _expect_errno(errno.ENOSPC, dev.create_nvme_ctrl(a, _ctrl_attrs(9)))
    await dev.destroy_nvme_ctrl(ctrls.pop())
    # namespaces
    ns1 = await dev.map_nvmf_nsid(ctrls[:2], 1, 512, 1, 1 << 20)
    await _expect_errno(errno.EEXIST, dev.map_nvmf_nsid(ctrls[:1], 1, 512, 2, 100), 1)
    await _expect_errno(errno.ENOTSUP, dev.map_nvmf_nsid(ctrls[:1], 2, 1024, 2, 100), 1024)
    await _expect_errno(errno.EINVAL, dev.map_nvmf_nsid(
        ctrls[:1], caps.max_srq_namespaces + 1, 512, 2, 100), caps.max_srq_namespaces + 1)
    await _expect_errno(errno.EINVAL, dev.map_nvmf_nsid([], 2, 512, 2, 100))
    await _expect_errno(errno.ENOENT, dev.unmap_nvmf_nsid(a, 2), 2)
    await _expect_errno(errno.EBUSY, dev.destroy_nvme_ctrl(ctrls[0]))
    await _expect_errno(errno.EBUSY, dev.destroy_srq(a))
    ns2 = await dev.map_nvmf_nsid(ctrls[-1:], 2, 4096, 7, 1000, ops=1 << OpBit.READ)
    assert ns2.slot != ns1.slot
    # QPs
    await dev.qp_set_nvmf(5, a, offload=True, offload_only=True, sqsize=32, sqid=1)
    await _expect_errno(errno.EINVAL, dev.qp_set_nvmf(caps.max_qps, a, sqsize=32, sqid=1),
                        caps.max_qps)
    await _expect_errno(errno.EINVAL, dev.qp_set_nvmf(6, a, sqsize=32, sqid=0))
    entry = await tb.qp_lookup(5)
    assert entry == tb.model.qp_entry(5)
    assert entry["attrs"]["offload"] == 1 and entry["attrs"]["offload_only"] == 1
    assert entry["attrs"]["ioccsz"] == caps.max_ioccsz and entry["subsystem"] == a.index
    assert (await tb.qp_lookup(caps.max_qps + 3))["attrs"]["offload"] == 0
    # fill the namespace table: ENOSPC
    if b is not None:
        await _expect_errno(errno.EINVAL, dev.map_nvmf_nsid([ctrls[0]], 1, 512, 1, 100,
                                                            ops=1 << 7))
    free_slots = caps.max_namespaces - 2
    fe = 3
    mapped = []
    while free_slots > 0 and fe <= caps.max_srq_namespaces:
        mapped.append(await dev.map_nvmf_nsid(ctrls[:1], fe, 512, fe, 100))
        fe += 1
        free_slots -= 1
    if fe <= caps.max_srq_namespaces:
        await _expect_errno(errno.ENOSPC, dev.map_nvmf_nsid(ctrls[:1], fe, 512, fe, 100))
    for ns in mapped:
        await dev.unmap_nvmf_nsid(a, ns.fe_nsid)
    await dev.unmap_nvmf_nsid(a, 2)
    await dev.qp_set_nvmf(5, None)
    await _dump_all_tables(tb, dev)
    tb.log.info("%d reads and %d writes agreed between RTL and model", regs.reads, regs.writes)


@cocotb.test()
async def run_register_access_rules(dut):
    """SLVERR for unmapped, read-only and write-only access and partial strobes; CMD errors."""
    tb = TB(dut)
    await tb.cycle_reset()
    regs = TeeRegs(tb)
    # during the reset sweep CMD is busy: a CMD write answers SLVERR on both
    tb.model.hold_busy(True)
    cmd = tb.model.regmap["CMD"].offset
    try:
        await regs.write(cmd, 0x0001_0102)
        raise AssertionError("CMD write during the reset sweep was accepted")
    except OSError:
        pass
    await _wait_sweep(tb)
    tb.model.hold_busy(False)
    rng = random.Random(5)
    mapped = {reg.offset for reg in tb.model.regmap.registers}
    offsets = sorted(mapped) + [o for o in range(0, 0x200, 4) if o not in mapped][:24] + \
        [0xFFC, 0x7F0]
    for offset in offsets:
        try:
            await regs.read(offset)
        except OSError:
            pass
    for offset in offsets:
        if tb.model.regmap.by_offset().get(offset) is not None and \
                tb.model.regmap.by_offset()[offset].name in ("CMD", "EVENT_CTRL"):
            continue
        try:
            await regs.write(offset, rng.getrandbits(32))
        except OSError:
            pass
        try:
            await regs.write_bytes(offset + rng.randrange(4), bytes([rng.getrandbits(8)]))
        except OSError:
            pass
    for offset in sorted(mapped):
        try:
            await regs.read(offset)
        except OSError:
            pass
    # CMD errors, in the documented order
    status = tb.model.regmap["CMD_STATUS"].offset
    cases = [(0x0000_0009, CmdError.BAD_OP), (0x0000_0F01, CmdError.BAD_TABLE),
             ((tb.params.qp_count << 16) | (T.QP.value << 8) | 1, CmdError.BAD_INDEX),
             ((T.NS_COUNTERS.value << 8) | 1, CmdError.READ_ONLY),
             ((T.QP.value << 8) | 3, CmdError.BAD_OP),
             ((T.QP.value << 8) | 2, CmdError.NONE)]
    for word, error in cases:
        await regs.write(cmd, word)
        for _ in range(20):
            value = await regs.read(status)
            if not value & 1:
                break
        assert (value >> 8) & 0xFF == error.value, (hex(word), value, error)


@cocotb.test()
async def run_lookups_match_model_during_map_unmap(dut):
    """Namespace lookups every cycle while the driver maps and unmaps: old or new, never a mix."""
    tb = TB(dut)
    dev, regs = await _open(tb)
    seed = int(os.environ.get("NVMF_SEED", "3"))
    rng = random.Random(seed)
    p = tb.params
    history = []      # (cycle, NS_INDEX entries, NAMESPACE entries)

    def snapshot(cycle):
        history.append((cycle, list(tb.model.tables[T.NS_INDEX]),
                        list(tb.model.tables[T.NAMESPACE])))

    snapshot(tb.cycle)
    regs.on_write = snapshot
    scratch = CsrModel(p)

    def answer(state, subsystem, fe_nsid):
        scratch.tables[T.NS_INDEX][:] = state[1]
        scratch.tables[T.NAMESPACE][:] = state[2]
        status, slot, entry = scratch.ns_lookup(subsystem, fe_nsid)
        return NsLookupStatus[status], slot, entry

    stats = {s: 0 for s in NsLookupStatus}
    pending = []
    done = False
    hot = [(0, 1)]        # the pair the driver is working on, looked up half the time

    async def requester():
        while not done:
            if rng.random() < 0.8:
                if rng.random() < 0.5:
                    sub, fe = hot[-1]
                else:
                    sub = rng.randrange(p.subsystems + 1)
                    fe = rng.randrange(p.srq_namespaces + 2)
                dut.ns_req__payload.value = tb.ns_request_bits(sub, fe)
                dut.ns_req__valid.value = 1
                await ReadOnly()
                accepted = int(dut.ns_req__ready.value)
                cycle = tb.cycle
                await RisingEdge(dut.clk)
                if accepted:
                    pending.append((cycle, sub, fe))
            else:
                dut.ns_req__valid.value = 0
                await RisingEdge(dut.clk)
        dut.ns_req__valid.value = 0

    async def checker():
        checked = 0
        while not done or pending:
            ready = int(rng.random() < 0.7)
            dut.ns_resp__ready.value = ready
            await ReadOnly()
            if int(dut.ns_resp__valid.value) and ready:
                resp = tb.ns_response()
                t_req, sub, fe = pending.pop(0)
                got = (resp["status"], resp["slot"] if resp["status"] != NsLookupStatus.NOT_FOUND
                       else 0, resp["entry"])
                lo = t_req - 8
                candidates = [h for h in history if lo <= h[0] <= tb.cycle + 1]
                older = [h for h in history if h[0] < lo]
                if older:
                    candidates.append(older[-1])
                answers = [answer(state, sub, fe) for state in candidates]
                assert got in answers, (
                    f"lookup ({sub}, {fe}) at cycle {t_req}: rtl {got} matches no table "
                    f"state of the window; candidates {answers}")
                stats[resp["status"]] += 1
                checked += 1
            await RisingEdge(dut.clk)
        return checked

    req_task = cocotb.start_soon(requester())
    chk_task = cocotb.start_soon(checker())
    subsystems = [await dev.create_srq(_srq_attrs(dev, staging_addr=0x1000_0000 * (i + 1)))
                  for i in range(min(2, p.subsystems))]
    ctrls = [await dev.create_nvme_ctrl(s, _ctrl_attrs(i)) for i, s in enumerate(subsystems)]
    mapped = set()
    for _ in range(int(os.environ.get("NVMF_COUNT", "24"))):
        i = rng.randrange(len(subsystems))
        fe = rng.randint(1, min(p.srq_namespaces, 6))
        hot.append((subsystems[i].index, fe))
        if (i, fe) in mapped:
            await dev.unmap_nvmf_nsid(subsystems[i], fe)
            mapped.discard((i, fe))
        elif len(mapped) < p.namespaces:
            await dev.map_nvmf_nsid([ctrls[i]], fe, 512, 100 * i + fe, 1000 + fe)
            mapped.add((i, fe))
        await ClockCycles(dut.clk, rng.randrange(1, 8))
    done = True
    await req_task
    checked = await chk_task
    tb.log.info("checked %d lookups: %s", checked, {s.name: n for s, n in stats.items()})
    assert checked > 200
    assert stats[NsLookupStatus.HIT] > 0 and stats[NsLookupStatus.NOT_FOUND] > 0
    assert stats[NsLookupStatus.NOT_READY] > 0, "unmap's draining step was never observed"


@cocotb.test()
async def run_subsystem_isolation(dut):
    """The same fe_nsid in two subsystems: each subsystem's lookup reaches only its own."""
    tb = TB(dut)
    dev, _ = await _open(tb)
    p = tb.params
    assert p.subsystems >= 2
    a = await dev.create_srq(_srq_attrs(dev, staging_addr=0x1000_0000))
    b = await dev.create_srq(_srq_attrs(dev, staging_addr=0x2000_0000))
    ca = await dev.create_nvme_ctrl(a, _ctrl_attrs(0))
    cb = await dev.create_nvme_ctrl(b, _ctrl_attrs(1))
    n = min(p.srq_namespaces, p.namespaces // 2)
    for fe in range(1, n + 1):
        await dev.map_nvmf_nsid([ca], fe, 512, 1000 + fe, 10)
        await dev.map_nvmf_nsid([cb], fe, 4096, 2000 + fe, 20)
    for sub in range(p.subsystems + 1):
        for fe in range(p.srq_namespaces + 2):
            resp = await _ns_lookup_once(tb, sub, fe)
            status, slot, entry = tb.model.ns_lookup(sub, fe)
            assert (resp["status"].name, resp["entry"]) == (status, entry), (sub, fe)
            if resp["status"] == NsLookupStatus.HIT:
                assert resp["entry"]["subsystem"] == sub
                assert resp["entry"]["backend_nsid"] == (1000 if sub == a.index else 2000) + fe
            else:
                assert not (sub in (a.index, b.index) and 1 <= fe <= n), (sub, fe)
            await RisingEdge(dut.clk)


@cocotb.test()
async def run_events_queue_overflow_and_irq(dut):
    """Events in order, overflow flagged and counted, irq follows enable and occupancy."""
    tb = TB(dut)
    dev, regs = await _open(tb)
    depth = tb.params.event_depth
    assert not int(dut.irq.value)
    await regs.write(tb.model.regmap["IRQ_ENABLE"].offset, 1)
    kinds = list(EventType)
    sent = [(kinds[i % len(kinds)], (i * 7919) & 0xFFFFFF) for i in range(depth + 3)]
    for kind, obj in sent:
        await tb.push_event(kind, obj)
    await ReadOnly()
    assert int(dut.irq.value) == 1
    await RisingEdge(dut.clk)
    batch = await dev.read_events()
    assert [(e[0], e[1]) for e in batch.events] == sent[:depth]
    assert batch.lost
    lost = await regs.read(tb.model.regmap["EVENT_LOST"].offset)
    assert lost == 3
    await ReadOnly()
    assert int(dut.irq.value) == 0
    await RisingEdge(dut.clk)
    await tb.push_event(EventType.QP_FATAL, 17)
    batch = await dev.read_events()
    assert [(e[0], e[1]) for e in batch.events] == [(EventType.QP_FATAL, 17)]
    assert not batch.lost


@cocotb.test()
async def run_counters_match_model(dut):
    """Random increments with reads and read-clears interleaved; saturation at 2**48-1."""
    tb = TB(dut)
    dev, regs = await _open(tb)
    p = tb.params
    rng = random.Random(int(os.environ.get("NVMF_SEED", "9")))
    srq = await dev.create_srq(_srq_attrs(dev))
    ctrl = await dev.create_nvme_ctrl(srq, _ctrl_attrs(0))
    namespaces = [await dev.map_nvmf_nsid([ctrl], fe, 512, fe, 100)
                  for fe in range(1, min(4, p.srq_namespaces, p.namespaces) + 1)]
    for _ in range(120):
        ns = rng.choice(namespaces)
        if rng.random() < 0.8:
            field = rng.randrange(10)
            amount = rng.choice([1, 8, 0xFFFF])
            await tb.count("ns_count", ns.slot, field, amount)
            tb.model.count(T.NS_COUNTERS, ns.slot, field, amount)
        elif rng.random() < 0.5:
            await tb.count("subsystem_count", srq.index, 0, 1)
            tb.model.count(T.SUBSYSTEM_COUNTERS, srq.index, 0, 1)
        else:
            got = await dev.ns_counters(ns, clear=rng.random() < 0.5)
            assert isinstance(got, dict) and len(got) == 10
    for ns in namespaces:
        await dev.ns_counters(ns)
    got = await dev.srq_counters(srq)
    assert got["unknown_ns"] == tb.model.counters(T.SUBSYSTEM_COUNTERS, srq.index)["unknown_ns"]
    # after a read-clear, back-to-back increments of one counter are all counted
    # (saturation at 2**48-1 is checked on a narrow CounterBank in tb/unit)
    slot = namespaces[0].slot
    await dev.ns_counters(namespaces[0], clear=True)
    for _ in range(3):
        await tb.count("ns_count", slot, 2, 0xFFFF)
        tb.model.count(T.NS_COUNTERS, slot, 2, 0xFFFF)
    got = await dev.ns_counters(namespaces[0])
    assert got["read_blocks"] == 3 * 0xFFFF


@cocotb.test()
async def run_reset_clears_tables(dut):
    """A reset (not a power-up) clears every table: the sweep, observed through READs."""
    tb = TB(dut)
    dev, _ = await _open(tb)
    srq = await dev.create_srq(_srq_attrs(dev))
    ctrl = await dev.create_nvme_ctrl(srq, _ctrl_attrs(0))
    await dev.map_nvmf_nsid([ctrl], 1, 512, 1, 100)
    await dev.qp_set_nvmf(3, srq, sqsize=16, sqid=1)
    await tb.count("ns_count", 0, 0, 5)
    await tb.cycle_reset()
    await _wait_sweep(tb)
    regs = TeeRegs(tb)
    dev = NvmfDevice(regs, tb.params)
    await dev.open()
    await _dump_all_tables(tb, dev)     # every entry zero on the RTL, as on the fresh model
    assert (await tb.qp_lookup(3))["attrs"]["offload"] == 0


# --- found by mutation testing of the control plane (``nvmf-offload mutate --preset control``) --

@cocotb.test()
async def run_every_table_read_port_matches_model(dut):
    """Every datapath read port (QP and SUBSYSTEM twice, BACKEND_QUEUE three times), all in
    the same cycles at different addresses: each returns its own address's entry, as the
    model holds it, the cycle after its enable (zero at or above the table's size)."""
    tb = TB(dut)
    dev, _ = await _open(tb)
    caps = dev.caps
    srqs = [await dev.create_srq(_srq_attrs(dev, staging_addr=0x8000_0000 + i * 0x100_0000,
                                            queue_depth=64 + i))
            for i in range(caps.max_srqs)]
    for i in range(caps.max_backend_ctrls_total):
        await dev.create_nvme_ctrl(srqs[i % len(srqs)], _ctrl_attrs(i))
    qpns = sorted({0, 1, 5, caps.max_qps // 2, caps.max_qps - 1})
    for i, qpn in enumerate(qpns):
        await dev.qp_set_nvmf(qpn, srqs[i % len(srqs)], offload_only=bool(i & 1),
                              sqsize=16 + i, sqid=1 + i)
    rng = random.Random(11)
    seen = {prefix: set() for prefix in READ_PORTS}
    for _ in range(150):
        addrs = {}
        for prefix, (_, table) in READ_PORTS.items():
            size = tb.model.sizes[table]
            if table == T.QP and rng.random() < 0.6:
                addrs[prefix] = rng.choice(qpns)
            else:
                addrs[prefix] = rng.randrange(size + 3)
        got = await tb.read_ports(addrs)
        for prefix, addr in addrs.items():
            assert got[prefix] == tb.port_entry(prefix, addr), (
                f"{prefix}_rd_data for address {addr}: rtl {got[prefix]}, "
                f"model {tb.port_entry(prefix, addr)}")
            seen[prefix].add(addr)
    for prefix in READ_PORTS:
        zero = tb.port_entry(prefix, 1 << 20)
        assert any(tb.port_entry(prefix, a) != zero for a in seen[prefix]), (
            f"{prefix}: no configured entry was read")


@cocotb.test()
async def run_config_pulses_follow_table_writes(dut):
    """qp_cfg / bq_cfg / ss_cfg pulse once per index of their table in the reset sweep, and
    then once per table WRITE command to the QP, BACKEND_QUEUE or SUBSYSTEM table, with its
    index, in order; never for other tables or for refused commands."""
    tb = TB(dut)
    pulses = {name: [] for name in CFG_PULSES}

    async def monitor():
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            for name, (index, _) in CFG_PULSES.items():
                if int(getattr(dut, name).value):
                    pulses[name].append(int(getattr(dut, index).value))

    cocotb.start_soon(monitor())
    await tb.cycle_reset()
    await _wait_sweep(tb)
    for name, (_, table) in CFG_PULSES.items():
        assert pulses[name] == list(range(tb.model.sizes[table])), (
            f"{name} in the reset sweep: {pulses[name]}")
        pulses[name].clear()

    regs = TeeRegs(tb)
    dev = NvmfDevice(regs, tb.params)
    writes = []         # the WRITE commands the model ran without error: (table, index)
    command = tb.model._command

    def recording(op, tbl, index):
        command(op, tbl, index)
        if op == CmdOp.WRITE.value and tb.model.cmd_error == CmdError.NONE:
            writes.append((T(tbl), index))

    tb.model._command = recording
    await dev.open()
    caps = dev.caps
    a = await dev.create_srq(_srq_attrs(dev))
    b = await dev.create_srq(_srq_attrs(dev, staging_addr=0x9000_0000))
    ctrls = [await dev.create_nvme_ctrl(s, _ctrl_attrs(i)) for i, s in enumerate((a, b))]
    ns = await dev.map_nvmf_nsid(ctrls[:1], 1, 512, 1, 100)
    await dev.qp_set_nvmf(3, a, sqsize=16, sqid=1)
    await dev.qp_set_nvmf(caps.max_qps - 1, b, sqsize=8, sqid=2)
    await _expect_errno(errno.EINVAL, dev.qp_set_nvmf(caps.max_qps, a, sqsize=32, sqid=1))
    # a refused command (index out of range) writes nothing
    await regs.write(tb.model.regmap["CMD"].offset,
                     (caps.max_qps << 16) | (T.QP.value << 8) | CmdOp.WRITE.value)
    await _wait_sweep(tb)
    await dev.unmap_nvmf_nsid(a, ns.fe_nsid)
    await dev.destroy_nvme_ctrl(ctrls[1])
    await dev.qp_set_nvmf(3, None)
    await ClockCycles(dut.clk, 4)
    for name, (_, table) in CFG_PULSES.items():
        want = [index for kind, index in writes if kind == table]
        assert want, f"no WRITE to {table.name}: the test does not exercise {name}"
        assert pulses[name] == want, f"{name}: rtl {pulses[name]}, table writes {want}"


async def _ns_lookup_once(tb, subsystem, fe_nsid):
    dut = tb.dut
    dut.ns_resp__ready.value = 1
    dut.ns_req__payload.value = tb.ns_request_bits(subsystem, fe_nsid)
    dut.ns_req__valid.value = 1
    await RisingEdge(dut.clk)
    dut.ns_req__valid.value = 0
    await RisingEdge(dut.clk)
    await ReadOnly()
    assert int(dut.ns_resp__valid.value), "no lookup response two cycles after the request"
    resp = tb.ns_response()
    await RisingEdge(dut.clk)
    return resp


@cocotb.test()
async def run_out_of_range_lookups_are_not_found_whatever_the_tables_hold(dut):
    """subsystem >= subsystems, fe_nsid = 0 and fe_nsid > srq_namespaces answer NOT_FOUND even
    when every index entry names a valid, ready namespace entry tagged with exactly that
    (subsystem, fe_nsid); an in-range pair so set up answers HIT."""
    tb = TB(dut)
    dev, _ = await _open(tb)
    p = tb.params
    n = p.srq_namespaces
    slot = p.namespaces - 1
    for index in range(p.subsystems * n):
        await dev._write_entry(T.NS_INDEX, index, {"valid": 1, "slot": slot})
    pairs = [(0, 0), (1, 0), (p.subsystems - 1, 0), (0, n + 1), (p.subsystems - 1, n + 1),
             (0, 2 * n), (0, 2 * n + 1), (1, 0xFFFF_FFFF), (p.subsystems, 1),
             (p.subsystems, n), (255, 1), (0, 1), (p.subsystems - 1, n)]
    for sub, fe in pairs:
        await dev._write_entry(T.NAMESPACE, slot, {"valid": 1, "ready": 1, "ops": 0x1F,
                                                   "lba_shift": 9, "subsystem": sub,
                                                   "fe_nsid": fe, "backend_nsid": 7})
        await ClockCycles(tb.dut.clk, 2)
        resp = await _ns_lookup_once(tb, sub, fe)
        status, _, entry = tb.model.ns_lookup(sub, fe)
        assert (resp["status"].name, resp["entry"]) == (status, entry), (sub, fe, resp)
        in_range = sub < p.subsystems and 1 <= fe <= n
        assert resp["status"] == (NsLookupStatus.HIT if in_range else NsLookupStatus.NOT_FOUND), (
            sub, fe, resp["status"])
