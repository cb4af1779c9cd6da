"""The main job's plots (matplotlib) and progress (tqdm, or plain lines off a terminal)."""

import io
import random
import threading

import pytest

from sim.tools.plots import follow_progress, latency_figure


def _report(n=200):
    rng = random.Random(1)
    log = sorted([[rng.randint(100, 50_000), rng.randint(300, 9000), rng.random() < 0.7]
                  for _ in range(n)])
    lat = sorted(e[1] for e in log)
    return {"commands_log": [[c, v, int(r)] for c, v, r in log],
            "latency": {"p50": lat[n // 2], "p99": lat[int(n * 0.99)]}}


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<svg")])
def test_latency_figure_is_written_as_png_or_svg(tmp_path, suffix, magic):
    path = latency_figure(_report(), tmp_path / "plots" / f"lat{suffix}", clock_mhz=37.4)
    data = path.read_bytes()
    assert magic in data[:400] and len(data) > 5000


def test_latency_figure_refuses_other_formats(tmp_path):
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        latency_figure(_report(), tmp_path / "lat.jpg")


def _follow(tmp_path, stream, totals):
    path = tmp_path / "progress"
    path.write_text("".join(f"{d} {t}\n" for d, t in totals))
    stop = threading.Event()
    stop.set()                     # one last look at the file, then done
    follow_progress(path, stop, stream=stream, poll=0)
    return stream.getvalue()


def test_progress_off_a_terminal_is_a_line_a_quarter(tmp_path):
    out = _follow(tmp_path, io.StringIO(), [(600, 600)])
    assert out.splitlines() == ["progress: 600/600 commands"]
    assert "\r" not in out
    assert _follow(tmp_path, io.StringIO(), [(100, 600)]) == ""      # under a quarter
    assert _follow(tmp_path, io.StringIO(), [(310, 600)]).splitlines() == [
        "progress: 310/600 commands"]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_is_a_tqdm_bar(tmp_path):
    out = _follow(tmp_path, _Terminal(), [(300, 600)])
    assert "300/600" in out and "commands" in out and "\r" in out
