"""Tests of rtl/formats.py.

The known vectors are built by hand with ``struct`` from the tables of
``../shared/spec/nvme-facts.md``, independently of the layouts they check.
"""

import struct

import pytest
from amaranth.hdl import Shape
from amaranth.lib import data, enum
from hypothesis import given
from hypothesis import strategies as st

from rtl.formats import (
    CAPSULE_UNIT,
    CQE_BYTES,
    DSM_RANGE_BYTES,
    QPN_WIDTH,
    SGL_BYTES,
    SQE_BYTES,
    Action,
    CmdDwords,
    Cqe,
    CqeStatus,
    Dptr,
    DsmRange,
    FabricsType,
    GenericSc,
    NvmeStatus,
    Opcode,
    ParsedCommand,
    QpCapsuleAttrs,
    Reason,
    Sct,
    SglData,
    SglKeyed,
    Sqe,
    StreamBeat,
    build_capsule,
    decode,
    encode,
    icd_start,
    layout_bytes,
)

# --- strategies ---------------------------------------------------------------------------------


def fields_of(shape):
    """Valid field values for any layout: ints in range, enum members, one member per union."""
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        return st.sampled_from(list(shape))
    try:
        layout = data.Layout.cast(shape)
    except TypeError:
        return st.integers(0, (1 << Shape.cast(shape).width) - 1)
    if isinstance(layout, data.ArrayLayout):
        return st.lists(fields_of(layout.elem_shape),
                        min_size=layout.length, max_size=layout.length)
    members = {name: fields_of(field.shape) for name, field in layout}
    if isinstance(layout, data.UnionLayout):
        return st.one_of([st.fixed_dictionaries({name: strategy})
                          for name, strategy in members.items()])
    return st.fixed_dictionaries(members)


def project(decoded, given_fields):
    """The part of a decoded dict that ``given_fields`` names (a union decodes every member)."""
    if isinstance(given_fields, dict):
        return {name: project(decoded[name], value) for name, value in given_fields.items()}
    return decoded


def raw_bytes(layout):
    n = layout_bytes(layout)
    return st.binary(min_size=n, max_size=n)


def full_member(layout_decoded, union, member):
    """Keep one member of a decoded union (every member of Dptr and CmdDwords is full width)."""
    return {member: layout_decoded[union][member]}


# --- sizes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("layout", "size"), [
    (Sqe, 64), (Cqe, 16), (SglKeyed, 16), (SglData, 16), (DsmRange, 16),
    (Dptr, 16), (CmdDwords, 24), (CqeStatus, 2),
])
def test_layout_sizes_match_the_spec(layout, size):
    assert layout_bytes(layout) == size
    assert data.Layout.cast(layout).size == 8 * size


def test_size_constants_match_the_layouts():
    assert SQE_BYTES == layout_bytes(Sqe) == 64
    assert CQE_BYTES == layout_bytes(Cqe) == 16
    assert SGL_BYTES == layout_bytes(Dptr) == 16
    assert DSM_RANGE_BYTES == layout_bytes(DsmRange) == 16
    assert CAPSULE_UNIT == 16
    assert QPN_WIDTH == 24


def test_stream_beat_has_data_keep_and_last():
    layout = data.Layout.cast(StreamBeat(128))
    assert layout.size == 128 + 16 + 1
    assert layout["data"].offset == 0
    assert layout["keep"].offset == 128
    assert layout["last"].offset == 144


# --- hand-built vectors ----------------------------------------------------------------------

def test_read_sqe_with_keyed_sgl_has_every_field_at_its_spec_offset():
    cid, nsid = 0xBEEF, 0x01020304
    address, length, key = 0x1122334455667788, 0xABCDEF, 0xCAFEBABE
    slba, nlb = 0x0102030405060708, 7            # NLB zero-based: eight blocks
    expected = bytearray(64)
    expected[0] = 0x02                           # Read
    expected[1] = 1 << 6                         # PSDT = 1, FUSE = 0
    expected[2:4] = struct.pack("<H", cid)
    expected[4:8] = struct.pack("<I", nsid)
    expected[24:32] = struct.pack("<Q", address)
    expected[32:35] = length.to_bytes(3, "little")
    expected[35:39] = struct.pack("<I", key)
    expected[39] = 0x4 << 4 | 0x0                # keyed data block, address
    expected[40:48] = struct.pack("<Q", slba)
    expected[48:52] = struct.pack("<I", nlb | 1 << 30 | 1 << 31)   # FUA bit 30, LR bit 31
    fields = {
        "opcode": Opcode.READ.value, "psdt": 1, "cid": cid, "nsid": nsid,
        "dptr": {"keyed": {"address": address, "length": length, "key": key,
                           "type": 0x4, "subtype": 0x0}},
        "cdw": {"rw": {"slba": slba, "nlb": nlb, "fua": 1, "lr": 1}},
    }
    assert encode(Sqe, fields) == bytes(expected)
    sqe = decode(Sqe, bytes(expected))
    assert project(sqe, fields) == fields
    assert sqe["cdw"]["raw"][0] == slba & 0xFFFFFFFF
    assert sqe["cdw"]["raw"][1] == slba >> 32
    assert sqe["cdw"]["raw"][2] == nlb | 1 << 30 | 1 << 31


