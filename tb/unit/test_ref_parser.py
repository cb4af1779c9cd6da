"""Directed tests of the capsule parser's reference model (sim/model/parser.py).

One or more tests per rule of docs/parser.md; the rule number is in each
test's comment. Capsules are built with sim/traffic/capsules.py on top of formats.py.
"""

import random

import pytest

from rtl.formats import (
    QP_OPS_ALL,
    Action,
    GenericSc,
    OpBit,
    Opcode,
    ParsedCommand,
    Reason,
    build_capsule,
    decode,
    icd_start,
)
from sim.model.parser import expected_descriptor_bytes, parse_capsule
from sim.traffic.capsules import (
    KINDS,
    CapsuleGen,
    icd_sgl,
    keyed_sgl,
    make_fabrics_sqe,
    make_sqe,
    prp_dptr,
    sgl_descriptor,
)

MAX = 4160
QPN = 0x00ABCD
CID = 0x1234
NSID = 7
ADDR = 0x0000_7F00_1234_5000
KEY = 0x00C0FFEE


def qp(**overrides):
    """An offloaded QP with every op enabled and room for 4 KiB of in-capsule data."""
    return {"offload": 1, "offload_only": 0, "ops": QP_OPS_ALL, "ioccsz": 260, "icdoff": 0,
            **overrides}


def parse(capsule, max_capsule_bytes=MAX, **attrs):
    return parse_capsule(capsule, QPN, qp(**attrs), max_capsule_bytes)


def read_sqe(**kwargs):
    args = {"sgl": keyed_sgl(ADDR, 8 * 512, KEY), "slba": 0x100, "nlb": 7, **kwargs}
    return make_sqe(Opcode.READ, CID, NSID, **args)


def write_sqe(**kwargs):
    args = {"sgl": keyed_sgl(ADDR, 8 * 512, KEY), "slba": 0x100, "nlb": 7, **kwargs}
    return make_sqe(Opcode.WRITE, CID, NSID, **args)


def no_data_sqe(opcode, sgl=None):
    return make_sqe(opcode, CID, NSID, sgl=sgl)


def dsm_sqe(nr, sgl):
    return make_sqe(Opcode.DSM, CID, NSID, nr=nr, ad=1, sgl=sgl)


def write_icd(offset, length, received, icdoff=0):
    """A Write with an in-capsule SGL and ``received`` bytes of in-capsule data."""
    payload = bytes((i * 7 + 3) & 0xFF for i in range(received))
    return build_capsule(write_sqe(sgl=icd_sgl(offset, length)), payload, icdoff)


def assert_route(result, action, reason, capsule):
    """Rules 1-7: no status; SOFTWARE carries the whole capsule, QP_ERROR nothing."""
    fields, packet = result
    assert (fields["action"], fields["reason"]) == (action, reason)
    assert fields["status"] == {"sc": 0, "sct": 0, "dnr": 0}
    if action is Action.SOFTWARE:
        assert packet == capsule
        assert (fields["has_data"], fields["data_len"]) == (1, len(capsule))
    else:
        assert packet is None
        assert (fields["has_data"], fields["data_len"]) == (0, 0)


def assert_respond(result, sc):
    """Rules 8-15: RESPOND with SCT 0, DNR 1, the given SC, and no packet."""
    fields, packet = result
    assert (fields["action"], fields["reason"]) == (Action.RESPOND, Reason.NONE)
    assert fields["status"] == {"sc": sc.value, "sct": 0, "dnr": 1}
    assert packet is None
    assert (fields["has_data"], fields["data_len"]) == (0, 0)


def assert_serve(result, packet=None):
    fields, got = result
    assert (fields["action"], fields["reason"]) == (Action.SERVE, Reason.NONE)
    assert fields["status"] == {"sc": 0, "sct": 0, "dnr": 0}
    assert got == packet
    assert fields["has_data"] == int(packet is not None)
    assert fields["data_len"] == (0 if packet is None else len(packet))


# --- rule 1: oversize ---------------------------------------------------------------------------

def test_capsule_longer_than_ioccsz_puts_the_qp_in_error():
    capsule = write_sqe() + bytes(65)                 # 129 bytes, limit 8 x 16 = 128
    result = parse(capsule, ioccsz=8)
    assert_route(result, Action.QP_ERROR, Reason.OVERSIZE, capsule)
    fields, _ = result
    assert fields["capsule_len"] == 129
    assert (fields["opcode"], fields["cid"]) == (Opcode.WRITE.value, CID)


