"""Exports of the control-plane register map (``rtl/csr.rdl``): C header, Markdown, JSON,
IP-XACT and a browsable HTML manual.

``nvmf-offload regs --format c|md|json|ipxact`` prints them (``--format html -o DIR``
writes the manual's directory); ``docs/registers.md`` is
:func:`export_md` of the default parameters and a unit test fails when the two
drift apart.

- :func:`export_c` runs PeakRDL-cheader on the compiled RDL (field macros
  ``NVMF_CSR__<REG>__<FIELD>_bm/_bp/_bw/_reset`` and the packed struct
  ``nvmf_csr_t``) and appends what it does not generate: register offsets and
  reset values (``NVMF_CSR__<REG>_offset``, ``NVMF_CSR__<REG>_reset``; arrays
  get ``NVMF_CSR__<REG>_offset(i)``, ``_count`` and ``_stride``), with
  compile-time checks that the offsets agree with the struct layout.
- :func:`export_md` is written here from :func:`rtl.regmap.register_map`:
  PeakRDL-markdown puts field descriptions outside the field tables, omits
  hardware access and repeats every array element as its own section.
- :func:`export_json` is the map for other tools, with the capability values
  under their RFC (``ibv_nvmf_caps``) names.
- :func:`export_ipxact` is PeakRDL-ipxact's IEEE 1685-2014 component, for a SoC's
  address map; :func:`export_html` PeakRDL-html's manual (open ``index.html``).
"""

import json
import re
import tempfile
from pathlib import Path

from rtl.params import EngineParams
from rtl.regmap import compile_rdl, register_map

__all__ = ["export_c", "export_md", "export_json", "export_ipxact", "export_html",
           "capabilities", "CAPABILITIES", "EXPORTERS", "IPXACT_VLNV"]

# vendor, library and version of the IP-XACT component (its name is the addrmap's)
IPXACT_VLNV = {"vendor": "nvmf-offload.example", "library": "nvmf_offload", "version": "0.1.0"}

# RFC capability name -> (register, field or None for the whole register value, as bool).
CAPABILITIES = {
    "offload_type": ("CAP_OFFLOAD_TYPES", None, False),
    "max_backend_ctrls_total": ("CAP_MAX_BACKEND_CTRLS_TOTAL", "value", False),
    "max_srq_backend_ctrls": ("CAP_MAX_SRQ_BACKEND_CTRLS", "value", False),
    "max_srq_namespaces": ("CAP_MAX_SRQ_NAMESPACES", "value", False),
    "min_staging_buf_size": ("CAP_MIN_STAGING_BUF_SIZE", "value", False),
    "max_io_sz": ("CAP_MAX_IO_SZ", "value", False),
    "min_nvme_queue_depth": ("CAP_NVME_QUEUE_DEPTH", "min", False),
    "max_nvme_queue_depth": ("CAP_NVME_QUEUE_DEPTH", "max", False),
    "min_ioccsz": ("CAP_MIN_IOCCSZ", "value", False),
    "max_ioccsz": ("CAP_MAX_IOCCSZ", "value", False),
    "max_icdoff": ("CAP_MAX_ICDOFF", "value", False),
    "lba_data_size_supported": ("CAP_LBA_DATA_SIZE_SUPPORTED", "bitmap", False),
    "max_namespaces": ("CAP_MAX_NAMESPACES", "value", False),
    "supports_non_offloaded_ops": ("CAP_FLAGS", "supports_non_offloaded_ops", True),
    "write_zeroes_offload": ("CAP_OFFLOAD_TYPES", "write_zeroes", True),
    "dsm_offload": ("CAP_OFFLOAD_TYPES", "dsm", True),
    "max_srqs": ("CAP_MAX_SRQS", "value", False),
    "max_qps": ("CAP_MAX_QPS", "value", False),
    "event_depth": ("CAP_EVENT_DEPTH", "value", False),
    "msix_addr_lo": ("CAP_MSIX_ADDR_LO", "value", False),
    "msix_addr_hi": ("CAP_MSIX_ADDR_HI", "value", False),
    "external_staging": ("CAP_FLAGS", "external_staging", True),
    "staging_align": ("CAP_STAGING_ALIGN", "value", False),
    "staging_bus_lo": ("CAP_STAGING_BUS_LO", "value", False),
    "staging_bus_hi": ("CAP_STAGING_BUS_HI", "value", False),
    "staging_engine_lo": ("CAP_STAGING_ENGINE_LO", "value", False),
    "staging_engine_hi": ("CAP_STAGING_ENGINE_HI", "value", False),
    "staging_size": ("CAP_STAGING_SIZE", "value", False),
}

_ARRAY_NAME = re.compile(r"^(\w+)\[(\d+)\]$")


def _checked_map(params):
    """The flattened register map, after checking that no two registers share an offset."""
    rmap = register_map(params)
    seen = {}
    for reg in rmap.registers:
        if reg.offset in seen:
            raise ValueError(f"register map: {reg.name} and {seen[reg.offset]} share "
                             f"offset 0x{reg.offset:03X}")
        seen[reg.offset] = reg.name
    return rmap


