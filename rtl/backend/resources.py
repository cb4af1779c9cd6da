"""The back end's resources unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal


def build(m, top, u):
    """Resource use (debug registers USE_*), from registered events

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (filling, free, pages, push_zombie, queues, rel_stg, release_en, release_zombie,
     to_zombie) = u.take(
        "filling free pages push_zombie queues rel_stg release_en release_zombie to_zombie")
    # --- resource use (debug registers USE_*) ----------------------------------------------
    live, zombies, zombie_pages = Signal(16), Signal(16), Signal(16)
    admitted = free.r_en & ~filling
    freed_zombie = release_en & release_zombie
    # the events are registered and added to the sums the cycle after, so that no
    # hand-shake decision (a response leaving, a context admitted) runs into the 16-bit
    # adders; the outputs add the registered events back, so they are exact
    adm_r, rel_r, tz_r, fz_r, zpg_sub = Signal(), Signal(), Signal(), Signal(), Signal()
    zpg_add = Signal.like(rel_stg.pages)
    live_s, zombies_s, zpages_s = Signal(16), Signal(16), Signal(16)
    m.d.sync += [
        adm_r.eq(admitted), rel_r.eq(release_en & ~freed_zombie), tz_r.eq(to_zombie),
        fz_r.eq(freed_zombie), zpg_add.eq(Mux(to_zombie, rel_stg.pages, 0)),
        zpg_sub.eq(pages.push_en & push_zombie),
        live_s.eq(live), zombies_s.eq(zombies), zpages_s.eq(zombie_pages),
    ]
    m.d.comb += [
        live.eq(live_s + adm_r - rel_r - tz_r),
        zombies.eq(zombies_s + tz_r - fz_r),
        zombie_pages.eq(zpages_s + zpg_add - zpg_sub),
    ]
    m.d.comb += [top.use_live.eq(live), top.use_zombies.eq(zombies),
                 top.use_pages.eq(pages.taken), top.use_zombie_pages.eq(zombie_pages),
                 top.queues_busy.eq(queues.busy)]