def test_capsule_exactly_at_ioccsz_is_not_oversize():
    capsule = write_sqe() + bytes(64)
    assert_serve(parse(capsule, ioccsz=8))


def test_max_capsule_bytes_caps_the_limit_when_ioccsz_is_larger():
    assert_serve(parse(write_sqe() + bytes(192), max_capsule_bytes=256, ioccsz=0xFFFF))
    capsule = write_sqe() + bytes(193)
    result = parse(capsule, max_capsule_bytes=256, ioccsz=0xFFFF)
    assert_route(result, Action.QP_ERROR, Reason.OVERSIZE, capsule)


def test_oversize_wins_over_runt():
    runt = read_sqe()[:40]                            # 40 bytes, limit 2 x 16 = 32
    assert_route(parse(runt, ioccsz=2), Action.QP_ERROR, Reason.OVERSIZE, runt)


def test_not_offloaded_qp_ignores_its_ioccsz():
    capsule = read_sqe() + bytes(16)
    fields, packet = parse(capsule, ioccsz=0, offload=0)
    assert (fields["action"], fields["reason"]) == (Action.SOFTWARE, Reason.NOT_OFFLOADED)
    assert packet == capsule


def test_not_offloaded_capsule_beyond_the_engine_store_is_oversize():
    capsule = read_sqe() + bytes(4160)
    fields, _ = parse(capsule, ioccsz=0, offload=0, max_capsule_bytes=4160)
    assert (fields["action"], fields["reason"]) == (Action.QP_ERROR, Reason.OVERSIZE)


def test_capsule_len_saturates_at_65535():
    capsule = write_sqe() + bytes(70000 - 64)
    fields, packet = parse(capsule, max_capsule_bytes=65520, ioccsz=0xFFFF)
    assert (fields["action"], fields["reason"]) == (Action.QP_ERROR, Reason.OVERSIZE)
    assert fields["capsule_len"] == 65535
    assert packet is None
    assert decode(ParsedCommand, expected_descriptor_bytes(fields))["capsule_len"] == 65535


def test_capsule_len_counts_every_byte_below_saturation():
    capsule = write_sqe() + bytes(65520 - 64)
    fields, _ = parse(capsule, max_capsule_bytes=65520, ioccsz=0xFFFF)
    assert fields["action"] is Action.SERVE
    assert fields["capsule_len"] == 65520


# --- rule 2: runt -------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 2, 40, 63])
def test_runt_goes_to_software_whole_with_zeroed_sqe_fields(size):
    capsule = read_sqe(fuse=1)[:size]
    result = parse(capsule)
    assert_route(result, Action.SOFTWARE, Reason.RUNT, capsule)
    fields, _ = result
    assert fields["capsule_len"] == size
    for name in ("opcode", "fuse", "psdt", "cid", "nsid", "sgl_keyed", "sgl_invalidate",
                 "sgl_address", "sgl_length", "sgl_key"):
        assert fields[name] == 0, name
    assert fields["cdw"] == {"raw": [0] * 6}


def test_runt_wins_over_not_offloaded():
    capsule = read_sqe()[:32]
    assert_route(parse(capsule, offload=0), Action.SOFTWARE, Reason.RUNT, capsule)


# --- rule 3: not offloaded ----------------------------------------------------------------------

@pytest.mark.parametrize("capsule", [
    read_sqe(), write_icd(0, 512, 512), read_sqe(psdt=0), read_sqe(fuse=1),
    make_fabrics_sqe(1, CID),
], ids=["read", "write_icd", "psdt_prp", "fused", "fabrics"])
def test_not_offloaded_qp_hands_every_capsule_to_software(capsule):
    assert_route(parse(capsule, offload=0), Action.SOFTWARE, Reason.NOT_OFFLOADED, capsule)


def test_offload_only_has_no_effect_on_a_qp_that_is_not_offloaded():
    capsule = make_fabrics_sqe(1, CID)
    result = parse(capsule, offload=0, offload_only=1)
    assert_route(result, Action.SOFTWARE, Reason.NOT_OFFLOADED, capsule)
    runt = capsule[:10]
    assert_route(parse(runt, offload=0, offload_only=1), Action.SOFTWARE, Reason.RUNT, runt)


