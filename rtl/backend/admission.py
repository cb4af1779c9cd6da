"""The back end's admission unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Cat, Mux, Signal
from amaranth.lib import data

from ..formats import (
    BackendCommand,
    Opcode,
    RdmaOp,
)
from ..pages import PAGE_SHIFT
from ..stream_util import RegisterSlice
from .common import (
    NPAGES_BITS,
    PAGE,
    _Kind,
    _State,
)


def build(m, top, u):
    """Admission: a command takes a free context and its staging pages, then its data comes in
    (an RDMA READ descriptor, or the in-capsule data copied into staging) or it is
    queued for submission. The command enters through a register slice that carries its
    decision bits.

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (B, N, beat_shift, beat_w, c_beats, c_dsm, c_late, c_pick, c_rdm, c_stg, cbits, cm_wr,
     filling, fin_adm_w, free, gen, p, pages, pt_bits, pt_wr, rdma_adm, state, stg_adm,
     stg_adm_room, submit_adm, submit_r) = u.take(
        "B N beat_shift beat_w c_beats c_dsm c_late c_pick c_rdm c_stg cbits cm_wr filling "
        "fin_adm_w free gen p pages pt_bits pt_wr rdma_adm state stg_adm stg_adm_room "
        "submit_adm submit_r")
    # --- admission -----------------------------------------------------------------------
    # the command enters through a register slice that also carries its decision bits
    # (worked out from the input), so admission starts from flip-flops
    in_cmd = top.i_cmd.payload
    admit_layout = data.StructLayout({"cmd": BackendCommand, "dataless": 1, "data_in": 1,
                                      "beats": beat_w, "pages": pt_bits + 1,
                                      "npages": NPAGES_BITS, "fence_wr": 1})
    m.submodules.cmd_slice = cmd_slice = RegisterSlice(admit_layout)
    m.d.comb += [
        cmd_slice.i_valid.eq(top.i_cmd.valid), top.i_cmd.ready.eq(cmd_slice.i_ready),
        cmd_slice.i_data.cmd.eq(in_cmd),
        # a command that moves no data (Flush, Write Zeroes) takes no staging page
        cmd_slice.i_data.dataless.eq((in_cmd.nbytes == 0) & ~in_cmd.icd),
        cmd_slice.i_data.fence_wr.eq(
            (in_cmd.opcode == Opcode.WRITE.value) | (in_cmd.opcode == Opcode.DSM.value)),
        cmd_slice.i_data.data_in.eq(
            ((in_cmd.opcode == Opcode.WRITE.value) | (in_cmd.opcode == Opcode.DSM.value))
            & (in_cmd.nbytes != 0)),
        cmd_slice.i_data.npages.eq((in_cmd.nbytes + PAGE - 1) >> PAGE_SHIFT),
        cmd_slice.i_data.beats.eq((in_cmd.nbytes + B - 1) >> beat_shift),
    ]
    in_pages = Signal(pt_bits + 2)
    m.d.comb += [in_pages.eq((in_cmd.nbytes + PAGE - 1) >> PAGE_SHIFT),
                 cmd_slice.i_data.pages.eq(in_pages + (in_pages > 2))]
    cmd = cmd_slice.o_data.cmd
    dataless, data_in = cmd_slice.o_data.dataless, cmd_slice.o_data.data_in
    a_ctx = Signal(cbits)
    m.d.comb += [a_ctx.eq(free.r_data), pages.need_ss.eq(cmd.subsystem),
                 pages.need.eq(cmd_slice.o_data.pages)]
    adm_ctx = Signal(cbits)
    adm_cmd = Signal(BackendCommand)
    copy_n = Signal(beat_w)         # index of the next in-capsule data beat
    alloc_k = Signal(pt_bits + 1)   # pages of the admitted command in its table so far
    alloc_n = Signal(pt_bits + 1)   # pages it takes
    adm_icd, adm_in = Signal(), Signal()
    dsm_clr = Signal(N)             # admission clears the context's DSM verdict
    # a command for submission is pushed from a register (the submission FIFO holds every
    # context, so it has room whenever the register is to be loaded again); an idle
    # submission with nothing queued takes it straight from the register (``bypass``)
    push_v, push_ctx = Signal(), Signal(cbits)
    # its namespace slot, loaded whenever the register may be loaded (not under the
    # accept decision: the free list's ``r_rdy`` already enables 254 flip-flops)
    push_slot = Signal.like(submit_adm.payload.slot)
    in_queue = Signal()             # admission is in QUEUE (pushes ``adm_ctx``)
    sub_idle, bypass = Signal(), Signal()
    m.d.comb += [bypass.eq(sub_idle & ~submit_r.valid & push_v),
                 submit_adm.valid.eq(push_v & ~bypass), submit_adm.payload.ctx.eq(push_ctx),
                 submit_adm.payload.slot.eq(push_slot)]
    push_free = ~push_v | submit_adm.ready | bypass
    # the push was loaded by the accept in the cycle before: the context's pick fields
    # are written in this cycle, so submission takes them from ``acc_pick``
    push_fwd = Signal()
    m.d.sync += push_fwd.eq(0)
    with m.If(submit_adm.ready | bypass):
        m.d.sync += push_v.eq(0)
    with m.If(push_free):
        m.d.sync += push_slot.eq(Mux(in_queue, adm_cmd.slot, cmd.slot))
    pt_pop = Signal()               # a page taken this cycle: written to the table next
    m.d.sync += [pt_wr.en.eq(pt_pop), pt_wr.addr.eq(Cat(alloc_k[:pt_bits], adm_ctx)),
                 pt_wr.data.eq(pages.pop_page)]
    # the page check of the command in the slice's output register, registered: a
    # command that moves data is admitted the cycle after its check (its subsystem's
    # count then known from registers alone), one that moves none does not wait for it.
    # The check is stale, and not used, in the cycle after the output register loads
    # (it was of the previous command), after a reservation (the count then falls; the
    # admission is in ALLOC then anyway) and after a window's configuration; a page
    # given back only raises the count, so a check before it stays safe. The allocator
    # applies a reservation to the count a cycle after it (from registers): the check
    # made in that cycle (``res_v``) is stale too (admission is then in ALLOC's
    # successor, never IDLE, so the flag only states the rule)
    pg_room, pg_none, pg_fresh = Signal(), Signal(), Signal()
    m.d.sync += [pg_room.eq(pages.room), pg_none.eq(pages.none),
                 pg_fresh.eq(cmd_slice.o_valid & ~cmd_slice.o_ready & ~pages.reserve_en
                             & ~pages.res_v & ~pages.cfg_load)]
    # the command and what admission worked out for it, loaded in every IDLE cycle (not
    # under the accept decision), so that at the accept they hold the accepted
    # command's, and keep it until admission is back in IDLE; the per-context fields are
    # written from them the cycle after the accept (``acc_v``, below). Their enable is
    # ``idle_q``, a register that is 1 exactly in IDLE's cycles (worked out from the
    # FSM's moves below), so that no LUT drives it
    acc_beats, acc_npages = Signal(beat_w), Signal(NPAGES_BITS)
    acc_fence_wr, acc_nopages = Signal(), Signal()
    idle_q = Signal(init=1)
    with m.If(idle_q):
        m.d.sync += [adm_cmd.eq(cmd), alloc_n.eq(cmd_slice.o_data.pages),
                     acc_beats.eq(cmd_slice.o_data.beats),
                     acc_npages.eq(cmd_slice.o_data.npages),
                     acc_fence_wr.eq(cmd_slice.o_data.fence_wr),
                     acc_nopages.eq(cmd_slice.o_data.dataless | pg_none)]
    # the command memory is written only here: its address and data do not depend on
    # the decision to write (only its enable does)
    m.d.comb += [cm_wr.addr.eq(a_ctx), cm_wr.data.cmd.eq(cmd),
                 cm_wr.data.read_out.eq((cmd.opcode == Opcode.READ.value) & (cmd.nbytes != 0))]
    # what submission's pick needs of the accepted command, from the registers above
    acc_pick = Signal(c_pick.shape)
    m.d.comb += [acc_pick.queues.eq(adm_cmd.queues), acc_pick.slot.eq(adm_cmd.slot),
                 acc_pick.npages.eq(acc_npages), acc_pick.fence_wr.eq(acc_fence_wr)]
    # Admission's writes to a context's per-context registers and fields are applied the
    # cycle after, from registers (``adm_ctx``, ``adm_cmd``, the ``acc_*`` values and the
    # flags below), so that its decisions enable a few flip-flops instead of 32
    # contexts' registers and the fields' LUT memories: at the accept, the late flag and
    # the DSM verdict are cleared, the CID generation advanced (``acc_v``; the
    # generation as below) and the fields written (staging pages, beats, RDMA READ
    # counts, the pick's and the DSM check's), and a command that moves no data
    # becomes READY, one with no page RETIRING; at the end of ALLOC the command becomes
    # READY or WAIT_RD (``st_v``: the state in ``st_state``, worked out every cycle from
    # registers; a context that takes pages stays FREE until then). No unit acts on the
    # context in the cycle between: it is off the free list; its push to submission is
    # in a register (submission, taking it in that cycle, takes the pick's fields from
    # ``acc_pick``; it reads the DSM verdict in PICK two cycles after the accept
    # at the earliest, when the clear shows, and writes the state later still); its RDMA
    # READ is offered from that cycle on and answered after it is taken (a status or
    # data beat in that very cycle would find the context FREE and be dropped); and the
    # other units act only on WAIT_RD, WAIT_WR, SUBMITTED, TIMED_OUT or ZOMBIE, which it
    # is in neither cycle. ``adm_ctx`` changes only at an accept; one in the next cycle
    # loads it at the end of that cycle, after the write that reads it.
    acc_v, st_v, st_state = Signal(), Signal(), Signal(_State)
    in_alloc = Signal()             # admission is in ALLOC
    m.d.sync += [acc_v.eq(0), st_v.eq(0),
                 st_state.eq(Mux(in_alloc,
                                 Mux(~adm_icd & adm_in, _State.WAIT_RD, _State.READY),
                                 Mux(dataless, _State.READY, _State.RETIRING)))]
    # the context's next CID generation: the free list's head's generation plus one,
    # loaded in every cycle (it is the accepted context's at the accept) and written
    # from registers with the other writes the cycle after, so that no read, add and
    # write of ``ctx_gen`` share a cycle. The generation is read in no cycle between:
    # submission sends the CID from SQE, two cycles after the push at the earliest, and
    # a stale CQE that matches the old generation in that cycle finds the context FREE
    # (dropped, as a CQE that matches nothing is)
    gen_next = Signal(gen.shape)
    m.d.sync += gen_next.eq(gen.read(a_ctx) + 1)
    with m.If(acc_v):
        m.d.sync += c_late[adm_ctx].eq(0)
        m.d.comb += dsm_clr.eq(1 << adm_ctx)
        gen.write(adm_ctx, gen_next)
        c_stg.write(adm_ctx, {"ss": adm_cmd.subsystem,
                              "pages": Mux(acc_nopages, 0, alloc_n)})
        c_beats.write(adm_ctx, acc_beats)
        c_rdm.write(adm_ctx, {"left": acc_beats - 1, "nz": acc_beats != 0,
                              "more": acc_beats > 1})
        c_pick.write(adm_ctx, acc_pick)
        c_dsm.write(adm_ctx, {"on": adm_cmd.opcode == Opcode.DSM.value,
                              "nr": adm_cmd.cdw.dsm.nr, "nsze": adm_cmd.nsze})
    with m.If(st_v):
        m.d.sync += state[adm_ctx].eq(st_state)
    # the in-capsule beat for the staging write, offered in COPY; its payload is driven
    # in every state (from registers and the input), so that the state does not gate the
    # page table's read address behind the write merge
    m.d.comb += [stg_adm.payload.ctx.eq(adm_ctx), stg_adm.payload.n.eq(copy_n),
                 stg_adm.payload.data.eq(top.i_data.payload.data),
                 stg_adm.payload.keep.eq(top.i_data.payload.keep)]
    def go(state):
        """The FSM's move to ``state``, with ``idle_q`` (1 exactly in IDLE) beside it."""
        m.next = state
        m.d.sync += idle_q.eq(state == "IDLE")
    with m.FSM(name="admit"):
        with m.State("IDLE"):
            ready = cmd_slice.o_valid & free.r_rdy & ~filling
            with m.If(ready & (dataless | (pg_fresh & (pg_room | pg_none)))):
                m.d.comb += [cmd_slice.o_ready.eq(1), free.r_en.eq(1), cm_wr.en.eq(1)]
                m.d.sync += [adm_ctx.eq(a_ctx), acc_v.eq(1),
                             st_v.eq(dataless | pg_none),
                             alloc_k.eq(0), adm_icd.eq(cmd.icd), adm_in.eq(data_in)]
                m.d.sync += copy_n.eq(0)
                # a command with nothing to bring in goes to submission next (from QUEUE
                # when the push register is still taken); one with data takes its pages
                # first (ALLOC), one a cycle
                with m.If(dataless):
                    with m.If(push_free):
                        m.d.sync += [push_v.eq(1), push_ctx.eq(a_ctx), push_fwd.eq(1)]
                    with m.Else():
                        go("QUEUE")
                with m.Elif(pg_none):
                    go("INTERNAL")
                with m.Else():
                    # the context stays FREE (no unit acts on it: no READ data or
                    # status is taken for it) until its page table is written
                    m.d.comb += pages.reserve_en.eq(1)
                    go("ALLOC")
        with m.State("ALLOC"):
            # one page a cycle, while the reclaimer gives none back; each page is written
            # into the page table from registers the cycle after (COPY waits for it;
            # RDMA READ data and submission come later)
            m.d.comb += pages.pop_ss.eq(adm_cmd.subsystem)
            m.d.comb += in_alloc.eq(1)

            def after_alloc():
                m.d.sync += st_v.eq(1)          # READY or WAIT_RD (``st_state``)
                with m.If(adm_icd):
                    m.next = "COPY"
                with m.Elif(adm_in):
                    m.next = "RDMA"
                with m.Else():
                    m.next = "QUEUE"
            with m.If(alloc_k == alloc_n):
                after_alloc()           # no page (in-capsule data of zero bytes)
            with m.Elif(~pages.push_en):
                m.d.comb += [pages.pop_en.eq(1), pt_pop.eq(1)]
                m.d.sync += alloc_k.eq(alloc_k + 1)
                with m.If(alloc_k + 1 == alloc_n):
                    after_alloc()
        with m.State("COPY"):
            # (not in the cycle the last page is written into the table: the first beat's
            # page read would return the entry as it was)
            beat = top.i_data.payload
            m.d.comb += [
                stg_adm.valid.eq(top.i_data.valid & ~pt_wr.en),
                # (the merge's room for it, which does not depend on its own ``valid``:
                # the same as its ``ready`` whenever it is offered)
                top.i_data.ready.eq(stg_adm_room & ~pt_wr.en),
            ]
            with m.If(top.i_data.valid & stg_adm_room & ~pt_wr.en):
                m.d.sync += copy_n.eq(copy_n + 1)
                with m.If(beat.last):
                    m.next = "QUEUE"
        with m.State("RDMA"):
            m.d.comb += [
                rdma_adm.valid.eq(1),
                rdma_adm.payload.op.eq(RdmaOp.READ),
                rdma_adm.payload.qpn.eq(adm_cmd.qpn),
                rdma_adm.payload.addr.eq(adm_cmd.sgl_address),
                rdma_adm.payload.rkey.eq(adm_cmd.sgl_key),
                rdma_adm.payload.length.eq(adm_cmd.nbytes),
                rdma_adm.payload.tag.eq(adm_ctx),
            ]
            with m.If(rdma_adm.ready):
                go("IDLE")
        with m.State("QUEUE"):
            m.d.comb += in_queue.eq(1)
            with m.If(push_free):
                m.d.sync += [push_v.eq(1), push_ctx.eq(adm_ctx)]
                go("IDLE")
        with m.State("INTERNAL"):
            m.d.comb += [fin_adm_w.valid.eq(1), fin_adm_w.payload.kind.eq(_Kind.INTERNAL),
                         fin_adm_w.payload.ctx.eq(adm_ctx)]
            with m.If(fin_adm_w.ready):
                go("IDLE")
    u.give(acc_pick=acc_pick, adm_cmd=adm_cmd, adm_ctx=adm_ctx, copy_n=copy_n,
           dsm_clr=dsm_clr, push_ctx=push_ctx, push_fwd=push_fwd, push_slot=push_slot,
           push_v=push_v, sub_idle=sub_idle)
