"""The back end's resources unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal


def build(m, top, u):
    """Resource use (debug registers USE_*)

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (filling, free, pages, push_zombie, queues, r_stg, release_en, release_zombie,
     to_zombie) = u.take(
        "filling free pages push_zombie queues r_stg release_en release_zombie to_zombie")
    # --- resource use (debug registers USE_*) ----------------------------------------------
    live, zombies, zombie_pages = Signal(16), Signal(16), Signal(16)
    admitted = free.r_en & ~filling
    freed_zombie = release_en & release_zombie
    m.d.sync += [
        live.eq(live + admitted - (release_en & ~freed_zombie) - to_zombie),
        zombies.eq(zombies + to_zombie - freed_zombie),
        zombie_pages.eq(zombie_pages + Mux(to_zombie, r_stg.pages, 0)
                        - Mux(pages.push_en & push_zombie, 1, 0)),
    ]
    m.d.comb += [top.use_live.eq(live), top.use_zombies.eq(zombies),
                 top.use_pages.eq(pages.taken), top.use_zombie_pages.eq(zombie_pages),
                 top.queues_busy.eq(queues.busy)]
