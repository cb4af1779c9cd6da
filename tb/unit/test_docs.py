"""The generated documentation stays in step with its single source."""

from pathlib import Path

from sim.tools.format_docs import formats_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_formats_doc_is_generated_from_rtl_formats():
    committed = (ROOT / "docs" / "formats.md").read_text()
    assert committed == formats_markdown(), (
        "docs/formats.md is stale: run `nvmf-offload formats -o docs/formats.md`")
