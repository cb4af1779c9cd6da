"""A configuration table: a memory of entries with range-checked read ports.

Used for every table of the control plane (and, alone, for the QP attributes
of the parser's test top). One write port for configuration; any number of
synchronous read ports for lookups.
"""

from amaranth.hdl import Module, Signal
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

    Interface attributes
    --------------------
    rd{i}_addr, rd{i}_en : In
        Lookup ``i``: the address, sampled on a cycle with ``en``.
    rd{i}_data : Out(shape)
        The entry, the cycle after ``en``; held while ``en`` is low. A write in
        the same cycle is not seen by that read (it returns the old entry).
    wr_addr, wr_en, wr_data : In
        Write one whole entry (atomic for every reader).
    """

    def __init__(self, shape, depth, addr_width, read_ports=1):
        self.shape = shape
        self.depth = depth
        self.read_ports = read_ports
        members = {"wr_addr": In(addr_width), "wr_en": In(1), "wr_data": In(shape)}
        for i in range(read_ports):
            members.update({f"rd{i}_addr": In(addr_width), f"rd{i}_en": In(1),
                            f"rd{i}_data": Out(shape)})
        super().__init__(members)

    def rd(self, i):
        return (getattr(self, f"rd{i}_addr"), getattr(self, f"rd{i}_en"),
                getattr(self, f"rd{i}_data"))

    def elaborate(self, platform):
        m = Module()
        n = self.depth
        m.submodules.mem = mem = memory.Memory(shape=self.shape, depth=n, init=[])
        wr = mem.write_port()
        m.d.comb += [wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data),
                     wr.en.eq(self.wr_en & (self.wr_addr < n))]
        for i in range(self.read_ports):
            addr, en, out = self.rd(i)
            port = mem.read_port()
            in_range = Signal(name=f"rd{i}_in_range")
            m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
            with m.If(en):
                m.d.sync += in_range.eq(addr < n)
            with m.If(in_range):
                m.d.comb += out.eq(port.data)
        return m
