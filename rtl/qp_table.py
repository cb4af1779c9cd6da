"""QP capsule-attribute table: QPN -> ``QpCapsuleAttrs``, for the capsule parser.

A memory of ``qp_count`` entries with one synchronous read port (the parser's
lookup) and one write port (configuration). A QPN at or above ``qp_count``
reads as all zeroes: not offloaded, so its capsules go to software.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .formats import QPN_WIDTH, QpCapsuleAttrs

__all__ = ["QpAttrTable"]


class QpAttrTable(wiring.Component):
    """Parameters
    ----------
    qp_count : int

    Interface attributes
    --------------------
    rd_addr, rd_en : In
        Lookup: the QPN, sampled on a cycle with ``rd_en``.
    rd_data : Out(QpCapsuleAttrs)
        The entry, the cycle after ``rd_en``; held while ``rd_en`` is low. A
        write in the same cycle as the read is not seen by it (old entry).
    wr_addr, wr_en, wr_data : In
        Configuration write of one whole entry (atomic for readers).
    """

    def __init__(self, qp_count):
        self.qp_count = qp_count
        super().__init__({
            "rd_addr": In(QPN_WIDTH),
            "rd_en": In(1),
            "rd_data": Out(QpCapsuleAttrs),
            "wr_addr": In(QPN_WIDTH),
            "wr_en": In(1),
            "wr_data": In(QpCapsuleAttrs),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.qp_count
        m.submodules.mem = mem = memory.Memory(shape=QpCapsuleAttrs, depth=n, init=[])
        rd = mem.read_port()
        wr = mem.write_port()
        in_range = Signal()
        m.d.comb += [
            rd.addr.eq(self.rd_addr),
            rd.en.eq(self.rd_en),
            wr.addr.eq(self.wr_addr),
            wr.data.eq(self.wr_data),
            wr.en.eq(self.wr_en & (self.wr_addr < n)),
        ]
        with m.If(self.rd_en):
            m.d.sync += in_range.eq(self.rd_addr < n)
        with m.If(in_range):
            m.d.comb += self.rd_data.eq(rd.data)
        return m