def test_sqe_byte_one_holds_fuse_in_bits_1_0_and_psdt_in_bits_7_6():
    assert encode(Sqe, {"fuse": 2, "psdt": 2})[1] == 0x82
    assert encode(Sqe, {"fuse": 3})[1] == 0x03
    assert encode(Sqe, {"psdt": 3})[1] == 0xC0
    sqe = decode(Sqe, bytes([0, 0x41]) + bytes(62))
    assert (sqe["fuse"], sqe["reserved0"], sqe["psdt"]) == (1, 0, 1)


def test_keyed_sgl_invalidate_subtype_is_the_low_nibble_of_sgl_byte_15():
    raw = bytearray(16)
    raw[15] = 0x4F
    assert decode(SglKeyed, bytes(raw))["type"] == 0x4
    assert decode(SglKeyed, bytes(raw))["subtype"] == 0xF
    sqe = encode(Sqe, {"dptr": {"keyed": {"type": 0x4, "subtype": 0xF}}})
    assert sqe[39] == 0x4F


def test_in_capsule_data_block_descriptor_has_offset_and_32_bit_length():
    offset, length = 0x0000000000000130, 0x00012345
    expected = bytearray(16)
    expected[0:8] = struct.pack("<Q", offset)
    expected[8:12] = struct.pack("<I", length)
    expected[15] = 0x0 << 4 | 0x1                # data block, offset
    fields = {"address": offset, "length": length, "type": 0x0, "subtype": 0x1}
    assert encode(SglData, fields) == bytes(expected)
    assert encode(Sqe, {"dptr": {"sgl": fields}})[24:40] == bytes(expected)
    assert project(decode(SglData, bytes(expected)), fields) == fields


def test_prp_entries_sit_at_bytes_24_and_32():
    sqe = encode(Sqe, {"dptr": {"prp": {"prp1": 0x1000_2340, "prp2": 0xABC000}}})
    assert sqe[24:32] == struct.pack("<Q", 0x1000_2340)
    assert sqe[32:40] == struct.pack("<Q", 0xABC000)


def test_dsm_sqe_has_zero_based_range_count_and_deallocate_bit():
    expected = bytearray(64)
    expected[0] = 0x09
    expected[40:44] = struct.pack("<I", 5)        # NR = 5: six ranges
    expected[44:48] = struct.pack("<I", 1 << 2)   # AD = CDW11 bit 2
    fields = {"opcode": Opcode.DSM.value, "cdw": {"dsm": {"nr": 5, "ad": 1}}}
    assert encode(Sqe, fields) == bytes(expected)
    assert decode(Sqe, bytes(expected))["cdw"]["dsm"]["nr"] == 5


def test_fabrics_fctype_is_byte_4_of_the_sqe():
    sqe = encode(Sqe, {"opcode": Opcode.FABRICS.value, "nsid": FabricsType.CONNECT.value})
    assert sqe[0] == 0x7F
    assert sqe[4] == 0x01
    assert sqe[5:8] == bytes(3)


def test_opcode_values_match_the_spec():
    assert {op.name: op.value for op in Opcode} == {
        "FLUSH": 0x00, "WRITE": 0x01, "READ": 0x02, "WRITE_ZEROES": 0x08, "DSM": 0x09,
        "FABRICS": 0x7F}
    assert {t.name: t.value for t in FabricsType} == {
        "PROPERTY_SET": 0x00, "CONNECT": 0x01, "PROPERTY_GET": 0x04,
        "AUTH_SEND": 0x05, "AUTH_RECV": 0x06}


