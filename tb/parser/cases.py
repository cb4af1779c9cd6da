"""Directed capsule cases: one per malformed class (and a few served forms).

Each case names the exact outcome ``docs/parser.md`` requires, written out by
hand here; the testbench asserts it *and* agreement with the reference model.
"""

from dataclasses import dataclass, field

from rtl.formats import QP_OPS_ALL, Action, NvmeStatus, OpBit, Opcode, Reason, build_capsule
from sim.traffic.capsules import icd_sgl, keyed_sgl, make_fabrics_sqe, make_sqe, sgl_descriptor

ATTRS = {"offload": 1, "offload_only": 0, "ops": QP_OPS_ALL, "ioccsz": 260, "icdoff": 0}


@dataclass(frozen=True)
class Case:
    name: str
    capsule: bytes
    action: Action
    reason: Reason = Reason.NONE
    status: tuple = None                  # (sct, sc, dnr) for RESPOND
    data: bytes = None                    # expected o_data packet
    attrs: dict = field(default_factory=lambda: dict(ATTRS))


def _read(**kw):
    return make_sqe(Opcode.READ, cid=0x11, nsid=1, sgl=keyed_sgl(0x1000, 4096, 0x55), nlb=7, **kw)


def _payload(n, seed=3):
    return bytes((seed * 7 + i * 13) & 0xFF for i in range(n))


def _cases():
    st = NvmeStatus
    icd = _payload(600)
    yield Case("keyed_read_served", _read(), Action.SERVE)
    yield Case("keyed_write_invalidate_served",
               make_sqe(Opcode.WRITE, 2, 1, sgl=keyed_sgl(0, 512, 9, invalidate=True)),
               Action.SERVE)
    yield Case("icd_write_served_realigned",
               build_capsule(make_sqe(Opcode.WRITE, 3, 1, sgl=icd_sgl(37, 500)), icd[:560],
                             icdoff=2),
               Action.SERVE, data=icd[37:537], attrs=dict(ATTRS, icdoff=2))
    yield Case("oversize_puts_qp_in_error",
               build_capsule(make_sqe(Opcode.WRITE, 4, 1, sgl=icd_sgl(0, 100)), icd[:100]),
               Action.QP_ERROR, Reason.OVERSIZE, attrs=dict(ATTRS, ioccsz=8))
    yield Case("runt_goes_to_software", _read()[:40], Action.SOFTWARE, Reason.RUNT,
               data=_read()[:40])
    yield Case("runt_on_offload_only_qp_is_qp_error", _read()[:40], Action.QP_ERROR,
               Reason.RUNT, attrs=dict(ATTRS, offload_only=1))
    yield Case("not_offloaded_qp_goes_to_software", _read(), Action.SOFTWARE,
               Reason.NOT_OFFLOADED, data=_read(), attrs=dict(ATTRS, offload=0))
    yield Case("fabrics_connect_goes_to_software", make_fabrics_sqe(0x01, 5), Action.SOFTWARE,
               Reason.FABRICS, data=make_fabrics_sqe(0x01, 5))
    yield Case("fused_goes_to_software", _read(fuse=1), Action.SOFTWARE, Reason.FUSED,
               data=_read(fuse=1))
    unknown = make_sqe(0x05, 6, 1)
    yield Case("unknown_opcode_goes_to_software", unknown, Action.SOFTWARE, Reason.OPCODE,
               data=unknown)
    yield Case("unknown_opcode_on_offload_only_qp_is_qp_error", unknown, Action.QP_ERROR,
               Reason.OPCODE, attrs=dict(ATTRS, offload_only=1))
    wz = make_sqe(Opcode.WRITE_ZEROES, 7, 1, nlb=3)
    yield Case("disabled_op_goes_to_software", wz, Action.SOFTWARE, Reason.OP_DISABLED, data=wz,
               attrs=dict(ATTRS, ops=QP_OPS_ALL & ~(1 << OpBit.WRITE_ZEROES)))
    yield Case("psdt_prp_answers_invalid_field", _read(psdt=0), Action.RESPOND,
               status=st.INVALID_FIELD)
    yield Case("sgl_segment_type_answers_sgl_descriptor_type_invalid",
               make_sqe(Opcode.READ, 8, 1, sgl=sgl_descriptor(0x2, 0x0, 0x1000, 4096)),
               Action.RESPOND, status=st.SGL_DESC_TYPE_INVALID)
    yield Case("keyed_reserved_subtype_answers_sgl_descriptor_type_invalid",
               make_sqe(Opcode.READ, 9, 1, sgl=sgl_descriptor(0x4, 0x3, 0x1000, 4096, 1)),
               Action.RESPOND, status=st.SGL_DESC_TYPE_INVALID)
    yield Case("icd_on_read_answers_invalid_field",
               build_capsule(make_sqe(Opcode.READ, 10, 1, sgl=icd_sgl(0, 64)), icd[:64]),
               Action.RESPOND, status=st.INVALID_FIELD)
    yield Case("trailing_bytes_on_flush_answer_invalid_field",
               build_capsule(make_sqe(Opcode.FLUSH, 11, 1), icd[:16]),
               Action.RESPOND, status=st.INVALID_FIELD)
    yield Case("icd_offset_beyond_data_answers_sgl_offset_invalid",
               build_capsule(make_sqe(Opcode.WRITE, 12, 1, sgl=icd_sgl(129, 1)), icd[:128]),
               Action.RESPOND, status=st.SGL_OFFSET_INVALID)
    # no in-capsule data at all (the SQE alone): any offset is beyond it, 65536 (bit 16
    # alone, the top bit of a 17-bit sum) included, and rule 11 comes before rule 12
    yield Case("icd_offset_65536_without_data_answers_sgl_offset_invalid",
               make_sqe(Opcode.WRITE, 17, 1, sgl=icd_sgl(1 << 16, 4)),
               Action.RESPOND, status=st.SGL_OFFSET_INVALID)
    yield Case("icd_offset_plus_length_beyond_data_answers_sgl_length_invalid",
               build_capsule(make_sqe(Opcode.WRITE, 13, 1, sgl=icd_sgl(100, 29)), icd[:128]),
               Action.RESPOND, status=st.DATA_SGL_LENGTH_INVALID)
    yield Case("zero_length_read_answers_sgl_length_invalid",
               make_sqe(Opcode.READ, 14, 1, sgl=keyed_sgl(0x1000, 0, 3)),
               Action.RESPOND, status=st.DATA_SGL_LENGTH_INVALID)
    yield Case("flush_with_data_length_answers_sgl_length_invalid",
               make_sqe(Opcode.FLUSH, 15, 1, sgl=keyed_sgl(0x1000, 512, 3)),
               Action.RESPOND, status=st.DATA_SGL_LENGTH_INVALID)
    yield Case("dsm_shorter_than_ranges_answers_sgl_length_invalid",
               make_sqe(Opcode.DSM, 16, 1, sgl=keyed_sgl(0x1000, 31, 3), nr=1),
               Action.RESPOND, status=st.DATA_SGL_LENGTH_INVALID)


CASES = {case.name: case for case in _cases()}
