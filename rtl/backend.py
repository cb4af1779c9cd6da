# Over 700 lines: the back end's units share its context tables; the timing-closure issue
# (#14) rebuilds it as tag-indexed units in files of their own.
"""Back-end core: contexts, staging pages, RDMA movers, submission, completion, retirement.

Executes the served commands of the front end (``docs/engine.md`` sections
3-5) with the blocks of ``docs/backend.md`` (staging memory, SQ writer, CQ
handler) around it. Work moves between small units as context numbers:

* admission takes a context and its staging pages, then starts the data in
  (an RDMA READ descriptor, or the in-capsule data copied into staging) or
  queues the context for submission;
* the RDMA read mover writes returned READ data into the context's pages;
* the status dispatcher moves contexts on when the transport completes a
  descriptor;
* submission picks a backend queue with a free SQ slot (round robin over the
  namespace's queues), writes the PRP list into staging, sends the SQE;
* completion retires contexts by CID (context index and generation), and
  drops the late CQE of a command given up;
* the timeout scanner looks at one context a cycle (a read stage, then a verdict stage);
* retirement hands a Read's data to the data-out mover, which issues the
  RDMA WRITE descriptor and the staging read and streams the packet (the
  next packet's descriptor and read go out while one streams); after the
  WRITE's status, or at once for other commands, retirement sends the
  response, the counters and the events, and frees the context and its pages.

Staging: each subsystem's window is 4 KiB pages (``rtl/pages.py``); a command takes
``ceil(bytes / 4096)`` pages, one more for its PRP list when it spans more than two,
not necessarily contiguous, and keeps their numbers in a per-context page table.
"""

from amaranth.hdl import Array, C, Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .counters import CountRequest
from .formats import (
    PAGE_BYTES,
    BackendCommand,
    BackendQueueEntry,
    CqCompletion,
    EngineResponse,
    Event,
    EventType,
    ExcSideband,
    NsCounters,
    NvmeStatus,
    Opcode,
    RdmaCommand,
    RdmaOp,
    RdmaStatus,
    Reason,
    SqDone,
    SqRequest,
    StagingRead,
    StagingWrite,
    StreamBeat,
    SubsystemEntry,
)
from .pages import PAGE_SHIFT, PageAllocator
from .params import EngineParams
from .stream_util import RegisterSlice

__all__ = ["Backend", "RdmaBeat", "PAGE", "max_command_pages"]

PAGE = PAGE_BYTES


