"""Capsule parser: the first block of the offload pipeline.

Behaviour (the decision rules, what comes out) is specified in
``docs/parser.md``; this module implements it in three parts:

* ``_CapsuleWriter`` accepts beats, looks the QP up, keeps the SQE, stores the
  capsule's beats in a packet FIFO and, one cycle after the last beat,
  decides (``_decide``) and pushes a ``ParsedCommand`` and a read-out
  instruction.
* ``_PacketReader`` pops each capsule's stored beats and, per instruction,
  drops them, passes them whole (software) or cuts and realigns the
  in-capsule data.
* ``CapsuleParser`` wires both to the FIFOs and the ports.
"""

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import (
    CAPSULE_UNIT,
    QPN_WIDTH,
    SQE_BYTES,
    Action,
    NvmeStatus,
    OpBit,
    Opcode,
    ParsedCommand,
    QpCapsuleAttrs,
    ReadMode,
    Reason,
    SglSubtype,
    SglType,
    Sqe,
    StreamBeat,
)
from .params import EngineParams
from .stream_util import keep_mask, min_value, popcount

__all__ = ["CapsuleParser", "CapsuleBeat", "ReadMode"]

_LEN_WIDTH = 23      # bytes counted in a capsule before saturation (beats saturate at 2**16-1)
_BEAT_IDX_WIDTH = 16


def CapsuleBeat(data_width):
    """An input beat: a ``StreamBeat`` plus the QPN (sampled on a packet's first beat)."""
    return data.StructLayout({
        "data": data_width,
        "keep": data_width // 8,
        "last": 1,
        "qpn": QPN_WIDTH,
    })


def _read_instr_layout(params):
    return data.StructLayout({
        "mode": ReadMode,
        "beats": _BEAT_IDX_WIDTH,          # stored beats to pop
        "start": 17,                       # CUT: capsule byte where the packet starts
        "length": 17,                      # CUT: bytes to emit
    })


