"""MSI-X message recognition: a message's data value -> the backend queues it names.

Each backend queue in interrupt mode has the MSI-X data value that software programs
into its SSD's MSI-X table entry (``BackendQueueEntry.msix_data``, returned by the
driver's ``create_nvme_ctrl``). :class:`MsixMatch` keeps those values in registers,
loaded when the back end loads the queue's entry, and turns each message into the
indices of the queues whose value it carries, for the CQ handler.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .params import EngineParams
from .stream_util import HoldRegister

__all__ = ["MsixMatch", "NO_QUEUE"]

#: The index sent for a message that names no queue (the CQ handler drops and counts it).
NO_QUEUE = 0xFFFF_FFFF


class MsixMatch(wiring.Component):
    """Match MSI-X message data against every interrupt-mode queue's value.

    Parameters
    ----------
    params : EngineParams
        Uses ``backend_queues`` (``N``).

    Interface attributes (synchronous; cycle 0 is a handshake)
    --------------------------------------------------------
    i_msg : In(stream.Signature(32))
        Message data (``wdata[31:0]`` of the MSI-X write). ``ready`` comes from a
        flip-flop (a hold register keeps the partly matched message); a message is taken
        at most every other cycle (as before this block's rework: taking them faster
        made the CQ handler start drains sooner and batch fewer CQEs a drain, Flush
        0.2502 -> 0.2488 commands a cycle at 128 bits). A message is compared a byte at a
        time in the cycle it is taken, against the values loaded before that cycle.
    o_queue : Out(stream.Signature(32))
        From registers: one index per queue whose value equals the message's data and
        that is in interrupt mode, lowest index first (several queues may share a value:
        each is named), or one :data:`NO_QUEUE` for a message that names none. The
        first index is ``valid`` three cycles after ``i_msg``'s handshake at the earliest
        (byte matches, hits, index); the next message's indices follow those of the one
        before, one index a cycle.
    load_valid, load_queue, load_data, load_armed : In
        One-cycle pulse: queue ``load_queue`` now has value ``load_data`` and is in
        interrupt mode when ``load_armed`` (its entry is valid and not polling). The
        pulse is registered before it is written, so the value applies to messages taken
        from the second cycle after the pulse on. Queues at or above ``N`` are ignored.

    Depth (docs/timing.md): 3.5 levels; every enable comes from a flip-flop.
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        super().__init__({
            "i_msg": In(stream.Signature(32)),
            "o_queue": Out(stream.Signature(32)),
            "load_valid": In(1), "load_queue": In(8), "load_data": In(32), "load_armed": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        N = self.params.backend_queues
        values = [Signal(32, name=f"value{q}") for q in range(N)]
        armed = Signal(N)
        # a load is decoded into one enable a queue and registered with its value, then
        # written: the enables of each queue's 33 flip-flops come from a flip-flop
        load_at = Signal(N)                 # (an index at or above N matches none)
        load_data, load_armed = Signal(32), Signal()
        m.d.sync += [load_data.eq(self.load_data), load_armed.eq(self.load_armed)]
        for q in range(N):
            m.d.sync += load_at[q].eq(self.load_valid & (self.load_queue == q))
            with m.If(load_at[q]):
                m.d.sync += [values[q].eq(load_data), armed[q].eq(load_armed)]

        # stage 1: the message is compared a byte at a time as it is taken, against the
        # values loaded before that cycle; the byte matches and the queues' armed bits
        # wait in a hold register (ready from its flip-flop, one message every other
        # cycle at most). A byte compare is two levels of logic.
        BYTES = 4
        m.submodules.part = part = HoldRegister(N * (BYTES + 1))
        for q in range(N):
            base = q * (BYTES + 1)
            for k in range(BYTES):
                m.d.comb += part.i_data[base + k].eq(
                    values[q][8 * k:8 * k + 8] == self.i_msg.payload[8 * k:8 * k + 8])
            m.d.comb += part.i_data[base + BYTES].eq(armed[q])
        m.d.comb += [part.i_valid.eq(self.i_msg.valid), self.i_msg.ready.eq(part.i_ready)]

        # stage 2: a queue is hit when all of its bytes match and it was armed (one
        # five-input AND); the hits wait in a second hold register
        m.submodules.hits = hits = HoldRegister(N)
        for q in range(N):
            base = q * (BYTES + 1)
            m.d.comb += hits.i_data[q].eq(part.o_data[base:base + BYTES + 1].all())
        m.d.comb += [hits.i_valid.eq(part.o_valid), part.o_ready.eq(hits.i_ready)]

        # stage 3: the output register walks the hits lowest first; ``rest`` holds the
        # hits of the message being named that are not yet out, ``more`` says it has any
        rest, more = Signal(N, name="rest"), Signal(name="more")
        src = Signal(N)
        m.d.comb += src.eq(Mux(more, rest, hits.o_data))
        low = Signal(range(max(N, 2)))
        for q in reversed(range(N)):
            with m.If(src[q]):
                m.d.comb += low.eq(q)
        after = Signal(N)                   # src without its lowest bit
        for q in range(N):
            m.d.comb += after[q].eq(src[q] & src[:q].any() if q else 0)
        load = ~self.o_queue.valid | self.o_queue.ready
        with m.If(load):
            m.d.sync += self.o_queue.valid.eq(more | hits.o_valid)
            with m.If(more | hits.o_valid):
                m.d.sync += [self.o_queue.payload.eq(Mux(src.any(), low, NO_QUEUE)),
                             rest.eq(after), more.eq(after.any())]
        m.d.comb += hits.o_ready.eq(load & ~more)
        return m
