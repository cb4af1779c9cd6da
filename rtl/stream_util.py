"""Small helpers shared by the gateware blocks."""

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Shape, Signal, Value
from amaranth.lib import fifo, memory, stream

__all__ = ["popcount", "min_value", "keep_mask", "round_robin", "round_robin_onehot",
           "RegisterSlice", "HoldRegister", "RoundRobinMerge", "CreditFifo", "FlagFifo",
           "PipelinedMemory", "ReplicatedEnable", "HeadFifo"]


def _positive(owner, name, value):
    """``value`` if it is a positive integer; else ValueError naming it (and no
    "created but never used" warning for the half-made ``owner``)."""
    if not (isinstance(value, int) and value >= 1):
        owner._MustUse__silence = True
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


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


def round_robin(m, requests, last, pick, found):
    """Drive ``pick`` (comb) with the first index after ``last`` whose request is high,
    else the first one high at all, and ``found`` with whether any is."""
    for k in reversed(range(len(requests))):
        with m.If(requests[k]):
            m.d.comb += [pick.eq(k), found.eq(1)]
    for k in reversed(range(len(requests))):
        with m.If(requests[k] & (k > last)):
            m.d.comb += pick.eq(k)


def keep_mask(count, nbytes):
    """A ``nbytes``-bit mask whose bits below ``count`` are set (saturating at ``nbytes``)."""
    count = Value.cast(count)
    return Cat(*(count > i for i in range(nbytes)))


