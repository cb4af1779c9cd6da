"""Small helpers shared by the gateware blocks."""

from amaranth.hdl import Cat, Const, Mux, Value

__all__ = ["popcount", "min_value", "keep_mask"]


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
