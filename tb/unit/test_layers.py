"""The layers point one way: ``rtl/`` <- ``sim/`` <- ``tb/``; and source files stay short.

Every Python file of ``rtl/`` and ``sim/`` is parsed: its imports (at any depth, in
functions too) and the cocotb test modules it names in strings must not reach a layer
above it. A file over 700 lines says why in a line near its top.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("rtl", "sim", "tb")              # each may import those before it only
MAX_LINES = 700
WHY = re.compile(r"over 700 lines", re.IGNORECASE)
MODULE_STRING = re.compile(r"^(rtl|sim|tb)(\.\w+)+$")


def _sources(*layers):
    return sorted(p for layer in layers for p in (ROOT / layer).rglob("*.py"))


def _references(path):
    """``(line, module)`` of every import and every dotted module name in a string."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            if node.module in LAYERS:                 # "from sim import cli"
                for alias in node.names:
                    yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if MODULE_STRING.match(node.value):       # run_cocotb(..., "sim.cosim.x")
                yield node.lineno, node.value


def _wrong_way(path):
    layer = path.relative_to(ROOT).parts[0]
    allowed = LAYERS[:LAYERS.index(layer) + 1]
    for line, module in _references(path):
        top = module.split(".")[0]
        if top in LAYERS and top not in allowed:
            yield f"{path.relative_to(ROOT)}:{line}: {layer}/ uses {module}"


@pytest.mark.parametrize("layer", ["rtl", "sim"])
def test_no_import_points_up_from(layer):
    bad = [msg for path in _sources(layer) for msg in _wrong_way(path)]
    assert not bad, "imports against the layers (rtl <- sim <- tb):\n" + "\n".join(bad)


def test_the_layer_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself bites: an import, a from-import and a module string of tb/ in a
    sim/ file are each reported."""
    fake = tmp_path / "sim" / "x.py"
    fake.parent.mkdir()
    fake.write_text("import tb.harness\n"
                    "def f():\n    from tb import harness\n"
                    "MODULE = 'tb.parser.cocotb_parser'\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert len(list(_wrong_way(fake))) == 4


def test_long_source_files_say_why_at_their_top():
    bad = []
    for path in _sources(*LAYERS):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_LINES and not any(WHY.search(line) for line in lines[:15]):
            bad.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert not bad, (f"over {MAX_LINES} lines with no line near the top saying why:\n"
                     + "\n".join(bad))
