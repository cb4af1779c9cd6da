"""The register-map exports (sim/tools/regs_export.py, ``nvmf-offload regs``).

The expected capability values are written from the meaning of each
``EngineParams`` field, not read back through the exporter's own table.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import sim.tools.regs_export as rx
from rtl.params import EngineParams
from rtl.regmap import Field, Register, RegisterMap, register_map
from sim.cli import main

ROOT = Path(__file__).resolve().parents[2]

OTHER = EngineParams(data_width=512, qp_count=128, subsystems=8, backend_queues=16,
                     srq_namespaces=64, namespaces=256, max_capsule_bytes=8256, max_icdoff=2,
                     max_io_size=1 << 20, min_staging_bytes=1 << 20, min_queue_depth=4,
                     max_queue_depth=4096, lba_sizes=(4096, 65536), event_depth=64,
                     msix_addr=0x0000_1234_5678_9000, staging_mode="onchip")
PARAM_SETS = [pytest.param(EngineParams(), id="default"), pytest.param(OTHER, id="other")]

CAP_NAMES = ("offload_type", "max_backend_ctrls_total", "max_srq_backend_ctrls",
             "max_srq_namespaces", "min_staging_buf_size", "max_io_sz", "min_nvme_queue_depth",
             "max_nvme_queue_depth", "min_ioccsz", "max_ioccsz", "max_icdoff",
             "lba_data_size_supported", "max_namespaces", "supports_non_offloaded_ops",
             "write_zeroes_offload", "dsm_offload", "max_srqs", "max_qps", "event_depth",
             "msix_addr_lo", "msix_addr_hi", "external_staging", "staging_align",
             "staging_bus_lo", "staging_bus_hi", "staging_engine_lo", "staging_engine_hi",
             "staging_size")


def expected_caps(p):
    lba_bits = {512: 9, 1024: 10, 2048: 11, 4096: 12, 8192: 13, 16384: 14, 32768: 15,
                65536: 16}
    return {
        "offload_type": 0b111111,       # write, read, read_write, flush, write zeroes, DSM
        "max_backend_ctrls_total": p.backend_queues,
        "max_srq_backend_ctrls": p.backend_queues,
        "max_srq_namespaces": p.srq_namespaces,
        "min_staging_buf_size": p.min_staging_bytes,
        "max_io_sz": p.max_io_size,
        "min_nvme_queue_depth": p.min_queue_depth,
        "max_nvme_queue_depth": p.max_queue_depth,
        "min_ioccsz": 4,                 # the SQE alone: 64 bytes
        "max_ioccsz": p.max_capsule_bytes // 16,
        "max_icdoff": p.max_icdoff,
        "lba_data_size_supported": sum(1 << lba_bits[s] for s in p.lba_sizes),
        "max_namespaces": p.namespaces,
        "supports_non_offloaded_ops": True,
        "write_zeroes_offload": True,
        "dsm_offload": True,
        "max_srqs": p.subsystems,
        "max_qps": p.qp_count,
        "event_depth": p.event_depth,
        "msix_addr_lo": p.msix_addr & 0xFFFF_FFFF,
        "msix_addr_hi": p.msix_addr >> 32,
        "external_staging": p.staging_mode == "external",
        "staging_align": 4096,
        "staging_bus_lo": p.staging_base & 0xFFFF_FFFF,
        "staging_bus_hi": p.staging_base >> 32,
        "staging_engine_lo": (p.staging_axi_base if p.staging_mode == "external"
                              else p.staging_base) & 0xFFFF_FFFF,
        "staging_engine_hi": (p.staging_axi_base if p.staging_mode == "external"
                              else p.staging_base) >> 32,
        "staging_size": p.staging_bytes,
    }


# --- C header ----------------------------------------------------------------------------

def _cc():
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler `cc` on PATH: the generated header (nvmf-offload regs "
                    "--format c) must be checked with one; install gcc (apt-get install gcc)")
    return cc


def _compile(args, cwd):
    proc = subprocess.run([_cc(), *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"cc {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"


def test_c_header_compiles_as_strict_c99(tmp_path):
    (tmp_path / "nvmf_csr.h").write_text(rx.export_c())
    (tmp_path / "use.c").write_text("""\