def test_software_capsule_keeps_its_sqe_fields():
    fields, _ = parse(read_sqe(), offload=0)
    assert (fields["opcode"], fields["cid"], fields["nsid"]) == (Opcode.READ.value, CID, NSID)
    assert (fields["sgl_keyed"], fields["sgl_address"], fields["sgl_key"]) == (1, ADDR, KEY)


# --- rule 4: fabrics ----------------------------------------------------------------------------

def test_fabrics_connect_goes_to_software_with_its_in_capsule_data():
    capsule = build_capsule(make_fabrics_sqe(1, CID, sgl=icd_sgl(0, 1024)), bytes(1024))
    assert_route(parse(capsule), Action.SOFTWARE, Reason.FABRICS, capsule)


def test_fabrics_wins_over_fused():
    capsule = make_sqe(Opcode.FABRICS, CID, 4, fuse=2)
    assert_route(parse(capsule), Action.SOFTWARE, Reason.FABRICS, capsule)


# --- rule 5: fused ------------------------------------------------------------------------------

@pytest.mark.parametrize("fuse", [1, 2, 3])
def test_fused_command_goes_to_software(fuse):
    capsule = read_sqe(fuse=fuse)
    assert_route(parse(capsule), Action.SOFTWARE, Reason.FUSED, capsule)
    assert parse(capsule)[0]["fuse"] == fuse


def test_fused_wins_over_unknown_opcode():
    capsule = make_sqe(0x05, CID, NSID, fuse=1)
    assert_route(parse(capsule), Action.SOFTWARE, Reason.FUSED, capsule)


# --- rule 6: opcode not served ------------------------------------------------------------------

@pytest.mark.parametrize("opcode", [0x03, 0x04, 0x05, 0x0A, 0x0D, 0x7E, 0x80, 0xFF])
def test_unserved_opcode_goes_to_software(opcode):
    capsule = make_sqe(opcode, CID, NSID, sgl=keyed_sgl(ADDR, 512, KEY))
    result = parse(capsule)
    assert_route(result, Action.SOFTWARE, Reason.OPCODE, capsule)
    assert result[0]["opcode"] == opcode


def test_unserved_opcode_wins_over_psdt_and_sgl_checks():
    capsule = make_sqe(0x11, CID, NSID, psdt=0, sgl=sgl_descriptor(2, 0))
    assert_route(parse(capsule), Action.SOFTWARE, Reason.OPCODE, capsule)


# --- rule 7: opcode disabled --------------------------------------------------------------------

_SERVED_SAMPLES = {
    OpBit.FLUSH: lambda: no_data_sqe(Opcode.FLUSH),
    OpBit.WRITE: write_sqe,
    OpBit.READ: read_sqe,
    OpBit.WRITE_ZEROES: lambda: no_data_sqe(Opcode.WRITE_ZEROES),
    OpBit.DSM: lambda: dsm_sqe(0, keyed_sgl(ADDR, 16, KEY)),
}


@pytest.mark.parametrize("bit", list(OpBit), ids=lambda b: b.name)
def test_opcode_with_its_ops_bit_clear_goes_to_software(bit):
    capsule = _SERVED_SAMPLES[bit]()
    result = parse(capsule, ops=QP_OPS_ALL & ~(1 << bit))
    assert_route(result, Action.SOFTWARE, Reason.OP_DISABLED, capsule)
    assert_serve(parse(capsule, ops=1 << bit))


def test_op_disabled_wins_over_respond_rules():
    capsule = read_sqe(psdt=0)
    result = parse(capsule, ops=QP_OPS_ALL & ~(1 << OpBit.READ))
    assert_route(result, Action.SOFTWARE, Reason.OP_DISABLED, capsule)


# --- offload_only: a SOFTWARE outcome of rules 2 and 4-7 becomes QP_ERROR ---------------------

@pytest.mark.parametrize(("capsule", "ops", "reason"), [
    (read_sqe()[:50], QP_OPS_ALL, Reason.RUNT),
    (make_fabrics_sqe(4, CID), QP_OPS_ALL, Reason.FABRICS),
    (read_sqe(fuse=1), QP_OPS_ALL, Reason.FUSED),
    (make_sqe(0x0C, CID, NSID), QP_OPS_ALL, Reason.OPCODE),
    (read_sqe(), QP_OPS_ALL & ~(1 << OpBit.READ), Reason.OP_DISABLED),
], ids=["runt", "fabrics", "fused", "opcode", "op_disabled"])
def test_offload_only_qp_goes_to_error_instead_of_software(capsule, ops, reason):
    result = parse(capsule, offload_only=1, ops=ops)
    assert_route(result, Action.QP_ERROR, reason, capsule)
    assert result[0]["capsule_len"] == len(capsule)