def test_cqe_has_status_in_bytes_14_15_with_phase_in_bit_0():
    dw0, dw1, sqhd, sqid, cid = 0xDEADBEEF, 0x01234567, 0x0102, 0x0304, 0xA55A
    p, sc, sct, crd, m, dnr = 1, 0x16, 2, 1, 1, 1
    status = p | sc << 1 | sct << 9 | crd << 12 | m << 14 | dnr << 15
    expected = struct.pack("<IIHHHH", dw0, dw1, sqhd, sqid, cid, status)
    fields = {"dw0": dw0, "dw1": dw1, "sqhd": sqhd, "sqid": sqid, "cid": cid,
              "status": {"p": p, "sc": sc, "sct": sct, "crd": crd, "m": m, "dnr": dnr}}
    assert encode(Cqe, fields) == expected
    assert decode(Cqe, expected) == fields


@pytest.mark.parametrize(("field", "bit", "width"), [
    ("p", 0, 1), ("sc", 1, 8), ("sct", 9, 3), ("crd", 12, 2), ("m", 14, 1), ("dnr", 15, 1),
])
def test_cqe_status_field_bit_positions(field, bit, width):
    top = (1 << width) - 1
    assert encode(CqeStatus, {field: top}) == struct.pack("<H", top << bit)


def test_invalid_field_status_word_is_0x8004():
    sct, sc, dnr = NvmeStatus.INVALID_FIELD
    word = encode(CqeStatus, {"sc": sc.value, "sct": sct.value, "dnr": dnr})
    assert word == struct.pack("<H", 0x8004)


def test_dsm_range_is_attributes_length_then_starting_lba():
    expected = struct.pack("<IIQ", 0x11223344, 0x1000, 0x0000_0102_0304_0506)
    fields = {"attributes": 0x11223344, "length": 0x1000, "slba": 0x0000_0102_0304_0506}
    assert encode(DsmRange, fields) == expected
    assert decode(DsmRange, expected) == fields


def test_status_table_matches_nvme_facts():
    generic = Sct.GENERIC
    assert NvmeStatus.INVALID_FIELD == (generic, GenericSc.INVALID_FIELD, 1)
    assert GenericSc.INVALID_FIELD.value == 0x02
    assert NvmeStatus.SGL_OFFSET_INVALID[1].value == 0x16
    assert NvmeStatus.DATA_SGL_LENGTH_INVALID[1].value == 0x0F
    assert NvmeStatus.SGL_DESC_TYPE_INVALID[1].value == 0x11
    assert NvmeStatus.LBA_OUT_OF_RANGE[1].value == 0x80
    assert NvmeStatus.NS_NOT_READY == (generic, GenericSc.NS_NOT_READY, 0)
    assert NvmeStatus.INVALID_NS[1].value == 0x0B
    assert NvmeStatus.DATA_TRANSFER_ERROR == (generic, GenericSc.DATA_TRANSFER_ERROR, 0)
    assert NvmeStatus.INTERNAL_ERROR == (generic, GenericSc.INTERNAL_ERROR, 0)
    assert GenericSc.DATA_TRANSFER_ERROR.value == 0x04
    assert GenericSc.INTERNAL_ERROR.value == 0x06


# --- property tests: round trips --------------------------------------------------------------

@pytest.mark.parametrize("layout", [Sqe, Cqe, DsmRange, SglKeyed, SglData, ParsedCommand,
                                    QpCapsuleAttrs])
@given(st.data())
def test_encode_then_decode_gives_back_the_fields(layout, draw):
    fields = draw.draw(fields_of(layout))
    raw = encode(layout, fields)
    assert len(raw) == layout_bytes(layout)
    assert project(decode(layout, raw), fields) == fields


@given(raw_bytes(Sqe), st.sampled_from(["prp", "keyed", "sgl"]),
       st.sampled_from(["raw", "rw", "dsm"]))
def test_sqe_decode_then_encode_gives_back_the_bytes(raw, dptr_member, cdw_member):
    fields = decode(Sqe, raw)
    fields["dptr"] = full_member(fields, "dptr", dptr_member)
    fields["cdw"] = full_member(fields, "cdw", cdw_member)
    assert encode(Sqe, fields) == raw


@pytest.mark.parametrize("layout", [Cqe, DsmRange, SglKeyed, SglData])
@given(st.data())
def test_decode_then_encode_gives_back_the_bytes(layout, draw):
    raw = draw.draw(raw_bytes(layout))
    assert encode(layout, decode(layout, raw)) == raw