#include "nvmf_csr.h"
#include "nvmf_csr.h"   /* the include guard makes a second inclusion harmless */

unsigned cmd_word(unsigned op, unsigned tbl, unsigned index) {
    return ((op << NVMF_CSR__CMD__OP_bp) & NVMF_CSR__CMD__OP_bm)
         | ((tbl << NVMF_CSR__CMD__TBL_bp) & NVMF_CSR__CMD__TBL_bm)
         | ((index << NVMF_CSR__CMD__INDEX_bp) & NVMF_CSR__CMD__INDEX_bm);
}

int busy(volatile nvmf_csr_t *csr) {
    return (csr->CMD_STATUS & NVMF_CSR__CMD_STATUS__BUSY_bm) != 0;
}

unsigned arg_offset(unsigned i) { return NVMF_CSR__ARG_offset(i); }
unsigned cmd_offset(void) { return NVMF_CSR__CMD_offset; }
""")
    _compile(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-c", "use.c",
              "-o", "use.o"], tmp_path)
    assert (tmp_path / "use.o").stat().st_size > 0


@pytest.mark.parametrize("params", PARAM_SETS)
def test_c_header_values_match_register_map(tmp_path, params):
    (tmp_path / "nvmf_csr.h").write_text(rx.export_c(params))
    (tmp_path / "show.c").write_text("""\
#include <stdio.h>
#include "nvmf_csr.h"