def test_offload_only_leaves_served_and_responded_capsules_alone():
    assert_serve(parse(read_sqe(), offload_only=1))
    assert_respond(parse(read_sqe(psdt=0), offload_only=1), GenericSc.INVALID_FIELD)


# --- rule 8: PSDT -------------------------------------------------------------------------------

def test_psdt_prp_answers_invalid_field():
    capsule = read_sqe(psdt=0, sgl=prp_dptr(0x1000, 0x2000))
    assert_respond(parse(capsule), GenericSc.INVALID_FIELD)


@pytest.mark.parametrize("psdt", [2, 3])
def test_psdt_other_than_contiguous_sgl_answers_invalid_field(psdt):
    result = parse(write_sqe(psdt=psdt))
    assert_respond(result, GenericSc.INVALID_FIELD)
    assert result[0]["psdt"] == psdt


def test_psdt_check_wins_over_sgl_type_check():
    assert_respond(parse(read_sqe(psdt=0, sgl=sgl_descriptor(3, 0))), GenericSc.INVALID_FIELD)


# --- rule 9: SGL type/subtype -------------------------------------------------------------------

@pytest.mark.parametrize(("sgl_type", "subtype"), [
    (0x0, 0x0), (0x1, 0x0), (0x2, 0x0), (0x3, 0x0), (0x4, 0x1), (0x4, 0x2), (0x0, 0xF),
    (0x5, 0x0), (0xF, 0xF),
])
def test_unserved_sgl_form_answers_sgl_descriptor_type_invalid(sgl_type, subtype):
    capsule = read_sqe(sgl=sgl_descriptor(sgl_type, subtype, ADDR, 4096, KEY))
    assert_respond(parse(capsule), GenericSc.SGL_DESC_TYPE_INVALID)


def test_sgl_type_check_wins_over_in_capsule_data_on_read():
    capsule = read_sqe(sgl=sgl_descriptor(2, 0)) + bytes(32)
    assert_respond(parse(capsule), GenericSc.SGL_DESC_TYPE_INVALID)


def test_unserved_data_block_reports_its_32_bit_length():
    capsule = read_sqe(sgl={"sgl": {"address": ADDR, "length": 0x12345678,
                                    "type": 0x0, "subtype": 0x0}})
    fields, _ = parse(capsule)
    assert (fields["sgl_keyed"], fields["sgl_length"], fields["sgl_key"]) == (0, 0x12345678, 0)


def test_subtype_0xf_on_a_data_block_does_not_set_sgl_invalidate():
    capsule = read_sqe(sgl={"sgl": {"address": 0, "length": 16, "type": 0x0, "subtype": 0xF}})
    fields, _ = parse(capsule)
    assert (fields["sgl_keyed"], fields["sgl_invalidate"]) == (0, 0)


def test_keyed_descriptor_with_unserved_subtype_still_reports_keyed_fields():
    capsule = read_sqe(sgl=sgl_descriptor(0x4, 0x1, ADDR, 4096, KEY))
    fields, _ = parse(capsule)
    assert fields["action"] is Action.RESPOND
    assert (fields["sgl_keyed"], fields["sgl_invalidate"], fields["sgl_key"]) == (1, 0, KEY)


def test_unserved_sgl_type_reports_the_32_bit_length_and_no_key():
    capsule = read_sqe(sgl=sgl_descriptor(0x5, 0x0, ADDR, 0xABCDEF, KEY))
    fields, _ = parse(capsule)
    assert (fields["sgl_keyed"], fields["sgl_invalidate"]) == (0, 0)
    assert (fields["sgl_address"], fields["sgl_length"], fields["sgl_key"]) == \
        (ADDR, int.from_bytes(capsule[32:36], "little"), 0)


# --- rule 10: data in a capsule whose command carries none --------------------------------------

@pytest.mark.parametrize("opcode", [Opcode.READ, Opcode.FLUSH, Opcode.WRITE_ZEROES],
                         ids=lambda op: op.name)
def test_in_capsule_sgl_on_command_without_host_data_answers_invalid_field(opcode):
    capsule = build_capsule(make_sqe(opcode, CID, NSID, sgl=icd_sgl(0, 16)), bytes(16))
    assert_respond(parse(capsule), GenericSc.INVALID_FIELD)