@given(raw_bytes(Sqe))
def test_decode_reads_the_spec_offsets_of_any_sqe(raw):
    sqe = decode(Sqe, raw)
    assert sqe["opcode"] == raw[0]
    assert sqe["fuse"] == raw[1] & 0x3
    assert sqe["psdt"] == raw[1] >> 6
    assert sqe["cid"] == struct.unpack_from("<H", raw, 2)[0]
    assert sqe["nsid"] == struct.unpack_from("<I", raw, 4)[0]
    keyed = sqe["dptr"]["keyed"]
    assert keyed["address"] == struct.unpack_from("<Q", raw, 24)[0]
    assert keyed["length"] == int.from_bytes(raw[32:35], "little")
    assert keyed["key"] == struct.unpack_from("<I", raw, 35)[0]
    assert (keyed["type"], keyed["subtype"]) == (raw[39] >> 4, raw[39] & 0xF)
    assert sqe["dptr"]["sgl"]["length"] == struct.unpack_from("<I", raw, 32)[0]
    assert sqe["cdw"]["raw"] == list(struct.unpack_from("<6I", raw, 40))
    assert sqe["cdw"]["rw"]["slba"] == struct.unpack_from("<Q", raw, 40)[0]
    assert sqe["cdw"]["rw"]["nlb"] == struct.unpack_from("<H", raw, 48)[0]
    assert sqe["cdw"]["rw"]["fua"] == raw[51] >> 6 & 1
    assert sqe["cdw"]["rw"]["lr"] == raw[51] >> 7
    assert sqe["cdw"]["dsm"]["nr"] == raw[40]
    assert sqe["cdw"]["dsm"]["ad"] == raw[44] >> 2 & 1


# --- framing -----------------------------------------------------------------------------------

def test_icd_start_counts_icdoff_in_16_byte_units_after_the_sqe():
    assert icd_start(0) == 64
    assert icd_start(1) == 80
    assert icd_start(3) == 112


def test_build_capsule_places_data_after_icdoff_padding():
    sqe = bytes(range(64))
    capsule = build_capsule(sqe, b"\xAA\xBB\xCC", icdoff=2)
    assert len(capsule) == 64 + 32 + 3
    assert capsule[:64] == sqe
    assert capsule[64:96] == bytes(32)
    assert capsule[icd_start(2):] == b"\xAA\xBB\xCC"


def test_build_capsule_without_data_is_the_sqe_alone_whatever_icdoff():
    sqe = bytes(range(64))
    assert build_capsule(sqe) == sqe
    assert build_capsule(sqe, b"", icdoff=5) == sqe
    assert build_capsule(bytearray(sqe), b"\x01") == sqe + b"\x01"


@pytest.mark.parametrize("size", [0, 63, 65, 128])
def test_build_capsule_rejects_an_sqe_that_is_not_64_bytes(size):
    with pytest.raises(ValueError, match=f"got {size}"):
        build_capsule(bytes(size), b"data")


# --- nothing is accepted silently -------------------------------------------------------------

@pytest.mark.parametrize(("layout", "size"), [(Sqe, 63), (Sqe, 65), (Cqe, 15), (Cqe, 0),
                                              (DsmRange, 17)])
def test_decode_rejects_bytes_of_the_wrong_length(layout, size):
    with pytest.raises(ValueError, match=f"{size} bytes given"):
        decode(layout, bytes(size))


def test_decode_rejects_an_integer_wider_than_the_layout():
    with pytest.raises(ValueError):
        decode(Cqe, 1 << 128)


def test_encode_rejects_a_field_the_layout_lacks():
    with pytest.raises(ValueError, match="bogus"):
        encode(Cqe, {"bogus": 1})
    with pytest.raises(ValueError, match="bogus"):
        encode(Sqe, {"dptr": {"keyed": {"bogus": 1}}})


def test_encode_rejects_two_members_of_one_union():
    with pytest.raises(ValueError, match="at most one"):
        encode(Sqe, {"cdw": {"raw": [0] * 6, "rw": {"slba": 1}}})


def test_encode_rejects_a_member_of_the_wrong_enum():
    with pytest.raises(ValueError, match="not a valid Action"):
        encode(ParsedCommand, {"action": Reason.RUNT})


def test_decode_rejects_a_reason_code_with_no_member():
    offset = data.Layout.cast(ParsedCommand)["reason"].offset
    assert max(r.value for r in Reason) < 15
    with pytest.raises(ValueError, match="not a valid Reason"):
        decode(ParsedCommand, 15 << offset)


def test_every_action_and_reason_round_trips_through_parsed_command():
    for action in Action:
        for reason in Reason:
            raw = encode(ParsedCommand, {"action": action, "reason": reason})
            fields = decode(ParsedCommand, raw)
            assert (fields["action"], fields["reason"]) == (action, reason)


@pytest.mark.parametrize("fields", [
    {"sc": 0x100}, {"sct": 8}, {"sc": -1},
])
def test_encode_rejects_a_value_too_wide_for_its_field(fields):
    with pytest.raises(ValueError):
        encode(CqeStatus, fields)
