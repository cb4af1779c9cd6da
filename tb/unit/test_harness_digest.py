"""The simulation harness regenerates an RTL top's Verilog whenever a gateware source
changes, in ``rtl/`` or in a package below it (``rtl/backend/``); processes share
one build of a top and run in run directories of their own."""

import threading
import time

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


class _CountingRunner:
    """Stands in for a cocotb runner: a build takes a while and is counted."""

    def __init__(self):
        self.builds = 0

    def build(self, sources, hdl_toplevel, build_dir, **_):
        self.builds += 1
        time.sleep(0.3)
        (build_dir / "sim.vvp").write_text("built from " + sources[0].read_text())


def _fake_verilog(monkeypatch, tmp_path, text):
    monkeypatch.setattr(harness, "ROOT", tmp_path)
    _tree(tmp_path, {"rtl/top.py": text})

    def write(out_dir, params, names):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{names[0]}.v"
        path.write_text((tmp_path / "rtl/top.py").read_text())
        return [path]

    monkeypatch.setattr(harness, "write_verilog", write)


def test_two_workers_needing_one_top_build_it_once(tmp_path, monkeypatch):
    _fake_verilog(monkeypatch, tmp_path, "a = 1\n")
    runner, bdir = _CountingRunner(), tmp_path / "build" / "icarus" / "top" / "w128"
    used = []

    def use():
        with harness._built_for_use(runner, "icarus", "top", "p", bdir, False):
            used.append((bdir / "sim.vvp").read_text())

    threads = [threading.Thread(target=use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runner.builds == 1 and used == ["built from a = 1\n"] * 3


def test_a_changed_source_is_rebuilt_in_the_shared_directory(tmp_path, monkeypatch):
    _fake_verilog(monkeypatch, tmp_path, "a = 1\n")
    runner, bdir = _CountingRunner(), tmp_path / "build" / "icarus" / "top" / "w128"
    with harness._built_for_use(runner, "icarus", "top", "p", bdir, False):
        pass
    _tree(tmp_path, {"rtl/top.py": "a = 2\n"})
    with harness._built_for_use(runner, "icarus", "top", "p", bdir, False):
        assert (bdir / "sim.vvp").read_text() == "built from a = 2\n"
    assert runner.builds == 2


def test_a_source_edited_while_its_verilog_is_written_is_written_again(tmp_path,
                                                                       monkeypatch):
    """The RTL changes between writing the Verilog and checking it: the harness writes
    it again and builds from the new source (it used to fail writing a None stamp)."""
    _fake_verilog(monkeypatch, tmp_path, "a = 1\n")
    write, calls = harness.write_verilog, []

    def write_then_edit(out_dir, params, names):
        paths = write(out_dir, params, names)
        calls.append(names)
        if len(calls) == 1:
            _tree(tmp_path, {"rtl/top.py": "a = 2\n"})
        return paths

    monkeypatch.setattr(harness, "write_verilog", write_then_edit)
    runner, bdir = _CountingRunner(), tmp_path / "build" / "icarus" / "top" / "w128"
    with harness._built_for_use(runner, "icarus", "top", "p", bdir, False):
        assert (bdir / "sim.vvp").read_text() == "built from a = 2\n"
    assert runner.builds == 1 and len(calls) == 2


def test_a_run_directory_in_use_is_not_given_to_a_second_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    with harness._run_dir(tmp_path, "case") as first:
        with harness._run_dir(tmp_path, "case") as second:
            assert first != second
            assert (first.parent.name, second.parent.name) == ("gw0", "gw0-1")
    with harness._run_dir(tmp_path, "case") as again:
        assert again == first