def max_command_pages(params):
    """Most pages one command takes: its data pages, and a PRP list page past two."""
    data_pages = -(-params.max_io_size // PAGE)
    return data_pages + (data_pages > 2)


def RdmaBeat(data_width):
    """A beat of RDMA READ or WRITE data with its descriptor's tag."""
    return data.StructLayout({"data": data_width, "keep": data_width // 8, "last": 1,
                              "tag": 16})


class _State(enum.Enum, shape=3):
    FREE = 0
    WAIT_RD = 1        # RDMA READ of the data in flight
    READY = 2          # waiting for submission
    SUBMITTED = 3      # SQE sent, waiting for the CQE
    RETIRING = 4       # handed to retirement
    WAIT_WR = 5        # RDMA WRITE of read data in flight
    TIMED_OUT = 6      # given up, response not yet sent
    ZOMBIE = 7         # given up and answered: waits for its late CQE


class _Kind(enum.Enum, shape=3):
    CQE = 0            # the SSD completed it
    WR_OK = 1          # the RDMA WRITE of read data completed
    WR_ERR = 2         # the RDMA WRITE failed
    RD_ERR = 3         # the RDMA READ of write data failed
    TIMEOUT = 4        # outstanding too long (or its queue failed)
    ZOMBIE = 5         # the late CQE of a command given up
    INTERNAL = 6       # no staging: Internal Error
    REFUSED = 7        # answered by submission with ``status``: every queue of the namespace
                       # failed (Namespace Not Ready), a DSM range past nsze (LBA Out of Range)


def _StagingRef(page_bits):
    """A context's staging: subsystem and how many pages it holds (page table entries
    0 .. pages - 1)."""
    return data.StructLayout({"ss": 8, "pages": page_bits + 1})


def _InternalWrite(data_width, cbits, beat_w):
    """A staging write before its offset is known: beat ``n`` of context ``ctx``'s data
    (its page from the page table), or, when ``direct``, at byte ``offset``."""
    return data.StructLayout({"data": data_width, "keep": data_width // 8, "ctx": cbits,
                              "n": beat_w, "direct": 1, "offset": 32})


class _CountRecord(data.Struct):
    """The namespace-counter increments of one response."""
    index: 16
    first: 4           # the command's kind (or ``errors``), +1
    blocks_en: 1
    blocks_field: 4    # read_blocks / write_blocks, + ``blocks``
    blocks: 17
    third_en: 1
    third: 4           # backend_errors or icd_writes, +1


class _Finish(data.Struct):
    kind: _Kind
    ctx: 10
    status: 15         # SSD status field without the phase tag
    dw0: 32
    failed: 1          # TIMEOUT because the queue failed: free at once, no zombie
    late: 1            # TIMEOUT whose late CQE has already come: free at once


class _DsmCheck(data.Struct):
    """What the DSM range check needs of a context's command."""
    on: 1              # a Dataset Management command
    nr: 8              # ranges - 1
    nsze: 64           # namespace size in blocks


_COUNTER = {name: i for i, (name, _) in enumerate(data.Layout.cast(NsCounters))}


def _engine_status(entry):
    """The status field without P ({DNR, M, CRD, SCT, SC}) of a ``NvmeStatus`` entry."""
    sct, sc, dnr = entry
    return sc.value | (sct.value << 8) | (dnr << 14)


def _merge(m, name, sources, sink):
    """Fixed-priority merge of streams into ``sink`` (earlier sources first).

    A source offered on ``sink`` and not taken stays chosen (a register) until taken,
    even if an earlier source becomes valid meanwhile: ``sink`` keeps its payload while
    it waits (the stream rules)."""
    locked = Signal(name=f"{name}_locked")
    lock = Signal(range(len(sources)), name=f"{name}_lock")
    choice = Signal.like(lock, name=f"{name}_choice")
    with m.If(locked):
        m.d.comb += choice.eq(lock)
    with m.Else():
        for i in reversed(range(len(sources))):
            with m.If(sources[i].valid):
                m.d.comb += choice.eq(i)
    with m.Switch(choice):
        for i, src in enumerate(sources):
            with m.Case(i):
                m.d.comb += [sink.valid.eq(src.valid), sink.payload.eq(src.payload),
                             src.ready.eq(sink.ready)]
    m.d.sync += [locked.eq(sink.valid & ~sink.ready), lock.eq(choice)]


def _fifo_stream(m, name, layout, depth, *, fall_through=False):
    """A FIFO with stream views: returns (write side, read side) stream interfaces.

    Registered output (an entry is readable two cycles after its write) unless
    ``fall_through``: then readable the cycle after (``SyncFIFO``, LUT-memory read)."""
    width = layout if isinstance(layout, int) else data.Layout.cast(layout).size
    kind = fifo.SyncFIFO if fall_through else fifo.SyncFIFOBuffered
    f = kind(width=width, depth=depth)
    m.submodules[name] = f
    w = stream.Signature(layout).flip().create()
    r = stream.Signature(layout).create()
    m.d.comb += [f.w_data.eq(w.payload), f.w_en.eq(w.valid), w.ready.eq(f.w_rdy),
                 r.payload.eq(f.r_data), r.valid.eq(f.r_rdy), f.r_en.eq(r.ready)]
    return w, r


class _CtxField:
    """One field of every context in a LUT memory (instead of a register per context).

    One write port (:meth:`write`, called in the branch that writes; the value is
    stored at the clock edge, as a ``sync`` assignment would be) and one
    combinational read port per reader (:meth:`read`: data in the same cycle).
    """

    def __init__(self, m, name, shape, depth):
        self._m = m
        self._mem = m.submodules[name] = memory.Memory(shape=shape, depth=depth, init=[])
        self._wp = self._mem.write_port()

    def read(self, addr):
        port = self._mem.read_port(domain="comb")
        self._m.d.comb += port.addr.eq(addr)
        return port.data

    def write(self, addr, value):
        self._m.d.comb += [self._wp.addr.eq(addr), self._wp.data.eq(value), self._wp.en.eq(1)]


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
    marks ``fail_q`` failed (``fail_new`` pulses the first time).
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
        self.fail_en, self.fail_q, self.fail_new = Signal(), Signal(8), Signal()
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

        room = Signal(NQ)
        for q in range(NQ):
            used = Mux(tail[q] >= head[q], tail[q] - head[q], tail[q] + entries[q] - head[q])
            # a free SQ slot, and room in the CQ for one more completion
            m.d.comb += [room[q].eq(valid[q] & ~failed[q] & (used + 1 < entries[q])
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
            self.fail_new.eq(self.fail_en & (self.fail_q < NQ) & ~failed[self.fail_q]),
        ]
        return m


class Backend(wiring.Component):
    """Parameters
    ----------
    params : EngineParams

    Interface attributes (every stream follows the Amaranth stream rules)
    ----------------------------------------------------------------
    i_cmd, i_data : served commands and their in-capsule data, from the front end.
        ``i_cmd`` goes through a register slice: ``ready`` comes from a flip-flop
        and admission sees a command the cycle after its transfer.
    o_resp, o_qp_error, o_event, o_ns_count : outcomes (merged with the front end's).
    o_rdma_cmd, i_rdma_rd, o_rdma_wr, i_rdma_sts : the RDMA transport. READ data
        comes as one packet per descriptor (not interleaved) before its status.
        WRITE data goes out as one packet per WRITE descriptor, in descriptor
        order; a descriptor may precede its packet by up to two others.
    o_stg_wr, o_stg_rd, i_stg_rd : the staging memory's internal ports.
    stg_done : In(16)
        External staging only (``staging_mode = "external"``): beats of ``o_stg_wr``
        whose write the memory has acknowledged, modulo 2**16, in ``o_stg_wr`` order
        (:class:`rtl.staging_axi.StagingAxi` ``wr_done``). An SQE waits until its
        data and PRP list are acknowledged (the submission fence), and a retired
        context's pages go back only once every write issued before its retirement is
        (so that no late write lands in a page the SSD is filling for the next owner).
    o_sqe, i_sq_done : the SQ writer.   i_cqe, i_cq_error, poll : the CQ handler.
    o_qp_fail : a QP whose RDMA transfer failed: the front end puts it in error.
    ss_rd_*, bq_rd_*, ss_cfg_*, bq_cfg_* : configuration (entries are read the
        cycle after a ``*_cfg_valid`` pulse). A subsystem's entry changes only while
        none of its commands is in the back end (its pages belong to the window):
        the driver writes it in ``create_srq`` and ``destroy_srq`` only, the latter
        refused while a namespace or QP uses the subsystem, and each unmap has waited
        on the command fence for its namespace's commands.
    use_live, use_zombies, use_pages, use_zombie_pages, queues_busy : resource use
        (debug, ``USE_*`` registers, registered): contexts with a command, zombie
        contexts, staging pages taken, pages zombies keep, a working backend queue
        owed SQ consumption or CQEs.
    bq_loaded, bq_loaded_index : Out
        A one-cycle pulse in the cycle the back end loads backend queue
        ``bq_loaded_index``'s entry from ``bq_rd_data`` (two cycles after its
        ``bq_cfg_valid`` pulse); others (MSI-X recognition) load from the same data.
    fence_out : Out(32)
        Per epoch of ``BackendCommand.epoch`` (bits 15:0 epoch 0, 31:16 epoch 1),
        modulo 2**16: served commands that got their outcome (a response, or the QP
        error of a failed RDMA WRITE); counted the cycle after retirement releases
        the context (a zombie's later reclaim is not an outcome). Registered.
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        W = params.data_width
        super().__init__({
            "i_cmd": In(stream.Signature(BackendCommand)),
            "i_data": In(stream.Signature(StreamBeat(W))),
            "o_resp": Out(stream.Signature(EngineResponse)),
            "o_qp_error": Out(stream.Signature(ExcSideband)),
            "o_event": Out(stream.Signature(Event)),
            "o_ns_count": Out(stream.Signature(CountRequest(16))),
            "o_rdma_cmd": Out(stream.Signature(RdmaCommand)),
            "i_rdma_rd": In(stream.Signature(RdmaBeat(W))),
            "o_rdma_wr": Out(stream.Signature(RdmaBeat(W))),
            "i_rdma_sts": In(stream.Signature(RdmaStatus)),
            "o_stg_wr": Out(stream.Signature(StagingWrite(W))),
            "o_stg_rd": Out(stream.Signature(StagingRead)),
            "i_stg_rd": In(stream.Signature(StreamBeat(W))),
            "stg_done": In(16),
            "o_sqe": Out(stream.Signature(SqRequest)),
            "i_sq_done": In(stream.Signature(SqDone)),
            "i_cqe": In(stream.Signature(CqCompletion)),
            "i_cq_error": In(stream.Signature(data.StructLayout({"queue": 8}))),
            "poll": Out(params.backend_queues),
            "o_qp_fail": Out(stream.Signature(data.StructLayout({"qpn": 24}))),
            "ss_rd_addr": Out(8), "ss_rd_en": Out(1), "ss_rd_data": In(SubsystemEntry),
            "bq_rd_addr": Out(8), "bq_rd_en": Out(1), "bq_rd_data": In(BackendQueueEntry),
            "ss_cfg_valid": In(1), "ss_cfg_index": In(8),
            "bq_cfg_valid": In(1), "bq_cfg_index": In(8),
            "use_live": Out(16), "use_zombies": Out(16), "use_pages": Out(16),
            "use_zombie_pages": Out(16),
            "queues_busy": Out(1), "fence_out": Out(32),
            "bq_loaded": Out(1), "bq_loaded_index": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W, B = p.data_width, p.beat_bytes
        N = p.contexts
        cbits = max(1, (N - 1).bit_length())
        gbits = 16 - cbits
        beat_shift = B.bit_length() - 1
        beat_w = (p.max_io_size // B).bit_length()      # beat counts of the largest transfer

        pages = m.submodules.pages = PageAllocator(p)
        pg_bits = pages.page_bits
        pt_bits = max(1, (max_command_pages(p) - 1).bit_length())   # page-table index bits
        pb_bits = PAGE_SHIFT - beat_shift                            # beat-in-page bits
        page_beats = 1 << pb_bits
        queues = m.submodules.queues = _Queues(p)
        m.d.comb += [
            pages.cfg_valid.eq(self.ss_cfg_valid), pages.cfg_index.eq(self.ss_cfg_index),
            self.ss_rd_addr.eq(pages.rd_addr), self.ss_rd_en.eq(pages.rd_en),
            pages.rd_data.eq(self.ss_rd_data),
            queues.cfg_valid.eq(self.bq_cfg_valid), queues.cfg_index.eq(self.bq_cfg_index),
            self.bq_rd_addr.eq(queues.rd_addr), self.bq_rd_en.eq(queues.rd_en),
            queues.rd_data.eq(self.bq_rd_data),
            self.poll.eq(queues.poll),
            self.bq_loaded.eq(queues.cfg_loaded), self.bq_loaded_index.eq(queues.cfg_at),
        ]

        # --- contexts ------------------------------------------------------------------------
        state = Array(Signal(_State, name=f"ctx_state{i}") for i in range(N))
        c_late = Array(Signal(name=f"ctx_late{i}") for i in range(N))
        # the other fields live in LUT memories, one combinational read port per reader
        gen = _CtxField(m, "ctx_gen", gbits, N)          # CID generation
        c_queue = _CtxField(m, "ctx_queue", 8, N)        # backend queue it was submitted to
        c_stg = _CtxField(m, "ctx_stg", _StagingRef(pg_bits), N)  # its staging pages
        c_beats = _CtxField(m, "ctx_beats", beat_w, N)   # data beats
        c_start = _CtxField(m, "ctx_start", 32, N)       # submission time
        c_dw0 = _CtxField(m, "ctx_dw0", 32, N)           # CQE DW0 kept during the RDMA WRITE
        c_dsm = _CtxField(m, "ctx_dsm", _DsmCheck, N)    # what the DSM range check needs
        dsm_bad = Signal(N)             # a DSM range of the context lies past nsze
        now = Signal(32)
        m.d.sync += now.eq(now + 1)

        m.submodules.ctx_mem = ctx_mem = memory.Memory(shape=BackendCommand, depth=N, init=[])
        cm_wr = ctx_mem.write_port()
        # the page table: page k of context c at entry c * 2**pt_bits + k; written by
        # admission, one copy per reader with a combinational read port (as LUT memory
        # replicates it anyway; one memory with several read ports is one cell, through
        # which a read feeding another read's address looks like a loop)
        pt_wr = wiring.Signature({"addr": Out(cbits + pt_bits), "data": Out(pg_bits),
                                  "en": Out(1)}).create()
        tables = []

        def page_of(ctx, k):
            copy = memory.Memory(shape=pg_bits, depth=N << pt_bits, init=[])
            m.submodules[f"page_table{len(tables)}"] = copy
            tables.append(copy)
            wp, rp = copy.write_port(), copy.read_port(domain="comb")
            m.d.comb += [wp.addr.eq(pt_wr.addr), wp.data.eq(pt_wr.data), wp.en.eq(pt_wr.en),
                         rp.addr.eq(Cat(k[:pt_bits], ctx))]
            return rp.data

        cm_sub = ctx_mem.read_port()
        cm_ret = ctx_mem.read_port()

        # free contexts: a FIFO that the reset fills with every index
        m.submodules.free = free = fifo.SyncFIFOBuffered(width=cbits, depth=N)
        filled = Signal(cbits + 1)
        filling = filled != N
        release_en, release_ctx = Signal(), Signal(cbits)
        to_zombie = Signal()            # retirement keeps a given-up context as a zombie
        release_now = Signal()          # retirement releases (or keeps as zombie) its context
        with m.If(filling):
            m.d.comb += [free.w_data.eq(filled), free.w_en.eq(1)]
            m.d.sync += filled.eq(filled + 1)
        with m.Else():
            m.d.comb += [free.w_data.eq(release_ctx), free.w_en.eq(release_en)]

        # queues between units
        submit_w, submit_r = _fifo_stream(m, "submit_q", cbits, N, fall_through=True)
        fin_adm_w, fin_adm_r = _fifo_stream(m, "fin_adm", _Finish, 2)
        fin_sts_w, fin_sts_r = _fifo_stream(m, "fin_sts", _Finish, 2)
        fin_sub_w, fin_sub_r = _fifo_stream(m, "fin_sub", _Finish, 2)
        fin_cqe_w, fin_cqe_r = _fifo_stream(m, "fin_cqe", _Finish, 4)
        fin_scan_w, fin_scan_r = _fifo_stream(m, "fin_scan", _Finish, 2)
        fin = stream.Signature(_Finish).create()
        # RDMA statuses first: each releases a context and its pages, and CQEs arriving in a
        # burst would otherwise hold them back (4 KiB Reads at 128 with a bursty SSD: 0.67 -> 1)
        _merge(m, "fin", [fin_sts_r, fin_cqe_r, fin_scan_r, fin_sub_r, fin_adm_r], fin)
        cnt_w, cnt_r = _fifo_stream(m, "count_q", _CountRecord, 4)
        ev_q_w, ev_q_r = _fifo_stream(m, "ev_queue", Event, 4)
        ev_ret = stream.Signature(Event).create()
        _merge(m, "ev", [ev_q_r, ev_ret], self.o_event)

        rdma_adm = stream.Signature(RdmaCommand).create()
        rdma_ret = stream.Signature(RdmaCommand).create()
        _merge(m, "rdma", [rdma_ret, rdma_adm], self.o_rdma_cmd)
        iw_layout = _InternalWrite(W, cbits, beat_w)
        stg_adm = stream.Signature(iw_layout).create()
        stg_rdm = stream.Signature(iw_layout).create()
        stg_prp = stream.Signature(iw_layout).create()
        stg_any = stream.Signature(iw_layout).create()
        # a PRP list entry first
        _merge(m, "stg_wr", [stg_prp, stg_rdm, stg_adm], stg_any)
        # the beat's offset: its page from the page table, or given
        iw = stg_any.payload
        iw_page = page_of(iw.ctx, iw.n >> pb_bits)
        m.d.comb += [
            self.o_stg_wr.valid.eq(stg_any.valid), stg_any.ready.eq(self.o_stg_wr.ready),
            self.o_stg_wr.payload.data.eq(iw.data), self.o_stg_wr.payload.keep.eq(iw.keep),
            self.o_stg_wr.payload.offset.eq(
                Mux(iw.direct, iw.offset,
                    Cat(C(0, beat_shift), iw.n[:pb_bits], iw_page))),
        ]
        # staging write beats issued (external staging: compared with stg_done)
        external = not p.onchip_staging
        wr_issued, wr_next = Signal(16), Signal(16)
        m.d.comb += wr_next.eq(wr_issued + (self.o_stg_wr.valid & self.o_stg_wr.ready))
        m.d.sync += wr_issued.eq(wr_next)

        def written(fence):
            """Every staging write up to ``fence`` is acknowledged (always, on chip)."""
            return ~(self.stg_done - fence)[15] if external else C(1, 1)
        submit_adm = stream.Signature(cbits).create()
        submit_sts = stream.Signature(cbits).create()
        _merge(m, "submit", [submit_adm, submit_sts], submit_w)

        # --- admission -----------------------------------------------------------------------
        # the command enters through a register slice that also carries its decision bits
        # (worked out from the input), so admission starts from flip-flops
        in_cmd = self.i_cmd.payload
        admit_layout = data.StructLayout({"cmd": BackendCommand, "dataless": 1, "data_in": 1,
                                          "beats": beat_w, "pages": pt_bits + 1})
        m.submodules.cmd_slice = cmd_slice = RegisterSlice(admit_layout)
        m.d.comb += [
            cmd_slice.i_valid.eq(self.i_cmd.valid), self.i_cmd.ready.eq(cmd_slice.i_ready),
            cmd_slice.i_data.cmd.eq(in_cmd),
            # a command that moves no data (Flush, Write Zeroes) takes no staging page
            cmd_slice.i_data.dataless.eq((in_cmd.nbytes == 0) & ~in_cmd.icd),
            cmd_slice.i_data.data_in.eq(
                ((in_cmd.opcode == Opcode.WRITE.value) | (in_cmd.opcode == Opcode.DSM.value))
                & (in_cmd.nbytes != 0)),
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
        sub_idle, bypass = Signal(), Signal()
        m.d.comb += [bypass.eq(sub_idle & ~submit_r.valid & push_v),
                     submit_adm.valid.eq(push_v & ~bypass), submit_adm.payload.eq(push_ctx)]
        push_free = ~push_v | submit_adm.ready | bypass
        with m.If(submit_adm.ready | bypass):
            m.d.sync += push_v.eq(0)
        with m.FSM(name="admit"):
            with m.State("IDLE"):
                ready = cmd_slice.o_valid & free.r_rdy & ~filling
                with m.If(ready & (dataless | pages.room | pages.none)):
                    m.d.comb += [cmd_slice.o_ready.eq(1), free.r_en.eq(1),
                                 cm_wr.addr.eq(a_ctx), cm_wr.data.eq(cmd), cm_wr.en.eq(1)]
                    m.d.sync += [adm_ctx.eq(a_ctx), adm_cmd.eq(cmd), c_late[a_ctx].eq(0),
                                 alloc_k.eq(0), alloc_n.eq(cmd_slice.o_data.pages),
                                 adm_icd.eq(cmd.icd), adm_in.eq(data_in)]
                    gen.write(a_ctx, gen.read(a_ctx) + 1)
                    c_stg.write(a_ctx, Cat(cmd.subsystem,
                                           Mux(dataless | pages.none, 0,
                                               cmd_slice.o_data.pages)))
                    c_beats.write(a_ctx, cmd_slice.o_data.beats)
                    c_dsm.write(a_ctx, Cat(cmd.opcode == Opcode.DSM.value, cmd.cdw.dsm.nr,
                                           cmd.nsze))
                    m.d.comb += dsm_clr.eq(1 << a_ctx)
                    m.d.sync += copy_n.eq(0)
                    # a command with nothing to bring in goes to submission next (from QUEUE
                    # when the push register is still taken); one with data takes its pages
                    # first (ALLOC), one a cycle
                    with m.If(dataless):
                        m.d.sync += state[a_ctx].eq(_State.READY)
                        with m.If(push_free):
                            m.d.sync += [push_v.eq(1), push_ctx.eq(a_ctx)]
                        with m.Else():
                            m.next = "QUEUE"
                    with m.Elif(pages.none):
                        m.d.sync += state[a_ctx].eq(_State.RETIRING)
                        m.next = "INTERNAL"
                    with m.Else():
                        # the context stays FREE (no unit acts on it: no READ data or
                        # status is taken for it) until its page table is written
                        m.d.comb += pages.reserve_en.eq(1)
                        m.next = "ALLOC"
            with m.State("ALLOC"):
                # one page a cycle, while the reclaimer gives none back
                m.d.comb += [pages.pop_ss.eq(adm_cmd.subsystem),
                             pt_wr.addr.eq(Cat(alloc_k[:pt_bits], adm_ctx)),
                             pt_wr.data.eq(pages.pop_page)]
                def after_alloc():
                    with m.If(adm_icd):
                        m.d.sync += state[adm_ctx].eq(_State.READY)
                        m.next = "COPY"
                    with m.Elif(adm_in):
                        m.d.sync += state[adm_ctx].eq(_State.WAIT_RD)
                        m.next = "RDMA"
                    with m.Else():
                        m.d.sync += state[adm_ctx].eq(_State.READY)
                        m.next = "QUEUE"
                with m.If(alloc_k == alloc_n):
                    after_alloc()           # no page (in-capsule data of zero bytes)
                with m.Elif(~pages.push_en):
                    m.d.comb += [pages.pop_en.eq(1), pt_wr.en.eq(1)]
                    m.d.sync += alloc_k.eq(alloc_k + 1)
                    with m.If(alloc_k + 1 == alloc_n):
                        after_alloc()
            with m.State("COPY"):
                beat = self.i_data.payload
                m.d.comb += [
                    stg_adm.valid.eq(self.i_data.valid),
                    stg_adm.payload.ctx.eq(adm_ctx), stg_adm.payload.n.eq(copy_n),
                    stg_adm.payload.data.eq(beat.data),
                    stg_adm.payload.keep.eq(beat.keep),
                    self.i_data.ready.eq(stg_adm.ready),
                ]
                with m.If(self.i_data.valid & stg_adm.ready):
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
                    m.next = "IDLE"
            with m.State("QUEUE"):
                with m.If(push_free):
                    m.d.sync += [push_v.eq(1), push_ctx.eq(adm_ctx)]
                    m.next = "IDLE"
            with m.State("INTERNAL"):
                m.d.comb += [fin_adm_w.valid.eq(1), fin_adm_w.payload.kind.eq(_Kind.INTERNAL),
                             fin_adm_w.payload.ctx.eq(adm_ctx)]
                with m.If(fin_adm_w.ready):
                    m.next = "IDLE"

        # --- RDMA READ data into the context's pages -------------------------------------------
        rd = self.i_rdma_rd.payload
        rd_ctx = rd.tag[:cbits]
        rd_count = Signal(beat_w)
        rd_ok = ((rd.tag < N) & (state[rd_ctx] == _State.WAIT_RD)
                 & (rd_count < c_beats.read(rd_ctx)))
        m.d.comb += [
            stg_rdm.valid.eq(self.i_rdma_rd.valid & rd_ok),
            stg_rdm.payload.ctx.eq(rd_ctx), stg_rdm.payload.n.eq(rd_count),
            stg_rdm.payload.data.eq(rd.data),
            stg_rdm.payload.keep.eq(rd.keep),
            self.i_rdma_rd.ready.eq(Mux(rd_ok, stg_rdm.ready, 1)),   # stray data is dropped
        ]
        with m.If(self.i_rdma_rd.valid & self.i_rdma_rd.ready):
            m.d.sync += rd_count.eq(Mux(rd.last, 0, rd_count + 1))

        # --- DSM range check: each range of the list as it enters staging ---------------------
        # (docs/engine.md section 3): stage 0 taps the beat written (in-capsule data or RDMA
        # READ data: the staging write merge takes one a cycle), stage 1 holds its ranges in
        # registers, stage 2 compares SLBA + length with nsze and marks the context; submission
        # answers a marked context LBA Out of Range, and waits while stage 1 holds its beat
        lanes = max(1, W // 128)        # ranges a beat carries (at 64 bits: one in two beats)
        t_fire, t_ctx, t_beat, t_data = Signal(), Signal(cbits), Signal(beat_w), Signal(W)
        t_chk = Signal(_DsmCheck)
        t_adm = Signal()                # the beat is in-capsule data (else RDMA READ data)
        with m.If(stg_adm.valid & stg_adm.ready):
            m.d.comb += [t_fire.eq(adm_cmd.opcode == Opcode.DSM.value), t_ctx.eq(adm_ctx),
                         t_beat.eq(copy_n), t_data.eq(stg_adm.payload.data), t_adm.eq(1),
                         t_chk.nr.eq(adm_cmd.cdw.dsm.nr), t_chk.nsze.eq(adm_cmd.nsze)]
        with m.Elif(stg_rdm.valid & stg_rdm.ready):
            m.d.comb += [t_chk.eq(c_dsm.read(rd_ctx)), t_fire.eq(t_chk.on), t_ctx.eq(rd_ctx),
                         t_beat.eq(rd_count), t_data.eq(stg_rdm.payload.data)]
        ck_v, ck_ctx, ck_nsze = Signal(), Signal(cbits), Signal(64)
        ck_en = Signal(lanes)
        ck_slba = [Signal(64, name=f"ck_slba{j}") for j in range(lanes)]
        ck_len = [Signal(32, name=f"ck_len{j}") for j in range(lanes)]
        m.d.sync += [ck_v.eq(t_fire), ck_ctx.eq(t_ctx), ck_nsze.eq(t_chk.nsze)]
        if W == 64:
            # a range's attributes and length in an even beat, its SLBA in the next one; each
            # source keeps its own half (their beats may alternate)
            half = [Signal(32, name="ck_half_adm"), Signal(32, name="ck_half_rdm")]
            with m.If(t_fire & ~t_beat[0]):
                with m.If(t_adm):
                    m.d.sync += half[0].eq(t_data[32:64])
                with m.Else():
                    m.d.sync += half[1].eq(t_data[32:64])
            m.d.sync += [ck_en.eq(t_beat[0] & ((t_beat >> 1) <= t_chk.nr)),
                         ck_slba[0].eq(t_data), ck_len[0].eq(Mux(t_adm, half[0], half[1]))]
        else:
            for j in range(lanes):
                lane = t_data[128 * j:128 * (j + 1)]
                m.d.sync += [ck_en[j].eq(t_beat * lanes + j <= t_chk.nr),
                             ck_slba[j].eq(lane[64:]), ck_len[j].eq(lane[32:64])]
        past = Cat(*(ck_en[j] & (ck_slba[j] + ck_len[j] > ck_nsze) for j in range(lanes)))
        dsm_set = Signal(N)
        with m.If(ck_v & past.any()):
            m.d.comb += dsm_set.eq(1 << ck_ctx)
        m.d.sync += dsm_bad.eq((dsm_bad | dsm_set) & ~dsm_clr)

        # --- RDMA status dispatcher ----------------------------------------------------------
        sts = self.i_rdma_sts.payload
        s_ctx = sts.tag[:cbits]
        s_state = state[s_ctx]
        s_known = (sts.tag < N) & ((s_state == _State.WAIT_RD) | (s_state == _State.WAIT_WR))
        with m.If(self.i_rdma_sts.valid & s_known):
            with m.If((s_state == _State.WAIT_RD) & (sts.status == 0)):
                m.d.comb += [submit_sts.valid.eq(1), submit_sts.payload.eq(s_ctx),
                             self.i_rdma_sts.ready.eq(submit_sts.ready)]
                with m.If(submit_sts.ready):
                    m.d.sync += state[s_ctx].eq(_State.READY)
            with m.Else():
                m.d.comb += [
                    fin_sts_w.valid.eq(1), fin_sts_w.payload.ctx.eq(s_ctx),
                    fin_sts_w.payload.kind.eq(Mux(s_state == _State.WAIT_RD, _Kind.RD_ERR,
                                                  Mux(sts.status == 0, _Kind.WR_OK,
                                                      _Kind.WR_ERR))),
                    self.i_rdma_sts.ready.eq(fin_sts_w.ready),
                ]
                with m.If(fin_sts_w.ready):
                    m.d.sync += state[s_ctx].eq(_State.RETIRING)
        with m.Else():
            m.d.comb += self.i_rdma_sts.ready.eq(1)      # a status for no descriptor: dropped

        # --- submission ------------------------------------------------------------------------
        sub_ctx = Signal(cbits)
        m.d.comb += [cm_sub.addr.eq(Mux(submit_r.valid & submit_r.ready, submit_r.payload,
                                        Mux(bypass, push_ctx, sub_ctx))),
                     cm_sub.en.eq(1)]
        scmd = cm_sub.data
        npages = Signal(14)
        m.d.comb += [npages.eq((scmd.nbytes + PAGE - 1) >> 12),
                     queues.pick_mask.eq(scmd.queues[:p.backend_queues])]
        # the page table read of submission: page 0 (PICK, kept for PRP1), the list page
        # (LIST, kept), page k (PRP: list entry k), page 1 (SQE: PRP2 of two pages)
        sub_k = Signal(pt_bits + 1)
        sub_page = page_of(sub_ctx, sub_k)
        prp1_page, list_page = Signal(pg_bits), Signal(pg_bits)

        def bus(page):
            """The bus address of a staging page."""
            return p.staging_base + (page << PAGE_SHIFT)
        prp_k = Signal(14)            # next PRP list entry: page index 1 .. npages-1
        ns_rr = Array(Signal(8, name=f"ns_rr{i}") for i in range(p.namespaces))
        m.d.comb += queues.pick_from.eq(ns_rr[scmd.slot])
        per_beat = B // 8
        sub_queue = Signal(8)
        refusal = Signal(15)          # the status FAIL answers
        sub_fence = Signal(16)        # the SQE waits for the writes issued before it
        sub_written = Signal()        # ... and once they are, offers it until taken (a
        # later wrap of the 16-bit counts must not take ``valid`` back)
        sqe_ok = sub_written | written(sub_fence)
        with m.FSM(name="submit"):
            with m.State("IDLE"):
                m.d.comb += [submit_r.ready.eq(1), sub_idle.eq(1)]
                with m.If(submit_r.valid):
                    m.d.sync += sub_ctx.eq(submit_r.payload)
                    m.next = "PICK"
                with m.Elif(push_v):
                    m.d.sync += sub_ctx.eq(push_ctx)
                    m.next = "PICK"
            with m.State("PICK"):
                m.d.comb += sub_k.eq(0)
                m.d.sync += prp1_page.eq(sub_page)
                with m.If(ck_v & (ck_ctx == sub_ctx)):
                    pass                # its last range is still being checked
                with m.Elif(queues.pick_ok & dsm_bad.bit_select(sub_ctx, 1)):
                    m.d.sync += refusal.eq(_engine_status(NvmeStatus.LBA_OUT_OF_RANGE))
                    m.next = "FAIL"
                with m.Elif(queues.pick_ok):
                    m.d.sync += [sub_queue.eq(queues.pick_q), prp_k.eq(1)]
                    with m.If(npages > 2):
                        m.next = "LIST"
                    with m.Else():
                        # a Write's data is all issued (READY comes after its last beat);
                        # other commands wait for no write
                        m.d.sync += sub_fence.eq(Mux(
                            (scmd.opcode == Opcode.WRITE.value)
                            | (scmd.opcode == Opcode.DSM.value), wr_next, self.stg_done))
                        m.next = "SQE"
                with m.Elif(~queues.alive):
                    m.d.sync += refusal.eq(_engine_status(NvmeStatus.NS_NOT_READY))
                    m.next = "FAIL"
            with m.State("LIST"):
                # the list page follows the data pages in the table
                m.d.comb += sub_k.eq(npages)
                m.d.sync += list_page.eq(sub_page)
                m.next = "PRP"
            with m.State("PRP"):
                # one entry a cycle: the page of entry k in its 8-byte lane of the beat
                entry = Signal(64)
                lane = (prp_k - 1)[:max(1, (per_beat - 1).bit_length())] if per_beat > 1 else 0
                m.d.comb += [sub_k.eq(prp_k), entry.eq(bus(sub_page))]
                m.d.comb += [
                    stg_prp.valid.eq(1),
                    stg_prp.payload.direct.eq(1),
                    stg_prp.payload.offset.eq(
                        Cat(C(0, beat_shift), ((prp_k - 1) >> (beat_shift - 3))[:pb_bits],
                            list_page)),
                    stg_prp.payload.data.eq(entry.replicate(per_beat)),
                    stg_prp.payload.keep.eq((C(0xFF, B) << (lane << 3))[:B] if per_beat > 1
                                            else C(0xFF, B)),
                ]
                with m.If(stg_prp.ready):
                    m.d.sync += prp_k.eq(prp_k + 1)
                    with m.If(prp_k + 1 == npages):
                        m.d.sync += sub_fence.eq(wr_next)
                        m.next = "SQE"
            with m.State("SQE"):
                req = self.o_sqe.payload
                m.d.comb += [
                    self.o_sqe.valid.eq(sqe_ok),
                    req.queue.eq(sub_queue),
                    req.sqe.opcode.eq(scmd.opcode),
                    req.sqe.cid.eq(Cat(sub_ctx, gen.read(sub_ctx))),
                    req.sqe.nsid.eq(scmd.backend_nsid),
                    req.sqe.cdw.eq(scmd.cdw),
                ]
                m.d.comb += sub_k.eq(1)
                with m.If(scmd.nbytes != 0):
                    m.d.comb += req.sqe.dptr.prp.prp1.eq(bus(prp1_page))
                    with m.If(npages == 2):
                        m.d.comb += req.sqe.dptr.prp.prp2.eq(bus(sub_page))
                    with m.Elif(npages > 2):
                        m.d.comb += req.sqe.dptr.prp.prp2.eq(bus(list_page))
                m.d.sync += sub_written.eq(sqe_ok)
                with m.If(self.o_sqe.valid & self.o_sqe.ready):
                    m.d.sync += sub_written.eq(0)
                    m.d.comb += [queues.submit_en.eq(1), queues.submit_q.eq(sub_queue)]
                    m.d.sync += [state[sub_ctx].eq(_State.SUBMITTED),
                                 ns_rr[scmd.slot].eq(sub_queue + 1)]
                    c_queue.write(sub_ctx, sub_queue)
                    c_start.write(sub_ctx, now)
                    m.next = "IDLE"
            with m.State("FAIL"):
                m.d.comb += [fin_sub_w.valid.eq(1), fin_sub_w.payload.kind.eq(_Kind.REFUSED),
                             fin_sub_w.payload.ctx.eq(sub_ctx),
                             fin_sub_w.payload.status.eq(refusal)]
                with m.If(fin_sub_w.ready):
                    m.d.sync += state[sub_ctx].eq(_State.RETIRING)
                    m.next = "IDLE"

        # --- queue failures: SQ writer or CQ handler errors ------------------------------------
        fail_q = Signal(8)
        fail = Signal()
        with m.If(self.i_sq_done.valid & ~self.i_sq_done.payload.ok):
            m.d.comb += [fail.eq(1), fail_q.eq(self.i_sq_done.payload.queue)]
        with m.Elif(self.i_cq_error.valid):
            m.d.comb += [fail.eq(1), fail_q.eq(self.i_cq_error.payload.queue)]
        m.d.comb += [queues.fail_en.eq(fail & ev_q_w.ready), queues.fail_q.eq(fail_q),
                     ev_q_w.valid.eq(queues.fail_new),
                     ev_q_w.payload.kind.eq(EventType.NVME_PCI_ERR),
                     ev_q_w.payload.object.eq(fail_q),
                     self.i_sq_done.ready.eq(self.i_sq_done.payload.ok | ev_q_w.ready),
                     self.i_cq_error.ready.eq(~(self.i_sq_done.valid
                                                & ~self.i_sq_done.payload.ok)
                                              & ev_q_w.ready)]

        # --- completions ------------------------------------------------------------------------
        cq = self.i_cqe.payload
        cid = cq.cqe.cid
        q_ctx = cid[:cbits]
        q_state = state[q_ctx]
        q_match = ((q_ctx < N) & (cid[cbits:] == gen.read(q_ctx))
                   & (c_queue.read(q_ctx) == cq.queue))
        q_live = q_match & (q_state == _State.SUBMITTED)
        q_zombie = q_match & (q_state == _State.ZOMBIE)
        q_pending_timeout = q_match & (q_state == _State.TIMED_OUT)
        cqe_taken = Signal()
        with m.If(self.i_cqe.valid & (q_live | q_zombie)):
            m.d.comb += [fin_cqe_w.valid.eq(1), fin_cqe_w.payload.ctx.eq(q_ctx),
                         fin_cqe_w.payload.kind.eq(Mux(q_live, _Kind.CQE, _Kind.ZOMBIE)),
                         fin_cqe_w.payload.status.eq(cq.cqe.status.as_value()[1:]),
                         fin_cqe_w.payload.dw0.eq(cq.cqe.dw0),
                         self.i_cqe.ready.eq(fin_cqe_w.ready), cqe_taken.eq(fin_cqe_w.ready)]
            with m.If(fin_cqe_w.ready):
                m.d.sync += state[q_ctx].eq(_State.RETIRING)
        with m.Else():
            m.d.comb += [self.i_cqe.ready.eq(1), cqe_taken.eq(self.i_cqe.valid)]
            with m.If(self.i_cqe.valid & q_pending_timeout):
                m.d.sync += c_late[q_ctx].eq(1)
        m.d.comb += [queues.cqe_en.eq(cqe_taken & (cq.queue < p.backend_queues)),
                     queues.cqe_owned.eq(q_live | q_zombie | q_pending_timeout),
                     queues.cqe_q.eq(cq.queue), queues.cqe_sqhd.eq(cq.cqe.sqhd)]

        # --- timeout scanner -------------------------------------------------------------------
        # two stages: the first reads context ``scan`` (queue, submission time, the queue's
        # timeout and failure) into a verdict register, the second gives up the context if
        # it is still submitted (the same submission: only submission writes the time, and
        # it comes from another state) and no CQE for it arrives in that cycle
        # A zombie (given up, waiting for its late CQE) is reclaimed for good once twice the
        # timeout has passed since its submission: released like a late CQE's, and its
        # queue counts a lost command (its CQ slot stays reserved).
        scan = Signal(cbits)
        m.d.comb += queues.look_q.eq(c_queue.read(scan))
        age = Signal(32)
        m.d.comb += age.eq(now - c_start.read(scan))
        timed = queues.look_timeout != 0
        expired = timed & (age > queues.look_timeout)
        abandoned = timed & (age > Cat(0, queues.look_timeout))
        chk_ctx, chk_hit, chk_failed = Signal(cbits), Signal(), Signal()
        chk_zombie, chk_q = Signal(), Signal(8)
        racing = self.i_cqe.valid & (q_ctx == chk_ctx)
        chk_state = Mux(chk_zombie, _State.ZOMBIE, _State.SUBMITTED)
        give_up = chk_hit & (state[chk_ctx] == chk_state) & ~racing
        with m.If(give_up):
            m.d.comb += [fin_scan_w.valid.eq(1), fin_scan_w.payload.ctx.eq(chk_ctx),
                         fin_scan_w.payload.kind.eq(Mux(chk_zombie, _Kind.ZOMBIE,
                                                        _Kind.TIMEOUT)),
                         fin_scan_w.payload.failed.eq(chk_failed & ~chk_zombie)]
            with m.If(fin_scan_w.ready):
                m.d.sync += state[chk_ctx].eq(Mux(chk_zombie, _State.RETIRING,
                                                  _State.TIMED_OUT))
                # the queue counts the command lost in this same cycle: a CQE for it from
                # now on no longer matches the context, and gives the CQ slot back
                m.d.comb += [queues.lose_en.eq(chk_zombie), queues.lose_q.eq(chk_q)]
        with m.If(~give_up | fin_scan_w.ready):
            m.d.sync += [chk_ctx.eq(scan), scan.eq(scan + 1),
                         chk_hit.eq(((state[scan] == _State.SUBMITTED)
                                     & (expired | queues.look_failed))
                                    | ((state[scan] == _State.ZOMBIE) & abandoned)),
                         chk_zombie.eq(state[scan] == _State.ZOMBIE),
                         chk_q.eq(queues.look_q),
                         chk_failed.eq(queues.look_failed)]

        # --- retirement ------------------------------------------------------------------------
        job = Signal(_Finish)
        m.d.comb += [cm_ret.addr.eq(Mux(fin.valid & fin.ready, fin.payload.ctx, job.ctx)),
                     cm_ret.en.eq(1)]
        rcmd = cm_ret.data
        rctx = job.ctx[:cbits]
        r_beats = c_beats.read(rctx)
        r_stg = c_stg.read(rctx)
        status = Signal(15)           # {DNR, M, CRD, SCT, SC}: the status field without P
        is_read = rcmd.opcode == Opcode.READ.value
        nblocks = Signal(17)
        m.d.comb += nblocks.eq(rcmd.cdw.rw.nlb + 1)

        resp = self.o_resp.payload
        m.d.comb += [
            resp.cqe.sqhd.eq(rcmd.sqhd), resp.cqe.sqid.eq(rcmd.sqid), resp.cqe.cid.eq(rcmd.cid),
            resp.cqe.status.as_value()[1:].eq(status),
            resp.qpn.eq(rcmd.qpn), resp.invalidate.eq(rcmd.sgl_invalidate),
            resp.rkey.eq(Mux(rcmd.sgl_invalidate, rcmd.sgl_key, 0)),
        ]
        wr_keep = Signal(B)
        tail_bytes = Signal(beat_shift + 1)
        m.d.comb += tail_bytes.eq(Mux(rcmd.nbytes[:beat_shift] == 0, B,
                                      rcmd.nbytes[:beat_shift]))

        # a Read's data out: retirement queues (context, descriptor fields, beats); the
        # mover issues the RDMA WRITE descriptor and a staging read per page, and streams
        # the packet, while the next packet's descriptor and reads are issued
        mv_layout = data.StructLayout({
            "ctx": cbits, "qpn": len(rcmd.qpn), "addr": 64, "rkey": 32, "length": 32,
            "beats": beat_w, "tail": beat_shift + 1})
        mov_w, mov_r = _fifo_stream(m, "mover_q", mv_layout, 4)
        m.d.comb += [
            mov_w.payload.ctx.eq(rctx), mov_w.payload.qpn.eq(rcmd.qpn),
            mov_w.payload.addr.eq(rcmd.sgl_address), mov_w.payload.rkey.eq(rcmd.sgl_key),
            mov_w.payload.length.eq(rcmd.nbytes),
            mov_w.payload.beats.eq(r_beats), mov_w.payload.tail.eq(tail_bytes),
        ]
        strm_layout = data.StructLayout({"ctx": cbits, "beats": beat_w, "tail": beat_shift + 1})
        strm_w, strm_r = _fifo_stream(m, "stream_q", strm_layout, 2)
        mv = mov_r.payload
        desc_done = Signal()           # the head's descriptor was taken
        mv_pg = Signal(pt_bits)        # the head's next page to read
        mv_left = Signal(beat_w + 1)
        m.d.comb += mv_left.eq(mv.beats - (mv_pg << pb_bits))
        mv_last = mv_left <= page_beats
        first_rd = mv_pg == 0          # the packet's first read also queues the packet
        m.d.comb += [
            rdma_ret.valid.eq(mov_r.valid & ~desc_done),
            rdma_ret.payload.op.eq(RdmaOp.WRITE),
            rdma_ret.payload.qpn.eq(mv.qpn),
            rdma_ret.payload.addr.eq(mv.addr),
            rdma_ret.payload.rkey.eq(mv.rkey),
            rdma_ret.payload.length.eq(mv.length),
            rdma_ret.payload.tag.eq(mv.ctx),
            self.o_stg_rd.valid.eq(mov_r.valid & desc_done & (~first_rd | strm_w.ready)),
            self.o_stg_rd.payload.offset.eq(Cat(C(0, PAGE_SHIFT), page_of(mv.ctx, mv_pg))),
            self.o_stg_rd.payload.beats.eq(Mux(mv_last, mv_left, page_beats)),
            strm_w.payload.ctx.eq(mv.ctx), strm_w.payload.beats.eq(mv.beats),
            strm_w.payload.tail.eq(mv.tail),
            strm_w.valid.eq(mov_r.valid & desc_done & first_rd & self.o_stg_rd.ready),
            mov_r.ready.eq(desc_done & self.o_stg_rd.ready & mv_last
                           & (~first_rd | strm_w.ready)),
        ]
        with m.If(rdma_ret.valid & rdma_ret.ready):
            m.d.sync += desc_done.eq(1)
        with m.If(self.o_stg_rd.valid & self.o_stg_rd.ready):
            m.d.sync += mv_pg.eq(Mux(mv_last, 0, mv_pg + 1))
        with m.If(mov_r.valid & mov_r.ready):
            m.d.sync += desc_done.eq(0)
        # the streamer: staging read data to m_axis_rdma_wr, one packet per queued read
        sent = Signal(beat_w)
        hd = strm_r.payload
        beat = self.i_stg_rd.payload
        last = sent + 1 == hd.beats
        m.d.comb += [
            wr_keep.eq(Mux(last, Cat(*(hd.tail > i for i in range(B))), (1 << B) - 1)),
            self.o_rdma_wr.valid.eq(strm_r.valid & self.i_stg_rd.valid),
            self.o_rdma_wr.payload.data.eq(beat.data),
            self.o_rdma_wr.payload.keep.eq(wr_keep),
            self.o_rdma_wr.payload.last.eq(last),
            self.o_rdma_wr.payload.tag.eq(hd.ctx),
            self.i_stg_rd.ready.eq(strm_r.valid & self.o_rdma_wr.ready),
            strm_r.ready.eq(self.i_stg_rd.valid & self.o_rdma_wr.ready & last),
        ]
        with m.If(strm_r.valid & self.i_stg_rd.valid & self.o_rdma_wr.ready):
            m.d.sync += sent.eq(Mux(last, 0, sent + 1))

        with m.FSM(name="retire"):
            with m.State("IDLE"):
                m.d.comb += fin.ready.eq(1)
                with m.If(fin.valid):
                    m.d.sync += job.eq(fin.payload)
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.Switch(job.kind):
                    with m.Case(_Kind.CQE):
                        m.d.sync += status.eq(job.status)
                        with m.If((job.status == 0) & is_read & (rcmd.nbytes != 0)):
                            # the data goes out through the mover; the response waits for
                            # the RDMA WRITE's status (WR_OK)
                            m.d.comb += mov_w.valid.eq(1)
                            with m.If(mov_w.ready):
                                m.d.sync += state[rctx].eq(_State.WAIT_WR)
                                c_dw0.write(rctx, job.dw0)
                                m.next = "IDLE"
                        with m.Else():
                            m.next = "RESPOND"
                    with m.Case(_Kind.WR_OK):
                        m.d.sync += status.eq(0)
                        m.next = "RESPOND"
                    with m.Case(_Kind.RD_ERR):
                        m.d.sync += status.eq(_engine_status(NvmeStatus.DATA_TRANSFER_ERROR))
                        m.next = "EVENT_FATAL"
                    with m.Case(_Kind.WR_ERR):
                        m.next = "QP_ERROR"
                    with m.Case(_Kind.TIMEOUT):
                        m.d.sync += status.eq(_engine_status(NvmeStatus.INTERNAL_ERROR))
                        with m.If(job.failed):
                            m.next = "RESPOND"
                        with m.Else():
                            m.next = "EVENT_TIMEOUT"
                    with m.Case(_Kind.ZOMBIE):
                        m.next = "FREE"
                    with m.Case(_Kind.INTERNAL):
                        m.d.sync += status.eq(_engine_status(NvmeStatus.INTERNAL_ERROR))
                        m.next = "RESPOND"
                    with m.Case(_Kind.REFUSED):
                        m.d.sync += status.eq(job.status)
                        m.next = "RESPOND"
            with m.State("EVENT_FATAL"):
                m.d.comb += [ev_ret.valid.eq(1), ev_ret.payload.kind.eq(EventType.QP_FATAL),
                             ev_ret.payload.object.eq(rcmd.qpn)]
                with m.If(ev_ret.ready):
                    m.next = "QP_FAIL_RD"
            with m.State("QP_FAIL_RD"):
                # the failed RDMA READ puts the QP in error (later capsules are discarded)
                m.d.comb += [self.o_qp_fail.valid.eq(1), self.o_qp_fail.payload.qpn.eq(rcmd.qpn)]
                with m.If(self.o_qp_fail.ready):
                    m.next = "RESPOND"
            with m.State("EVENT_TIMEOUT"):
                m.d.comb += [ev_ret.valid.eq(1), ev_ret.payload.kind.eq(EventType.NVME_TIMEOUT),
                             ev_ret.payload.object.eq(c_queue.read(rctx))]
                with m.If(ev_ret.ready):
                    m.next = "RESPOND"
            with m.State("QP_ERROR"):
                m.d.comb += [self.o_qp_error.valid.eq(1),
                             self.o_qp_error.payload.qpn.eq(rcmd.qpn),
                             self.o_qp_error.payload.reason.eq(Reason.RDMA_ERROR)]
                with m.If(self.o_qp_error.ready):
                    m.next = "QP_ERROR_EVENT"
            with m.State("QP_ERROR_EVENT"):
                m.d.comb += [ev_ret.valid.eq(1), ev_ret.payload.kind.eq(EventType.QP_FATAL),
                             ev_ret.payload.object.eq(rcmd.qpn)]
                with m.If(ev_ret.ready):
                    m.next = "QP_FAIL_WR"
            with m.State("QP_FAIL_WR"):
                m.d.comb += [self.o_qp_fail.valid.eq(1), self.o_qp_fail.payload.qpn.eq(rcmd.qpn)]
                with m.If(self.o_qp_fail.ready):
                    m.next = "FREE"
            with m.State("RESPOND"):
                # the response, the counters' record and the context's release in one cycle;
                # the next job is taken in the same cycle
                m.d.comb += resp.cqe.dw0.eq(Mux(job.kind == _Kind.WR_OK, c_dw0.read(rctx),
                                                job.dw0))
                m.d.comb += self.o_resp.valid.eq(cnt_w.ready & ~filling)
                with m.If(self.o_resp.ready & cnt_w.ready & ~filling):
                    m.d.comb += [cnt_w.valid.eq(1), release_now.eq(1)]
                    m.d.comb += fin.ready.eq(1)
                    with m.If(fin.valid):
                        m.d.sync += job.eq(fin.payload)
                        m.next = "DECIDE"
                    with m.Else():
                        m.next = "IDLE"
            with m.State("FREE"):
                # no response (a late CQE, a failed RDMA WRITE): release only
                with m.If(~filling):
                    m.d.comb += release_now.eq(1)
                    m.next = "IDLE"

        # release of the retiring context (RESPOND or FREE): kept as a zombie when given up
        # before its CQE came, else to the reclaimer, which gives its pages back one a cycle
        # and then returns the context to the free list (a context is never reused before
        # its page table has been read back)
        keep = (job.kind == _Kind.TIMEOUT) & ~job.failed & ~c_late[rctx]
        rec_layout = data.StructLayout({"ctx": cbits, "ss": 8, "pages": pt_bits + 1,
                                        "zombie": 1, "fence": 16 if external else 1})
        rec_w, rec_r = _fifo_stream(m, "reclaim_q", rec_layout, N, fall_through=True)
        m.d.comb += [rec_w.payload.ctx.eq(rctx), rec_w.payload.ss.eq(r_stg.ss),
                     rec_w.payload.pages.eq(r_stg.pages),
                     rec_w.payload.zombie.eq(job.kind == _Kind.ZOMBIE),
                     rec_w.payload.fence.eq(wr_next)]
        # (a context without pages goes back at once, as before there were pages)
        direct = Signal()
        release_zombie = Signal()       # the context released is a zombie's
        with m.If(release_now):
            with m.If(keep):
                m.d.comb += to_zombie.eq(1)
                m.d.sync += state[rctx].eq(_State.ZOMBIE)
            with m.Else():
                m.d.sync += state[rctx].eq(_State.FREE)
                with m.If(r_stg.pages == 0):
                    m.d.comb += [direct.eq(1), release_en.eq(1), release_ctx.eq(rctx),
                                 release_zombie.eq(job.kind == _Kind.ZOMBIE)]
                with m.Else():
                    m.d.comb += rec_w.valid.eq(1)  # room: each context is in it at most once
        rc_k = Signal(pt_bits + 1)
        rc = rec_r.payload
        m.d.comb += [pages.push_ss.eq(rc.ss), pages.push_page.eq(page_of(rc.ctx, rc_k))]
        with m.If(rec_r.valid & ~filling & written(rc.fence)):
            with m.If(rc_k != rc.pages):
                m.d.comb += pages.push_en.eq(1)
                m.d.sync += rc_k.eq(rc_k + 1)
            with m.Elif(~direct):
                m.d.comb += [release_en.eq(1), release_ctx.eq(rc.ctx), rec_r.ready.eq(1),
                             release_zombie.eq(rc.zombie)]
                m.d.sync += rc_k.eq(0)

        # the command fence: outcomes of served commands, per epoch
        outcome = release_now & (job.kind != _Kind.ZOMBIE)
        for e in range(2):
            done = Signal(16, name=f"fence_out{e}")
            with m.If(outcome & (rcmd.epoch == e)):
                m.d.sync += done.eq(done + 1)
            m.d.comb += self.fence_out[16 * e:16 * (e + 1)].eq(done)

        # --- namespace counters: up to three increments a response, from a FIFO ----------------
        executed = (job.kind == _Kind.CQE) | (job.kind == _Kind.WR_OK)
        kind_field = Signal(4)
        with m.Switch(rcmd.opcode):
            with m.Case(Opcode.READ.value):
                m.d.comb += kind_field.eq(_COUNTER["read_cmds"])
            with m.Case(Opcode.WRITE.value):
                m.d.comb += kind_field.eq(_COUNTER["write_cmds"])
            with m.Case(Opcode.FLUSH.value):
                m.d.comb += kind_field.eq(_COUNTER["flushes"])
            with m.Case(Opcode.WRITE_ZEROES.value):
                m.d.comb += kind_field.eq(_COUNTER["write_zeroes"])
            with m.Default():
                m.d.comb += kind_field.eq(_COUNTER["dsm"])
        rw = (rcmd.opcode == Opcode.READ.value) | (rcmd.opcode == Opcode.WRITE.value)
        backend_error = executed & (status != 0)
        icd_write = executed & (status == 0) & rcmd.icd & (rcmd.opcode == Opcode.WRITE.value)
        rec = cnt_w.payload
        m.d.comb += [
            rec.index.eq(rcmd.slot),
            rec.first.eq(Mux(executed, kind_field, _COUNTER["errors"])),
            rec.blocks_en.eq(executed & rw & (status == 0)),
            rec.blocks_field.eq(Mux(is_read, _COUNTER["read_blocks"], _COUNTER["write_blocks"])),
            rec.blocks.eq(nblocks),
            rec.third_en.eq(backend_error | icd_write),
            rec.third.eq(Mux(backend_error, _COUNTER["backend_errors"], _COUNTER["icd_writes"])),
        ]
        crec = cnt_r.payload
        step = Signal(2)              # 0: the command's kind, 1: blocks, 2: errors / ICD writes
        count = self.o_ns_count.payload
        m.d.comb += count.index.eq(crec.index)
        with m.Switch(step):
            with m.Case(0):
                m.d.comb += [count.field.eq(crec.first), count.amount.eq(1),
                             self.o_ns_count.valid.eq(cnt_r.valid)]
            with m.Case(1):
                m.d.comb += [count.field.eq(crec.blocks_field), count.amount.eq(crec.blocks),
                             self.o_ns_count.valid.eq(cnt_r.valid & crec.blocks_en)]
            with m.Default():
                m.d.comb += [count.field.eq(crec.third), count.amount.eq(1),
                             self.o_ns_count.valid.eq(cnt_r.valid & crec.third_en)]
        more_b = crec.blocks_en
        more_c = crec.third_en
        done_step = cnt_r.valid & (self.o_ns_count.ready | ~self.o_ns_count.valid)
        with m.If(done_step):
            with m.If((step == 0) & (more_b | more_c)):
                m.d.sync += step.eq(Mux(more_b, 1, 2))
            with m.Elif((step == 1) & more_c):
                m.d.sync += step.eq(2)
            with m.Else():
                m.d.comb += cnt_r.ready.eq(1)
                m.d.sync += step.eq(0)

        # --- resource use (debug registers USE_*) ----------------------------------------------
        live, zombies, zombie_pages = Signal(16), Signal(16), Signal(16)
        admitted = free.r_en & ~filling
        freed_zombie = release_en & release_zombie
        m.d.sync += [
            live.eq(live + admitted - (release_en & ~freed_zombie) - to_zombie),
            zombies.eq(zombies + to_zombie - freed_zombie),
            zombie_pages.eq(zombie_pages + Mux(to_zombie, r_stg.pages, 0)
                            - Mux(pages.push_en & rc.zombie, 1, 0)),
        ]
        m.d.comb += [self.use_live.eq(live), self.use_zombies.eq(zombies),
                     self.use_pages.eq(pages.taken), self.use_zombie_pages.eq(zombie_pages),
                     self.queues_busy.eq(queues.busy)]
        return m
