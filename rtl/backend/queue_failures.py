"""The back end's queue failures unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal

from ..formats import (
    EventType,
)


def build(m, top, u):
    """Queue failures: SQ writer or CQ handler errors

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    ev_q_w, queues = u.take("ev_q_w queues")
    # --- queue failures: SQ writer or CQ handler errors ------------------------------------
    fail_q = Signal(8)
    fail = Signal()
    sq_fail = top.i_sq_done.valid & ~top.i_sq_done.payload.ok
    with m.If(sq_fail):
        m.d.comb += [fail.eq(1), fail_q.eq(top.i_sq_done.payload.queue)]
    with m.Elif(top.i_cq_error.valid):
        m.d.comb += [fail.eq(1), fail_q.eq(top.i_cq_error.payload.queue)]
    # whether the failure is a queue's first is worked out for each reporter beside the
    # choice between them (its queue's flag read at its own queue), not after it
    m.d.comb += [queues.first_q[0].eq(top.i_sq_done.payload.queue),
                 queues.first_q[1].eq(top.i_cq_error.payload.queue)]
    first = Mux(sq_fail, queues.first[0], queues.first[1])
    m.d.comb += [queues.fail_en.eq(fail & ev_q_w.ready), queues.fail_q.eq(fail_q),
                 ev_q_w.valid.eq(fail & ev_q_w.ready & first),
                 ev_q_w.payload.kind.eq(EventType.NVME_PCI_ERR),
                 ev_q_w.payload.object.eq(fail_q),
                 top.i_sq_done.ready.eq(top.i_sq_done.payload.ok | ev_q_w.ready),
                 top.i_cq_error.ready.eq(~sq_fail & ev_q_w.ready)]
