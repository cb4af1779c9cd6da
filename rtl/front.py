"""Command front end: per-QP state, namespace lookup and checks, routing.

Takes the parser's ``ParsedCommand`` stream and decides each capsule's
outcome as ``docs/engine.md`` section 2 says: discard on a QP in error,
hand-off to software, QP error with its event, a response with the engine's
own status, or a served command for the back end. It sends the parser the
read verdict for the capsule's stored bytes and routes the resulting data
packets (whole capsules to ``o_exc``, in-capsule data to ``o_backend_data``).

Pipeline: ``S1`` holds a command whose QP entry and QP state were read when
it was accepted; it starts the namespace lookup and moves into a small
in-flight FIFO. The lookup's answers are always taken (``ns_resp.ready`` is
constantly 1): S2 uses an answer the cycle it arrives, or it waits in a queue
as deep as the in-flight FIFO. ``S2`` pairs the FIFO head with its answer and
reads the subsystem entry (the FIFO's output register and S3's registers are
loaded in 64-bit parts, each under its own copy of S2's hand-shake); ``S3``
decides (and sets the QP's error flag); ``S4`` holds the decision in
registers and hands the outcome to every sink it needs, in one cycle, when
every sink has room (whether it needs it or not): the decision logic ends in
registers and drives no hand-shake or write enable.
"""

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .counters import CountRequest
from .formats import (
    QPN_WIDTH,
    Action,
    BackendCommand,
    EngineResponse,
    Event,
    EventType,
    ExcSideband,
    NsCounters,
    NsLookupRequest,
    NsLookupResponse,
    NsLookupStatus,
    NvmeStatus,
    OpBit,
    Opcode,
    ParsedCommand,
    QpEntry,
    ReadMode,
    Reason,
    StreamBeat,
    SubsystemEntry,
)
from .params import EngineParams
from .stream_util import PART_BITS, FlagFifo, ReplicatedEnable

__all__ = ["Front"]


class _QpState(data.Struct):
    sq_head: 16


#: commands between S1 and S2 (their namespace lookups in flight or answered)
_FLIGHT_DEPTH = 4

# what S3 decided for a command
_OUT_RESP, _OUT_SW, _OUT_QPERR, _OUT_SERVE, _OUT_DISCARD = range(5)

_NS_ERRORS = [name for name, _ in data.Layout.cast(NsCounters)].index("errors")


def ExcBeat(data_width):
    """A beat of a capsule for software, with its sideband."""
    return data.StructLayout({"data": data_width, "keep": data_width // 8, "last": 1,
                              "side": ExcSideband})


