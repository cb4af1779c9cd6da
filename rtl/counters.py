"""A bank of saturating counters in one memory, with increments and CSR reads.

One entry per object (namespace or subsystem); an entry is a ``data.Struct``
of equal-width counter fields (``NsCounters``, ``SubsystemCounters``).

The memory holds one counter per row, not one entry: row ``index * F +
field``, ``F`` the field count rounded up to a power of two. An increment is a
read-modify-write of one ``W``-bit row (one adder, no field multiplexer), and
the memory is narrow and deep enough for block RAM (the default
configuration's namespace counters: 512 rows of 48 bits, two ``DP16KD`` on the
ECP5) or a few LUT-RAM cells instead of flip-flops and a wide multiplexer per
field. A CSR read walks the entry's fields, one row a cycle.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CounterBank", "CountRequest"]


def CountRequest(index_width, field_width=4, amount_width=16):
    return data.StructLayout({"index": index_width, "field": field_width,
                              "amount": amount_width})


class CounterBank(wiring.Component):
    """Parameters
    ----------
    layout : data.Struct subclass
        The entry; every field is one counter of the same width.
    depth : int
        Entries.

    Attributes
    ----------
    rows : int
        Memory rows, ``depth * F`` (``F``: the field count rounded up to a power
        of two); the reset sweep clears rows ``0 .. rows-1``.

    Interface attributes
    --------------------
    inc : In(stream.Signature(CountRequest))
        Add ``amount`` to counter ``field`` of entry ``index``; one per cycle
        (``ready`` is low only while a CSR read or the reset sweep runs). The
        sum is written two cycles after the increment is taken and is seen by
        every later increment and CSR read. Out-of-range ``index`` or ``field``
        is ignored.
    csr_index, csr_clear, csr_start : In
        A CSR read of one entry: ``csr_start`` pulses for one cycle (not while
        a read runs; ``csr_index`` and ``csr_clear`` are sampled then). Field
        ``f`` is read in cycle ``start + 1 + f``; with ``csr_clear`` it is set to
        zero in the cycle it is read, so an increment is counted either in the
        value read or in the counter left behind (per field: the fields of one
        entry are read in consecutive cycles, not in one).
    csr_data, csr_done : Out
        ``csr_done`` pulses ``fields + 2`` cycles after ``csr_start`` with the
        entry in ``csr_data`` (all zero for an ``csr_index`` at or above
        ``depth``); ``csr_data`` holds until the next read, or until ``csr_zero``
        (not during a read) sets it to zero.
    sweep_index, sweep_en : In
        Reset sweep: write zero to row ``sweep_index`` (takes priority; rows at
        or above ``rows`` are ignored).
    """

    def __init__(self, layout, depth):
        self.layout = data.Layout.cast(layout)
        self.depth = depth
        widths = {field.width for _, field in self.layout}
        if len(widths) != 1:
            raise ValueError(f"counter fields must share one width, got {sorted(widths)}")
        self.counter_width = widths.pop()
        self.fields = len(list(self.layout))
        self.field_bits = (self.fields - 1).bit_length()
        self.rows = depth << self.field_bits
        iw = max(1, (depth - 1).bit_length())
        self.index_width = iw
        super().__init__({
            "inc": In(stream.Signature(CountRequest(16))),
            "csr_index": In(16),
            "csr_clear": In(1),
            "csr_start": In(1),
            "csr_zero": In(1),
            "csr_data": Out(self.layout),
            "csr_done": Out(1),
            "sweep_index": In(16),
            "sweep_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        W, n, fb = self.counter_width, self.fields, self.field_bits
        rows = self.rows
        m.submodules.mem = mem = memory.Memory(shape=W, depth=rows, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))

        # the CSR read in progress: entry, next field, clear
        c_active = Signal()
        c_index = Signal(16)
        c_field = Signal(max(1, fb))
        c_clear = Signal()
        c_in_range = Signal()
        last = c_field == n - 1
        with m.If(self.csr_start):
            m.d.sync += [c_active.eq(1), c_index.eq(self.csr_index), c_field.eq(0),
                         c_clear.eq(self.csr_clear), c_in_range.eq(self.csr_index < self.depth)]
        with m.Elif(c_active):
            m.d.sync += c_field.eq(c_field + 1)
            with m.If(last):
                m.d.sync += c_active.eq(0)

        # stage 0: choose the row (a CSR field, else an increment); stage 1: the row is
        # read, modify and write it back
        s1_valid = Signal()       # an increment of an existing counter
        s1_csr = Signal()         # a CSR field read
        s1_clear = Signal()
        s1_last = Signal()
        s1_field = Signal(max(1, fb))
        s1_row = Signal(range(rows))
        s1_amount = Signal(16)

        busy = c_active | self.sweep_en
        take_inc = self.inc.valid & ~busy
        m.d.comb += self.inc.ready.eq(~busy)
        req = self.inc.payload
        inc_row = req.index[:self.index_width] if fb == 0 else \
            (req.index[:self.index_width] << fb) | req.field[:fb]
        if fb == 0:
            csr_row = c_index[:self.index_width]
        else:
            csr_row = (c_index[:self.index_width] << fb) | c_field
        inc_ok = (req.index < self.depth) & (req.field < n)
        m.d.comb += [rd.addr.eq(Mux(c_active, csr_row, inc_row)), rd.en.eq(1)]
        m.d.sync += [
            s1_valid.eq(take_inc & inc_ok),
            s1_csr.eq(c_active & c_in_range & ~self.sweep_en),
            s1_clear.eq(c_clear),
            s1_last.eq(c_active & last),
            s1_field.eq(c_field),
            s1_row.eq(rd.addr),
            s1_amount.eq(req.amount),
        ]

        total = Signal(W + 1)
        m.d.comb += total.eq(rd.data + s1_amount)
        with m.If(self.sweep_en):
            m.d.comb += [wr.addr.eq(self.sweep_index), wr.data.eq(0),
                         wr.en.eq(self.sweep_index < rows)]
        with m.Elif(s1_csr):
            m.d.comb += [wr.addr.eq(s1_row), wr.data.eq(0), wr.en.eq(s1_clear)]
        with m.Elif(s1_valid):
            m.d.comb += [wr.addr.eq(s1_row), wr.data.eq(Mux(total[W], (1 << W) - 1, total[:W])),
                         wr.en.eq(1)]

        # the entry read by the CSR: each field's register loads in its own cycle
        out = self.csr_data.as_value()
        m.d.sync += self.csr_done.eq(s1_last)
        with m.If(self.csr_start | self.csr_zero):
            m.d.sync += out.eq(0)
        for f in range(n):
            with m.If(s1_csr & (s1_field == f)):
                m.d.sync += out[f * W:(f + 1) * W].eq(rd.data)
        return m