def _groups(rmap):
    """Registers with array elements folded: (base name, [registers], stride or None)."""
    groups = []
    for reg in rmap.registers:
        m = _ARRAY_NAME.match(reg.name)
        if m and groups and groups[-1][0] == m.group(1):
            groups[-1][1].append(reg)
        else:
            groups.append((m.group(1) if m else reg.name, [reg], bool(m)))
    out = []
    for base, regs, is_array in groups:
        stride = None
        if is_array:
            stride = regs[1].offset - regs[0].offset if len(regs) > 1 else 4
            if any(r.offset != regs[0].offset + i * stride for i, r in enumerate(regs)):
                raise ValueError(f"register map: {base}[] elements are not evenly spaced")
        out.append((base, regs, stride))
    return out


def capabilities(params: EngineParams | None = None):
    """The capability values (RFC names) that the CAP registers of ``params`` hold."""
    params = params or EngineParams()
    rmap = _checked_map(params)
    caps = {}
    for name, (reg_name, field, boolean) in CAPABILITIES.items():
        reg = rmap[reg_name]
        value = reg.reset if field is None else reg.field(field).reset
        caps[name] = bool(value) if boolean else value
    return caps


# --- C header ----------------------------------------------------------------------------

_HEADER_FILE = "nvmf_csr.h"          # PeakRDL-cheader derives the include guard from it


