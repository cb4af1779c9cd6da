"""The back end's top: its ports, and the units it builds (``rtl/backend/``)."""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..counters import CountRequest
from ..formats import (
    BackendCommand,
    BackendQueueEntry,
    CqCompletion,
    EngineResponse,
    Event,
    ExcSideband,
    RdmaCommand,
    RdmaStatus,
    SqDone,
    SqRequest,
    StagingRead,
    StagingWrite,
    StreamBeat,
    SubsystemEntry,
)
from ..pages import PAGE_SHIFT, PageAllocator
from ..params import EngineParams
from . import (
    admission,
    completion,
    context_store,
    counters,
    data_out,
    dsm_check,
    fence,
    queue_failures,
    rdma_read,
    reclaim,
    resources,
    retirement,
    status,
    streamer,
    submission,
    timeout_scan,
)
from .common import (
    RdmaBeat,
    Wires,
    max_command_pages,
)
from .queues import _Queues


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
        ``i_rdma_rd`` goes through a register slice (``ready`` from a flip-flop; a
        beat is used the cycle after its transfer); a status waits while that slice
        holds a packet's last beat, and is otherwise taken in the cycle it comes.
        WRITE data goes out as one packet per WRITE descriptor, in descriptor
        order; a descriptor may precede its packet by up to two others.
    o_stg_wr, o_stg_rd, i_stg_rd : the staging memory's internal ports. ``o_stg_wr``
        comes from a register slice (``valid``/``payload`` and the ``ready`` it answers
        are flip-flops): a beat leaves two cycles after its source (in-capsule data,
        RDMA READ data or a PRP list entry) hands it over, the second stage holding
        its offset from the page table. ``o_stg_rd`` comes from a register slice too
        (its offset read from the page table as the slice loads): a request leaves
        the cycle after the data-out mover issues it.
    stg_done : In(16)
        External staging only (``staging_mode = "external"``): beats of ``o_stg_wr``
        whose write the memory has acknowledged, modulo 2**16, in ``o_stg_wr`` order
        (:class:`rtl.staging_axi.StagingAxi` ``wr_done``). An SQE waits until its
        data and PRP list are acknowledged (the submission fence), and a retired
        context's pages go back only once every write issued before its retirement is
        (so that no late write lands in a page the SSD is filling for the next owner).
        On chip the back end counts a beat written when it leaves ``o_stg_wr``.
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

        u = Wires()
        u.give(B=B, N=N, W=W, beat_shift=beat_shift, beat_w=beat_w, cbits=cbits, gbits=gbits, p=p,
               page_beats=page_beats, pages=pages, pb_bits=pb_bits, pg_bits=pg_bits,
               pt_bits=pt_bits, queues=queues)
        context_store.build(m, self, u)
        admission.build(m, self, u)
        rdma_read.build(m, self, u)
        dsm_check.build(m, self, u)
        status.build(m, self, u)
        submission.build(m, self, u)
        queue_failures.build(m, self, u)
        completion.build(m, self, u)
        timeout_scan.build(m, self, u)
        retirement.build(m, self, u)
        data_out.build(m, self, u)
        streamer.build(m, self, u)
        retirement.build_retire_fsm(m, self, u)
        reclaim.build(m, self, u)
        fence.build(m, self, u)
        counters.build(m, self, u)
        resources.build(m, self, u)
        return m
