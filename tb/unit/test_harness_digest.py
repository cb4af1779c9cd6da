"""The simulation harness regenerates an RTL top's Verilog whenever a gateware source
changes, in ``rtl/`` or in a package below it (``rtl/backend/``)."""

from sim.cosim import harness


def _tree(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_change_in_an_rtl_subpackage_changes_the_digest(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "ROOT", tmp_path)
    _tree(tmp_path, {"rtl/top.py": "a = 1\n", "rtl/backend/unit.py": "b = 1\n"})
    before = harness._rtl_digest("params", "nvmf_backend")
    _tree(tmp_path, {"rtl/backend/unit.py": "b = 2\n"})
    assert harness._rtl_digest("params", "nvmf_backend") != before


def test_moving_a_file_between_packages_changes_the_digest(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "ROOT", tmp_path)
    _tree(tmp_path, {"rtl/unit.py": "b = 1\n"})
    flat = harness._rtl_digest("params", "top")
    (tmp_path / "rtl/unit.py").unlink()
    _tree(tmp_path, {"rtl/backend/unit.py": "b = 1\n"})
    assert harness._rtl_digest("params", "top") != flat


def test_an_unchanged_tree_keeps_its_digest(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "ROOT", tmp_path)
    _tree(tmp_path, {"rtl/top.py": "a = 1\n", "rtl/backend/unit.py": "b = 1\n"})
    assert harness._rtl_digest("p", "t") == harness._rtl_digest("p", "t")