class _Decision(Elaboratable):
    """Combinational decision of ``docs/parser.md`` for one complete capsule.

    Inputs are registered by the writer; outputs are valid in the same cycle.
    """

    def __init__(self, params):
        self._p = params
        self.sqe = Signal(Sqe)
        self.length = Signal(_LEN_WIDTH)
        self.attrs = Signal(QpCapsuleAttrs)
        self.qpn = Signal(QPN_WIDTH)
        self.stored_beats = Signal(_BEAT_IDX_WIDTH)
        self.cmd = Signal(ParsedCommand)
        self.instr = Signal(_read_instr_layout(params))

    def elaborate(self, platform):
        m = Module()
        p = self._p
        sqe, attrs, length = self.sqe, self.attrs, self.length

        limit = Mux(attrs.offload, min_value(attrs.ioccsz * CAPSULE_UNIT, p.max_capsule_bytes),
                    p.max_capsule_bytes)
        data_start = SQE_BYTES + attrs.icdoff * CAPSULE_UNIT
        icd = Mux(length > data_start, length - data_start, 0)

        op = sqe.opcode
        is_flush = op == Opcode.FLUSH.value
        is_write = op == Opcode.WRITE.value
        is_read = op == Opcode.READ.value
        is_wz = op == Opcode.WRITE_ZEROES.value
        is_dsm = op == Opcode.DSM.value
        served = is_flush | is_write | is_read | is_wz | is_dsm
        op_bits = Cat(is_flush, is_write, is_read, is_wz, is_dsm)  # OpBit order
        assert [b.value for b in OpBit] == list(range(5))
        enabled = (op_bits & attrs.ops).any()
        host_to_ctrl = is_write | is_dsm
        moves_data = is_read | is_write | is_dsm

        keyed_d = sqe.dptr.keyed
        data_d = sqe.dptr.sgl
        sgl_type, sgl_sub = data_d.type, data_d.subtype
        keyed = sgl_type == SglType.KEYED_DATA_BLOCK.value
        keyed_ok = keyed & ((sgl_sub == SglSubtype.ADDRESS.value) |
                            (sgl_sub == SglSubtype.INVALIDATE.value))
        in_capsule = (sgl_type == SglType.DATA_BLOCK.value) & (sgl_sub == SglSubtype.OFFSET.value)
        sgl_length = Mux(keyed, keyed_d.length, data_d.length)
        offset = data_d.address
        offset_beyond = (offset[17:] != 0) | (offset[:17] > icd)
        end_beyond = (offset[:17] + sgl_length) > icd
        dsm_need = (sqe.cdw.dsm.nr + 1) * 16

        runt = length < SQE_BYTES
        software = Signal()
        sw_reason = Signal(Reason)
        status = Signal(3)   # index into _STATUSES; 0 = none
        statuses = [None, NvmeStatus.INVALID_FIELD, NvmeStatus.SGL_DESC_TYPE_INVALID,
                    NvmeStatus.SGL_OFFSET_INVALID, NvmeStatus.DATA_SGL_LENGTH_INVALID]
        oversize = length > limit

        with m.If(runt):
            m.d.comb += [software.eq(1), sw_reason.eq(Reason.RUNT)]
        with m.Elif(~attrs.offload):
            m.d.comb += [software.eq(1), sw_reason.eq(Reason.NOT_OFFLOADED)]
        with m.Elif(op == Opcode.FABRICS.value):
            m.d.comb += [software.eq(1), sw_reason.eq(Reason.FABRICS)]
        with m.Elif(sqe.fuse != 0):
            m.d.comb += [software.eq(1), sw_reason.eq(Reason.FUSED)]
        with m.Elif(~served):
            m.d.comb += [software.eq(1), sw_reason.eq(Reason.OPCODE)]
        with m.Elif(~enabled):
            m.d.comb += [software.eq(1), sw_reason.eq(Reason.OP_DISABLED)]
        with m.Elif(sqe.psdt != 1):
            m.d.comb += status.eq(1)
        with m.Elif(~(keyed_ok | in_capsule)):
            m.d.comb += status.eq(2)
        with m.Elif(~host_to_ctrl & ((length > SQE_BYTES) | in_capsule)):
            m.d.comb += status.eq(1)
        with m.Elif(in_capsule & offset_beyond):
            m.d.comb += status.eq(3)
        with m.Elif(in_capsule & end_beyond):
            m.d.comb += status.eq(4)
        with m.Elif(moves_data & (sgl_length == 0)):
            m.d.comb += status.eq(4)
        with m.Elif(~moves_data & (sgl_length != 0)):
            m.d.comb += status.eq(4)
        with m.Elif(is_dsm & (sgl_length < dsm_need)):
            m.d.comb += status.eq(4)

        cmd, instr = self.cmd, self.instr
        m.d.comb += [
            cmd.qpn.eq(self.qpn),
            cmd.capsule_len.eq(min_value(length, 0xFFFF)),
            instr.beats.eq(self.stored_beats),
        ]
        with m.If(~runt):
            m.d.comb += [
                cmd.opcode.eq(op),
                cmd.fuse.eq(sqe.fuse),
                cmd.psdt.eq(sqe.psdt),
                cmd.cid.eq(sqe.cid),
                cmd.nsid.eq(sqe.nsid),
                cmd.cdw.eq(sqe.cdw),
                cmd.sgl_keyed.eq(keyed),
                cmd.sgl_invalidate.eq(keyed & (sgl_sub == SglSubtype.INVALIDATE.value)),
                cmd.sgl_address.eq(data_d.address),
                cmd.sgl_length.eq(sgl_length),
                cmd.sgl_key.eq(Mux(keyed, keyed_d.key, 0)),
            ]

        with m.If(oversize):
            m.d.comb += [cmd.action.eq(Action.QP_ERROR), cmd.reason.eq(Reason.OVERSIZE),
                         instr.mode.eq(ReadMode.DROP)]
        with m.Elif(software & attrs.offload & attrs.offload_only):
            m.d.comb += [cmd.action.eq(Action.QP_ERROR), cmd.reason.eq(sw_reason),
                         instr.mode.eq(ReadMode.DROP)]
        with m.Elif(software):
            m.d.comb += [cmd.action.eq(Action.SOFTWARE), cmd.reason.eq(sw_reason),
                         cmd.has_data.eq(1), cmd.data_len.eq(length),
                         instr.mode.eq(ReadMode.PASS)]
        with m.Elif(status != 0):
            m.d.comb += [cmd.action.eq(Action.RESPOND), instr.mode.eq(ReadMode.DROP)]
            with m.Switch(status):
                for index, entry in enumerate(statuses):
                    if entry is None:
                        continue
                    sct, sc, dnr = entry
                    with m.Case(index):
                        m.d.comb += [cmd.status.sct.eq(sct.value), cmd.status.sc.eq(sc.value),
                                     cmd.status.dnr.eq(dnr)]
        with m.Elif(in_capsule):
            m.d.comb += [cmd.action.eq(Action.SERVE), cmd.has_data.eq(1),
                         cmd.data_len.eq(sgl_length),
                         instr.mode.eq(ReadMode.CUT),
                         instr.start.eq(data_start + offset[:17]),
                         instr.length.eq(sgl_length)]
        with m.Else():
            m.d.comb += [cmd.action.eq(Action.SERVE), instr.mode.eq(ReadMode.DROP)]
        return m


