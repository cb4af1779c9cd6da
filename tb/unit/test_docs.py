"""The generated documentation stays in step with its single source."""

from pathlib import Path

from sim.tools.format_docs import formats_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_formats_doc_is_generated_from_rtl_formats():
    committed = (ROOT / "docs" / "formats.md").read_text()
    assert committed == formats_markdown(), (
        "docs/formats.md is stale: run `nvmf-offload formats -o docs/formats.md`")


def test_demo_clock_defaults_to_the_engine_fmax_docs_fpga_records():
    from sim.cli import _report_clock
    from sim.tools.fpga import MEASURED_FMAX

    mhz, commit = MEASURED_FMAX["mhz"], MEASURED_FMAX["commit"]
    rows = [line for line in (ROOT / "docs" / "fpga.md").read_text().splitlines()
            if line.startswith("| engine") and commit in line]
    assert rows, f"docs/fpga.md has no engine row for commit {commit}"
    assert f"| **{mhz}** |" in rows[0], f"docs/fpga.md does not record {mhz} MHz for {commit}"
    assert _report_clock(None)[0] == mhz
    assert _report_clock(100.0) == (100.0, "--clock-mhz")
