# Over 700 lines: one block whose three units share the decision tables and the packet
# FIFO; it is split with the timing-closure issue's (#14) registered block edges.
"""Capsule parser: the first block of the offload pipeline.

Behaviour (the decision rules, what comes out) is specified in
``docs/parser.md``; this module implements it in three parts:

* ``_CapsuleWriter`` accepts beats, looks the QP up, keeps the SQE, stores the
  capsule's beats in a packet FIFO and, after the last beat, decides in two
  pipeline stages (``_DecisionEarly``, ``_DecisionLate``) and pushes a
  ``ParsedCommand`` and a read-out instruction.
* ``_PacketReader`` pops each capsule's stored beats and, per instruction,
  drops them, passes them whole (software) or cuts and realigns the
  in-capsule data.
* ``CapsuleParser`` wires both to the FIFOs and the ports, with register
  slices (``RegisterSlice``) between the packet FIFO and the reader and on
  ``o_data``.

Every hand-shake between these parts goes through a register, for Fmax
(``docs/parser.md``, "Latency and pipeline").
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
from .stream_util import RegisterSlice, keep_mask, min_value, popcount

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
        # precomputed for the reader (for DROP and PASS: as for start = length = 0)
        "pop_is0": 1,                      # beats == 0
        "pop_is1": 1,                      # beats == 1
        "skipping": 1,                     # CUT: the data starts after the first stored beat
        "rem_le_beat": 1,                  # CUT: length <= DATA_W/8
        "fits_first": 1,                   # CUT: the data ends in its first beat
        "last_from_hold": 1,               # CUT: the last output beat needs no further beat
    })


def _sum_gt(m, terms, c, name):
    """``sum(terms) > c``, unsigned, through one carry chain: the terms and ``~c`` are
    reduced by carry-save adders (one LUT level each) before the one addition."""
    n = max(len(t) for t in [*terms, c]) + len(terms).bit_length() + 1
    ops = []
    for i, t in enumerate([*terms, ~Cat(c, Const(0, n - len(c)))]):
        op = Signal(n, name=f"{name}_op{i}")
        m.d.comb += op.eq(t)
        ops.append(op)
    while len(ops) > 2:
        a, b, d = ops.pop(0), ops.pop(0), ops.pop(0)
        s_ = Signal(n, name=f"{name}_s{len(ops)}")
        k = Signal(n, name=f"{name}_k{len(ops)}")
        m.d.comb += [s_.eq(a ^ b ^ d), k.eq(((a & b) | (a & d) | (b & d)) << 1)]
        ops += [s_, k]
    total = Signal(n, name=f"{name}_total")
    m.d.comb += total.eq(ops[0] + ops[1])
    return ~total[n - 1]      # sum - c - 1 >= 0


def _early_layout(params):
    """What the first decision stage hands to the second: the command's SQE fields and
    the flags from which the second stage decides without arithmetic."""
    return data.StructLayout({
        "cmd": ParsedCommand,              # all but action, reason, status, has_data, data_len
        "instr": _read_instr_layout(params),   # beats, start and length (mode is decided later)
        "length": _LEN_WIDTH,
        "oversize": 1,
        "software": 1,
        "sw_reason": Reason,
        "qp_error": 1,                     # a SOFTWARE outcome becomes QP_ERROR (offload_only)
        "psdt_bad": 1,
        "form_bad": 1,                     # SGL type/subtype not served
        "h2c_bad": 1,                      # not host-to-controller and data in the capsule
        "in_capsule": 1,
        "offset_beyond": 1,                # SGL offset > in-capsule data received
        "end_beyond": 1,                   # SGL offset + length > in-capsule data received
        "moves_data": 1,
        "length_zero": 1,                  # SGL length 0
        "dsm_short": 1,                    # DSM and SGL length < (NR + 1) * 16
    })


class _DecisionEarly(Elaboratable):
    """First half of the decision of ``docs/parser.md``: decodes and every
    comparison; combinational, from the writer's registers to the next pipeline
    register."""

    def __init__(self, params):
        self._p = params
        self.sqe = Signal(Sqe)
        self.length = Signal(_LEN_WIDTH)
        self.attrs = Signal(QpCapsuleAttrs)
        self.data_start = Signal(21)       # 64 + ICDOFF * 16, from ``attrs``
        self.qpn = Signal(QPN_WIDTH)
        self.stored_beats = Signal(_BEAT_IDX_WIDTH)
        self.early = Signal(_early_layout(params))

    def elaborate(self, platform):
        m = Module()
        p = self._p
        sqe, attrs, length, e = self.sqe, self.attrs, self.length, self.early

        # len > min(IOCCSZ * 16, max) when offloaded, len > max otherwise
        over_max = length > p.max_capsule_bytes
        over_ioccsz = length > attrs.ioccsz * CAPSULE_UNIT
        data_start = self.data_start

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
        dsm_need = (sqe.cdw.dsm.nr + 1) * 16
        B = p.beat_bytes
        lb = (B - 1).bit_length()
        start = Signal(17)
        length17 = Signal(17)
        m.d.comb += [start.eq(data_start + offset[:17]), length17.eq(sgl_length)]
        shift = start[:lb]

        runt = length < SQE_BYTES
        software = Signal()
        sw_reason = Signal(Reason)
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

        cmd = e.cmd
        m.d.comb += [
            cmd.qpn.eq(self.qpn),
            cmd.capsule_len.eq(min_value(length, 0xFFFF)),
            e.instr.beats.eq(self.stored_beats),
            e.instr.start.eq(start),
            e.instr.length.eq(length17),
            e.instr.pop_is0.eq(self.stored_beats == 0),
            e.instr.pop_is1.eq(self.stored_beats == 1),
            e.instr.skipping.eq(start[lb:] != 0),
            e.instr.rem_le_beat.eq(length17 <= B),
            e.instr.fits_first.eq((length17 <= B) & (length17[:lb + 1] + shift <= B)),
            # bytes of the last output beat, ((length - 1) mod B) + 1, fit after `shift`
            e.instr.last_from_hold.eq((length17 - 1)[:lb] + shift < B),
            e.length.eq(length),
            e.oversize.eq(over_max | (attrs.offload & over_ioccsz)),
            e.software.eq(software),
            e.sw_reason.eq(sw_reason),
            e.qp_error.eq(attrs.offload & attrs.offload_only),
            e.psdt_bad.eq(sqe.psdt != 1),
            e.form_bad.eq(~(keyed_ok | in_capsule)),
            e.h2c_bad.eq(~host_to_ctrl & ((length > SQE_BYTES) | in_capsule)),
            e.in_capsule.eq(in_capsule),
            # icd = max(0, len - ds): offset > icd is ds + offset > len when len > ds,
            # offset != 0 otherwise; the same for offset + length
            e.offset_beyond.eq((offset[17:] != 0) |
                               Mux(length > data_start,
                                   _sum_gt(m, [data_start, offset[:17]], length, "off"),
                                   offset[:17] != 0)),
            e.end_beyond.eq(Mux(length > data_start,
                                _sum_gt(m, [data_start, offset[:17], sgl_length], length, "end"),
                                (offset[:17] != 0) | (sgl_length != 0))),
            e.moves_data.eq(moves_data),
            e.length_zero.eq(sgl_length == 0),
            e.dsm_short.eq(is_dsm & (sgl_length < dsm_need)),
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
        return m


class _DecisionLate(Elaboratable):
    """Second half of the decision: the rules' priority, the command and the read
    instruction; combinational, from the pipeline register to the FIFOs."""

    def __init__(self, params):
        self._p = params
        self.early = Signal(_early_layout(params))
        self.cmd = Signal(ParsedCommand)
        self.instr = Signal(_read_instr_layout(params))

    def elaborate(self, platform):
        m = Module()
        e = self.early
        offset_beyond = e.offset_beyond
        end_beyond = e.end_beyond

        status = Signal(3)   # index into statuses; 0 = none
        statuses = [None, NvmeStatus.INVALID_FIELD, NvmeStatus.SGL_DESC_TYPE_INVALID,
                    NvmeStatus.SGL_OFFSET_INVALID, NvmeStatus.DATA_SGL_LENGTH_INVALID]
        with m.If(e.psdt_bad):
            m.d.comb += status.eq(1)
        with m.Elif(e.form_bad):
            m.d.comb += status.eq(2)
        with m.Elif(e.h2c_bad):
            m.d.comb += status.eq(1)
        with m.Elif(e.in_capsule & offset_beyond):
            m.d.comb += status.eq(3)
        with m.Elif(e.in_capsule & end_beyond):
            m.d.comb += status.eq(4)
        with m.Elif(e.moves_data & e.length_zero):
            m.d.comb += status.eq(4)
        with m.Elif(~e.moves_data & ~e.length_zero):
            m.d.comb += status.eq(4)
        with m.Elif(e.dsm_short):
            m.d.comb += status.eq(4)

        cmd, instr = self.cmd, self.instr
        m.d.comb += [
            cmd.eq(e.cmd),
            instr.beats.eq(e.instr.beats),
            instr.pop_is0.eq(e.instr.pop_is0),
            instr.pop_is1.eq(e.instr.pop_is1),
            # as for start = length = 0 unless CUT
            instr.rem_le_beat.eq(1),
            instr.fits_first.eq(1),
            instr.last_from_hold.eq(1),
        ]
        with m.If(e.oversize):
            m.d.comb += [cmd.action.eq(Action.QP_ERROR), cmd.reason.eq(Reason.OVERSIZE),
                         instr.mode.eq(ReadMode.DROP)]
        with m.Elif(e.software & e.qp_error):
            m.d.comb += [cmd.action.eq(Action.QP_ERROR), cmd.reason.eq(e.sw_reason),
                         instr.mode.eq(ReadMode.DROP)]
        with m.Elif(e.software):
            m.d.comb += [cmd.action.eq(Action.SOFTWARE), cmd.reason.eq(e.sw_reason),
                         cmd.has_data.eq(1), cmd.data_len.eq(e.length),
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
        with m.Elif(e.in_capsule):
            m.d.comb += [cmd.action.eq(Action.SERVE), cmd.has_data.eq(1),
                         cmd.data_len.eq(e.instr.length),
                         instr.mode.eq(ReadMode.CUT),
                         instr.start.eq(e.instr.start),
                         instr.length.eq(e.instr.length),
                         instr.skipping.eq(e.instr.skipping),
                         instr.rem_le_beat.eq(e.instr.rem_le_beat),
                         instr.fits_first.eq(e.instr.fits_first),
                         instr.last_from_hold.eq(e.instr.last_from_hold)]
        with m.Else():
            m.d.comb += [cmd.action.eq(Action.SERVE), instr.mode.eq(ReadMode.DROP)]
        return m


class _CapsuleWriter(Elaboratable):
    """Input side: accept beats, store them, decide at the end of each capsule.

    Pipeline: the input register ``s1`` holds one beat (the QP lookup issued
    when it was accepted returns while it sits there); ``s2`` holds one
    complete capsule's SQE, length and attributes while ``_DecisionEarly``
    runs; ``s3`` holds its result while ``_DecisionLate`` decides and the
    command and read instruction are written to their FIFOs.
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
        m.submodules.decision = decision = _DecisionEarly(p)
        m.submodules.decision_late = decision_late = _DecisionLate(p)

        # input beat index (which beat of its capsule the next accepted beat is)
        in_idx = Signal(_BEAT_IDX_WIDTH)
        in_first = Signal(init=1)                # in_idx == 0

        # stage 1: one beat
        s1_valid = Signal()
        s1 = Signal(CapsuleBeat(W))
        s1_idx = Signal(_BEAT_IDX_WIDTH)
        s1_stored = Signal(_BEAT_IDX_WIDTH)      # beats of this capsule stored before s1's
        attrs_reg = Signal(QpCapsuleAttrs)
        qpn_reg = Signal(QPN_WIDTH)
        sqe_regs = [Signal(W, name=f"sqe_beat{i}") for i in range(p.sqe_beats)]

        # stage 2: one complete capsule; stage 3: its early decision
        s2_valid = Signal()
        s3_valid = Signal()

        # which beat s1 holds, as flags registered with it: beat 0, beat i of the SQE
        s1_first = Signal()
        s1_sqe_beat = Signal(p.sqe_beats)
        first = s1_first
        attrs = Signal(QpCapsuleAttrs)
        qpn = Signal(QPN_WIDTH)
        m.d.comb += [attrs.eq(Mux(first, self.lookup_data, attrs_reg)),
                     qpn.eq(Mux(first, s1.qpn, qpn_reg))]
        # Beats are stored up to max_capsule_bytes whatever the QP's limit: a capsule over
        # its QP's limit is dropped by the reader. The flag is registered with the beat, so
        # the hand-shake does not wait for the QP lookup.
        s1_store = Signal()
        store = s1_valid & s1_store
        s3_free = ~s3_valid | self.out_ready
        s2_free = ~s2_valid | s3_free
        s1_advance = s1_valid & (~store | self.pkt_w_rdy) & (~s1.last | s2_free)
        in_take = self.i.valid & (~s1_valid | s1_advance)

        m.d.comb += [
            self.i.ready.eq(~s1_valid | s1_advance),
            self.lookup_addr.eq(self.i.payload.qpn),
            self.lookup_en.eq(in_take & in_first),
            self.pkt_w_data.eq(Cat(s1.data, s1.keep)),
            self.pkt_w_en.eq(store & s1_advance),
        ]

        with m.If(in_take):
            m.d.sync += [s1.eq(self.i.payload), s1_idx.eq(in_idx),
                         s1_store.eq(in_idx < p.max_capsule_beats),
                         s1_first.eq(in_first),
                         s1_sqe_beat.eq(Cat(in_idx == i for i in range(p.sqe_beats)))]
            m.d.sync += in_first.eq(self.i.payload.last)
            with m.If(self.i.payload.last):
                m.d.sync += in_idx.eq(0)
            with m.Elif(in_idx != (1 << _BEAT_IDX_WIDTH) - 1):
                m.d.sync += in_idx.eq(in_idx + 1)
        with m.If(in_take):
            m.d.sync += s1_valid.eq(1)
        with m.Elif(s1_advance):
            m.d.sync += s1_valid.eq(0)

        sqe_now = [Mux(s1_sqe_beat[i], s1.data, reg) for i, reg in enumerate(sqe_regs)]
        stored_now = s1_stored + store
        # The wide registers are loaded from `s1` whenever it holds their beat, whether or
        # not it advances this cycle (loading the same beat again changes nothing), so that
        # their enables do not wait for the hand-shake.
        with m.If(s1_valid & first):
            m.d.sync += [attrs_reg.eq(self.lookup_data), qpn_reg.eq(s1.qpn)]
        for i, reg in enumerate(sqe_regs):
            with m.If(s1_valid & s1_sqe_beat[i]):
                m.d.sync += reg.eq(s1.data)
        with m.If(s1_advance):
            m.d.sync += s1_stored.eq(Mux(s1.last, 0, stored_now))
        with m.If(s1_valid & s1.last & s2_free):
            m.d.sync += [
                decision.sqe.eq(Cat(*sqe_now)),
                decision.length.eq(s1_idx * B + popcount(s1.keep)),
                decision.attrs.eq(attrs),
                decision.data_start.eq(SQE_BYTES + attrs.icdoff * CAPSULE_UNIT),
                decision.qpn.eq(qpn),
                decision.stored_beats.eq(stored_now),
            ]
        with m.If(s1_advance & s1.last):
            m.d.sync += s2_valid.eq(1)
        with m.Elif(s3_free):
            m.d.sync += s2_valid.eq(0)

        with m.If(s3_free):
            m.d.sync += [s3_valid.eq(s2_valid), decision_late.early.eq(decision.early)]

        m.d.comb += [
            self.out_valid.eq(s3_valid),
            self.cmd.eq(decision_late.cmd),
            self.instr.eq(decision_late.instr),
        ]
        return m