class _CapsuleWriter(Elaboratable):
    """Input side: accept beats, store them, decide at the end of each capsule.

    Pipeline: the input register ``s1`` holds one beat (the QP lookup issued
    when it was accepted returns while it sits there); ``s2`` holds one
    complete capsule's SQE, length and attributes while ``_Decision`` runs.
    """

    def __init__(self, params):
        self._p = params
        W = params.data_width
        self.i = stream.Signature(CapsuleBeat(W)).flip().create()
        self.lookup_addr = Signal(QPN_WIDTH)
        self.lookup_en = Signal()
        self.lookup_data = Signal(QpCapsuleAttrs)
        # packet FIFO write side
        self.pkt_w_data = Signal(W + W // 8)
        self.pkt_w_en = Signal()
        self.pkt_w_rdy = Signal()
        # decision outputs
        self.cmd = Signal(ParsedCommand)
        self.instr = Signal(_read_instr_layout(params))
        self.out_valid = Signal()
        self.out_ready = Signal()

    def elaborate(self, platform):
        m = Module()
        p = self._p
        W, B = p.data_width, p.beat_bytes
        m.submodules.decision = decision = _Decision(p)

        # input beat index (which beat of its capsule the next accepted beat is)
        in_idx = Signal(_BEAT_IDX_WIDTH)

        # stage 1: one beat
        s1_valid = Signal()
        s1 = Signal(CapsuleBeat(W))
        s1_idx = Signal(_BEAT_IDX_WIDTH)
        s1_stored = Signal(_BEAT_IDX_WIDTH)      # beats of this capsule stored before s1's
        attrs_reg = Signal(QpCapsuleAttrs)
        qpn_reg = Signal(QPN_WIDTH)
        sqe_regs = [Signal(W, name=f"sqe_beat{i}") for i in range(p.sqe_beats)]

        # stage 2: one complete capsule
        s2_valid = Signal()

        first = s1_idx == 0
        attrs = Signal(QpCapsuleAttrs)
        qpn = Signal(QPN_WIDTH)
        m.d.comb += [attrs.eq(Mux(first, self.lookup_data, attrs_reg)),
                     qpn.eq(Mux(first, s1.qpn, qpn_reg))]
        limit = Mux(attrs.offload, min_value(attrs.ioccsz * CAPSULE_UNIT, p.max_capsule_bytes),
                    p.max_capsule_bytes)
        store = s1_valid & (s1_idx * B < limit)
        s2_free = ~s2_valid | self.out_ready
        s1_advance = s1_valid & (~store | self.pkt_w_rdy) & (~s1.last | s2_free)
        in_take = self.i.valid & (~s1_valid | s1_advance)

        m.d.comb += [
            self.i.ready.eq(~s1_valid | s1_advance),
            self.lookup_addr.eq(self.i.payload.qpn),
            self.lookup_en.eq(in_take & (in_idx == 0)),
            self.pkt_w_data.eq(Cat(s1.data, s1.keep)),
            self.pkt_w_en.eq(store & s1_advance),
        ]

        with m.If(in_take):
            m.d.sync += [s1.eq(self.i.payload), s1_idx.eq(in_idx)]
            with m.If(self.i.payload.last):
                m.d.sync += in_idx.eq(0)
            with m.Elif(in_idx != (1 << _BEAT_IDX_WIDTH) - 1):
                m.d.sync += in_idx.eq(in_idx + 1)
        with m.If(in_take):
            m.d.sync += s1_valid.eq(1)
        with m.Elif(s1_advance):
            m.d.sync += s1_valid.eq(0)

        sqe_now = [Mux(s1_idx == i, s1.data, reg) for i, reg in enumerate(sqe_regs)]
        stored_now = s1_stored + store
        with m.If(s1_advance):
            with m.If(first):
                m.d.sync += [attrs_reg.eq(self.lookup_data), qpn_reg.eq(s1.qpn)]
            for i, reg in enumerate(sqe_regs):
                with m.If(s1_idx == i):
                    m.d.sync += reg.eq(s1.data)
            m.d.sync += s1_stored.eq(Mux(s1.last, 0, stored_now))
            with m.If(s1.last):
                m.d.sync += [
                    decision.sqe.eq(Cat(*sqe_now)),
                    decision.length.eq(s1_idx * B + popcount(s1.keep)),
                    decision.attrs.eq(attrs),
                    decision.qpn.eq(qpn),
                    decision.stored_beats.eq(stored_now),
                ]
        with m.If(s1_advance & s1.last):
            m.d.sync += s2_valid.eq(1)
        with m.Elif(self.out_ready):
            m.d.sync += s2_valid.eq(0)

        m.d.comb += [
            self.out_valid.eq(s2_valid),
            self.cmd.eq(decision.cmd),
            self.instr.eq(decision.instr),
        ]
        return m


class _PacketReader(Elaboratable):
    """Output side: pop each capsule's stored beats and emit its packet.

    The read instruction at the head of its FIFO is the current capsule; it
    is popped in the cycle the capsule's last stored beat is popped and its
    packet is complete, so consecutive capsules follow without a bubble.
    """

    def __init__(self, params):
        self._p = params
        W = params.data_width
        self.instr = Signal(_read_instr_layout(params))
        self.instr_rdy = Signal()
        self.instr_en = Signal()
        self.mode = Signal(ReadMode)          # the read mode in force for the head capsule
        self.pkt_r_data = Signal(W + W // 8)
        self.pkt_r_rdy = Signal()
        self.pkt_r_en = Signal()
        self.o = stream.Signature(StreamBeat(W)).create()

    def elaborate(self, platform):
        m = Module()
        p = self._p
        W, B = p.data_width, p.beat_bytes
        instr = self.instr
        beat_data = self.pkt_r_data[:W]
        beat_keep = self.pkt_r_data[W:]

        popped = Signal(_BEAT_IDX_WIDTH)      # beats of this capsule popped so far
        emitted = Signal(17)                  # bytes of this packet emitted so far
        cut_done = Signal()                   # CUT: every byte emitted
        hold = Signal(W)
        hold_valid = Signal()

        mode = self.mode
        last_stored = popped + 1 == instr.beats
        more = popped != instr.beats          # stored beats of this capsule not yet popped
        beat_rdy = self.pkt_r_rdy & more
        shift = instr.start[: (B - 1).bit_length()] if B > 1 else Const(0, 1)
        start_beat = instr.start >> (B.bit_length() - 1)
        remaining = instr.length - emitted
        tail_room = B - shift                 # bytes of the start beat at or after `start`

        pop = Signal()
        emit = Signal()
        emit_last = Signal()
        out_bytes = Signal(range(B + 1))

        window = Cat(Mux(hold_valid, hold, beat_data), beat_data)
        with m.If(self.instr_rdy):
            with m.Switch(mode):
                with m.Case(ReadMode.DROP):
                    m.d.comb += pop.eq(beat_rdy)
                with m.Case(ReadMode.PASS):
                    m.d.comb += [
                        self.o.valid.eq(beat_rdy),
                        self.o.payload.data.eq(beat_data),
                        self.o.payload.keep.eq(beat_keep),
                        self.o.payload.last.eq(last_stored),
                        pop.eq(beat_rdy & self.o.ready),
                        emit.eq(pop),
                        emit_last.eq(pop & last_stored),
                    ]
                with m.Case(ReadMode.CUT):
                    flush = hold_valid & (remaining <= tail_room)
                    load = ~hold_valid & (shift != 0) & (remaining > tail_room)
                    m.d.comb += [
                        self.o.payload.data.eq(window.bit_select(shift * 8, W)),
                        out_bytes.eq(min_value(remaining, B)),
                        self.o.payload.keep.eq(keep_mask(out_bytes, B)),
                        self.o.payload.last.eq(remaining <= B),
                    ]
                    with m.If(cut_done | (popped < start_beat)):
                        m.d.comb += pop.eq(beat_rdy)
                    with m.Elif(flush):
                        m.d.comb += [self.o.valid.eq(1), emit.eq(self.o.ready)]
                    with m.Elif(load):
                        m.d.comb += pop.eq(beat_rdy)
                    with m.Else():
                        m.d.comb += [self.o.valid.eq(beat_rdy),
                                     pop.eq(beat_rdy & self.o.ready),
                                     emit.eq(pop)]
                    m.d.comb += emit_last.eq(emit & (remaining <= B))

        done_after = Mux(mode == ReadMode.CUT, cut_done | emit_last, 1)
        all_popped_after = (popped + pop) == instr.beats
        finish = self.instr_rdy & done_after & all_popped_after
        m.d.comb += [self.pkt_r_en.eq(pop), self.instr_en.eq(finish)]

        with m.If(finish):
            m.d.sync += [popped.eq(0), emitted.eq(0), cut_done.eq(0), hold_valid.eq(0)]
        with m.Else():
            with m.If(pop):
                m.d.sync += popped.eq(popped + 1)
            with m.If(emit):
                m.d.sync += emitted.eq(emitted + B)
            with m.If(emit_last):
                m.d.sync += [cut_done.eq(1), hold_valid.eq(0)]
            with m.Elif(mode == ReadMode.CUT):
                with m.If(pop & ~cut_done & (popped >= start_beat) & (shift != 0)):
                    m.d.sync += [hold.eq(beat_data), hold_valid.eq(1)]
        return m


class CapsuleParser(wiring.Component):
    """Capsule parser.

    Parameters
    ----------
    params : EngineParams

    Interface attributes
    --------------------
    i_capsule : In(stream.Signature(CapsuleBeat(DATA_W)))
        Received capsules, one packet per SEND; ``qpn`` sampled on the first
        beat; every beat but the last full; accepted one beat per cycle while
        the FIFOs have room.
    qp_lookup_addr, qp_lookup_en : Out
        QP attribute read: ``addr`` is the QPN of the beat being accepted,
        ``en`` pulses when a capsule's first beat is accepted.
    qp_lookup_data : In(QpCapsuleAttrs)
        Valid the cycle after ``en``, held while ``en`` is low (a synchronous
        memory read port).
    o_cmd : Out(stream.Signature(ParsedCommand))
        One per capsule, capsule order; available two cycles after the
        capsule's last beat is accepted.
    o_data : Out(stream.Signature(StreamBeat(DATA_W)))
        One packet per ``o_cmd`` with ``has_data``, in the same order.
    i_verdict : In(stream.Signature(ReadMode)), with ``external_verdict`` only
        One per capsule, in capsule order: what ``o_data`` carries for it
        (DROP: nothing; PASS: the whole capsule; CUT: the in-capsule data of a
        capsule the parser decided SERVE with an in-capsule SGL). The stage
        after the parser sends it once the namespace is known; the parser's
        own ``has_data`` then does not apply.
    """

    def __init__(self, params=None, *, external_verdict=False):
        self.params = params = params or EngineParams()
        self.external_verdict = external_verdict
        W = params.data_width
        members = {
            "i_capsule": In(stream.Signature(CapsuleBeat(W))),
            "qp_lookup_addr": Out(QPN_WIDTH),
            "qp_lookup_en": Out(1),
            "qp_lookup_data": In(QpCapsuleAttrs),
            "o_cmd": Out(stream.Signature(ParsedCommand)),
            "o_data": Out(stream.Signature(StreamBeat(W))),
        }
        if external_verdict:
            members["i_verdict"] = In(stream.Signature(ReadMode))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W = p.data_width
        instr_layout = _read_instr_layout(p)

        m.submodules.writer = writer = _CapsuleWriter(p)
        m.submodules.reader = reader = _PacketReader(p)
        m.submodules.pkt_fifo = pkt_fifo = fifo.SyncFIFOBuffered(
            width=W + W // 8, depth=2 * p.max_capsule_beats)
        m.submodules.cmd_fifo = cmd_fifo = fifo.SyncFIFOBuffered(
            width=data.Layout.cast(ParsedCommand).size, depth=4)
        m.submodules.instr_fifo = instr_fifo = fifo.SyncFIFOBuffered(
            width=instr_layout.size, depth=8)

        wiring.connect(m, wiring.flipped(self.i_capsule), writer.i)
        m.d.comb += [
            self.qp_lookup_addr.eq(writer.lookup_addr),
            self.qp_lookup_en.eq(writer.lookup_en),
            writer.lookup_data.eq(self.qp_lookup_data),

            pkt_fifo.w_data.eq(writer.pkt_w_data),
            pkt_fifo.w_en.eq(writer.pkt_w_en),
            writer.pkt_w_rdy.eq(pkt_fifo.w_rdy),

            writer.out_ready.eq(cmd_fifo.w_rdy & instr_fifo.w_rdy),
            cmd_fifo.w_data.eq(writer.cmd),
            cmd_fifo.w_en.eq(writer.out_valid & instr_fifo.w_rdy),
            instr_fifo.w_data.eq(writer.instr),
            instr_fifo.w_en.eq(writer.out_valid & cmd_fifo.w_rdy),

            self.o_cmd.valid.eq(cmd_fifo.r_rdy),
            self.o_cmd.payload.eq(cmd_fifo.r_data),
            cmd_fifo.r_en.eq(self.o_cmd.ready),

            reader.instr.eq(instr_fifo.r_data),
            reader.pkt_r_data.eq(pkt_fifo.r_data),
            reader.pkt_r_rdy.eq(pkt_fifo.r_rdy),
            pkt_fifo.r_en.eq(reader.pkt_r_en),
        ]
        if self.external_verdict:
            m.d.comb += [
                reader.mode.eq(self.i_verdict.payload),
                reader.instr_rdy.eq(instr_fifo.r_rdy & self.i_verdict.valid),
                instr_fifo.r_en.eq(reader.instr_en),
                self.i_verdict.ready.eq(reader.instr_en),
            ]
        else:
            m.d.comb += [
                reader.mode.eq(reader.instr.mode),
                reader.instr_rdy.eq(instr_fifo.r_rdy),
                instr_fifo.r_en.eq(reader.instr_en),
            ]
        wiring.connect(m, reader.o, wiring.flipped(self.o_data))
        return m