def export_c(params: EngineParams | None = None):
    """A C99 header: PeakRDL-cheader's output plus register offsets and resets."""
    from peakrdl_cheader.c_standards import CStandard
    from peakrdl_cheader.exporter import CHeaderExporter

    params = params or EngineParams()
    rmap = _checked_map(params)
    root = compile_rdl(params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / _HEADER_FILE
        # Hierarchical names (not reused type names) keep every macro NVMF_CSR__...
        CHeaderExporter().export(root, str(path), std=CStandard.gnu99, reuse_typedefs=False)
        text = path.read_text()

    footer = text.rfind("\n#ifdef __cplusplus")
    if footer < 0 or "typedef struct" not in text[:footer]:
        raise RuntimeError("unexpected PeakRDL-cheader output: no C++ footer after the struct")

    top = rmap.name.upper()
    lines = ["", "// Register offsets (bytes from the base of s_axil_csr) and reset values",
             "#include <stddef.h>"]
    checks = []
    for base, regs, stride in _groups(rmap):
        prefix = f"{top}__{base}"
        reset = regs[0].reset
        if stride is None:
            lines.append(f"#define {prefix}_offset 0x{regs[0].offset:03x}u")
            checks.append((base, f"offsetof({rmap.name}_t, {base}) == {prefix}_offset"))
        else:
            lines += [f"#define {prefix}_offset(i) (0x{regs[0].offset:03x}u + "
                      f"0x{stride:x}u * (unsigned)(i))",
                      f"#define {prefix}_count {len(regs)}u",
                      f"#define {prefix}_stride 0x{stride:x}u"]
            checks.append((base, f"offsetof({rmap.name}_t, {base}) == {prefix}_offset(0)"))
            checks.append((f"{base}_size", f"sizeof((({rmap.name}_t *)0)->{base}) == "
                                            f"{prefix}_count * {prefix}_stride"))
            assert all(r.reset == reset for r in regs), base
        lines.append(f"#define {prefix}_reset 0x{reset:x}u")
    lines += ["", "// The offsets above agree with the struct layout (C99 has no static_assert)"]
    lines += [f"typedef char {rmap.name}_layout_{name}[({cond}) ? 1 : -1];"
              for name, cond in checks]

    banner = ("/* nvmf-offload control-plane registers, parameter set "
              f"{params.tag()}.\n"
              " * Generated by `nvmf-offload regs --format c` from rtl/csr.rdl; do not edit.\n"
              " */\n")
    return banner + text[:footer].rstrip("\n") + "\n" + "\n".join(lines) + "\n" + text[footer:]


# --- Markdown ----------------------------------------------------------------------------

def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def _bits(field):
    msb = field.lsb + field.width - 1
    return f"{msb}" if msb == field.lsb else f"{msb}:{field.lsb}"


def _sw_access(field):
    notes = [n for n, on in (("singlepulse", field.singlepulse), ("swmod", field.swmod)) if on]
    return field.sw + (f" ({', '.join(notes)})" if notes else "")


def _hex(value, width=32):
    return f"0x{value:0{-(-width // 4)}X}"


def export_md(params: EngineParams | None = None):
    """``docs/registers.md``: a summary table, then one field table per register."""
    params = params or EngineParams()
    rmap = _checked_map(params)
    top = compile_rdl(params).top
    title = top.get_property("name") or rmap.name
    out = [f"# Registers: {title}",
           "",
           "Generated from `rtl/csr.rdl` by `nvmf-offload regs --format md` "
           "(`-o docs/registers.md`); do not edit by hand.",
           f"Capability values (`CAP_*` resets) are those of the parameter set "
           f"`{params.tag()}`{' (the defaults)' if params == EngineParams() else ''}; "
           "they follow the elaboration parameters (`--config FILE`). The C header "
           "(`--format c`) and the JSON (`--format json`) come from the same source.",
           "",
           _cell(top.get_property("desc") or ""),
           "",
           "Access columns: `sw` is what software may do over AXI4-Lite (`r`, `w`, `rw`), "
           "`hw` what the gateware does (`r` reads the value, `w` drives it, `na` "
           "neither: a constant).",
           "",
           "## Summary",
           "",
           "| offset | register | reset | description |",
           "|---|---|---|---|"]
    titles = {node.inst_name: node.get_property("name") for node in top.registers()}
    caps_of = {}
    for cap, (reg_name, _, _) in CAPABILITIES.items():
        caps_of.setdefault(reg_name, []).append(f"`{cap}`")
    groups = _groups(rmap)
    for base, regs, stride in groups:
        reg = regs[0]
        name = base if stride is None else f"{base}[0..{len(regs) - 1}]"
        offset = _hex(reg.offset, 12)
        if stride is not None:
            offset += f" .. {_hex(regs[-1].offset, 12)}"
        summary = reg.desc or (titles.get(base) if titles.get(base) != base else "")
        if not summary and len(reg.fields) == 1:
            summary = reg.fields[0].desc
        if base in caps_of:
            word = "capability" if len(caps_of[base]) == 1 else "capabilities"
            summary = f"{summary} RFC {word} {', '.join(caps_of[base])}.".strip()
        out.append(f"| {offset} | [`{name}`](#{base.lower()}) | {_hex(reg.reset)} | "
                   f"{_cell(summary)} |")
    for base, regs, stride in groups:
        reg = regs[0]
        out += ["", f"## {base}", ""]
        if stride is None:
            out.append(f"Offset {_hex(reg.offset, 12)}, reset {_hex(reg.reset)}.")
        else:
            out.append(f"{len(regs)} registers `{base}[0]` .. `{base}[{len(regs) - 1}]` at "
                       f"offsets {_hex(reg.offset, 12)} + {stride} * i, each reset "
                       f"{_hex(reg.reset)}.")
        if reg.desc:
            out += ["", _cell(reg.desc)]
        out += ["", "| bits | field | sw | hw | reset | description |",
                "|---|---|---|---|---|---|"]
        out += [f"| {_bits(f)} | `{f.name}` | {_sw_access(f)} | {f.hw} | "
                f"{_hex(f.reset, f.width)} | {_cell(f.desc)} |" for f in reg.fields]
    out += ["", "## Capabilities (RFC names)", "",
            "What `query_caps()` reports, read from the registers above.", "",
            "| capability | register | field | value |", "|---|---|---|---|"]
    caps = capabilities(params)
    for name, (reg_name, field, _) in CAPABILITIES.items():
        value = caps[name]
        shown = str(value).lower() if isinstance(value, bool) else f"{value} ({value:#x})"
        out.append(f"| `{name}` | `{reg_name}` | {f'`{field}`' if field else '(all)'} | "
                   f"{shown} |")
    return "\n".join(out) + "\n"


# --- JSON --------------------------------------------------------------------------------

def export_json(params: EngineParams | None = None):
    """The register map and the capability values as one JSON object."""
    params = params or EngineParams()
    rmap = _checked_map(params)
    version = rmap["VERSION"]
    doc = {
        "name": rmap.name,
        "version": {"major": version.field("major").reset,
                    "minor": version.field("minor").reset},
        "address_width": rmap.address_width,
        "registers": [
            {"name": reg.name, "offset": reg.offset, "reset": reg.reset, "desc": reg.desc,
             "fields": [{"name": f.name, "lsb": f.lsb, "width": f.width, "access": f.sw,
                         "hw": f.hw, "reset": f.reset, "desc": f.desc}
                        for f in reg.fields]}
            for reg in rmap.registers],
        "capabilities": capabilities(params),
    }
    return json.dumps(doc, indent=2) + "\n"


def export_ipxact(params: EngineParams | None = None):
    """The register map as an IP-XACT (IEEE 1685-2014) component, from PeakRDL-ipxact."""
    from peakrdl_ipxact import IPXACTExporter

    params = params or EngineParams()
    _checked_map(params)
    root = compile_rdl(params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nvmf_csr.xml"
        IPXACTExporter(**IPXACT_VLNV).export(root.top, str(path))
        return path.read_text()


def export_html(out_dir, params: EngineParams | None = None):
    """A browsable register manual in ``out_dir`` (PeakRDL-html); returns its index."""
    from peakrdl_html import HTMLExporter

    params = params or EngineParams()
    _checked_map(params)
    HTMLExporter().export(compile_rdl(params).top, str(out_dir),
                          title="nvmf-offload control plane registers")
    return Path(out_dir) / "index.html"


EXPORTERS = {"c": export_c, "md": export_md, "json": export_json, "ipxact": export_ipxact}
