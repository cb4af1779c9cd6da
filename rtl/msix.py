"""MSI-X message recognition: a message's data value -> the backend queues it names.

Each backend queue in interrupt mode has the MSI-X data value that software programs
into its SSD's MSI-X table entry (``BackendQueueEntry.msix_data``, returned by the
driver's ``create_nvme_ctrl``). :class:`MsixMatch` keeps those values in registers,
loaded when the back end loads the queue's entry, and turns each message into the
indices of the queues whose value it carries, for the CQ handler.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .params import EngineParams

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
        Message data (``wdata[31:0]`` of the MSI-X write). Taken into a register when
        the register is empty or moves on in that cycle; a message is matched the
        cycle after it is taken.
    o_queue : Out(stream.Signature(32))
        From registers: one index per queue whose value equals the message's data and
        that is in interrupt mode, lowest index first (several queues may share a value:
        each is named), or one :data:`NO_QUEUE` for a message that names none. The
        first index is ``valid`` two cycles after ``i_msg``'s handshake at the earliest;
        the next message's indices follow those of the one before.
    load_valid, load_queue, load_data, load_armed : In
        One-cycle pulse: queue ``load_queue`` now has value ``load_data`` and is in
        interrupt mode when ``load_armed`` (its entry is valid and not polling). The
        value applies to messages matched from the next cycle on. Queues at or above
        ``N`` are ignored.
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
        values = Array(Signal(32, name=f"value{q}") for q in range(N))
        armed = Signal(N)
        with m.If(self.load_valid & (self.load_queue < N)):
            m.d.sync += values[self.load_queue].eq(self.load_data)
            for q in range(N):
                with m.If(self.load_queue == q):
                    m.d.sync += armed[q].eq(self.load_armed)

        # stage 1: the message in a register
        msg_v, msg = Signal(), Signal(32)
        # stage 2: the queues it names (a mask worked through lowest first), or none
        mask_v, mask, none = Signal(), Signal(N), Signal()
        take_mask = msg_v & ~mask_v
        m.d.comb += self.i_msg.ready.eq(~msg_v | take_mask)
        with m.If(self.i_msg.valid & self.i_msg.ready):
            m.d.sync += [msg_v.eq(1), msg.eq(self.i_msg.payload)]
        with m.Elif(take_mask):
            m.d.sync += msg_v.eq(0)
        hits = Signal(N)
        for q in range(N):
            m.d.comb += hits[q].eq(armed[q] & (values[q] == msg))

        lowest = Signal(range(N))
        for q in reversed(range(N)):
            with m.If(mask[q]):
                m.d.comb += lowest.eq(q)
        rest = Signal(N)
        m.d.comb += rest.eq(mask & (mask - 1))          # the mask without its lowest bit
        m.d.comb += [self.o_queue.valid.eq(mask_v),
                     self.o_queue.payload.eq(Mux(none, Const(NO_QUEUE, 32), lowest))]
        with m.If(take_mask):
            m.d.sync += [mask_v.eq(1), mask.eq(hits), none.eq(hits == 0)]
        with m.Elif(self.o_queue.valid & self.o_queue.ready):
            m.d.sync += mask.eq(rest)
            with m.If(none | (rest == 0)):
                m.d.sync += mask_v.eq(0)
        return m