class Front(wiring.Component):
    """Parameters
    ----------
    params : EngineParams

    Interface attributes (one clock domain)
    ---------------------------------------
    i_cmd : In(stream.Signature(ParsedCommand))
        From the parser.
    i_data : In(stream.Signature(StreamBeat(DATA_W)))
        The parser's data packets, one per PASS or CUT verdict, in order.
    o_verdict : Out(stream.Signature(ReadMode))
        One per command, in order, back to the parser.
    qp_rd_addr, qp_rd_en, qp_rd_data : QP table read port (``QpEntry`` a cycle later).
    ss_rd_addr, ss_rd_en, ss_rd_data : subsystem table read port.
    ns_req, ns_resp : the control plane's namespace lookup. ``ns_resp.ready`` is
        constantly 1; ``ns_req.valid`` rises only when the in-flight FIFO has room.
    qp_cfg_valid, qp_cfg_qpn : In
        A QP entry was (re)written: its state (SQ head, error) resets.
    i_qp_fail : In(stream)
        The back end puts a QP in error (an RDMA transfer failed); accepted in
        any cycle without a configuration pulse.
    o_resp : Out(stream.Signature(EngineResponse))
        Responses the engine makes itself.
    o_exc : Out(stream.Signature(ExcBeat(DATA_W)))
        Capsules for software, whole, with QPN and reason on every beat.
    o_qp_error : Out(stream.Signature(ExcSideband))
        A QP goes to error (``reason``), or a capsule was discarded on a QP in error.
    o_event : Out(stream.Signature(Event))
    o_ns_count, o_subsystem_count : Out(stream.Signature(CountRequest(16)))
    o_backend : Out(stream.Signature(BackendCommand))
        Served commands, in order.
    o_backend_data : Out(stream.Signature(StreamBeat(DATA_W)))
        In-capsule data of served commands with ``icd``, in the same order.
    fence_epoch : In(1)
        The command fence's epoch (``FENCE.epoch``), sampled with each command's
        namespace lookup request and carried to the back end (``BackendCommand.epoch``).
    fence_in : Out(32)
        Per epoch (bits 15:0 epoch 0, 31:16 epoch 1), modulo 2**16: commands that sent
        their lookup request, less those S4 answered itself (every outcome but a served
        command). Registered: a request counts the cycle after it is taken, an answer
        the cycle after S4 hands it over. The back end's ``fence_out`` counts the served
        ones' outcomes; the difference is what ``FENCE.other`` shows.
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        W = params.data_width
        super().__init__({
            "i_cmd": In(stream.Signature(ParsedCommand)),
            "i_data": In(stream.Signature(StreamBeat(W))),
            "o_verdict": Out(stream.Signature(ReadMode)),
            "qp_rd_addr": Out(QPN_WIDTH), "qp_rd_en": Out(1), "qp_rd_data": In(QpEntry),
            "ss_rd_addr": Out(8), "ss_rd_en": Out(1), "ss_rd_data": In(SubsystemEntry),
            "ns_req": Out(stream.Signature(NsLookupRequest)),
            "ns_resp": In(stream.Signature(NsLookupResponse)),
            "qp_cfg_valid": In(1), "qp_cfg_qpn": In(QPN_WIDTH),
            "i_qp_fail": In(stream.Signature(data.StructLayout({"qpn": QPN_WIDTH}))),
            "o_resp": Out(stream.Signature(EngineResponse)),
            "o_exc": Out(stream.Signature(ExcBeat(W))),
            "o_qp_error": Out(stream.Signature(ExcSideband)),
            "o_event": Out(stream.Signature(Event)),
            "o_ns_count": Out(stream.Signature(CountRequest(16))),
            "o_subsystem_count": Out(stream.Signature(CountRequest(16))),
            "o_backend": Out(stream.Signature(BackendCommand)),
            "o_backend_data": Out(stream.Signature(StreamBeat(W))),
            "fence_epoch": In(1), "fence_in": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params

        # --- QP state: SQ head and error flag ---------------------------------------------------
        m.submodules.qp_state = state_mem = memory.Memory(shape=_QpState, depth=p.qp_count,
                                                          init=[])
        st_wr = state_mem.write_port()
        st_rd = state_mem.read_port(transparent_for=(st_wr,))

        # --- S1: one command, its QP entry and state (read when it was accepted) ---------------
        s1_valid = Signal()
        s1 = Signal(ParsedCommand)
        s1_in_range = Signal()
        # (a FlagFifo: SyncFIFOBuffered's timing, its output register in parts of
        # PART_BITS, each loaded under its own copies of the flags, so that S2's
        # hand-shake reaches a few part enables, not one 500-bit enable)
        flight = m.submodules.flight = FlagFifo(data.Layout.cast(_Flight).size, _FLIGHT_DEPTH)

        cfg = self.qp_cfg_valid
        # S1's lookup request waits only for the lookup and the in-flight FIFO (never for a
        # configuration pulse: ``ns_req`` keeps the stream rules); no command is taken
        # during a pulse, so the cycle after one in which S1 advanced, S1 is empty
        s1_advance = s1_valid & self.ns_req.ready & flight.w_rdy
        take = self.i_cmd.valid & (~s1_valid | s1_advance) & ~cfg
        m.d.comb += [
            self.i_cmd.ready.eq((~s1_valid | s1_advance) & ~cfg),
            self.qp_rd_addr.eq(self.i_cmd.payload.qpn),
            self.qp_rd_en.eq(take),
            st_rd.addr.eq(self.i_cmd.payload.qpn),
            st_rd.en.eq(take),
        ]
        with m.If(take):
            m.d.sync += [s1.eq(self.i_cmd.payload), s1_in_range.eq(
                self.i_cmd.payload.qpn < p.qp_count)]
        with m.If(take):
            m.d.sync += s1_valid.eq(1)
        with m.Elif(s1_advance):
            m.d.sync += s1_valid.eq(0)

        qp = self.qp_rd_data
        old = Signal(_QpState)
        m.d.comb += old.eq(Mux(s1_in_range, st_rd.data, 0))
        head_next = Signal(16)
        m.d.comb += head_next.eq(Mux((old.sq_head + 1)[:16] == qp.sqsize, 0, old.sq_head + 1))

        # QP state writes: S1's SQ head, else a configuration's reset. A pulse in a cycle S1
        # writes is applied the cycle after (S1 is empty then, and a take that cycle reads
        # the reset through the transparent read port); the reset after the head keeps the
        # order: the command in S1 was accepted before the QP was configured again.
        # Configuration pulses come at least two cycles apart (control-plane commands).
        # A pulse for S1's own QP while S1 waits: the reset stands, S1's head (from the state
        # read before it) is not written (the command keeps its SQHD).
        s1_stale = Signal()
        with m.If(take):
            m.d.sync += s1_stale.eq(0)
        with m.Elif(cfg & s1_valid & ~s1_advance & (self.qp_cfg_qpn == s1.qpn)):
            m.d.sync += s1_stale.eq(1)
        s1_write = s1_advance & s1_in_range & ~s1_stale
        late, late_qpn = Signal(), Signal(QPN_WIDTH)
        m.d.sync += [late.eq(cfg & s1_write), late_qpn.eq(self.qp_cfg_qpn)]
        with m.If(s1_write):
            m.d.comb += [st_wr.addr.eq(s1.qpn), st_wr.data.sq_head.eq(head_next),
                         st_wr.en.eq(1)]
        with m.Elif(cfg):
            m.d.comb += [st_wr.addr.eq(self.qp_cfg_qpn), st_wr.data.eq(0),
                         st_wr.en.eq(self.qp_cfg_qpn < p.qp_count)]
        with m.Elif(late):
            m.d.comb += [st_wr.addr.eq(late_qpn), st_wr.data.eq(0),
                         st_wr.en.eq(late_qpn < p.qp_count)]

        fl_in = Signal(_Flight)
        m.d.comb += [
            fl_in.cmd.eq(s1),
            fl_in.sqhd.eq(head_next),
            fl_in.sqid.eq(qp.sqid),
            fl_in.subsystem.eq(qp.subsystem),
            fl_in.offload_only.eq(qp.attrs.offload & qp.attrs.offload_only),
            fl_in.epoch.eq(self.fence_epoch),
            flight.w_data.eq(fl_in),
            flight.w_en.eq(s1_advance),
            self.ns_req.valid.eq(s1_valid & flight.w_rdy),
            self.ns_req.payload.subsystem.eq(qp.subsystem),
            self.ns_req.payload.fe_nsid.eq(s1.nsid),
        ]

        # --- S2: pair the in-flight head with its lookup; read the subsystem entry ----------
        s3_valid = Signal()
        s3_done = Signal()
        s3_free = ~s3_valid | s3_done
        fl = Signal(_Flight)
        m.d.comb += fl.eq(flight.r_data)
        # Lookup answers are always taken (``ns_resp.ready`` is 1): one that S2 cannot use
        # at once waits in ``ns_queue``. Every answer belongs to a command in ``flight``, so
        # the queue never holds more than ``flight`` does and never overflows; and the
        # lookup pipeline never stalls, so no ready path runs from S3 through the control
        # plane's tables back to S1 and the parser.
        ns_queue = m.submodules.ns_queue = fifo.SyncFIFO(
            width=data.Layout.cast(NsLookupResponse).size, depth=_FLIGHT_DEPTH)
        ns_valid = ns_queue.r_rdy | self.ns_resp.valid
        ns_answer = Signal(NsLookupResponse)
        m.d.comb += ns_answer.eq(Mux(ns_queue.r_rdy, ns_queue.r_data, self.ns_resp.payload))
        s2_go = flight.r_rdy & ns_valid & s3_free
        m.d.comb += [
            flight.r_en.eq(s2_go),
            self.ns_resp.ready.eq(1),
            ns_queue.w_data.eq(self.ns_resp.payload),
            ns_queue.w_en.eq(self.ns_resp.valid & ~(s2_go & ~ns_queue.r_rdy)),
            ns_queue.r_en.eq(s2_go),
            self.ss_rd_addr.eq(fl.subsystem),
            self.ss_rd_en.eq(s2_go),
        ]
        # QP error flags: read for the S2 command, set by S3, cleared by configuration
        m.submodules.qp_error = err_mem = memory.Memory(shape=1, depth=p.qp_count, init=[])
        err_wr = err_mem.write_port()
        err_rd = err_mem.read_port(transparent_for=(err_wr,))
        m.d.comb += [err_rd.addr.eq(fl.cmd.qpn), err_rd.en.eq(s2_go)]
        s3_in_range = Signal()
        with m.If(s2_go):
            m.d.sync += s3_in_range.eq(fl.cmd.qpn < p.qp_count)

        # S3's command and lookup answer, loaded on S2's hand-shake in parts of PART_BITS,
        # each part under its own copy of the hand-shake: worked out from its own copies
        # of S3's and S4's flags (``s2_flags``: registers kept apart in synthesis, always
        # equal to ``s3_valid``, ``s4_valid`` and ``ready``), so that no net drives the
        # enables of more than one part. (One ``s2_go`` drove 500 enables: 7.9 ns of
        # routing, the whole engine's worst path on one placement.)
        s4_valid = Signal()
        ready = Signal()          # every sink has room for S4's write in this cycle
        n_fl = data.Layout.cast(_Flight).size
        s3_raw = Signal(n_fl + data.Layout.cast(NsLookupResponse).size)
        s3 = Signal(_Flight)
        s3_ns = Signal(NsLookupResponse)
        m.d.comb += [s3.eq(s3_raw[:n_fl]), s3_ns.eq(s3_raw[n_fl:])]
        s3_in = Cat(fl.as_value(), ns_answer.as_value())
        parts = -(-len(s3_raw) // PART_BITS)
        m.submodules.s2_flags = s2_flags = ReplicatedEnable(parts, name="s2_flags", width=3)
        fail = self.i_qp_fail
        for k in range(parts):
            lo, hi = k * len(s3_raw) // parts, (k + 1) * len(s3_raw) // parts
            v3, v4, rdy = s2_flags.q[k]
            go = Signal(name=f"s2_go_c{k}")
            m.d.comb += go.eq(flight.r_rdy & ns_valid
                              & (~v3 | ((~v4 | rdy) & ~cfg & ~fail.valid)))
            with m.If(go):
                m.d.sync += s3_raw[lo:hi].eq(s3_in[lo:hi])
        s3_valid_n = Mux(s2_go, 1, Mux(s3_done, 0, s3_valid))
        m.d.sync += s3_valid.eq(s3_valid_n)

        # --- S3: decide ---------------------------------------------------------------------------
        cmd = s3.cmd
        ns = s3_ns.entry
        ss = self.ss_rd_data
        op = cmd.opcode
        is_read = op == Opcode.READ.value
        is_write = op == Opcode.WRITE.value
        is_wz = op == Opcode.WRITE_ZEROES.value
        op_bits = Cat(op == Opcode.FLUSH.value, is_write, is_read, is_wz, op == Opcode.DSM.value)
        assert [b.value for b in OpBit] == list(range(5))
        ns_enabled = (op_bits & ns.ops).any()
        # the block count and the end LBA need only the command: summed in S2, from the
        # in-flight FIFO's output register, so S3's checks start from registers
        # (and the byte count, with the namespace's block size from the lookup answer)
        lba_end = Signal(66)
        nbytes = Signal(33)
        # (loaded whenever S3 is free: when no command enters, S3 is empty and they are
        # not used; so they stay off the wide enable of the S3 command register)
        with m.If(s3_free):
            m.d.sync += [nbytes.eq((fl.cmd.cdw.rw.nlb + 1) << ns_answer.entry.lba_shift),
                         lba_end.eq(fl.cmd.cdw.rw.slba + fl.cmd.cdw.rw.nlb + 1)]
        out_of_range = lba_end > ns.nsze
        too_big = nbytes > ss.max_io_size
        length_bad = cmd.sgl_length != nbytes
        # a DSM range list longer than max_io_size would overrun its staging (and its
        # count of beats): refused as any transfer over max_io_size
        dsm_too_big = (op == Opcode.DSM.value) & (cmd.sgl_length > ss.max_io_size)

        outcome = Signal(range(5))
        reason = Signal(Reason)
        status = Signal(3)      # 0 none; else index into statuses
        statuses = [None, NvmeStatus.INVALID_NS, NvmeStatus.NS_NOT_READY,
                    NvmeStatus.LBA_OUT_OF_RANGE, NvmeStatus.INVALID_FIELD,
                    NvmeStatus.DATA_SGL_LENGTH_INVALID]
        event = Signal()
        count_unknown = Signal()
        count_error = Signal()
        in_error = err_rd.data & s3_in_range
        with m.If(in_error):
            m.d.comb += [outcome.eq(_OUT_DISCARD), reason.eq(Reason.QP_IN_ERROR)]
        with m.Elif(cmd.action == Action.SOFTWARE):
            m.d.comb += [outcome.eq(_OUT_SW), reason.eq(cmd.reason)]
        with m.Elif(cmd.action == Action.QP_ERROR):
            m.d.comb += [outcome.eq(_OUT_QPERR), reason.eq(cmd.reason), event.eq(1)]
        with m.Elif(cmd.action == Action.RESPOND):
            m.d.comb += outcome.eq(_OUT_RESP)
        with m.Elif(s3_ns.status == NsLookupStatus.NOT_FOUND):
            m.d.comb += count_unknown.eq(1)
            with m.If(s3.offload_only):
                m.d.comb += [outcome.eq(_OUT_RESP), status.eq(1)]
            with m.Else():
                m.d.comb += [outcome.eq(_OUT_SW), reason.eq(Reason.UNKNOWN_NSID)]
        with m.Elif(s3_ns.status == NsLookupStatus.NOT_READY):
            m.d.comb += [outcome.eq(_OUT_RESP), status.eq(2), count_error.eq(1)]
        with m.Elif(~ns_enabled):
            with m.If(s3.offload_only):
                m.d.comb += [outcome.eq(_OUT_QPERR), reason.eq(Reason.OP_DISABLED),
                             event.eq(1)]
            with m.Else():
                m.d.comb += [outcome.eq(_OUT_SW), reason.eq(Reason.OP_DISABLED)]
        with m.Elif((is_read | is_write | is_wz) & out_of_range):
            m.d.comb += [outcome.eq(_OUT_RESP), status.eq(3), count_error.eq(1)]
        with m.Elif(((is_read | is_write) & too_big) | dsm_too_big):
            m.d.comb += [outcome.eq(_OUT_RESP), status.eq(4), count_error.eq(1)]
        with m.Elif((is_read | is_write) & length_bad):
            m.d.comb += [outcome.eq(_OUT_RESP), status.eq(5), count_error.eq(1)]
        with m.Else():
            m.d.comb += outcome.eq(_OUT_SERVE)

        # verdict for the parser's stored bytes
        verdict = Signal(ReadMode)
        icd = (cmd.action == Action.SERVE) & cmd.has_data
        with m.Switch(outcome):
            with m.Case(_OUT_SW):
                m.d.comb += verdict.eq(ReadMode.PASS)
            with m.Case(_OUT_SERVE):
                m.d.comb += verdict.eq(Mux(icd, ReadMode.CUT, ReadMode.DROP))
            with m.Default():
                m.d.comb += verdict.eq(ReadMode.DROP)

        # sinks: FIFOs so that S3 hands everything over in one cycle
        resp_fifo = m.submodules.resp_fifo = fifo.SyncFIFOBuffered(
            width=data.Layout.cast(EngineResponse).size, depth=4)
        qperr_fifo = m.submodules.qperr_fifo = fifo.SyncFIFOBuffered(
            width=data.Layout.cast(ExcSideband).size, depth=4)
        event_fifo = m.submodules.event_fifo = fifo.SyncFIFOBuffered(
            width=data.Layout.cast(Event).size, depth=4)
        # the served command is readable the cycle after S4 (no output register: latency)
        backend_fifo = m.submodules.backend_fifo = fifo.SyncFIFO(
            width=data.Layout.cast(BackendCommand).size, depth=4)
        route_fifo = m.submodules.route_fifo = fifo.SyncFIFOBuffered(
            width=data.Layout.cast(_Route).size, depth=8)
        nscount_fifo = m.submodules.nscount_fifo = fifo.SyncFIFOBuffered(
            width=data.Layout.cast(CountRequest(16)).size, depth=4)
        sscount_fifo = m.submodules.sscount_fifo = fifo.SyncFIFOBuffered(
            width=data.Layout.cast(CountRequest(16)).size, depth=4)

        need_resp = outcome == _OUT_RESP
        need_qperr = (outcome == _OUT_QPERR) | (outcome == _OUT_DISCARD)
        need_backend = outcome == _OUT_SERVE
        need_route = verdict != ReadMode.DROP
        verdict_fifo = m.submodules.verdict_fifo = fifo.SyncFIFOBuffered(width=2, depth=4)
        # S3 decides into the S4 registers (what each sink gets, and whether it needs
        # it); S4 hands over when every sink has room, whichever it needs. The decision
        # (table data through the checks) thus ends in registers and drives no write
        # enable and no hand-shake. The sinks drain on their own, so waiting for one that
        # is not needed costs a cycle of back-pressure, never a deadlock. "Room" is a
        # register: every sink's level, counting S4's write in this cycle and no read,
        # leaves a free entry (two below its depth, since a buffered FIFO's inner memory
        # may hold all but its output register), so no FIFO level drives the hand-shake
        # chain S4 -> S3 -> S2 and its wide clock enables.
        writes = []               # (sink, S4 needs it)
        fire = Signal()           # S4 writes its sinks
        m.d.comb += fire.eq(s4_valid & ready)
        m.d.comb += [s3_done.eq(s3_valid & (~s4_valid | fire) & ~cfg & ~fail.valid),
                     fail.ready.eq(~cfg)]
        s4_valid_n = Mux(s3_done, 1, Mux(fire, 0, s4_valid))
        m.d.sync += s4_valid.eq(s4_valid_n)

        def s4_write(sink, value, need=1):
            """``sink`` gets ``value`` from S4 when S3 decided it ``need``s it."""
            held, needed = Signal.like(value), Signal()
            with m.If(s3_done):
                m.d.sync += [held.eq(value), needed.eq(need)]
            m.d.comb += [sink.w_data.eq(held), sink.w_en.eq(fire & needed)]
            writes.append((sink, needed))
        with m.If(cfg):
            m.d.comb += [err_wr.addr.eq(self.qp_cfg_qpn), err_wr.data.eq(0),
                         err_wr.en.eq(self.qp_cfg_qpn < p.qp_count)]
        with m.Elif(fail.valid):
            m.d.comb += [err_wr.addr.eq(fail.payload.qpn), err_wr.data.eq(1),
                         err_wr.en.eq(fail.payload.qpn < p.qp_count)]
        with m.Else():
            m.d.comb += [err_wr.addr.eq(cmd.qpn), err_wr.data.eq(1),
                         err_wr.en.eq(s3_done & (outcome == _OUT_QPERR) & s3_in_range)]

        s4_write(verdict_fifo, verdict)

        resp = Signal(EngineResponse)
        m.d.comb += [
            resp.cqe.sqhd.eq(s3.sqhd), resp.cqe.sqid.eq(s3.sqid), resp.cqe.cid.eq(cmd.cid),
            resp.qpn.eq(cmd.qpn), resp.invalidate.eq(cmd.sgl_invalidate),
            resp.rkey.eq(Mux(cmd.sgl_invalidate, cmd.sgl_key, 0)),
        ]
        with m.If(status == 0):
            m.d.comb += resp.cqe.status.eq(cmd.status)
        with m.Else():
            with m.Switch(status):
                for index, entry in enumerate(statuses):
                    if entry is None:
                        continue
                    sct, sc, dnr = entry
                    with m.Case(index):
                        m.d.comb += [resp.cqe.status.sct.eq(sct.value),
                                     resp.cqe.status.sc.eq(sc.value),
                                     resp.cqe.status.dnr.eq(dnr)]
        s4_write(resp_fifo, resp, need_resp)

        qperr = Signal(ExcSideband)
        m.d.comb += [qperr.qpn.eq(cmd.qpn), qperr.reason.eq(reason)]
        s4_write(qperr_fifo, qperr, need_qperr)

        ev = Signal(Event)
        m.d.comb += [
            ev.kind.eq(Mux(reason == Reason.OVERSIZE, EventType.QP_FATAL,
                           EventType.UNSUPPORTED_NVMF_OP)),
            ev.object.eq(cmd.qpn),
        ]
        s4_write(event_fifo, ev, event)

        be = Signal(BackendCommand)
        moves_data = is_read | is_write | (op == Opcode.DSM.value)
        m.d.comb += [
            be.qpn.eq(cmd.qpn), be.cid.eq(cmd.cid), be.sqhd.eq(s3.sqhd), be.sqid.eq(s3.sqid),
            be.opcode.eq(op), be.subsystem.eq(s3.subsystem), be.slot.eq(s3_ns.slot),
            be.lba_shift.eq(ns.lba_shift), be.backend_nsid.eq(ns.backend_nsid),
            be.queues.eq(ns.queues), be.cdw.eq(cmd.cdw), be.sgl_keyed.eq(cmd.sgl_keyed),
            be.sgl_invalidate.eq(cmd.sgl_invalidate), be.sgl_address.eq(cmd.sgl_address),
            be.sgl_length.eq(cmd.sgl_length), be.sgl_key.eq(cmd.sgl_key),
            be.nbytes.eq(Mux(moves_data, cmd.sgl_length, 0)), be.icd.eq(icd),
            be.epoch.eq(s3.epoch), be.nsze.eq(ns.nsze),
        ]
        s4_write(backend_fifo, be, need_backend)

        route = Signal(_Route)
        m.d.comb += [route.to_exc.eq(verdict == ReadMode.PASS), route.side.qpn.eq(cmd.qpn),
                     route.side.reason.eq(reason)]
        s4_write(route_fifo, route, need_route)

        nsc = Signal(CountRequest(16))
        ssc = Signal(CountRequest(16))
        m.d.comb += [
            nsc.index.eq(s3_ns.slot), nsc.field.eq(_NS_ERRORS), nsc.amount.eq(1),
            ssc.index.eq(s3.subsystem), ssc.field.eq(0), ssc.amount.eq(1),
        ]
        s4_write(nscount_fifo, nsc, count_error)
        s4_write(sscount_fifo, ssc, count_unknown)
        ready_n = functools.reduce(operator.and_, (
            sink.w_level + (fire & needed) <= sink.depth - 2 for sink, needed in writes))
        m.d.sync += ready.eq(ready_n)
        m.d.comb += s2_flags.d.eq(Cat(s3_valid_n, s4_valid_n, ready_n))

        for f, port in ((verdict_fifo, self.o_verdict),
                        (resp_fifo, self.o_resp), (qperr_fifo, self.o_qp_error),
                        (event_fifo, self.o_event), (backend_fifo, self.o_backend),
                        (nscount_fifo, self.o_ns_count),
                        (sscount_fifo, self.o_subsystem_count)):
            m.d.comb += [port.valid.eq(f.r_rdy), port.payload.eq(f.r_data),
                         f.r_en.eq(port.ready)]

        # --- the command fence: lookups less the outcomes S4 gave, per epoch ------------------
        s4_epoch, s4_answered = Signal(), Signal()
        with m.If(s3_done):
            m.d.sync += [s4_epoch.eq(s3.epoch), s4_answered.eq(~need_backend)]
        for e in range(2):
            count = Signal(16, name=f"fence_in{e}")
            up = s1_advance & (self.fence_epoch == e)
            down = fire & s4_answered & (s4_epoch == e)
            m.d.sync += count.eq(count + up - down)
            m.d.comb += self.fence_in[16 * e:16 * (e + 1)].eq(count)

        # --- data router: parser packets to software or to the back end ---------------------
        head = Signal(_Route)
        m.d.comb += head.eq(route_fifo.r_data)
        beat = self.i_data.payload
        with m.If(route_fifo.r_rdy):
            with m.If(head.to_exc):
                m.d.comb += [
                    self.o_exc.valid.eq(self.i_data.valid),
                    self.o_exc.payload.data.eq(beat.data),
                    self.o_exc.payload.keep.eq(beat.keep),
                    self.o_exc.payload.last.eq(beat.last),
                    self.o_exc.payload.side.eq(head.side),
                    self.i_data.ready.eq(self.o_exc.ready),
                ]
            with m.Else():
                m.d.comb += [
                    self.o_backend_data.valid.eq(self.i_data.valid),
                    self.o_backend_data.payload.eq(beat),
                    self.i_data.ready.eq(self.o_backend_data.ready),
                ]
        m.d.comb += route_fifo.r_en.eq(self.i_data.valid & self.i_data.ready & beat.last)
        return m


class _Flight(data.Struct):
    cmd: ParsedCommand
    sqhd: 16
    sqid: 16
    subsystem: 8
    offload_only: 1
    epoch: 1


class _Route(data.Struct):
    to_exc: 1
    side: ExcSideband