@pytest.mark.parametrize("opcode", [Opcode.READ, Opcode.FLUSH, Opcode.WRITE_ZEROES],
                         ids=lambda op: op.name)
def test_in_capsule_sgl_without_data_bytes_still_answers_invalid_field(opcode):
    capsule = make_sqe(opcode, CID, NSID, sgl=icd_sgl(0, 0))
    assert len(capsule) == 64
    assert_respond(parse(capsule), GenericSc.INVALID_FIELD)


def test_trailing_bytes_after_a_keyed_read_answer_invalid_field():
    assert_respond(parse(read_sqe() + b"\x00"), GenericSc.INVALID_FIELD)


def test_icdoff_padding_alone_after_a_flush_answers_invalid_field():
    capsule = no_data_sqe(Opcode.FLUSH) + bytes(16)
    assert_respond(parse(capsule, icdoff=2), GenericSc.INVALID_FIELD)


# --- rule 11: in-capsule offset -----------------------------------------------------------------

def test_in_capsule_offset_beyond_received_data_answers_sgl_offset_invalid():
    assert_respond(parse(write_icd(101, 1, 100)), GenericSc.SGL_OFFSET_INVALID)


def test_in_capsule_offset_uses_all_64_bits():
    assert_respond(parse(write_icd((1 << 64) - 1, 1, 100)), GenericSc.SGL_OFFSET_INVALID)
    assert_respond(parse(write_icd(1 << 32, 1, 100)), GenericSc.SGL_OFFSET_INVALID)


def test_in_capsule_offset_counts_from_icdoff_not_from_the_sqe_end():
    # 32 bytes after the SQE: all of it ICDOFF padding when ICDOFF = 2, so no data.
    capsule = write_sqe(sgl=icd_sgl(1, 1)) + bytes(32)
    assert_respond(parse(capsule, icdoff=2), GenericSc.SGL_OFFSET_INVALID)
    assert_serve(parse(capsule, icdoff=0), packet=bytes(1))


def test_capsule_shorter_than_the_icdoff_padding_has_no_in_capsule_data():
    capsule = write_sqe(sgl=icd_sgl(1, 4)) + bytes(8)     # ends inside the 48-byte pad
    assert_respond(parse(capsule, icdoff=3), GenericSc.SGL_OFFSET_INVALID)


def test_dsm_in_capsule_offset_beyond_answers_sgl_offset_invalid():
    capsule = build_capsule(dsm_sqe(0, icd_sgl(17, 16)), bytes(16))
    assert_respond(parse(capsule), GenericSc.SGL_OFFSET_INVALID)


# --- rule 12: in-capsule offset + length --------------------------------------------------------

def test_in_capsule_data_past_the_end_answers_data_sgl_length_invalid():
    assert_respond(parse(write_icd(10, 91, 100)), GenericSc.DATA_SGL_LENGTH_INVALID)


def test_offset_equal_to_received_with_data_answers_length_not_offset():
    assert_respond(parse(write_icd(100, 1, 100)), GenericSc.DATA_SGL_LENGTH_INVALID)


def test_offset_plus_length_does_not_wrap():
    capsule = write_icd(1, (1 << 32) - 1, 100)
    assert_respond(parse(capsule), GenericSc.DATA_SGL_LENGTH_INVALID)


def test_in_capsule_data_ending_exactly_at_the_capsule_end_is_served():
    capsule = write_icd(10, 90, 100)
    assert_serve(parse(capsule), packet=capsule[64 + 10:])


# --- rule 13: zero length on a data-moving command ----------------------------------------------

@pytest.mark.parametrize("sqe", [
    read_sqe(sgl=keyed_sgl(ADDR, 0, KEY)),
    write_sqe(sgl=keyed_sgl(ADDR, 0, KEY)),
    dsm_sqe(0, keyed_sgl(ADDR, 0, KEY)),
], ids=["read", "write", "dsm"])
def test_zero_length_keyed_sgl_on_data_moving_command_answers_length_invalid(sqe):
    assert_respond(parse(sqe), GenericSc.DATA_SGL_LENGTH_INVALID)


def test_zero_length_in_capsule_sgl_at_the_data_end_answers_length_invalid():
    assert_respond(parse(write_icd(100, 0, 100)), GenericSc.DATA_SGL_LENGTH_INVALID)
    assert_respond(parse(write_icd(0, 0, 0)), GenericSc.DATA_SGL_LENGTH_INVALID)