int main(void) {
    printf("CMD %u\\n", (unsigned)NVMF_CSR__CMD_offset);
    printf("CMD_STATUS %u\\n", (unsigned)offsetof(nvmf_csr_t, CMD_STATUS));
    printf("EVENT_LOST %u\\n", (unsigned)NVMF_CSR__EVENT_LOST_offset);
    printf("ARG[3] %u\\n", (unsigned)NVMF_CSR__ARG_offset(3));
    printf("RESULT[15] %u\\n", (unsigned)NVMF_CSR__RESULT_offset(15));
    printf("size %u\\n", (unsigned)sizeof(nvmf_csr_t));
    printf("CMD.index.lsb %u\\n", (unsigned)NVMF_CSR__CMD__INDEX_bp);
    printf("CMD.tbl.mask %u\\n", (unsigned)NVMF_CSR__CMD__TBL_bm);
    printf("EVENT_STATUS.overflow.mask %u\\n", (unsigned)NVMF_CSR__EVENT_STATUS__OVERFLOW_bm);
    printf("CAP_MAX_QPS.reset %u\\n", (unsigned)NVMF_CSR__CAP_MAX_QPS_reset);
    printf("CAP_NVME_QUEUE_DEPTH.max.reset %u\\n",
           (unsigned)NVMF_CSR__CAP_NVME_QUEUE_DEPTH__MAX_reset);
    return 0;
}
""")
    _compile(["-std=c99", "-Wall", "-Werror", "show.c", "-o", "show"], tmp_path)
    run = subprocess.run([str(tmp_path / "show")], capture_output=True, text=True, check=True)
    got = dict(line.rsplit(" ", 1) for line in run.stdout.splitlines())
    got = {k: int(v) for k, v in got.items()}

    rmap = register_map(params)
    assert got == {
        "CMD": rmap["CMD"].offset,
        "CMD_STATUS": rmap["CMD_STATUS"].offset,
        "EVENT_LOST": rmap["EVENT_LOST"].offset,
        "ARG[3]": rmap["ARG[3]"].offset,
        "RESULT[15]": rmap["RESULT[15]"].offset,
        "size": rmap["RESULT[15]"].offset + 4,
        "CMD.index.lsb": rmap["CMD"].field("index").lsb,
        "CMD.tbl.mask": rmap["CMD"].field("tbl").mask,
        "EVENT_STATUS.overflow.mask": rmap["EVENT_STATUS"].field("overflow").mask,
        "CAP_MAX_QPS.reset": params.qp_count,
        "CAP_NVME_QUEUE_DEPTH.max.reset": params.max_queue_depth,
    }
    assert got["CMD"] == 0x080 and got["ARG[3]"] == 0x10C


def test_c_header_names_are_prefixed():
    text = rx.export_c()
    assert "#ifndef NVMF_CSR_H" in text and "#endif /* NVMF_CSR_H */" in text
    defines = [line.split()[1] for line in text.splitlines() if line.startswith("#define ")]
    assert defines and all(name.startswith("NVMF_CSR_") for name in defines), defines
    assert "nvmf-offload regs --format c" in text


# --- JSON --------------------------------------------------------------------------------

@pytest.mark.parametrize("params", PARAM_SETS)
def test_json_registers_and_capabilities(params):
    doc = json.loads(rx.export_json(params))
    rmap = register_map(params)

    offsets = [reg["offset"] for reg in doc["registers"]]
    assert len(offsets) == len(set(offsets))
    assert {r["name"]: r["offset"] for r in doc["registers"]} == {
        r.name: r.offset for r in rmap.registers}
    for reg in doc["registers"]:
        src = rmap[reg["name"]]
        assert reg["reset"] == src.reset and reg["desc"] == src.desc
        assert [(f["name"], f["lsb"], f["width"], f["access"], f["hw"], f["reset"], f["desc"])
                for f in reg["fields"]] == [
            (f.name, f.lsb, f.width, f.sw, f.hw, f.reset, f.desc) for f in src.fields]

    assert doc["name"] == "nvmf_csr"
    assert doc["version"] == {"major": 1, "minor": 0}
    assert doc["address_width"] == rmap.address_width == 9
    assert set(doc["capabilities"]) == set(CAP_NAMES)
    assert doc["capabilities"] == expected_caps(params)
    for name in ("supports_non_offloaded_ops", "write_zeroes_offload", "dsm_offload"):
        assert doc["capabilities"][name] is True


def test_other_params_change_only_capability_resets():
    a, b = (json.loads(rx.export_json(p)) for p in (EngineParams(), OTHER))
    assert [r["offset"] for r in a["registers"]] == [r["offset"] for r in b["registers"]]
    changed = {ra["name"] for ra, rb in zip(a["registers"], b["registers"], strict=True)
               if ra != rb}
    assert changed and all(name.startswith("CAP_") for name in changed), changed
    assert b["capabilities"]["max_qps"] == 128 and b["capabilities"]["max_srqs"] == 8


def test_duplicate_offsets_are_refused(monkeypatch):
    field = Field("value", 0, 32, "r", "na", 0, False, False, "")
    dup = RegisterMap("nvmf_csr", (Register("A", 0x10, (field,), ""),
                                   Register("B", 0x10, (field,), "")))
    monkeypatch.setattr(rx, "register_map", lambda params: dup)
    with pytest.raises(ValueError, match="B and A share offset 0x010"):
        rx.export_json(EngineParams())


# --- Markdown ----------------------------------------------------------------------------

def test_registers_doc_is_generated_from_the_rdl():
    committed = (ROOT / "docs" / "registers.md").read_text()
    assert committed == rx.export_md(EngineParams()), (
        "docs/registers.md is stale: run `nvmf-offload regs --format md -o docs/registers.md`")


def test_markdown_lists_every_register_and_field():
    text = rx.export_md(OTHER)
    assert text.startswith("# ")
    assert "nvmf-offload regs --format md" in text and "rtl/csr.rdl" in text
    assert "do not edit" in text
    for reg in register_map(OTHER).registers:
        base = reg.name.split("[")[0]
        assert f"\n## {base}\n" in text, base
        for f in reg.fields:
            assert f"| `{f.name}` |" in text
    assert "| `max_qps` | `CAP_MAX_QPS` | `value` | 128 (0x80) |" in text


# --- IP-XACT and HTML (PeakRDL) --------------------------------------------------------------

IPXACT_NS = {"ipxact": "http://www.accellera.org/XMLSchema/IPXACT/1685-2014"}


@pytest.mark.parametrize("params", PARAM_SETS)
def test_ipxact_component_has_every_register_field_and_reset(params):
    """The IEEE 1685-2014 component: its VLNV, and every register of the map at its
    offset with its fields (position, width) and reset, as rtl/csr.rdl gives them."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(rx.export_ipxact(params))
    assert root.tag == f"{{{IPXACT_NS['ipxact']}}}component"
    vlnv = {k: root.find(f"ipxact:{k}", IPXACT_NS).text
            for k in ("vendor", "library", "name", "version")}
    assert vlnv == dict(rx.IPXACT_VLNV, name="nvmf_csr")
    got = {}
    for reg in root.iter(f"{{{IPXACT_NS['ipxact']}}}register"):
        name = reg.find("ipxact:name", IPXACT_NS).text
        fields = {}
        for f in reg.findall("ipxact:field", IPXACT_NS):
            reset = f.find("ipxact:resets/ipxact:reset/ipxact:value", IPXACT_NS)
            fields[f.find("ipxact:name", IPXACT_NS).text] = (
                int(f.find("ipxact:bitOffset", IPXACT_NS).text),
                int(f.find("ipxact:bitWidth", IPXACT_NS).text),
                int(reset.text.replace("'h", "0x").replace("'d", ""), 0)
                if reset is not None else 0)
        offset = int(reg.find("ipxact:addressOffset", IPXACT_NS).text.replace("'h", "0x"), 0)
        dim = reg.find("ipxact:dim", IPXACT_NS)
        if dim is None:
            got[name] = (offset, fields)
        else:                       # an array of 32-bit registers, one after the other
            for i in range(int(dim.text)):
                got[f"{name}[{i}]"] = (offset + 4 * i, fields)
    rmap = register_map(params)
    assert len(got) == len(rmap.registers)
    for r in rmap.registers:
        offset, fields = got[r.name]
        assert offset == r.offset, r.name
        assert fields == {f.name: (f.lsb, f.width, f.reset) for f in r.fields}, r.name


