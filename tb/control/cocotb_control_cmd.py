"""cocotb tests of ``nvmf_control``'s table commands as software sees them: how long
``CMD_STATUS.busy`` lasts, and that a command done is one every lookup sees. Launched by
``tb/control/test_control.py``; the shared helpers are in ``cocotb_control.py``.
"""

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from rtl.formats import CmdError, CmdOp
from rtl.formats import Table as T
from tb.control.cocotb_control import _wait_sweep
from tb.control.control_tb import TB


@cocotb.test()
async def run_cmd_busy_covers_the_whole_command(dut):
    """CMD_STATUS.busy is 1 from the cycle after a CMD write until the command is done: a
    status read accepted in any later cycle shows busy = 1 or the new command's error, and a
    second CMD write is either refused (SLVERR, nothing run) or runs its command."""
    tb = TB(dut)
    await tb.cycle_reset()
    await _wait_sweep(tb)
    cmd = tb.model.regmap["CMD"].offset
    status = tb.model.regmap["CMD_STATUS"].offset
    accepted = {"w": [], "r": []}

    async def monitor():
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.s_axil_csr_awvalid.value) and int(dut.s_axil_csr_awready.value):
                accepted["w"].append(tb.cycle)
            if int(dut.s_axil_csr_arvalid.value) and int(dut.s_axil_csr_arready.value):
                accepted["r"].append(tb.cycle)

    cocotb.start_soon(monitor())

    async def write(word):
        resp = await tb.axil.write(cmd, word.to_bytes(4, "little"))
        return int(resp.resp)

    async def settle():
        for _ in range(100):
            value = int.from_bytes((await tb.axil.read(status, 4)).data, "little")
            if not value & 1:
                return CmdError((value >> 8) & 0xFF)
        raise AssertionError("CMD_STATUS.busy never cleared")

    def word(op, table, index=0):
        return (index << 16) | (table.value << 8) | op.value

    # consecutive commands end with different errors, through every path of a command
    commands = [(word(CmdOp.READ, T.QP, 1), CmdError.NONE),
                (0x0000_0009, CmdError.BAD_OP),
                (word(CmdOp.READ, T.NS_COUNTERS, 2), CmdError.NONE),
                (word(CmdOp.WRITE, T.NS_COUNTERS), CmdError.READ_ONLY),
                (word(CmdOp.WRITE, T.SUBSYSTEM, 1), CmdError.NONE),
                (word(CmdOp.READ, T.QP, tb.params.qp_count), CmdError.BAD_INDEX)]
    next_cycle_reads = 0
    for delay in range(8):
        for value, want in commands:
            task = cocotb.start_soon(write(value))
            await ClockCycles(dut.clk, delay)
            resp = await tb.axil.read(status, 4)
            assert await task == 0
            t_w, t_r = accepted["w"][-1], accepted["r"][-1]
            got = int.from_bytes(resp.data, "little")
            if t_r > t_w and not got & 1:
                assert CmdError((got >> 8) & 0xFF) == want, (
                    f"CMD 0x{value:08x}: status read {t_r - t_w} cycles after the write "
                    f"shows busy = 0 and error {(got >> 8) & 0xFF}, not {want.name}")
            next_cycle_reads += t_r == t_w + 1
            assert await settle() == want
    assert next_cycle_reads, "no status read fell in the cycle after a CMD write"

    # a second CMD write behind a READ: refused while busy, else it runs
    outcomes = set()
    for delay in range(1, 11):     # at least one cycle, so that the first write goes first
        first = cocotb.start_soon(write(word(CmdOp.READ, T.QP, 1)))
        await ClockCycles(dut.clk, delay)
        second = await write(0x0000_0009)
        assert await first == 0
        error = await settle()
        if second == 0:
            assert error == CmdError.BAD_OP, f"delay {delay}: second CMD answered OKAY, not run"
        else:
            assert error == CmdError.NONE, f"delay {delay}: refused CMD changed the error"
        outcomes.add(second)
        # the next round starts from a clean error
        await write(word(CmdOp.READ, T.QP, 0))
        assert await settle() == CmdError.NONE
    assert outcomes == {0, 2}, f"responses seen to the second CMD: {outcomes}"