# --- rule 14: length on a command that moves no data --------------------------------------------

@pytest.mark.parametrize("opcode", [Opcode.FLUSH, Opcode.WRITE_ZEROES], ids=lambda op: op.name)
@pytest.mark.parametrize("length", [1, 4096, (1 << 24) - 1])
def test_nonzero_sgl_length_on_flush_or_write_zeroes_answers_length_invalid(opcode, length):
    capsule = no_data_sqe(opcode, keyed_sgl(ADDR, length, KEY))
    assert_respond(parse(capsule), GenericSc.DATA_SGL_LENGTH_INVALID)


@pytest.mark.parametrize("opcode", [Opcode.FLUSH, Opcode.WRITE_ZEROES], ids=lambda op: op.name)
def test_null_keyed_sgl_on_flush_or_write_zeroes_is_served(opcode):
    result = parse(no_data_sqe(opcode))
    assert_serve(result)
    assert (result[0]["sgl_keyed"], result[0]["sgl_length"]) == (1, 0)


def test_flush_with_address_and_key_but_zero_length_is_served():
    assert_serve(parse(no_data_sqe(Opcode.FLUSH, keyed_sgl(ADDR, 0, KEY, invalidate=True))))


# --- rule 15: DSM shorter than its ranges -------------------------------------------------------

@pytest.mark.parametrize(("nr", "length"), [(0, 15), (3, 63), (255, 4095)])
def test_dsm_sgl_shorter_than_its_ranges_answers_length_invalid(nr, length):
    assert_respond(parse(dsm_sqe(nr, keyed_sgl(ADDR, length, KEY))),
                   GenericSc.DATA_SGL_LENGTH_INVALID)


@pytest.mark.parametrize(("nr", "length"), [(0, 16), (3, 64), (3, 100), (255, 4096)])
def test_dsm_sgl_covering_its_ranges_is_served(nr, length):
    assert_serve(parse(dsm_sqe(nr, keyed_sgl(ADDR, length, KEY))))


def test_in_capsule_dsm_shorter_than_its_ranges_answers_length_invalid():
    capsule = build_capsule(dsm_sqe(1, icd_sgl(0, 31)), bytes(32))
    assert_respond(parse(capsule), GenericSc.DATA_SGL_LENGTH_INVALID)


# --- rule 16: serve -----------------------------------------------------------------------------

def test_keyed_read_is_served_without_a_packet_and_with_every_field():
    sqe = read_sqe(fua=1)
    fields, packet = parse(sqe)
    assert packet is None
    assert fields == {
        "qpn": QPN, "action": Action.SERVE, "reason": Reason.NONE,
        "status": {"sc": 0, "sct": 0, "dnr": 0}, "has_data": 0,
        "opcode": Opcode.READ.value, "fuse": 0, "psdt": 1, "cid": CID, "nsid": NSID,
        "sgl_keyed": 1, "sgl_invalidate": 0, "sgl_address": ADDR, "sgl_length": 4096,
        "sgl_key": KEY, "cdw": {"raw": [0x100, 0, 7 | 1 << 30, 0, 0, 0]},
        "capsule_len": 64, "data_len": 0,
    }


def test_keyed_invalidate_subtype_sets_sgl_invalidate():
    fields, _ = parse(write_sqe(sgl=keyed_sgl(ADDR, 4096, KEY, invalidate=True)))
    assert fields["action"] is Action.SERVE
    assert (fields["sgl_keyed"], fields["sgl_invalidate"], fields["sgl_key"]) == (1, 1, KEY)


def test_trailing_bytes_after_a_keyed_write_are_discarded():
    capsule = write_sqe() + bytes(range(200))
    result = parse(capsule)
    assert_serve(result)
    assert result[0]["capsule_len"] == 264


def test_in_capsule_write_packet_is_realigned_from_an_odd_offset_after_icdoff():
    icdoff, offset, length = 2, 3, 37
    capsule = write_icd(offset, length, 64, icdoff=icdoff)
    start = icd_start(icdoff) + offset
    result = parse(capsule, icdoff=icdoff)
    assert_serve(result, packet=capsule[start:start + length])
    fields, packet = result
    assert packet == bytes((i * 7 + 3) & 0xFF for i in range(offset, offset + length))
    assert (fields["sgl_keyed"], fields["sgl_invalidate"], fields["sgl_key"]) == (0, 0, 0)
    assert (fields["sgl_address"], fields["sgl_length"]) == (offset, length)
    assert fields["capsule_len"] == len(capsule) == 64 + 32 + 64


