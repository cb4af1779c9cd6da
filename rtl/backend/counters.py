"""The back end's counters unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Mux, Signal

from ..formats import (
    Opcode,
)
from .common import (
    _COUNTER,
    _Kind,
)


def build(m, top, u):
    """Namespace counters: up to three increments a response, from a FIFO

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    # the record goes in with the response (RESPOND): the command is retirement's kept copy
    (cnt_r, cnt_w, job, rcmd, status) = u.take("cnt_r cnt_w job rkept status")
    is_read = rcmd.opcode == Opcode.READ.value
    nblocks = Signal(17)
    m.d.comb += nblocks.eq(rcmd.cdw.rw.nlb + 1)
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
    count = top.o_ns_count.payload
    m.d.comb += count.index.eq(crec.index)
    with m.Switch(step):
        with m.Case(0):
            m.d.comb += [count.field.eq(crec.first), count.amount.eq(1),
                         top.o_ns_count.valid.eq(cnt_r.valid)]
        with m.Case(1):
            m.d.comb += [count.field.eq(crec.blocks_field), count.amount.eq(crec.blocks),
                         top.o_ns_count.valid.eq(cnt_r.valid & crec.blocks_en)]
        with m.Default():
            m.d.comb += [count.field.eq(crec.third), count.amount.eq(1),
                         top.o_ns_count.valid.eq(cnt_r.valid & crec.third_en)]
    more_b = crec.blocks_en
    more_c = crec.third_en
    done_step = cnt_r.valid & (top.o_ns_count.ready | ~top.o_ns_count.valid)
    with m.If(done_step):
        with m.If((step == 0) & (more_b | more_c)):
            m.d.sync += step.eq(Mux(more_b, 1, 2))
        with m.Elif((step == 1) & more_c):
            m.d.sync += step.eq(2)
        with m.Else():
            m.d.comb += cnt_r.ready.eq(1)
            m.d.sync += step.eq(0)
