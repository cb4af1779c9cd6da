"""The back end's submission unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Array, C, Cat, Mux, Signal
from amaranth.lib import data

from ..formats import (
    NvmeStatus,
)
from ..pages import PAGE_SHIFT
from ..stream_util import RegisterSlice
from .common import (
    NPAGES_BITS,
    _engine_status,
    _Kind,
    _State,
)


def build(m, top, u):
    """Submission: picks a backend queue with a free SQ slot (round robin over the namespace's
    queues), writes the PRP list into staging, and sends the SQE once its data and list
    are written (the submission fence).

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (B, acc_pick, beat_shift, c_pick, c_queue, c_start, cbits, ck_ctx, ck_v, cm_sub, dsm_bad,
     end_ctx, end_v, fin_sub_w, gen, now, p, page_of, pb_bits, pg_bits, pt_bits, push_ctx,
     push_fwd, push_slot, push_v, queues, state, stg_done, stg_prp, sub_idle, submit_r,
     wr_issued, wr_next, written) = u.take(
        "B acc_pick beat_shift c_pick c_queue c_start cbits ck_ctx ck_v cm_sub dsm_bad end_ctx "
        "end_v fin_sub_w gen now p page_of pb_bits pg_bits pt_bits push_ctx push_fwd push_slot "
        "push_v queues state stg_done stg_prp sub_idle submit_r wr_issued wr_next written")
    # --- submission ------------------------------------------------------------------------
    sub_ctx = Signal(cbits)
    # sub_ctx and sub_k: registers; the page table and submission's copy of the command
    # are read at their next values, sub_ctx_n and sub_k_n. The page is there a cycle
    # later, with them; the command (``scmd``, a block RAM read through a register) two
    # cycles later, from SQE on: what IDLE and PICK need of it comes from ``c_pick``
    sub_ctx_n, sub_k_n = Signal(cbits), Signal(pt_bits + 1)
    m.d.comb += [cm_sub.addr.eq(sub_ctx_n), cm_sub.en.eq(1)]
    scmd = cm_sub.data
    # the queue pick works from registers: the command's allowed queues and its
    # namespace's round-robin start are loaded in IDLE, from the context it takes;
    # neither changes while the command is in PICK (``ns_rr`` is written only as an SQE
    # leaves). Both contexts it may take are read, each from a register (the queue's
    # head, admission's push), and the choice comes after the reads; so are its data
    # pages and whether its SQE waits for its data writes. The round-robin start is read
    # at the namespace slot that comes with the context (the queue's head register,
    # admission's ``push_slot``), not at ``c_pick``'s slot: the 32-to-1 read of
    # ``ns_rr`` then starts from flip-flops, not from a LUT-RAM read
    pick_mask_r, pick_from_r = Signal(p.backend_queues), Signal(8)
    npages, fence_wr = Signal(NPAGES_BITS), Signal()
    m.d.comb += [queues.pick_mask.eq(pick_mask_r), queues.pick_from.eq(pick_from_r)]
    # (admission's push from the accept itself comes with the pick fields in its
    # registers: the context's are written in that cycle)
    pk_queued = c_pick.read(submit_r.payload.ctx)
    pk_pushed = c_pick.shape(Mux(push_fwd, acc_pick.as_value(),
                                 c_pick.read(push_ctx).as_value()))
    # the page table read of submission: page 0 (PICK, kept for PRP1), the list page
    # (LIST, kept), page k (PRP: list entry k), page 1 (SQE: PRP2 of two pages)
    sub_k = Signal(pt_bits + 1)
    pick_1st = Signal()           # PICK's first cycle: page 0 is read
    m.d.sync += pick_1st.eq(0)
    m.d.comb += [sub_ctx_n.eq(sub_ctx), sub_k_n.eq(sub_k)]
    m.d.sync += [sub_ctx.eq(sub_ctx_n), sub_k.eq(sub_k_n)]
    sub_page = page_of(sub_ctx_n, sub_k_n)
    prp1_page, list_page = Signal(pg_bits), Signal(pg_bits)

    def bus(page):
        """The bus address of a staging page."""
        return p.staging_base + (page << PAGE_SHIFT)
    prp_k = Signal(14)            # next PRP list entry: page index 1 .. npages-1
    # a list entry leaves the page table read through a narrow slice (its page, index
    # and whether it is the last); the beat is built from the slice's registers
    m.submodules.prp_q = prp_q = RegisterSlice(data.StructLayout(
        {"page": pg_bits, "k": 14, "last": 1}))
    ns_rr = Array(Signal(8, name=f"ns_rr{i}") for i in range(p.namespaces))

    def rr_at(slot):
        """A namespace's round-robin start, read as a balanced multiplexer tree (one
        shift by the slot) rather than a case per namespace, which Yosys may lower into
        a chain as deep as the namespaces are many."""
        return Cat(*ns_rr).word_select(slot, 8)
    per_beat = B // 8
    sub_queue = Signal(8)
    refusal = Signal(15)          # the status FAIL answers
    sub_fence = Signal(16)        # the SQE waits for the writes issued before it
    sub_written = Signal()        # ... and once they are, offers it until taken (a
    # later wrap of the 16-bit counts must not take ``valid`` back)
    sqe_ok = sub_written | written(sub_fence)
    # the context's state write (SUBMITTED as its SQE is taken, RETIRING as its refusal
    # is) is applied the cycle after, from registers (``sst_*``), so that the hand-shake
    # ends at a few flip-flops instead of 32 contexts' states. In the cycle between the
    # context is READY, on which the status unit, the RDMA READ data unit and the timeout
    # scanner do nothing (the scanner then finds it in its next sweep); completion sees
    # the SUBMITTED to be written (a CQE cannot come sooner from an SSD, but completion
    # does not rely on it)
    sst_v, sst_ctx, sst_sub = Signal(), Signal(cbits), Signal()
    m.d.sync += [sst_v.eq(0), sst_ctx.eq(sub_ctx)]
    with m.If(sst_v):
        m.d.sync += state[sst_ctx].eq(Mux(sst_sub, _State.SUBMITTED, _State.RETIRING))
    with m.FSM(name="submit"):
        with m.State("IDLE"):
            m.d.comb += [submit_r.ready.eq(1), sub_idle.eq(1)]
            m.d.comb += sub_k_n.eq(0)
            pk = Mux(submit_r.valid, pk_queued.as_value(), pk_pushed.as_value())
            m.d.sync += [
                pick_mask_r.eq(Mux(submit_r.valid, pk_queued.queues, pk_pushed.queues)),
                pick_from_r.eq(Mux(submit_r.valid, rr_at(submit_r.payload.slot),
                                   rr_at(push_slot))),
                npages.eq(c_pick.shape(pk).npages),
                fence_wr.eq(c_pick.shape(pk).fence_wr),
            ]
            with m.If(submit_r.valid):
                m.d.comb += sub_ctx_n.eq(submit_r.payload.ctx)
                m.d.sync += pick_1st.eq(1)
                m.next = "PICK"
            with m.Elif(push_v):
                m.d.comb += sub_ctx_n.eq(push_ctx)
                m.d.sync += pick_1st.eq(1)
                m.next = "PICK"
        with m.State("PICK"):
            # page 0 (read at the address IDLE gave) is kept in PICK's first cycle; from
            # then on the table is read at the page the next state needs (the list page,
            # else page 1), whether or not a queue is picked in that cycle, so that the
            # pick's outcome does not reach the table's address
            with m.If(pick_1st):
                m.d.sync += prp1_page.eq(sub_page)
            m.d.comb += sub_k_n.eq(Mux(npages > 2, npages, 1))
            # what the next state takes is loaded in every cycle of PICK, not under the
            # pick's outcome (the queue pick's verdict is deep): the values of the cycle
            # PICK is left in are the ones kept. A Write's data is all issued (READY
            # comes after its last beat); other commands wait for no write (LIST's way
            # loads the fence again in DRAIN; SQE and FAIL do not use what they miss)
            m.d.sync += [sub_queue.eq(queues.pick_q), prp_k.eq(1),
                         sub_fence.eq(Mux(fence_wr, wr_next, stg_done)),
                         refusal.eq(Mux(queues.pick_ok,
                                        _engine_status(NvmeStatus.LBA_OUT_OF_RANGE),
                                        _engine_status(NvmeStatus.NS_NOT_READY)))]
            with m.If((ck_v & (ck_ctx == sub_ctx)) | (end_v & (end_ctx == sub_ctx))):
                pass                # its last range is still being checked
            with m.Elif(queues.pick_ok & dsm_bad.bit_select(sub_ctx, 1)):
                m.next = "FAIL"
            with m.Elif(queues.pick_ok):
                with m.If(npages > 2):
                    m.next = "LIST"
                with m.Else():
                    m.next = "SQE"
            with m.Elif(~queues.alive):
                m.next = "FAIL"
        with m.State("LIST"):
            # the list page follows the data pages in the table
            m.d.sync += list_page.eq(sub_page)
            m.d.comb += sub_k_n.eq(1)
            m.next = "PRP"
        with m.State("PRP"):
            # one entry a cycle into the slice: the page of entry k
            last = prp_k + 1 == npages
            m.d.comb += [prp_q.i_valid.eq(1), prp_q.i_data.page.eq(sub_page),
                         prp_q.i_data.k.eq(prp_k), prp_q.i_data.last.eq(last)]
            with m.If(prp_q.i_ready):
                m.d.sync += prp_k.eq(prp_k + 1)
                m.d.comb += sub_k_n.eq(prp_k + 1)
                with m.If(last):
                    m.next = "DRAIN"
        with m.State("DRAIN"):
            # the SQE waits for the slice to be empty: its last entry has left, its write
            # is issued and counted in ``wr_issued`` (a register, so that the fence does
            # not wait on the merge's hand-shake)
            with m.If(~prp_q.o_valid):
                m.d.sync += sub_fence.eq(wr_issued)
                m.d.comb += sub_k_n.eq(1)
                m.next = "SQE"
        # the slice's entry as a staging write: the page's bus address in its 8-byte lane
        # of the beat
        ent = prp_q.o_data
        entry = Signal(64)
        lane = (ent.k - 1)[:max(1, (per_beat - 1).bit_length())] if per_beat > 1 else 0
        m.d.comb += [
            entry.eq(bus(ent.page)),
            stg_prp.valid.eq(prp_q.o_valid), prp_q.o_ready.eq(stg_prp.ready),
            stg_prp.payload.direct.eq(1),
            stg_prp.payload.offset.eq(
                Cat(C(0, beat_shift), ((ent.k - 1) >> (beat_shift - 3))[:pb_bits], list_page)),
            stg_prp.payload.data.eq(entry.replicate(per_beat)),
            stg_prp.payload.keep.eq((C(0xFF, B) << (lane << 3))[:B] if per_beat > 1
                                    else C(0xFF, B)),
        ]
        with m.State("SQE"):
            req = top.o_sqe.payload
            m.d.comb += [
                top.o_sqe.valid.eq(sqe_ok),
                req.queue.eq(sub_queue),
                req.sqe.opcode.eq(scmd.opcode),
                req.sqe.cid.eq(Cat(sub_ctx, gen.read(sub_ctx))),
                req.sqe.nsid.eq(scmd.backend_nsid),
                req.sqe.cdw.eq(scmd.cdw),
            ]
            with m.If(scmd.nbytes != 0):
                m.d.comb += req.sqe.dptr.prp.prp1.eq(bus(prp1_page))
                with m.If(npages == 2):
                    m.d.comb += req.sqe.dptr.prp.prp2.eq(bus(sub_page))
                with m.Elif(npages > 2):
                    m.d.comb += req.sqe.dptr.prp.prp2.eq(bus(list_page))
            m.d.sync += sub_written.eq(sqe_ok)
            with m.If(top.o_sqe.valid & top.o_sqe.ready):
                m.d.sync += sub_written.eq(0)
                m.d.comb += [queues.submit_en.eq(1), queues.submit_q.eq(sub_queue)]
                m.d.sync += [sst_v.eq(1), sst_sub.eq(1),
                             ns_rr[scmd.slot].eq(sub_queue + 1)]
                c_queue.write(sub_ctx, sub_queue)
                c_start.write(sub_ctx, now)
                m.next = "IDLE"
        with m.State("FAIL"):
            m.d.comb += [fin_sub_w.valid.eq(1), fin_sub_w.payload.kind.eq(_Kind.REFUSED),
                         fin_sub_w.payload.ctx.eq(sub_ctx),
                         fin_sub_w.payload.status.eq(refusal)]
            with m.If(fin_sub_w.ready):
                m.d.sync += [sst_v.eq(1), sst_sub.eq(0)]
                m.next = "IDLE"
    u.give(sst_ctx=sst_ctx, sst_sub=sst_sub, sst_v=sst_v)