#: Most data bits one control flip-flop of a :class:`RegisterSlice` or :class:`FlagFifo`
#: selects or enables, for payloads wider than :data:`SPLIT_ABOVE` bits.
PART_BITS = 64
#: A :class:`RegisterSlice` payload up to this wide stays in one part: the copies of its
#: control cost little there, and they made the 24-step bounded check of the parser's
#: streams (64-bit configuration, 73-bit slices) run past ten minutes instead of seconds.
SPLIT_ABOVE = 96


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

    A payload wider than :data:`SPLIT_ABOVE` is held in parts of at most
    :data:`PART_BITS` bits, each with its own copies of
    ``o_valid`` and ``spare_valid`` (flip-flops kept apart in synthesis, always equal to
    the originals), so that no control flip-flop selects or enables more than
    :data:`PART_BITS` data bits. The spare entry's data has no reset (``spare_valid``
    says when it holds an item). The output's keeps it: without it Yosys folds the
    enables of the parser's reader differently and its deepest path grows from 5.5 to
    8.25 levels.
    """

    def __init__(self, shape):
        super().__init__(shape)
        self.spare = Signal(shape, reset_less=True)
        self.spare_valid = Signal()

    def elaborate(self, platform):
        m = Module()
        spare, spare_valid = self.spare, self.spare_valid
        m.d.comb += self.i_ready.eq(~spare_valid)
        o_data, i_data, spare_bits = (Value.cast(v) for v in (self.o_data, self.i_data, spare))
        width = len(o_data)
        parts = 1 if width <= SPLIT_ABOVE else -(-width // PART_BITS)
        o_valid = [self.o_valid] + [Signal(name=f"o_valid_c{k}", attrs={"keep": 1})
                                    for k in range(1, parts)]
        full = [spare_valid] + [Signal(name=f"spare_valid_c{k}", attrs={"keep": 1})
                                for k in range(1, parts)]
        for k in range(parts):
            lo, hi = k * width // parts, (k + 1) * width // parts
            with m.If(~o_valid[k] | self.o_ready):
                with m.If(full[k]):
                    m.d.sync += [o_data[lo:hi].eq(spare_bits[lo:hi]), o_valid[k].eq(1),
                                 full[k].eq(0)]
                with m.Else():
                    m.d.sync += [o_data[lo:hi].eq(i_data[lo:hi]), o_valid[k].eq(self.i_valid)]
            with m.Elif(self.i_valid & ~full[k]):
                m.d.sync += full[k].eq(1)
            # the spare entry's data follows the input while it is empty (no enable from
            # o_ready)
            with m.If(~full[k]):
                m.d.sync += spare_bits[lo:hi].eq(i_data[lo:hi])
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


class RoundRobinMerge(Elaboratable):
    """Several valid/ready streams into one, round robin, with every edge registered.

    Parameters
    ----------
    shape : the payload's shape (the same for every input)
    n : number of inputs
    input_slices : bool
        Put a :class:`RegisterSlice` on each input (default), so that each input's
        ``ready`` comes from a flip-flop. Without them an input's ``ready`` depends, in
        the same cycle, on the inputs' ``valid`` and on ``o.ready``: use that only where
        every producer's ``valid`` and the consumer's ``ready`` are themselves registers.

    Attributes
    ----------
    i : list of stream interfaces (``valid``, ``ready``, ``payload``), the inputs
    o : stream interface, the output; ``o.valid`` and ``o.payload`` are registers
    o_source : index of the input ``o``'s item came from (a register beside ``o``)

    Timing: an item taken on an input in cycle t is offered on ``o`` from t+2 (t+1
    without input slices) at the earliest. When ``o`` is free or being taken, the first
    input with an item after the one chosen last is taken: each of ``n`` busy inputs
    gets one item in every ``n``. The choice depends only on registers (the slices'
    outputs and the last choice) and on ``o.ready``; the payload passes one ``n``-way
    multiplexer into ``o.payload``. ``n`` = 1 is a register slice (or a register).
    """

    def __init__(self, shape, n, *, input_slices=True):
        _positive(self, "n", n)
        self.shape, self.n, self.input_slices = shape, n, input_slices
        self.i = [stream.Signature(shape).create(path=(f"i{k}",)) for k in range(n)]
        self.o = stream.Signature(shape).create(path=("o",))
        self.o_source = Signal(range(max(n, 2)))
        # the input slices (attributes, so that a formal proof can state what they hold)
        self.slices = [RegisterSlice(shape) for _ in range(n)] if input_slices else []

    def elaborate(self, platform):
        m = Module()
        n = self.n
        heads = []                          # (valid, ready, payload) the choice sees
        for k, src in enumerate(self.i):
            if self.input_slices:
                s = m.submodules[f"slice{k}"] = self.slices[k]
                m.d.comb += [s.i_valid.eq(src.valid), s.i_data.eq(src.payload),
                             src.ready.eq(s.i_ready)]
                heads.append((s.o_valid, s.o_ready, s.o_data))
            else:
                heads.append((src.valid, src.ready, src.payload))

        last = Signal(range(max(n, 2)))     # the input chosen last
        load = Signal()
        m.d.comb += load.eq(~self.o.valid | self.o.ready)
        # first input with an item after ``last``, else the first with one at all
        pick = Signal(range(max(n, 2)))
        found = Signal()
        round_robin(m, [valid for valid, _, _ in heads], last, pick, found)
        with m.If(load):
            m.d.sync += self.o.valid.eq(found)
            with m.If(found):
                m.d.sync += [last.eq(pick), self.o_source.eq(pick)]
        for k, (_, ready, payload) in enumerate(heads):
            m.d.comb += ready.eq(load & (pick == k) & found)
            with m.If(load & (pick == k)):
                m.d.sync += self.o.payload.eq(payload)
        return m


class CreditFifo(Elaboratable):
    """A FIFO whose writer takes a credit before it writes: room is decided ahead.

    A pipeline that decides to send an item several cycles before the item reaches the
    FIFO cannot wait on a ``ready`` that is computed in the cycle of the write. Here the
    producer takes one credit (``take``) when ``has_credit`` is high, and writes the item
    (``w_valid``, ``w_data``) in that cycle or any later one; the FIFO is sized so that a
    credited write always finds room. Credits come back as items are read.

    Attributes
    ----------
    has_credit : Signal, out, a register
        At least one credit is free this cycle. ``take`` without it is a misuse
        (``overrun`` rises and stays high; the FIFO itself never overflows).
    take : Signal, in
        Take one credit this cycle.
    w_valid, w_data : in
        Write one item; at most as many items as credits taken and not yet written.
    r : stream interface (``valid``, ``ready``, ``payload``), the read side
        ``r.valid`` and ``r.payload`` come from registers (the item written in cycle t is
        offered from t+2 at the earliest).
    level : Signal, out, a register: credits taken and not yet returned.
    overrun : Signal, out, a register: sticky misuse flag (``take`` without credit,
        or a write beyond the credits taken).

    Timing: ``has_credit`` for cycle t+1 is computed from the credit count, ``take`` and
    the read of cycle t, so a credit freed by a read in cycle t can be taken in t+1.
    """

    def __init__(self, shape, depth):
        _positive(self, "depth", depth)
        self.shape, self.depth = shape, depth
        self.has_credit = Signal(init=1)
        self.take = Signal()
        self.w_valid = Signal()
        self.w_data = Signal(shape)
        self.r = stream.Signature(shape).create(path=("r",))
        self.level = Signal(range(depth + 1))
        self.overrun = Signal()
        # the storage (an attribute, so that a formal proof can state what it holds)
        self.fifo = fifo.SyncFIFOBuffered(width=Shape.cast(shape).width, depth=depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = f = self.fifo
        m.d.comb += [f.w_en.eq(self.w_valid), f.w_data.eq(self.w_data),
                     self.r.valid.eq(f.r_rdy), self.r.payload.eq(f.r_data),
                     f.r_en.eq(self.r.ready)]
        took = self.take & self.has_credit
        back = self.r.valid & self.r.ready
        nxt = Signal.like(self.level)
        m.d.comb += nxt.eq(self.level + took - back)
        m.d.sync += [self.level.eq(nxt), self.has_credit.eq(nxt != self.depth)]
        with m.If((self.take & ~self.has_credit) | (self.w_valid & ~f.w_rdy)):
            m.d.sync += self.overrun.eq(1)
        return m


class FlagFifo(Elaboratable):
    """A first-in first-out buffer whose flags are flip-flops.

    The ports of :class:`amaranth.lib.fifo.SyncFIFOBuffered` (``buffered``) or
    :class:`~amaranth.lib.fifo.SyncFIFO` (not): ``w_en``, ``w_data``, ``w_rdy``,
    ``r_en``, ``r_data``, ``r_rdy``; a write or read without its flag is ignored. The
    library FIFOs compare a level counter with 0 and with the depth in the cycle of
    use, so every ``valid`` and ``ready`` built on them, and the FIFO's own enables,
    start with that compare. Here the fill is a thermometer code, one flip-flop per
    entry, and ``w_rdy`` (the inverse of its top bit) and ``r_rdy`` come from
    flip-flops: each next value is one LUT after the cycle's write and read enables.

    Timing: ``buffered``: the storage is read into an output register; an item written
    in cycle t is offered (``r_rdy``, ``r_data``) from t+2, and ``depth`` items fit (one
    in the output register; as in SyncFIFOBuffered, ``w_rdy`` says whether the storage
    of ``depth - 1`` has room, whether or not the output register is empty). Not
    ``buffered``: ``r_data`` is the storage read at the head (one LUT-RAM level),
    offered from t+1. ``w_rdy`` for cycle t+1 counts the read of cycle t: a full FIFO
    read in t takes a write in t+1. ``w_rdy_next`` (comb) is the value ``w_rdy`` takes at
    the next clock edge, for a writer that keeps registered copies of it; ``w_rdy2``
    (from flip-flops) says at least two entries of the storage are free, so that a
    write is sure to find room in the next cycle whatever this cycle does.

    A payload wider than :data:`PART_BITS` is stored in parts, each with its own copies
    of the pointers and of the head flags (kept apart in synthesis, always equal), so
    that no flip-flop drives the addresses or enables of more than one part.
    """

    def __init__(self, width, depth, buffered=True):
        _positive(self, "depth", depth)
        if buffered and depth < 2:
            self._MustUse__silence = True
            raise ValueError(f"a buffered FlagFifo needs depth >= 2, not {depth!r}")
        self.width, self.depth, self.buffered = width, depth, buffered
        self.w_en = Signal()
        self.w_data = Signal(width)
        self.w_rdy = Signal()
        self.w_rdy2 = Signal()
        self.w_rdy_next = Signal()
        self.r_en = Signal()
        self.r_data = Signal(width)
        self.r_rdy = Signal()

    def elaborate(self, platform):
        m = Module()
        D = self.depth - 1 if self.buffered else self.depth       # entries in storage
        fill = Signal(D)                    # fill[k]: more than k entries in storage
        # the storage in parts of at most PART_BITS bits, each with its own copies of the
        # pointers and flags (kept apart in synthesis, always equal): no flip-flop drives
        # the address, write enable or read enable of more than one part
        parts = max(1, -(-self.width // PART_BITS))

        def copy(sig, k, **kw):
            return sig if k == 0 else Signal.like(sig, name=f"{sig.name}_c{k}",
                                                  attrs={"keep": 1}, **kw)

        def incr(ptr):
            return Mux(ptr == D - 1, 0, ptr + 1) if D & (D - 1) else (ptr + 1)[:len(ptr)]

        produce0, consume0 = Signal(range(D), name="produce"), Signal(range(D), name="consume")
        for k in range(parts):
            lo, hi = k * self.width // parts, (k + 1) * self.width // parts
            storage = memory.Memory(shape=hi - lo, depth=D, init=[])
            m.submodules[f"storage{k}" if k else "storage"] = storage
            w_port = storage.write_port()
            produce, consume = copy(produce0, k), copy(consume0, k)
            head = fill[0] if k == 0 else Signal(name=f"fill0_c{k}", attrs={"keep": 1})
            do_write = self.w_en & self.w_rdy
            if self.buffered:
                r_rdy = copy(self.r_rdy, k)
                r_port = storage.read_port(domain="sync")
                take = head & (~r_rdy | self.r_en)          # storage -> output register
                m.d.comb += [r_port.en.eq(take), self.r_data[lo:hi].eq(r_port.data)]
                with m.If(take):
                    m.d.sync += r_rdy.eq(1)
                with m.Elif(self.r_en):
                    m.d.sync += r_rdy.eq(0)
            else:
                r_port = storage.read_port(domain="comb")
                take = head & self.r_en
                m.d.comb += self.r_data[lo:hi].eq(r_port.data)
            m.d.comb += [w_port.addr.eq(produce), w_port.data.eq(self.w_data[lo:hi]),
                         w_port.en.eq(do_write), r_port.addr.eq(consume)]
            with m.If(do_write):
                m.d.sync += produce.eq(incr(produce))
            with m.If(take):
                m.d.sync += consume.eq(incr(consume))
            if k == 0:                      # the primary flags
                grow, shrink = do_write & ~take, take & ~do_write
                up = Cat(Const(1, 1), fill[:-1])
                down = Cat(fill[1:], Const(0, 1))
                nxt = Signal(D)
                m.d.comb += [nxt.eq(Mux(grow, up, Mux(shrink, down, fill))),
                             self.w_rdy.eq(~fill[D - 1]),
                             self.w_rdy2.eq(~fill[D - 2] if D >= 2 else 0),
                             self.w_rdy_next.eq(~nxt[D - 1])]
                m.d.sync += fill.eq(nxt)
            else:                           # the copies follow their next values
                m.d.sync += head.eq(nxt[0])
        if not self.buffered:
            m.d.comb += self.r_rdy.eq(fill[0])
        return m


class PipelinedMemory(Elaboratable):
    """A memory read through its output register: data two cycles after the address.

    Parameters
    ----------
    shape, depth, init : as :class:`amaranth.lib.memory.Memory`
    read_ports : number of read ports (each its own address and output registers)
    attrs : the memory's attributes, for the synthesis tool (for example
        ``{"ram_style": "block", "no_rw_check": 1}`` for a memory in block RAM
        whose reader never reads an address in the cycle it is written, or does not
        use what it reads then)

    Attributes
    ----------
    w_addr, w_data, w_en : write port, stored at the clock edge
    read : list of read ports, each with ``addr``, ``en`` (in), ``data`` (out, a
        register) and ``valid`` (out, a register: ``data`` holds the read issued two
        cycles before)

    Timing: a read with ``en`` high in cycle t returns the word of ``addr`` as it was
    at the end of cycle t (a write in cycle t is not seen) in ``data`` from t+2; ``data``
    keeps its value until the next read's result replaces it. The RAM's own read
    register holds the word in t+1 and nothing else is on that path: block RAMs run at
    their data-sheet speed whether or not the synthesis tool uses the RAM's output
    register (Yosys's ECP5 mapping does not; docs/timing.md).
    """

    class _Port:
        def __init__(self, shape, depth, k):
            self.addr = Signal(range(max(depth, 2)), name=f"rd{k}_addr")
            self.en = Signal(name=f"rd{k}_en")
            self.data = Signal(shape, name=f"rd{k}_data")
            self.valid = Signal(name=f"rd{k}_valid")

    def __init__(self, shape, depth, *, init=(), read_ports=1, attrs=None):
        self.shape, self.depth, self.init = shape, depth, list(init)
        self.attrs = dict(attrs or {})
        self.w_addr = Signal(range(max(depth, 2)))
        self.w_data = Signal(shape)
        self.w_en = Signal()
        self.read = [self._Port(shape, depth, k) for k in range(read_ports)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self.shape, depth=self.depth,
                                               init=self.init, attrs=self.attrs)
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en)]
        for port in self.read:
            rp = mem.read_port(transparent_for=())
            issued = Signal()
            m.d.comb += [rp.addr.eq(port.addr), rp.en.eq(port.en)]
            m.d.sync += [issued.eq(port.en), port.valid.eq(issued)]
            with m.If(issued):
                m.d.sync += port.data.eq(rp.data)
        return m


class ReplicatedEnable(Elaboratable):
    """One enable as several identical registers, each driving part of the load.

    An enable that reaches hundreds of flip-flops from one net makes the placer spread
    its pins over the die; copies of the register, each with ``keep`` so that synthesis
    does not merge them back, each drive at most ``fanout`` of them.

    ``width`` > 1 replicates a value the same way (a configuration pulse's index for
    each of its consumers).

    Attributes
    ----------
    d : Signal(width), in: the enable for the next cycle
    q : list of Signal(width), out: ``copies`` registers, each ``d`` one cycle later

    :meth:`of` gives the copy for the ``k``-th of ``n`` equal parts of a load.
    """

    def __init__(self, copies, *, name="en", width=1):
        _positive(self, "copies", copies)
        _positive(self, "width", width)
        self.d = Signal(width, name=f"{name}_d")
        self.q = [Signal(width, name=f"{name}_q{k}", attrs={"keep": 1})
                  for k in range(copies)]

    @staticmethod
    def copies_for(load, fanout=64):
        """Copies needed for ``load`` clock enables at ``fanout`` each."""
        return max(1, -(-load // fanout))

    def of(self, k, n):
        """The copy for part ``k`` of a load cut into ``n`` parts."""
        return self.q[k * len(self.q) // n]

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [q.eq(self.d) for q in self.q]
        return m


def round_robin_onehot(m, requests, after, name):
    """The first request after the last one served, else the first at all, one-hot.

    ``after`` (a register, as wide as ``requests``) has a bit set for each index after the
    last one served; the caller loads it as ``~(served | (served - 1))`` from the one-hot
    ``served``. Unlike :func:`round_robin` the result is one-hot and the rotation is a mask
    (no index compares), so a choice registered a cycle ahead starts from flip-flops.
    Returns a value (comb); ``name`` names the masked requests."""
    def lowest(bits):
        return bits & ~(bits - 1)
    masked = Signal(len(requests), name=f"{name}_after")
    m.d.comb += masked.eq(requests & after)
    return Mux(masked.any(), lowest(masked), lowest(requests))


class HeadFifo(Elaboratable):
    """A fall-through FIFO whose head is a register.

    The ports of :class:`amaranth.lib.fifo.SyncFIFO` (``w_en``, ``w_data``, ``w_rdy``,
    ``r_en``, ``r_data``, ``r_rdy``; a write or read without its flag is ignored), with
    the same timing: ``depth`` items fit, an item written in cycle t is offered from
    t+1, and ``w_rdy`` does not depend on the cycle's read (a full FIFO read in cycle t
    takes a write from t+1). But ``r_data`` and ``r_rdy`` come from flip-flops, where
    SyncFIFO's are a LUT-RAM read and a compare of its level: the head is a register,
    loaded from the storage (``depth - 1`` entries) when it holds items, else straight
    from ``w_data``. A reader that decides from the head (an address, a multiplexer
    select) starts from a register. As with SyncFIFO, ``r_data`` means nothing while
    ``r_rdy`` is low (here it is the previous cycle's ``w_data``). The storage's write
    enable is ``w_en`` and a register (``w_rdy``): whether the item stays there or goes
    to the head, which depends on ``r_en``, moves only its pointer and level.
    """

    def __init__(self, width, depth):
        _positive(self, "depth", depth)
        self.width, self.depth = width, depth
        self.w_en = Signal()
        self.w_data = Signal(width)
        self.w_rdy = Signal()
        self.r_en = Signal()
        self.r_data = Signal(width)
        self.r_rdy = Signal()

    def elaborate(self, platform):
        m = Module()
        if self.depth == 1:                 # the head alone: a HoldRegister
            m.submodules.head = head = HoldRegister(self.width)
            m.d.comb += [head.i_valid.eq(self.w_en), self.w_rdy.eq(head.i_ready),
                         head.i_data.eq(self.w_data), self.r_rdy.eq(head.o_valid),
                         self.r_data.eq(head.o_data), head.o_ready.eq(self.r_en)]
            return m
        free = ~self.r_rdy | self.r_en          # the head register takes an item now
        # the storage: a LUT memory with its own pointers and level. An item offered is
        # written at the write pointer whether or not it stays there (the slot is free
        # while ``w_rdy`` is high), so the memory's write enable is ``w_en & w_rdy``
        # alone; only the pointer and the level follow the reader's ``r_en``
        n = self.depth - 1
        m.submodules.storage = mem = memory.Memory(shape=self.width, depth=n, init=[])
        wp, rp, level = Signal(range(n)), Signal(range(n)), Signal(range(n + 1))
        full, held = Signal(), Signal()         # level == n, level != 0 (registers)
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        m.d.comb += [self.w_rdy.eq(~full),
                     wr.addr.eq(wp), wr.data.eq(self.w_data), wr.en.eq(self.w_en & ~full),
                     rd.addr.eq(rp)]
        # the storage is empty whenever the head is: an item goes to the head register
        # when the head is free and the storage empty, else to the storage
        direct = free & ~held
        push = self.w_en & ~full & ~direct
        pop = free & held

        def step(ptr):
            return Mux(ptr == n - 1, 0, ptr + 1)
        with m.If(push):
            m.d.sync += wp.eq(step(wp))
        with m.If(pop):
            m.d.sync += rp.eq(step(rp))
        level_n = Signal.like(level)
        m.d.comb += level_n.eq(level + push - pop)
        m.d.sync += [level.eq(level_n), full.eq(level_n == n), held.eq(level_n != 0)]
        with m.If(free):
            m.d.sync += [
                self.r_data.eq(Mux(held, rd.data, self.w_data)),
                self.r_rdy.eq(held | self.w_en),
            ]
        return m