def test_cli_regs_html_writes_a_browsable_manual(tmp_path, capsys):
    out = tmp_path / "manual"
    assert main(["regs", "--format", "html", "-o", str(out)]) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index == out / "index.html" and index.is_file()
    assert "nvmf-offload control plane registers" in index.read_text()
    data = "".join(p.read_text(errors="replace") for p in (out / "data").iterdir())
    for reg in register_map(EngineParams()).registers:
        assert reg.name.split("[")[0] in data, reg.name


def test_cli_regs_html_needs_a_directory(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["regs", "--format", "html"])
    assert "give -o DIR" in str(exc.value)


# --- command line ------------------------------------------------------------------------

def test_cli_regs_json(capsys):
    assert main(["regs", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == json.loads(rx.export_json(EngineParams()))


def test_cli_regs_config_and_output_file(tmp_path, capsys):
    config = tmp_path / "engine.toml"
    config.write_text("[engine]\nqp_count = 128\nsubsystems = 8\n")
    out = tmp_path / "regs.h"
    assert main(["regs", "--format", "c", "--config", str(config), "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert out.read_text() == rx.export_c(EngineParams(qp_count=128, subsystems=8))
    assert "#define NVMF_CSR__CAP_MAX_QPS__VALUE_reset 0x80" in out.read_text()


@pytest.mark.parametrize("argv", [["regs", "--format", "yaml"], ["regs"]],
                         ids=["bad-format", "no-format"])
def test_cli_regs_rejects_bad_format(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--format" in err
