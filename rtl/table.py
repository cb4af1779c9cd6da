"""A configuration table: a memory of entries with range-checked read ports.

Used for every table of the control plane (and, alone, for the QP attributes
of the parser's test top). One write port for configuration; any number of
synchronous read ports for lookups.
"""

from amaranth.hdl import Module, Mux, ResetSignal, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Table"]


class Table(wiring.Component):
    """Parameters
    ----------
    shape : layout of one entry
    depth : int
        Entries; an address at or above ``depth`` reads as all zeroes and is
        never written.
    addr_width : int
        Width of the address ports.
    read_ports : int
    block_ram : bool or None
        Read ports built for block RAM (registered reads; the memory has one spare
        row, always zero, that out-of-range addresses read) or, when false, for LUT
        RAM or flip-flops (asynchronous reads into an output register whose
        synchronous reset zeroes out-of-range reads: no gate per data bit). Default:
        block RAM for 64 entries or more (what Yosys maps to ``DP16KD`` on the ECP5).

    Interface attributes
    --------------------
    rd{i}_addr, rd{i}_en : In
        Lookup ``i``: the address, sampled on a cycle with ``en``.
    rd{i}_zero : In
        With ``en``: the read returns zero instead of the entry (free: the output
        register's reset, or the spare zero row of block RAM).
    rd{i}_data : Out(shape)
        The entry, the cycle after ``en``; held while ``en`` is low. A write the
        memory takes in the cycle of ``en`` is not seen by that read (the old entry).
    wr_addr, wr_en, wr_data : In
        Write one whole entry (atomic for every reader). Without ``write_register`` the
        memory takes it at the end of the cycle with ``wr_en``; with it, at the end of
        the next cycle: the write (its range check done) is registered first, so that
        the memory's write enable, address and data come straight from flip-flops.
    """

    def __init__(self, shape, depth, addr_width, read_ports=1, block_ram=None,
                 write_register=False):
        self.shape = shape
        self.depth = depth
        self.write_register = write_register
        self.block_ram = depth >= 64 if block_ram is None else block_ram
        self.read_ports = read_ports
        members = {"wr_addr": In(addr_width), "wr_en": In(1), "wr_data": In(shape)}
        for i in range(read_ports):
            members.update({f"rd{i}_addr": In(addr_width), f"rd{i}_en": In(1),
                            f"rd{i}_zero": In(1), f"rd{i}_data": Out(shape)})
        super().__init__(members)

    def rd(self, i):
        return (getattr(self, f"rd{i}_addr"), getattr(self, f"rd{i}_en"),
                getattr(self, f"rd{i}_data"))

    def elaborate(self, platform):
        m = Module()
        n = self.depth
        rows = n + 1 if self.block_ram else n
        m.submodules.mem = mem = memory.Memory(shape=self.shape, depth=rows, init=[])
        wr = mem.write_port()
        # the write, its address range checked: taken now, or a cycle later from registers
        write = [wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data),
                 wr.en.eq(self.wr_en & (self.wr_addr < n))]
        m.d["sync" if self.write_register else "comb"] += write
        for i in range(self.read_ports):
            addr, en, out = self.rd(i)
            keep = (addr < n) & ~getattr(self, f"rd{i}_zero")
            if self.block_ram:
                # a registered (block RAM) read; an address out of range (or a zeroed
                # read) reads row n, never written, always zero
                port = mem.read_port()
                m.d.comb += [port.addr.eq(Mux(keep, addr, n)), port.en.eq(en),
                             out.eq(port.data)]
            else:
                # an asynchronous (LUT RAM or flip-flop) read into the output register.
                # Zeroing it (the domain's reset, an address out of range, a zeroed read)
                # is one synchronous reset, written out so that it maps onto the
                # flip-flops' reset input and leaves no gate per data bit
                port = mem.read_port(domain="comb")
                reg = Signal(self.shape, name=f"rd{i}_reg", reset_less=True)
                m.d.comb += [port.addr.eq(addr), out.eq(reg)]
                with m.If(ResetSignal() | (en & ~keep)):
                    m.d.sync += reg.eq(0)
                with m.Elif(en):
                    m.d.sync += reg.eq(port.data)
        return m
