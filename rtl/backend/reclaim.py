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
    (N, cbits, filling, job, late, page_of, pages, pt_bits, r_stg, rctx, release_ctx,
     release_en, release_now, state, to_zombie, wr_next, written) = u.take(
        "N cbits filling job late page_of pages pt_bits r_stg rctx release_ctx "
        "release_en release_now state to_zombie wr_next written")
    # release of the retiring context (RESPOND or FREE): kept as a zombie when given up
    # before its CQE came, else to the reclaimer, which gives its pages back one a cycle
    # and then returns the context to the free list (a context is never reused before
    # its page table has been read back)
    keep = (job.kind == _Kind.TIMEOUT) & ~job.failed & ~late(rctx)
    rec_layout = data.StructLayout({"ctx": cbits, "ss": 8, "pages": pt_bits + 1,
                                    "zombie": 1, "fence": 16})
    rec_w, rec_r = _fifo_stream(m, "reclaim_q", rec_layout, N, fall_through=True)
    m.d.comb += [rec_w.payload.ctx.eq(rctx), rec_w.payload.ss.eq(r_stg.ss),
                 rec_w.payload.pages.eq(r_stg.pages),
                 rec_w.payload.zombie.eq(job.kind == _Kind.ZOMBIE),
                 rec_w.payload.fence.eq(wr_next)]
    # (a context without pages goes back to the free list without the reclaimer, from
    # registers the cycle after its release: ``direct``, which the reclaimer gives way to)
    direct, direct_ctx, direct_zombie = Signal(), Signal(cbits), Signal()
    release_zombie = Signal()       # the context released is a zombie's
    m.d.sync += [direct.eq(0), direct_ctx.eq(rctx), direct_zombie.eq(job.kind == _Kind.ZOMBIE)]
    with m.If(direct):
        m.d.comb += [release_en.eq(1), release_ctx.eq(direct_ctx),
                     release_zombie.eq(direct_zombie)]
    with m.If(release_now):
        with m.If(keep):
            m.d.comb += to_zombie.eq(1)
            m.d.sync += state[rctx].eq(_State.ZOMBIE)
        with m.Else():
            m.d.sync += state[rctx].eq(_State.FREE)
            with m.If(r_stg.pages == 0):
                m.d.sync += direct.eq(1)
            with m.Else():
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
    u.give(push_zombie=push_zombie, rc=rc, release_zombie=release_zombie)