def _reader_state_layout(params):
    """The reader's copy of one read instruction, with its counters and precomputed flags."""
    B = params.beat_bytes
    lb = (B - 1).bit_length()
    return data.StructLayout({
        "drop": 1,                         # the mode in force, one-hot
        "pass_": 1,
        "cut": 1,
        "to_pop": _BEAT_IDX_WIDTH,         # stored beats still to pop
        "pop_is0": 1,                      # to_pop == 0
        "pop_is1": 1,                      # to_pop == 1
        "to_skip": 17 - lb,                # CUT: beats to drop before the data's first beat
        "skipping": 1,                     # to_skip != 0
        "shift": max(lb, 1),               # CUT: byte offset of the data in its first beat
        "shift_nz": 1,                     # shift != 0
        "remaining": 17,                   # CUT: bytes still to emit
        "rem_le_beat": 1,                  # remaining <= B: the next emitted beat is the last
        "fits_first": 1,                   # CUT: all the data is in its first beat
        "last_from_hold": 1,               # CUT: the last output beat needs no further stored beat
    })


class _PacketReader(Elaboratable):
    """Output side: pop each capsule's stored beats and emit its packet.

    The read instruction is taken into a two-entry instruction register (its
    ``instr_ready`` is a flip-flop); the head entry is the current capsule and
    is replaced in the cycle its last stored beat is popped and its packet is
    complete, so consecutive capsules follow without a bubble. Counters count
    down and the comparisons the cut logic needs are precomputed when an
    instruction is taken, so that the decisions of a cycle come from
    flip-flops through a few LUT levels.
    """

    def __init__(self, params):
        self._p = params
        W = params.data_width
        self.instr = Signal(_read_instr_layout(params))   # ``mode`` is the mode in force
        self.instr_valid = Signal()
        self.instr_ready = Signal()
        self.pkt_valid = Signal()
        self.pkt_data = Signal(W + W // 8)
        self.pkt_pop = Signal()
        self.o = stream.Signature(StreamBeat(W)).create()

    def elaborate(self, platform):
        m = Module()
        p = self._p
        W, B = p.data_width, p.beat_bytes
        lb = (B - 1).bit_length()
        layout = _reader_state_layout(p)
        beat_data = self.pkt_data[:W]
        beat_keep = self.pkt_data[W:]

        # the incoming instruction, with its counters loaded and flags precomputed
        ins = self.instr
        inc = Signal(layout)
        shift_in = ins.start[:lb]
        m.d.comb += [
            inc.drop.eq(ins.mode == ReadMode.DROP),
            inc.pass_.eq(ins.mode == ReadMode.PASS),
            inc.cut.eq(ins.mode == ReadMode.CUT),
            inc.shift_nz.eq(shift_in != 0),
            inc.to_pop.eq(ins.beats),
            inc.pop_is0.eq(ins.pop_is0),
            inc.pop_is1.eq(ins.pop_is1),
            inc.to_skip.eq(ins.start[lb:]),
            inc.skipping.eq(ins.skipping),
            inc.shift.eq(shift_in),
            inc.remaining.eq(ins.length),
            inc.rem_le_beat.eq(ins.rem_le_beat),
            inc.fits_first.eq(ins.fits_first),
            inc.last_from_hold.eq(ins.last_from_hold),
        ]

        cur = Signal(layout)
        cur_valid = Signal()
        spare = Signal(layout)
        spare_valid = Signal()
        m.d.comb += self.instr_ready.eq(~spare_valid)

        cut_done = Signal()                   # CUT: every byte emitted
        hold = Signal(W)
        hold_valid = Signal()

        last_stored = cur.pop_is1
        beat_rdy = self.pkt_valid & ~cur.pop_is0
        shift = cur.shift
        rem_le_beat = cur.rem_le_beat

        pop = Signal()
        emit = Signal()
        emit_last = Signal()
        out_bytes = Signal(range(B + 1))

        # CUT: beats before the data, and after it, are dropped
        cut_skip = cut_done | cur.skipping
        # CUT: the last output beat is made of the held beat alone
        flush = hold_valid & rem_le_beat & cur.last_from_hold
        # CUT: the data's first beat goes to `hold`: its data continues in the next beat
        load = ~hold_valid & cur.shift_nz & ~cur.fits_first
        # a stored beat is popped whatever o_data's ready, or with it, or not at all
        pop_free = cur.drop | (cur.cut & (cut_skip | (~flush & load)))
        pop_with_out = cur.pass_ | (cur.cut & ~cut_skip & ~flush & ~load)
        m.d.comb += pop.eq(cur_valid & beat_rdy & (pop_free | (pop_with_out & self.o.ready)))

        window = Cat(Mux(hold_valid, hold, beat_data), beat_data)
        with m.If(cur.pass_):
            m.d.comb += [
                self.o.valid.eq(cur_valid & beat_rdy),
                self.o.payload.data.eq(beat_data),
                self.o.payload.keep.eq(beat_keep),
                self.o.payload.last.eq(last_stored),
            ]
        with m.Else():
            m.d.comb += [
                self.o.payload.data.eq(window.bit_select(shift * 8, W)),
                out_bytes.eq(Mux(rem_le_beat, cur.remaining[:lb + 1], B)),
                self.o.payload.keep.eq(keep_mask(out_bytes, B)),
                self.o.payload.last.eq(rem_le_beat),
            ]
            with m.If(cur_valid & cur.cut & ~cut_skip):
                with m.If(flush):
                    m.d.comb += [self.o.valid.eq(1), emit.eq(self.o.ready)]
                with m.Elif(~load):
                    m.d.comb += [self.o.valid.eq(beat_rdy), emit.eq(pop)]
        m.d.comb += emit_last.eq(emit & rem_le_beat)

        done_after = ~cur.cut | cut_done | emit_last
        all_popped_after = Mux(pop, cur.pop_is1, cur.pop_is0)
        finish = cur_valid & done_after & all_popped_after
        m.d.comb += self.pkt_pop.eq(pop)

        with m.If(~cur_valid | finish):
            with m.If(spare_valid):
                m.d.sync += [cur.eq(spare), cur_valid.eq(1), spare_valid.eq(0)]
            with m.Else():
                m.d.sync += [cur.eq(inc), cur_valid.eq(self.instr_valid)]
            m.d.sync += [cut_done.eq(0), hold_valid.eq(0)]
        with m.Else():
            with m.If(self.instr_valid & ~spare_valid):
                m.d.sync += [spare.eq(inc), spare_valid.eq(1)]
            with m.If(pop):
                m.d.sync += [cur.to_pop.eq(cur.to_pop - 1), cur.pop_is0.eq(cur.pop_is1),
                             cur.pop_is1.eq(cur.to_pop == 2)]
                with m.If(cur.skipping):
                    m.d.sync += [cur.to_skip.eq(cur.to_skip - 1), cur.skipping.eq(cur.to_skip != 1)]
            with m.If(emit):
                m.d.sync += [cur.remaining.eq(cur.remaining - B),
                             cur.rem_le_beat.eq(cur.remaining <= 2 * B)]
            with m.If(emit_last):
                m.d.sync += [cut_done.eq(1), hold_valid.eq(0)]
            with m.Elif(cur.cut & pop & ~cut_skip & cur.shift_nz):
                m.d.sync += hold_valid.eq(1)
        # `hold` is the last beat popped: it matters only while `hold_valid`, and while that
        # is set every pop is one that keeps its beat (or ends the packet)
        with m.If(pop):
            m.d.sync += hold.eq(beat_data)
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
        One per capsule, capsule order; from a FIFO's output register. With
        nothing queued, ``valid`` rises in the fifth cycle after the cycle in
        which the capsule's last beat is accepted (the fourth before the
        decision was split into two pipeline stages).
    o_data : Out(stream.Signature(StreamBeat(DATA_W)))
        One packet per ``o_cmd`` with ``has_data``, in the same order.
        ``valid`` and the payload come from flip-flops and ``ready`` goes only
        to flip-flops (a two-entry register slice). A packet's first beat comes
        two cycles later than before that slice and the decision's second
        stage were added (e.g. at DATA_W 128, a Write with 64 bytes of
        in-capsule data alone: the tenth cycle after its last beat is
        accepted, the eighth before).
    i_verdict : In(stream.Signature(ReadMode)), with ``external_verdict`` only
        One per capsule, in capsule order: what ``o_data`` carries for it
        (DROP: nothing; PASS: the whole capsule; CUT: the in-capsule data of a
        capsule the parser decided SERVE with an in-capsule SGL). The stage
        after the parser sends it once the namespace is known; the parser's
        own ``has_data`` then does not apply. Taken together with the
        capsule's read instruction into the reader's two-entry instruction
        register (``ready`` from a flip-flop): up to two capsules ahead of the
        packet being emitted, not when that packet is complete.
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
        # two capsules: one written while the other is read. A memory (the buffered FIFO's
        # depth less its output register) just over 512 entries is cut to 512, which still
        # holds a capsule and a half, so that it fills block RAMs in their widest mode
        # (default: 512 x 36, four block RAMs instead of eight at 1024 x 18)
        depth = 2 * p.max_capsule_beats
        if 512 < depth - 1 < 1024 and p.max_capsule_beats < 512:
            depth = 513
        m.submodules.pkt_fifo = pkt_fifo = fifo.SyncFIFOBuffered(width=W + W // 8,
                                                                 depth=depth)
        cmd_depth, instr_depth = 6, 8
        m.submodules.cmd_fifo = cmd_fifo = fifo.SyncFIFOBuffered(
            width=data.Layout.cast(ParsedCommand).size, depth=cmd_depth)
        # first-word-fall-through (LUT memory read without a register): the reader's
        # instruction register is its output register
        m.submodules.instr_fifo = instr_fifo = fifo.SyncFIFO(
            width=instr_layout.size, depth=instr_depth)
        # Room for the writer's next command and instruction, registered: each FIFO has a
        # free entry beyond the one a write in this cycle may take. The writer's hand-shake
        # starts from this flip-flop instead of the FIFOs' levels.
        room = Signal()
        m.d.sync += room.eq((cmd_fifo.w_level <= cmd_depth - 2) &
                            (instr_fifo.w_level <= instr_depth - 2))

        wiring.connect(m, wiring.flipped(self.i_capsule), writer.i)
        m.d.comb += [
            self.qp_lookup_addr.eq(writer.lookup_addr),
            self.qp_lookup_en.eq(writer.lookup_en),
            writer.lookup_data.eq(self.qp_lookup_data),

            pkt_fifo.w_data.eq(writer.pkt_w_data),
            pkt_fifo.w_en.eq(writer.pkt_w_en),
            writer.pkt_w_rdy.eq(pkt_fifo.w_rdy),

            writer.out_ready.eq(room),
            cmd_fifo.w_data.eq(writer.cmd),
            cmd_fifo.w_en.eq(writer.out_valid & room),
            instr_fifo.w_data.eq(writer.instr),
            instr_fifo.w_en.eq(writer.out_valid & room),

            self.o_cmd.valid.eq(cmd_fifo.r_rdy),
            self.o_cmd.payload.eq(cmd_fifo.r_data),
            cmd_fifo.r_en.eq(self.o_cmd.ready),
        ]

        # the stored beats reach the reader through a register slice: the FIFO's read
        # enable (block RAM clock enable) does not wait for the reader's decisions
        m.submodules.pkt_slice = pkt_slice = RegisterSlice(W + W // 8)
        # ... after a plain register with no logic after the block RAM's output (its enable
        # comes from flip-flops only)
        pkt_reg = Signal(W + W // 8)
        pkt_reg_valid = Signal()
        pkt_reg_take = ~pkt_reg_valid | pkt_slice.i_ready
        with m.If(pkt_reg_take):
            m.d.sync += [pkt_reg.eq(pkt_fifo.r_data), pkt_reg_valid.eq(pkt_fifo.r_rdy)]
        m.d.comb += [
            pkt_slice.i_valid.eq(pkt_reg_valid),
            pkt_slice.i_data.eq(pkt_reg),
            pkt_fifo.r_en.eq(pkt_reg_take),
            reader.pkt_valid.eq(pkt_slice.o_valid),
            reader.pkt_data.eq(pkt_slice.o_data),
            pkt_slice.o_ready.eq(reader.pkt_pop),
        ]
        m.d.comb += reader.instr.eq(instr_fifo.r_data)
        if self.external_verdict:
            m.d.comb += [
                reader.instr.mode.eq(self.i_verdict.payload),
                reader.instr_valid.eq(instr_fifo.r_rdy & self.i_verdict.valid),
                instr_fifo.r_en.eq(reader.instr_ready & self.i_verdict.valid),
                self.i_verdict.ready.eq(reader.instr_ready & instr_fifo.r_rdy),
            ]
        else:
            m.d.comb += [
                reader.instr_valid.eq(instr_fifo.r_rdy),
                instr_fifo.r_en.eq(reader.instr_ready),
            ]

        # and leave it through one: `o_data` comes from flip-flops, its ready goes to flip-flops
        m.submodules.out_slice = out_slice = RegisterSlice(StreamBeat(W))
        m.d.comb += [
            out_slice.i_valid.eq(reader.o.valid),
            out_slice.i_data.eq(reader.o.payload),
            reader.o.ready.eq(out_slice.i_ready),
            self.o_data.valid.eq(out_slice.o_valid),
            self.o_data.payload.eq(out_slice.o_data),
            out_slice.o_ready.eq(self.o_data.ready),
        ]
        return m