@cocotb.test()
async def run_cmd_done_means_every_lookup_sees_the_write(dut):
    """Once CMD_STATUS.busy reads 0 after a table WRITE, a lookup made in the cycle of that
    status read or later returns the new entry (the table takes the write from its
    register before the command ends). The QP lookup port reads the written QPN in every
    cycle; status reads follow the CMD write back to back from delays 0 to 9, so that one
    of them falls in the first cycle with busy = 0."""
    tb = TB(dut)
    await tb.cycle_reset()
    await _wait_sweep(tb)
    cmd = tb.model.regmap["CMD"].offset
    status = tb.model.regmap["CMD_STATUS"].offset
    arg0 = tb.model.regmap["ARG[0]"].offset
    looked = {}             # cycle -> the entry a lookup made in that cycle returned
    taken = {"w": [], "r": []}   # cycles of accepted CSR writes and reads

    async def monitor():
        cycle, last = 0, None
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            cycle += 1
            if last is not None:
                looked[last] = int(dut.qp_rd_data.value)
            last = cycle if int(dut.qp_rd_en.value) else None
            if int(dut.s_axil_csr_awvalid.value) and int(dut.s_axil_csr_awready.value):
                taken["w"].append(cycle)
            if int(dut.s_axil_csr_arvalid.value) and int(dut.s_axil_csr_arready.value):
                taken["r"].append(cycle)

    cocotb.start_soon(monitor())
    offsets = {0: set(), 1: set()}   # cycles after the CMD write of reads showing busy 0 / 1
    for delay in range(10):
        qpn = (1 + delay) % tb.params.qp_count
        entry = 0x5A00 + 17 * delay + 1
        dut.qp_rd_addr.value = qpn
        dut.qp_rd_en.value = 1
        await tb.axil.write(arg0, entry.to_bytes(4, "little"))
        await ClockCycles(dut.clk, 3)
        assert looked[max(looked)] != entry, f"QPN {qpn} holds {entry:#x} before its WRITE"
        word = (qpn << 16) | (T.QP.value << 8) | CmdOp.WRITE.value
        task = cocotb.start_soon(tb.axil.write(cmd, word.to_bytes(4, "little")))
        await ClockCycles(dut.clk, delay)
        first_read = len(taken["r"])
        reads = []
        for _ in range(8):
            reads.append(int.from_bytes((await tb.axil.read(status, 4)).data, "little"))
        assert int((await task).resp) == 0
        t_w = taken["w"][-1]
        await ClockCycles(dut.clk, 3)
        dut.qp_rd_en.value = 0
        await ClockCycles(dut.clk, 2)
        assert looked[max(looked)] == entry, (
            f"QPN {qpn}: the lookup returns {looked[max(looked)]:#x} after the WRITE, "
            f"not {entry:#x}")
        after = [(c, v) for c, v in zip(taken["r"][first_read:], reads, strict=True)
                 if c > t_w]
        done = [c for c, v in after if not v & 1]
        assert done, f"delay {delay}: no status read showed the command done"
        for c in done:
            stale = [x for x in sorted(looked) if x >= c and looked[x] != entry]
            assert not stale, (
                f"delay {delay}: status read in cycle {c} shows busy = 0, but lookups made "
                f"in cycles {stale[:4]} return {looked[stale[0]]:#x}, not {entry:#x}")
        for c, v in after:
            offsets[v & 1].add(c - t_w)
    # the command's timing is the same every time: the status reads, counted from the CMD
    # write, showed busy = 1 up to some cycle and busy = 0 from the very next one
    assert offsets[1] and max(offsets[1]) + 1 == min(offsets[0]), (
        f"no status read fell in the first cycle with busy = 0: busy at {sorted(offsets[1])}, "
        f"done at {sorted(offsets[0])} cycles after the CMD write")