def test_in_capsule_dsm_packet_is_its_range_entries():
    ranges = bytes(range(48))
    capsule = build_capsule(dsm_sqe(2, icd_sgl(0, 48)), ranges + b"tail")
    fields, packet = parse(capsule)
    assert fields["action"] is Action.SERVE
    assert packet == ranges
    assert fields["cdw"]["raw"][0] == 2


def test_in_capsule_packet_may_fill_the_whole_capsule():
    capsule = write_icd(0, MAX - 64, MAX - 64)
    assert_serve(parse(capsule), packet=capsule[64:])


def test_descriptor_bytes_encode_the_fields_and_decode_back():
    fields, _ = parse(write_icd(5, 20, 40, icdoff=1), icdoff=1)
    raw = expected_descriptor_bytes(fields)
    assert len(raw) == 58
    back = decode(ParsedCommand, raw)
    assert back["status"] == {"p": 0, "crd": 0, "m": 0, **fields["status"]}
    assert back["cdw"]["raw"] == fields["cdw"]["raw"]
    for name in ("qpn", "action", "reason", "has_data", "opcode", "cid", "sgl_address",
                 "sgl_length", "capsule_len", "data_len"):
        assert back[name] == fields[name], name


def test_respond_descriptor_carries_the_status_with_dnr():
    fields, _ = parse(read_sqe(psdt=0))
    back = decode(ParsedCommand, expected_descriptor_bytes(fields))
    assert back["status"] == {"p": 0, "sc": 0x02, "sct": 0, "crd": 0, "m": 0, "dnr": 1}


# --- input validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("qpn", [-1, 1 << 24, "17", None, 1.0])
def test_qpn_outside_24_bits_is_rejected(qpn):
    with pytest.raises(ValueError, match="qpn"):
        parse_capsule(read_sqe(), qpn, qp(), MAX)


def test_attrs_missing_a_key_is_rejected():
    attrs = qp()
    del attrs["icdoff"]
    with pytest.raises(ValueError, match="icdoff"):
        parse_capsule(read_sqe(), QPN, attrs, MAX)


def test_attrs_with_an_unknown_key_is_rejected():
    with pytest.raises(ValueError, match="offlaod"):
        parse_capsule(read_sqe(), QPN, qp(offlaod=1), MAX)


@pytest.mark.parametrize(("name", "value"), [
    ("offload", 2), ("offload_only", -1), ("ops", 32), ("ioccsz", 1 << 16), ("icdoff", "0"),
])
def test_attrs_value_out_of_its_field_range_is_rejected(name, value):
    with pytest.raises(ValueError, match=name):
        parse_capsule(read_sqe(), QPN, qp(**{name: value}), MAX)


@pytest.mark.parametrize("max_capsule_bytes", [0, 48, 100, 65536, "4160"])
def test_bad_max_capsule_bytes_is_rejected(max_capsule_bytes):
    with pytest.raises(ValueError, match="max_capsule_bytes"):
        parse_capsule(read_sqe(), QPN, qp(), max_capsule_bytes)


def test_empty_or_non_bytes_capsule_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        parse_capsule(b"", QPN, qp(), MAX)
    with pytest.raises(ValueError, match="str"):
        parse_capsule("capsule", QPN, qp(), MAX)


# --- the generator's kinds, judged by the model -------------------------------------------------

