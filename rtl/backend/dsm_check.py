"""The back end's dsm check unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Cat, Mux, Signal

from ..formats import (
    Opcode,
)
from .common import (
    _DsmCheck,
)


def build(m, top, u):
    """DSM range check: each range of the list as it enters staging (docs/engine.md
    section 3): stage 0 taps the beat written (in-capsule data or RDMA READ data: the
    staging write merge takes one a cycle), stage 1 holds its ranges in registers, stage
    2 adds SLBA and length, stage 3 compares the end with nsze and marks the context;
    submission answers a marked context LBA Out of Range, and waits while stage 1 or 2
    holds its beat

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (N, W, adm_cmd, adm_ctx, beat_w, c_dsm, cbits, copy_n, dsm_bad, dsm_clr, rd_count, rd_ctx,
     stg_adm, stg_rdm) = u.take(
        "N W adm_cmd adm_ctx beat_w c_dsm cbits copy_n dsm_bad dsm_clr rd_count rd_ctx stg_adm "
        "stg_rdm")
    # --- DSM range check: each range of the list as it enters staging ---------------------
    # (docs/engine.md section 3): stage 0 taps the beat written (in-capsule data or RDMA
    # READ data: the staging write merge takes one a cycle), stage 1 holds its ranges in
    # registers, stage 2 adds SLBA and length into registers (beside the range's index
    # compared with the count), stage 3 compares the end with nsze and marks the context
    # (one carry chain a stage); submission answers a marked context LBA Out of Range, and
    # waits while stage 1 or 2 holds its beat
    lanes = max(1, W // 128)        # ranges a beat carries (at 64 bits: one in two beats)
    t_fire, t_ctx, t_beat, t_data = Signal(), Signal(cbits), Signal(beat_w), Signal(W)
    t_chk = Signal(_DsmCheck)
    t_adm = Signal()                # the beat is in-capsule data (else RDMA READ data)
    # The merge takes one beat a cycle. Only ``t_fire`` and ``t_adm`` follow the
    # in-capsule beat's hand-shake; the beat's fields are chosen by the RDMA READ beat's
    # (admission's are the default: they matter only when ``t_fire``), so that
    # admission's COPY decision does not select the 64-bit fields
    adm_fire = stg_adm.valid & stg_adm.ready
    rdm_fire = stg_rdm.valid & stg_rdm.ready
    rdm_chk = c_dsm.read(rd_ctx)
    m.d.comb += [t_adm.eq(adm_fire),
                 t_fire.eq(Mux(adm_fire, adm_cmd.opcode == Opcode.DSM.value,
                               rdm_fire & rdm_chk.on))]
    with m.If(rdm_fire):
        m.d.comb += [t_chk.eq(rdm_chk), t_ctx.eq(rd_ctx),
                     t_beat.eq(rd_count), t_data.eq(stg_rdm.payload.data)]
    with m.Else():
        m.d.comb += [t_ctx.eq(adm_ctx), t_beat.eq(copy_n), t_data.eq(stg_adm.payload.data),
                     t_chk.nr.eq(adm_cmd.cdw.dsm.nr), t_chk.nsze.eq(adm_cmd.nsze)]
    ck_v, ck_ctx, ck_nsze = Signal(), Signal(cbits), Signal(64)
    ck_beat, ck_nr = Signal(beat_w), Signal(8)
    ck_slba = [Signal(64, name=f"ck_slba{j}") for j in range(lanes)]
    ck_len = [Signal(32, name=f"ck_len{j}") for j in range(lanes)]
    # stage 1 holds the beat's index and the range count; stage 2 compares them (beside
    # the range's end) rather than stage 0, where they follow the merge's choice
    m.d.sync += [ck_v.eq(t_fire), ck_ctx.eq(t_ctx), ck_nsze.eq(t_chk.nsze),
                 ck_beat.eq(t_beat), ck_nr.eq(t_chk.nr)]
    if W == 64:
        # a range's attributes and length in an even beat, its SLBA in the next one; each
        # source keeps its own half (their beats may alternate)
        half = [Signal(32, name="ck_half_adm"), Signal(32, name="ck_half_rdm")]
        with m.If(t_fire & ~t_beat[0]):
            with m.If(t_adm):
                m.d.sync += half[0].eq(t_data[32:64])
            with m.Else():
                m.d.sync += half[1].eq(t_data[32:64])
        m.d.sync += [ck_slba[0].eq(t_data), ck_len[0].eq(Mux(t_adm, half[0], half[1]))]
        ck_en = [ck_beat[0] & ((ck_beat >> 1) <= ck_nr)]
    else:
        for j in range(lanes):
            lane = t_data[128 * j:128 * (j + 1)]
            m.d.sync += [ck_slba[j].eq(lane[64:]), ck_len[j].eq(lane[32:64])]
        ck_en = [ck_beat * lanes + j <= ck_nr for j in range(lanes)]
    end_v, end_ctx, end_nsze, end_en = Signal(), Signal(cbits), Signal(64), Signal(lanes)
    end = [Signal(65, name=f"ck_end{j}") for j in range(lanes)]
    m.d.sync += [end_v.eq(ck_v), end_ctx.eq(ck_ctx), end_nsze.eq(ck_nsze),
                 end_en.eq(Cat(*ck_en))]
    m.d.sync += [end[j].eq(ck_slba[j] + ck_len[j]) for j in range(lanes)]
    past = Cat(*(end_en[j] & (end[j] > end_nsze) for j in range(lanes)))
    dsm_set = Signal(N)
    with m.If(end_v & past.any()):
        m.d.comb += dsm_set.eq(1 << end_ctx)
    m.d.sync += dsm_bad.eq((dsm_bad | dsm_set) & ~dsm_clr)
    u.give(ck_ctx=ck_ctx, ck_v=ck_v, end_ctx=end_ctx, end_v=end_v)
