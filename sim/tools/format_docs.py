"""Markdown tables of every format, generated from ``rtl/formats.py``.

``docs/formats.md`` is this module's output (``nvmf-offload formats -o
docs/formats.md``); a unit test fails when the two drift apart.
"""

from amaranth.lib import data

from rtl import formats as f

__all__ = ["formats_markdown", "layout_rows"]

_LAYOUTS = [
    ("Submission queue entry (`Sqe`, 64 bytes)", f.Sqe),
    ("Keyed SGL data block (`SglKeyed`, 16 bytes)", f.SglKeyed),
    ("In-capsule SGL data block (`SglData`, 16 bytes)", f.SglData),
    ("Read / Write / Write Zeroes CDW10-15 (`RwDwords`)", f.RwDwords),
    ("Dataset Management CDW10-15 (`DsmDwords`)", f.DsmDwords),
    ("Completion queue entry = response capsule (`Cqe`, 16 bytes)", f.Cqe),
    ("Dataset Management range (`DsmRange`, 16 bytes)", f.DsmRange),
    ("QP capsule attributes (`QpCapsuleAttrs`, engine-internal)", f.QpCapsuleAttrs),
    ("Parsed command descriptor (`ParsedCommand`, engine-internal)", f.ParsedCommand),
    ("Subsystem table entry (`SubsystemEntry`, CSR table 0)", f.SubsystemEntry),
    ("QP table entry (`QpEntry`, CSR table 1)", f.QpEntry),
    ("Backend queue table entry (`BackendQueueEntry`, CSR table 2)", f.BackendQueueEntry),
    ("Namespace index entry (`NsIndexEntry`, CSR table 3)", f.NsIndexEntry),
    ("Namespace table entry (`NamespaceEntry`, CSR table 4)", f.NamespaceEntry),
    ("Namespace counters (`NsCounters`, CSR table 5)", f.NsCounters),
    ("Subsystem counters (`SubsystemCounters`, CSR table 6)", f.SubsystemCounters),
    ("Event queue entry (`Event`, register EVENT_HEAD)", f.Event),
    ("Namespace lookup request (`NsLookupRequest`, engine-internal)", f.NsLookupRequest),
    ("Namespace lookup response (`NsLookupResponse`, engine-internal)", f.NsLookupResponse),
]


def _span(offset, width):
    if offset % 8 == 0 and width % 8 == 0:
        first, last = offset // 8, (offset + width) // 8 - 1
        return f"{first}" if first == last else f"{first}-{last}"
    byte = offset // 8
    lo, hi = offset % 8, offset % 8 + width - 1
    if hi < 8:
        return f"{byte} [{hi}:{lo}]" if hi != lo else f"{byte} [{lo}]"
    return f"bits {offset + width - 1}:{offset}"


def layout_rows(layout, prefix="", base=0):
    """(name, bytes/bits, width, note) for every leaf field, Struct members expanded."""
    rows = []
    layout = data.Layout.cast(layout)
    for name, field in layout:
        shape = field.shape
        full = f"{prefix}{name}"
        offset = base + field.offset
        if isinstance(shape, data.UnionLayout) or (
                isinstance(shape, type) and issubclass(shape, data.Union)):
            views = ", ".join(n for n, _ in data.Layout.cast(shape))
            rows.append((full, _span(offset, field.width), field.width, f"union of: {views}"))
            continue
        if isinstance(shape, data.StructLayout) or (
                isinstance(shape, type) and issubclass(shape, data.Struct)):
            rows.extend(layout_rows(shape, full + ".", offset))
            continue
        note = ""
        if hasattr(shape, "__members__"):
            note = ", ".join(f"{m.name}={m.value}" for m in shape)
        rows.append((full, _span(offset, field.width), field.width, note))
    return rows


def formats_markdown():
    out = ["# Formats",
           "",
           "Generated from `rtl/formats.py` by `nvmf-offload formats -o docs/formats.md`;",
           "do not edit by hand. Byte offsets are little-endian; `B [h:l]` is bits h..l",
           "of byte B. Unions (DPTR, CDW10-15) are expanded in their own tables.",
           "Table entries go through the CSR `ARG` / `RESULT` windows bit for bit",
           "(`docs/control-plane.md`). A 16-bit count field (`queue_depth`, `sqsize`,",
           "`sq_entries`, `cq_entries`) stores 65536 as 0.",
           ""]
    for title, layout in _LAYOUTS:
        out += [f"## {title}", "", "| field | byte(s) | bits | values |", "|---|---|---|---|"]
        out += [f"| `{n}` | {s} | {w} | {note} |" for n, s, w, note in layout_rows(layout)]
        out.append("")
    out += ["## Statuses the engine originates", "",
            "| name | SCT | SC | DNR |", "|---|---|---|---|"]
    for name in ("INVALID_FIELD", "SGL_OFFSET_INVALID", "DATA_SGL_LENGTH_INVALID",
                 "SGL_DESC_TYPE_INVALID", "LBA_OUT_OF_RANGE", "NS_NOT_READY", "INVALID_NS",
                 "DATA_TRANSFER_ERROR", "INTERNAL_ERROR"):
        sct, sc, dnr = getattr(f.NvmeStatus, name)
        out.append(f"| {name} | {sct.value} | 0x{sc.value:02X} {sc.name} | {dnr} |")
    out += ["", "## Command capsule framing", "",
            f"A command capsule is the {f.SQE_BYTES}-byte SQE, then `ICDOFF * "
            f"{f.CAPSULE_UNIT}` pad bytes, then the in-capsule data "
            "(`build_capsule`, `icd_start`). IOCCSZ and ICDOFF count "
            f"{f.CAPSULE_UNIT}-byte units; a capsule is at most `IOCCSZ * 16` bytes, "
            "SQE included.", ""]
    return "\n".join(out)
