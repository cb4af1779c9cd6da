"""Staging pages: each subsystem's staging window as 4 KiB pages, and a free-page stack each.

A command that moves data takes ``ceil(bytes / 4096)`` pages (plus one for its PRP list
when it spans more than two), one at a time, from its subsystem's pages; its pages need
not be contiguous. :class:`PageAllocator` keeps, per subsystem, the window's first page
and page count, a stack of the pages given back (in one memory, each subsystem's stack in
the entries of its own window's pages, so the memory is as deep as the staging memory has
pages) and a watermark of pages never handed out, so a new window needs no filling.
"""

from amaranth.hdl import Array, Elaboratable, Module, Mux, Signal
from amaranth.lib import memory

from .formats import PAGE_BYTES, SubsystemEntry
from .params import EngineParams

__all__ = ["PageAllocator", "PAGE_SHIFT"]

PAGE_SHIFT = PAGE_BYTES.bit_length() - 1


class PageAllocator(Elaboratable):
    """The free pages of every subsystem's staging window.

    Parameters
    ----------
    params : EngineParams
        Uses ``subsystems``, ``staging_base`` and ``staging_bytes`` (``P`` =
        ``staging_bytes / 4096`` pages; page numbers are ``log2 P`` bits wide, at least 1).

    Ports (all synchronous; a page number ``n`` is staging byte offset ``n * 4096``)
    ---------------------------------------------------------------------------
    cfg_valid, cfg_index ; rd_addr, rd_en, rd_data
        A pulse on ``cfg_valid`` reads SUBSYSTEM entry ``cfg_index`` (``rd_en`` /
        ``rd_addr`` the next cycle, ``rd_data`` sampled the cycle after) and loads its
        window: ``staging_len // 4096`` pages from page ``(staging_addr - staging_base)
        / 4096``, all free; none when the entry is not valid or the window does not lie
        inside the staging memory (then ``none`` is 1 for it). The subsystem's pages
        must all be free (no command holds one) when it is configured.
    need_ss, need -> room, none
        Combinational, from registers: subsystem ``need_ss`` has at least ``need``
        pages neither held nor reserved (``room``), or has no usable window or does not
        exist (``none``).
    reserve_en
        Reserve ``need`` pages of ``need_ss`` (only while ``room``): they are then
        taken one by one with ``pop_en``. The reservation is taken into registers
        (``res_v``, ``res_ss``, ``res_need``) and applied to ``avail`` from them a cycle
        later: ``room`` is first fresh two cycles after a ``reserve_en`` (a reserver does
        not look at it in the cycle after one, while ``res_v``), and the decision to
        reserve never reaches the count's adder.
    pop_en, pop_ss -> pop_page
        Take a reserved page of ``pop_ss``: ``pop_page`` (combinational) is the page
        taken in a cycle with ``pop_en``. Never in the same cycle as ``push_en``.
    push_en, push_ss, push_page
        Give back a page of ``push_ss`` that a command held.
    taken : Out(16)
        Pages reserved and not given back, over every subsystem (registered; a
        reservation counts from two cycles after its ``reserve_en``).
    cfg_load : Out(1)
        High in the cycle a configuration loads a window (``room`` and ``none`` of
        any subsystem may change at the next clock edge).

    State (attributes, so that a proof can state invariants over it): ``base``,
    ``usable``, ``sp`` (pages on the stack), ``mark`` (pages handed out
    from the watermark), ``avail`` (pages neither held nor reserved, less the
    reservation in ``res_*`` until it is applied), per subsystem.
    """

    def __init__(self, params=None):
        self._p = p = params or EngineParams()
        pages = p.staging_bytes // PAGE_BYTES
        self.page_bits = pb = max(1, (pages - 1).bit_length())
        self.pages = pages
        ns = p.subsystems
        self.cfg_valid, self.cfg_index = Signal(), Signal(8)
        self.rd_addr, self.rd_en, self.rd_data = Signal(8), Signal(), Signal(SubsystemEntry)
        self.need_ss, self.need = Signal(8), Signal(pb + 1)
        self.room, self.none = Signal(), Signal()
        self.reserve_en = Signal()
        self.res_v, self.res_ss, self.res_need = Signal(), Signal(8), Signal(pb + 1)
        self.pop_en, self.pop_ss, self.pop_page = Signal(), Signal(8), Signal(pb)
        self.push_en, self.push_ss, self.push_page = Signal(), Signal(8), Signal(pb)
        self.taken = Signal(16)
        self.cfg_load = Signal()
        self.base = Array(Signal(pb, name=f"pg_base{i}") for i in range(ns))
        self.usable = Array(Signal(name=f"pg_usable{i}") for i in range(ns))
        self.sp = Array(Signal(pb + 1, name=f"pg_sp{i}") for i in range(ns))
        self.mark = Array(Signal(pb + 1, name=f"pg_mark{i}") for i in range(ns))
        self.avail = Array(Signal(pb + 1, name=f"pg_avail{i}") for i in range(ns))

    def elaborate(self, platform):
        m = Module()
        p = self._p
        NS = p.subsystems
        pb = self.page_bits
        base, usable = self.base, self.usable
        sp, mark, avail = self.sp, self.mark, self.avail

        # configuration: read the entry the cycle after the pulse, load a cycle later
        pending, loaded = Signal(), self.cfg_load
        index = Signal(8)
        m.d.sync += [pending.eq(self.cfg_valid), loaded.eq(pending)]
        with m.If(self.cfg_valid):
            m.d.sync += index.eq(self.cfg_index)
        m.d.comb += [self.rd_addr.eq(index), self.rd_en.eq(pending)]
        e = self.rd_data
        offset = Signal(65)
        m.d.comb += offset.eq(e.staging_addr - p.staging_base)
        inside = Signal()
        m.d.comb += inside.eq(e.valid & (e.staging_addr >= p.staging_base)
                              & (offset + e.staging_len <= p.staging_bytes))
        n_pages = Signal(pb + 1)
        m.d.comb += n_pages.eq(e.staging_len >> (PAGE_BYTES.bit_length() - 1))

        # the stacks: subsystem s's stack in entries base[s] .. base[s] + sp[s] - 1
        # the addresses are kept in registers beside the counts, so that no add lies
        # between a subsystem's registers and the stack: ``top`` = base + sp - 1 (the
        # page a pop takes), ``nxt`` = base + sp (where a push goes), ``fresh`` = base +
        # mark (the watermark's next page)
        stack = m.submodules.stack = memory.Memory(shape=pb, depth=self.pages, init=[])
        wp = stack.write_port()
        rp = stack.read_port(domain="comb")
        top = Array(Signal(pb, name=f"pg_top{i}") for i in range(NS))
        nxt = Array(Signal(pb, name=f"pg_nxt{i}") for i in range(NS))
        fresh = Array(Signal(pb, name=f"pg_fresh{i}") for i in range(NS))
        pop_s, push_s = self.pop_ss, self.push_ss
        m.d.comb += rp.addr.eq(top[pop_s])
        on_stack = sp[pop_s] != 0
        m.d.comb += self.pop_page.eq(Mux(on_stack, rp.data, fresh[pop_s]))
        m.d.comb += [wp.addr.eq(nxt[push_s]), wp.data.eq(self.push_page),
                     wp.en.eq(self.push_en & (push_s < NS))]

        for i in range(NS):
            with m.If(loaded & (index == i)):
                first = offset[PAGE_BYTES.bit_length() - 1:][:pb]
                m.d.sync += [base[i].eq(first),
                             usable[i].eq(inside & (n_pages != 0)),
                             sp[i].eq(0), mark[i].eq(0),
                             top[i].eq(first - 1), nxt[i].eq(first), fresh[i].eq(first),
                             avail[i].eq(Mux(inside, n_pages, 0))]
            with m.Else():
                pop = self.pop_en & (pop_s == i)
                push = self.push_en & (push_s == i)
                reserve = self.res_v & (self.res_ss == i)
                with m.If(pop & (sp[i] != 0)):
                    m.d.sync += [sp[i].eq(sp[i] - 1), top[i].eq(top[i] - 1),
                                 nxt[i].eq(top[i])]
                with m.Elif(pop):
                    m.d.sync += [mark[i].eq(mark[i] + 1), fresh[i].eq(fresh[i] + 1)]
                with m.Elif(push):
                    m.d.sync += [sp[i].eq(sp[i] + 1), top[i].eq(nxt[i]),
                                 nxt[i].eq(nxt[i] + 1)]
                m.d.sync += avail[i].eq(avail[i] - Mux(reserve, self.res_need, 0) + push)

        m.d.sync += [self.res_v.eq(self.reserve_en), self.res_ss.eq(self.need_ss),
                     self.res_need.eq(self.need)]
        ss = self.need_ss
        m.d.comb += [
            self.none.eq((ss >= NS) | ~usable[ss]),
            self.room.eq((ss < NS) & usable[ss] & (avail[ss] >= self.need)),
        ]
        given = Signal(16)
        m.d.comb += given.eq(Mux(self.res_v, self.res_need, 0))
        m.d.sync += self.taken.eq(self.taken + given - self.push_en)
        return m
