"""The back end's reclaim unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Signal
from amaranth.lib import data

from .common import (
    _fifo_stream,
    _Kind,
    _State,
)


def build(m, top, u):
    """Release of the retiring context (RESPOND or FREE): kept as a zombie when given up
    before its CQE came, else to the reclaimer, which gives its pages back one a cycle
    and then returns the context to the free list (a context is never reused before its
    page table has been read back)

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (N, c_stg, cbits, filling, job, late, page_of, pages, pt_bits, r_stg, rctx, rel_ctx,
     rel_keep, rel_v, release_ctx, release_en, release_now, state, to_zombie, wr_next,
     written) = u.take(
        "N c_stg cbits filling job late page_of pages pt_bits r_stg rctx rel_ctx rel_keep "
        "rel_v release_ctx release_en release_now state to_zombie wr_next written")
    # release of the retiring context (RESPOND or FREE): kept as a zombie when given up
    # before its CQE came, else to the reclaimer, which gives its pages back one a cycle
    # and then returns the context to the free list (a context is never reused before
    # its page table has been read back).
    # The release is applied the cycle after retirement's decision, from registers
    # loaded in every cycle (``rel_v`` alone follows the decision), so that the
    # response's hand-shake ends at one flip-flop instead of 32 contexts' states and the
    # reclaimer queue's write. In the cycle between, the context's state is still the
    # one it retired in (RETIRING or TIMED_OUT), on which the status unit and the RDMA
    # READ data unit do nothing; completion and the timeout scanner see the state to be
    # written (``rel_*``). Whether it is kept as a zombie is decided with the release,
    # from the late flag as it is then (a CQE in that very cycle sets the flag too late:
    # the scanner frees such a zombie when it reaches it)
    keep = (job.kind == _Kind.TIMEOUT) & ~job.failed & ~late(rctx)
    rel_stg = Signal(c_stg.shape)
    rel_zombie, rel_none, rel_fence = Signal(), Signal(), Signal(16)
    m.d.sync += [rel_v.eq(release_now), rel_ctx.eq(rctx), rel_keep.eq(keep),
                 rel_zombie.eq(job.kind == _Kind.ZOMBIE), rel_stg.eq(r_stg),
                 rel_none.eq(r_stg.pages == 0), rel_fence.eq(wr_next)]
    rec_layout = data.StructLayout({"ctx": cbits, "ss": 8, "pages": pt_bits + 1,
                                    "zombie": 1, "fence": 16})
    rec_w, rec_r = _fifo_stream(m, "reclaim_q", rec_layout, N, fall_through=True)
    m.d.comb += [rec_w.payload.ctx.eq(rel_ctx), rec_w.payload.ss.eq(rel_stg.ss),
                 rec_w.payload.pages.eq(rel_stg.pages),
                 rec_w.payload.zombie.eq(rel_zombie),
                 rec_w.payload.fence.eq(rel_fence)]
    # (a context without pages goes back to the free list without the reclaimer, in
    # the cycle its release is applied: ``direct``, which the reclaimer gives way to)
    direct = Signal()
    release_zombie = Signal()       # the context released is a zombie's
    m.d.comb += direct.eq(rel_v & ~rel_keep & rel_none)
    with m.If(direct):
        m.d.comb += [release_en.eq(1), release_ctx.eq(rel_ctx),
                     release_zombie.eq(rel_zombie)]
    with m.If(rel_v):
        with m.If(rel_keep):
            m.d.comb += to_zombie.eq(1)
            m.d.sync += state[rel_ctx].eq(_State.ZOMBIE)
        with m.Else():
            m.d.sync += state[rel_ctx].eq(_State.FREE)
            with m.If(~rel_none):
                m.d.comb += rec_w.valid.eq(1)  # room: each context is in it at most once
    # page k is read from the table in one cycle and given back in the next (from
    # registers: ``push_en``, ``push_ss``, and the table's read data); the context goes
    # back to the free list once every read is issued, at the earliest in the cycle
    # its last page is given back
    rc_k = Signal(pt_bits + 1)
    rc = rec_r.payload
    push_v, push_ss, push_zombie = Signal(), Signal(8), Signal()
    m.d.comb += [pages.push_en.eq(push_v), pages.push_ss.eq(push_ss),
                 pages.push_page.eq(page_of(rc.ctx, rc_k))]
    m.d.sync += push_v.eq(0)
    with m.If(rec_r.valid & ~filling & written(rc.fence)):
        with m.If(rc_k != rc.pages):
            m.d.sync += [push_v.eq(1), push_ss.eq(rc.ss), push_zombie.eq(rc.zombie),
                         rc_k.eq(rc_k + 1)]
        with m.Elif(~direct):
            m.d.comb += [release_en.eq(1), release_ctx.eq(rc.ctx), rec_r.ready.eq(1),
                         release_zombie.eq(rc.zombie)]
            m.d.sync += rc_k.eq(0)
    u.give(push_zombie=push_zombie, rc=rc, rel_stg=rel_stg, release_zombie=release_zombie)
