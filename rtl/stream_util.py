"""Small helpers shared by the gateware blocks."""

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal, Value

__all__ = ["popcount", "min_value", "keep_mask", "RegisterSlice", "HoldRegister"]


def popcount(value):
    """Number of set bits of ``value`` (a balanced adder tree)."""
    bits = [value[i] for i in range(len(value))]
    if not bits:
        return Const(0, 1)
    while len(bits) > 1:
        pairs = [bits[i] + bits[i + 1] for i in range(0, len(bits) - 1, 2)]
        if len(bits) % 2:
            pairs.append(bits[-1])
        bits = pairs
    return bits[0]


def min_value(a, b):
    """The smaller of two unsigned values."""
    return Mux(a < b, a, b)


def keep_mask(count, nbytes):
    """A ``nbytes``-bit mask whose bits below ``count`` are set (saturating at ``nbytes``)."""
    count = Value.cast(count)
    return Cat(*(count > i for i in range(nbytes)))


class _StreamRegister(Elaboratable):
    """Ports of a register stage on a valid/ready stream: ``i_*`` from the producer,
    ``o_*`` to the consumer, ``*_data`` of ``shape``."""

    def __init__(self, shape):
        self.i_valid = Signal()
        self.i_ready = Signal()
        self.i_data = Signal(shape)
        self.o_valid = Signal()
        self.o_ready = Signal()
        self.o_data = Signal(shape)


class RegisterSlice(_StreamRegister):
    """A two-entry register slice (skid buffer) on a valid/ready stream.

    Both ``o_valid``/``o_data`` and ``i_ready`` come straight from flip-flops,
    so no combinational path crosses it in either direction; it passes one
    item a cycle and adds one cycle of latency. ``spare`` / ``spare_valid`` (the
    second entry, which holds an item taken while the output waits) are attributes
    so that a formal proof can state what they hold.
    """

    def __init__(self, shape):
        super().__init__(shape)
        self.spare = Signal(shape)
        self.spare_valid = Signal()

    def elaborate(self, platform):
        m = Module()
        spare, spare_valid = self.spare, self.spare_valid
        m.d.comb += self.i_ready.eq(~spare_valid)
        with m.If(~self.o_valid | self.o_ready):
            with m.If(spare_valid):
                m.d.sync += [self.o_data.eq(spare), self.o_valid.eq(1), spare_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o_data.eq(self.i_data), self.o_valid.eq(self.i_valid)]
        with m.Elif(self.i_valid & ~spare_valid):
            m.d.sync += spare_valid.eq(1)
        # the spare entry's data follows the input while it is empty (no enable from o_ready)
        with m.If(~spare_valid):
            m.d.sync += spare.eq(self.i_data)
        return m


class HoldRegister(_StreamRegister):
    """A one-entry register on a valid/ready stream, for a producer that never offers
    back to back.

    ``i_ready`` is high while the register is empty (from a flip-flop);
    ``o_valid``/``o_data`` come from the register. An item taken in cycle t is
    offered from t+1; the register is free again the cycle after it is taken, so it
    passes at most one item every other cycle (half a :class:`RegisterSlice`'s rate, at
    half its flip-flops and with no multiplexer).
    """

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i_ready.eq(~self.o_valid)
        with m.If(~self.o_valid):
            m.d.sync += [self.o_data.eq(self.i_data), self.o_valid.eq(self.i_valid)]
        with m.Elif(self.o_ready):
            m.d.sync += self.o_valid.eq(0)
        return m