_EXPECTED = {
    "read": (Action.SERVE, Reason.NONE, None),
    "write": (Action.SERVE, Reason.NONE, None),
    "flush": (Action.SERVE, Reason.NONE, None),
    "write_zeroes": (Action.SERVE, Reason.NONE, None),
    "dsm": (Action.SERVE, Reason.NONE, None),
    "write_icd": (Action.SERVE, Reason.NONE, None),
    "dsm_icd": (Action.SERVE, Reason.NONE, None),
    "oversize": (Action.QP_ERROR, Reason.OVERSIZE, None),
    "runt": (Action.SOFTWARE, Reason.RUNT, None),
    "fabrics": (Action.SOFTWARE, Reason.FABRICS, None),
    "fused": (Action.SOFTWARE, Reason.FUSED, None),
    "unknown_opcode": (Action.SOFTWARE, Reason.OPCODE, None),
    "op_disabled": (Action.SOFTWARE, Reason.OP_DISABLED, None),
    "psdt_not_sgl": (Action.RESPOND, Reason.NONE, GenericSc.INVALID_FIELD),
    "bad_sgl_type": (Action.RESPOND, Reason.NONE, GenericSc.SGL_DESC_TYPE_INVALID),
    "icd_on_no_data": (Action.RESPOND, Reason.NONE, GenericSc.INVALID_FIELD),
    "icd_offset_beyond": (Action.RESPOND, Reason.NONE, GenericSc.SGL_OFFSET_INVALID),
    "icd_length_beyond": (Action.RESPOND, Reason.NONE, GenericSc.DATA_SGL_LENGTH_INVALID),
    "zero_length": (Action.RESPOND, Reason.NONE, GenericSc.DATA_SGL_LENGTH_INVALID),
    "nonzero_length_no_data": (Action.RESPOND, Reason.NONE, GenericSc.DATA_SGL_LENGTH_INVALID),
    "dsm_too_short": (Action.RESPOND, Reason.NONE, GenericSc.DATA_SGL_LENGTH_INVALID),
}


def test_expected_outcomes_cover_every_kind():
    assert set(_EXPECTED) == set(KINDS)


@pytest.mark.parametrize(("max_capsule_bytes", "ioccsz", "icdoff"), [
    (4160, 260, 0), (4160, 260, 3), (4160, 4, 0), (4160, 5, 1), (128, 0xFFFF, 0),
    (65520, 0xFFFF, 2),
])
@pytest.mark.parametrize("kind", KINDS)
def test_generated_kind_gets_the_outcome_its_label_names(kind, max_capsule_bytes, ioccsz, icdoff):
    gen = CapsuleGen(random.Random(f"{kind}-{ioccsz}-{icdoff}"), max_capsule_bytes)
    ops = QP_OPS_ALL & ~(1 << OpBit.DSM) if kind == "op_disabled" else QP_OPS_ALL
    attrs = qp(ioccsz=ioccsz, icdoff=icdoff, ops=ops)
    for _ in range(30):
        built, capsule = gen.capsule(attrs, kind)
        fields, _ = parse_capsule(capsule, QPN, attrs, max_capsule_bytes)
        action, reason, sc = _EXPECTED[built]
        assert (fields["action"], fields["reason"]) == (action, reason), (built, capsule.hex())
        if sc is not None:
            assert fields["status"]["sc"] == sc.value, (built, capsule.hex())


def test_generator_falls_back_to_a_keyed_kind_without_in_capsule_room():
    gen = CapsuleGen(random.Random(1), MAX)
    attrs = qp(ioccsz=4)
    assert gen.capsule(attrs, "write_icd")[0] == "write"
    assert gen.capsule(attrs, "dsm_icd")[0] == "dsm"
    assert gen.capsule(qp(ops=QP_OPS_ALL), "op_disabled")[0] in KINDS[:5]


def test_generator_is_deterministic_for_a_seed():
    def draw(seed):
        gen = CapsuleGen(random.Random(seed), MAX)
        out = []
        for _ in range(50):
            attrs = gen.qp_attrs()
            out.append((attrs, gen.capsule(attrs)))
        return out
    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_random_capsules_respect_the_limit_and_the_model_accepts_them():
    gen = CapsuleGen(random.Random(2024), MAX)
    seen = set()
    for _ in range(1500):
        attrs = gen.qp_attrs()
        assert 4 <= attrs["ioccsz"] <= MAX // 16
        kind, capsule = gen.capsule(attrs)
        seen.add(kind)
        limit = min(attrs["ioccsz"] * 16, MAX)
        assert len(capsule) <= limit or kind == "oversize"
        fields, packet = parse_capsule(capsule, QPN, attrs, MAX)
        assert fields["has_data"] == int(packet is not None)
        assert len(expected_descriptor_bytes(fields)) == 58
    assert seen == set(KINDS)


def test_generator_rejects_unknown_kinds_and_incomplete_attrs():
    gen = CapsuleGen(random.Random(0), MAX)
    with pytest.raises(ValueError, match="bogus"):
        gen.capsule(qp(), "bogus")
    with pytest.raises(ValueError, match="ioccsz"):
        gen.capsule({"offload": 1})
    with pytest.raises(ValueError, match="max_capsule_bytes"):
        CapsuleGen(random.Random(0), 100)
