"""A bank of saturating counters in one memory, with increments and CSR reads.

One entry per object (namespace or subsystem); an entry is a ``data.Struct``
of equal-width counter fields (``NsCounters``, ``SubsystemCounters``).
"""

from amaranth.hdl import Array, Module, Mux, Signal
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

    Interface attributes
    --------------------
    inc : In(stream.Signature(CountRequest))
        Add ``amount`` to counter ``field`` of entry ``index``; one per cycle
        (``ready`` is low only while a CSR access or the reset sweep runs).
        Out-of-range ``index`` or ``field`` is ignored.
    csr_index, csr_clear, csr_start : In
        A CSR read of one entry: ``csr_start`` pulses; with ``csr_clear`` the
        entry is set to zero in the same cycle it is read, so an increment is
        counted either in the value read or in the counter left behind.
    csr_data, csr_done : Out
        ``csr_done`` pulses two cycles after ``csr_start`` with the entry in
        ``csr_data``.
    sweep_index, sweep_en : In
        Reset sweep: write zero to entry ``sweep_index`` (takes priority).
    """

    def __init__(self, layout, depth):
        self.layout = data.Layout.cast(layout)
        self.depth = depth
        widths = {field.width for _, field in self.layout}
        if len(widths) != 1:
            raise ValueError(f"counter fields must share one width, got {sorted(widths)}")
        self.counter_width = widths.pop()
        self.fields = len(list(self.layout))
        iw = max(1, (depth - 1).bit_length())
        self.index_width = iw
        super().__init__({
            "inc": In(stream.Signature(CountRequest(16))),
            "csr_index": In(16),
            "csr_clear": In(1),
            "csr_start": In(1),
            "csr_data": Out(self.layout),
            "csr_done": Out(1),
            "sweep_index": In(16),
            "sweep_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        W, n = self.counter_width, self.fields
        m.submodules.mem = mem = memory.Memory(shape=self.layout, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))

        # stage 0: choose the operation; stage 1: the entry is read, modify and write
        s1_valid = Signal()
        s1_csr = Signal()
        s1_clear = Signal()
        s1_index = Signal(16)
        s1_field = Signal(4)
        s1_amount = Signal(16)

        csr_busy = Signal()       # a CSR access occupies stage 0 this cycle
        m.d.comb += csr_busy.eq(self.csr_start | self.sweep_en)
        take_inc = self.inc.valid & ~csr_busy
        m.d.comb += self.inc.ready.eq(~csr_busy)

        index0 = Mux(self.csr_start, self.csr_index, self.inc.payload.index)
        m.d.comb += [rd.addr.eq(index0), rd.en.eq(1)]
        m.d.sync += [
            s1_valid.eq((self.csr_start | take_inc) & ~self.sweep_en),
            s1_csr.eq(self.csr_start),
            s1_clear.eq(self.csr_clear),
            s1_index.eq(index0),
            s1_field.eq(self.inc.payload.field),
            s1_amount.eq(self.inc.payload.amount),
        ]

        old = rd.data.as_value()
        counters = Array(old[i * W:(i + 1) * W] for i in range(n))
        current = counters[s1_field]
        total = Signal(W + 1)
        m.d.comb += total.eq(current + s1_amount)
        saturated = Mux(total[W], (1 << W) - 1, total[:W])
        updated = Signal(len(old))
        m.d.comb += updated.eq(old)
        with m.Switch(s1_field):
            for i in range(n):
                with m.Case(i):
                    m.d.comb += updated[i * W:(i + 1) * W].eq(saturated)
        in_range = (s1_index < self.depth) & (s1_field < n)

        with m.If(self.sweep_en):
            m.d.comb += [wr.addr.eq(self.sweep_index), wr.data.eq(0),
                         wr.en.eq(self.sweep_index < self.depth)]
        with m.Elif(s1_valid & s1_csr):
            m.d.comb += [wr.addr.eq(s1_index), wr.data.eq(0),
                         wr.en.eq(s1_clear & (s1_index < self.depth))]
        with m.Elif(s1_valid & in_range):
            m.d.comb += [wr.addr.eq(s1_index), wr.data.eq(updated), wr.en.eq(1)]

        m.d.sync += self.csr_done.eq(s1_valid & s1_csr)
        with m.If(s1_valid & s1_csr):
            m.d.sync += self.csr_data.eq(Mux(s1_index < self.depth, old, 0))
        return m
