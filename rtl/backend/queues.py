"""The back end's store of backend queues: configuration, SQ occupancy, failure."""

from amaranth.hdl import Array, Cat, Elaboratable, Module, Mux, Signal

from ..formats import (
    BackendQueueEntry,
)


class _Queues(Elaboratable):
    """What the back end keeps of each backend queue: configuration, SQ occupancy, failure.

    ``pick_mask``, ``pick_from`` -> ``pick_ok`` / ``pick_q``: the first allowed queue
    at or after ``pick_from`` (wrapping) among the allowed,
    working queues with a free SQ slot and fewer than ``cq_entries - 1``
    commands outstanding (so the CQ never overflows); ``alive``: some allowed
    queue works.
    ``submit_en`` takes a slot of ``submit_q``; ``cqe_en`` records the SQ head
    ``cqe_sqhd`` of ``cqe_q`` and, with ``cqe_owned`` (the CQE's CID names a command
    of that queue), one command fewer outstanding: a CQE for no command (an SSD
    posting one unasked) leaves the count, and so the CQ room, alone, unless the queue
    has lost commands (``lose_en`` / ``lose_q``: a command reclaimed without its CQE,
    whose CQ slot stays reserved until a CQE for no command arrives on that queue and
    takes its place). A queue with lost commands is not busy and is polled only for
    the commands it still has; ``fail_en``
    marks ``fail_q`` failed. ``first_q`` -> ``first``, two combinational look-ups
    (one per failure reporter): the queue exists and has not failed yet.
    ``look_q`` -> ``look_timeout`` / ``look_failed``; ``poll``: queues in
    polling mode with commands outstanding.
    """

    def __init__(self, params):
        self._p = params
        nq = params.backend_queues
        self.cfg_valid, self.cfg_index = Signal(), Signal(8)
        self.rd_addr, self.rd_en, self.rd_data = Signal(8), Signal(), Signal(BackendQueueEntry)
        self.pick_mask, self.pick_ok, self.pick_q, self.alive = (
            Signal(nq), Signal(), Signal(8), Signal())
        self.pick_from = Signal(8)          # round robin: first queue index to consider
        self.submit_en, self.submit_q = Signal(), Signal(8)
        self.cqe_en, self.cqe_q, self.cqe_sqhd = Signal(), Signal(8), Signal(16)
        self.cqe_owned = Signal()
        self.lose_en, self.lose_q = Signal(), Signal(8)
        self.fail_en, self.fail_q = Signal(), Signal(8)
        self.first_q, self.first = [Signal(8), Signal(8)], [Signal(), Signal()]
        self.look_q, self.look_timeout, self.look_failed = Signal(8), Signal(32), Signal()
        self.poll = Signal(nq)
        self.busy = Signal()                # a working queue has SQ entries or CQEs to come
        # per-queue state (here rather than in elaborate so that the formal proofs of
        # tb/formal can state their invariants over it)
        self.valid = Array(Signal(name=f"valid{i}") for i in range(nq))
        self.entries = Array(Signal(17, name=f"entries{i}") for i in range(nq))
        self.cq_entries = Array(Signal(17, name=f"cq_entries{i}") for i in range(nq))
        self.tail = Array(Signal(17, name=f"tail{i}") for i in range(nq))
        self.head = Array(Signal(17, name=f"head{i}") for i in range(nq))
        self.outstanding = Array(Signal(17, name=f"outstanding{i}") for i in range(nq))
        self.lost = Array(Signal(17, name=f"lost{i}") for i in range(nq))
        self.cfg_pending, self.cfg_loaded = Signal(), Signal()    # entry read, loaded
        self.cfg_at = Signal(8)                                   # queue being configured

    def elaborate(self, platform):
        m = Module()
        NQ = self._p.backend_queues
        valid, entries, cq_entries = self.valid, self.entries, self.cq_entries
        tail, head, outstanding, lost = self.tail, self.head, self.outstanding, self.lost
        polling = Array(Signal(name=f"polling{i}") for i in range(NQ))
        failed = Array(Signal(name=f"failed{i}") for i in range(NQ))
        timeout = Array(Signal(32, name=f"timeout{i}") for i in range(NQ))

        pending, loaded, index = self.cfg_pending, self.cfg_loaded, self.cfg_at
        m.d.sync += [pending.eq(self.cfg_valid), loaded.eq(pending)]
        with m.If(self.cfg_valid):
            m.d.sync += index.eq(self.cfg_index)
        m.d.comb += [self.rd_addr.eq(index), self.rd_en.eq(pending)]
        e = self.rd_data

        for q in range(NQ):
            with m.If(loaded & (index == q)):
                m.d.sync += [
                    valid[q].eq(e.valid), polling[q].eq(e.polling), failed[q].eq(0),
                    entries[q].eq(Mux(e.sq_entries == 0, 65536, e.sq_entries)),
                    cq_entries[q].eq(Mux(e.cq_entries == 0, 65536, e.cq_entries)),
                    timeout[q].eq(e.cmd_timeout),
                    tail[q].eq(e.sq_tail_init), head[q].eq(e.sq_tail_init),
                    outstanding[q].eq(0), lost[q].eq(0),
                ]
            with m.Else():
                sub = self.submit_en & (self.submit_q == q)
                seen = self.cqe_en & (self.cqe_q == q)
                found = seen & ~self.cqe_owned & (lost[q] != 0)     # a lost command's CQE
                done = seen & self.cqe_owned | found
                lose = self.lose_en & (self.lose_q == q)
                with m.If(lose & ~found):
                    m.d.sync += lost[q].eq(lost[q] + 1)
                with m.Elif(found & ~lose):
                    m.d.sync += lost[q].eq(lost[q] - 1)
                with m.If(sub):
                    m.d.sync += tail[q].eq(Mux(tail[q] + 1 == entries[q], 0, tail[q] + 1))
                with m.If(seen):
                    m.d.sync += head[q].eq(self.cqe_sqhd)
                with m.If(sub & ~done):
                    m.d.sync += outstanding[q].eq(outstanding[q] + 1)
                with m.Elif(done & ~sub & (outstanding[q] != 0)):
                    m.d.sync += outstanding[q].eq(outstanding[q] - 1)
                with m.If(self.fail_en & (self.fail_q == q)):
                    m.d.sync += failed[q].eq(1)

        # ``room`` comes from a register, worked out from the state of the cycle before;
        # a queue that was configured, submitted to or failed in that cycle has no room
        # for one cycle (its register does not show that yet). A CQE's room shows a cycle
        # later, as if the CQE had come a cycle later.
        room_r, room_n, stale = Signal(NQ), Signal(NQ), Signal(NQ)
        m.d.sync += [room_r.eq(room_n), stale.eq(Cat(
            (loaded & (index == q)) | (self.submit_en & (self.submit_q == q))
            | (self.fail_en & (self.fail_q == q)) for q in range(NQ)))]
        room = Signal(NQ)
        m.d.comb += room.eq(room_r & ~stale)
        for q in range(NQ):
            used = Mux(tail[q] >= head[q], tail[q] - head[q], tail[q] + entries[q] - head[q])
            # a free SQ slot, and room in the CQ for one more completion
            m.d.comb += [room_n[q].eq(valid[q] & ~failed[q] & (used + 1 < entries[q])
                                    & (outstanding[q] + 1 < cq_entries[q])),
                         self.poll[q].eq(valid[q] & polling[q] & (outstanding[q] != lost[q]))]
        cand = Signal(NQ)
        m.d.comb += cand.eq(room & self.pick_mask)
        working = Signal(NQ)
        m.d.comb += working.eq(Cat(*valid) & ~Cat(*failed) & self.pick_mask)
        rr = self.pick_from
        above = Signal()
        for k in reversed(range(NQ)):
            with m.If(cand[k] & (k >= rr)):
                m.d.comb += [self.pick_q.eq(k), above.eq(1)]
        with m.If(~above):
            for k in reversed(range(NQ)):
                with m.If(cand[k]):
                    m.d.comb += self.pick_q.eq(k)
        # a queue with lost commands owes nothing it can be asked for: the SQ head it last
        # learnt may stay behind the lost command's slot until another CQE moves it
        owed = Cat(*(valid[q] & ~failed[q] & (lost[q] == 0)
                     & ((tail[q] != head[q]) | (outstanding[q] != 0))
                     for q in range(NQ)))
        m.d.comb += self.busy.eq(owed != 0)
        m.d.comb += [self.pick_ok.eq(cand != 0), self.alive.eq(working != 0)]
        m.d.comb += [
            self.look_timeout.eq(timeout[self.look_q]),
            self.look_failed.eq(failed[self.look_q]),
        ]
        for q_in, first in zip(self.first_q, self.first, strict=True):
            m.d.comb += first.eq((q_in < NQ) & ~failed[q_in])
        return m
