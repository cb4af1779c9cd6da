"""The main job's latency plots and progress, from the libraries users know.

- :func:`latency_figure` draws, with matplotlib (the Agg backend: no display needed),
  the latency histogram of a workload and each command's latency over the run (Reads
  and Writes apart), and writes it as PNG or SVG by the file's suffix.
- :func:`follow_progress` shows a simulation's progress with tqdm on a terminal; when
  the output is not a terminal (a CI log) it prints a plain line at each quarter.
"""

import sys
import time
from pathlib import Path

__all__ = ["latency_figure", "follow_progress", "PLOT_SUFFIXES"]

PLOT_SUFFIXES = (".png", ".svg")


def latency_figure(report, path, clock_mhz=None):
    """Write ``report``'s latency plots (``nvmf-offload demo``'s report: ``latency`` and
    ``commands_log`` ``[[completion cycle, latency, is_read], ...]``) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    if path.suffix not in PLOT_SUFFIXES:
        raise ValueError(f"{path}: the plot is written as PNG or SVG (.png or .svg), not "
                         f"{path.suffix or 'no suffix'!r}")
    log = report["commands_log"]
    lat = report["latency"]
    fig, (hist, line) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    hist.hist([entry[1] for entry in log], bins=40, color="#4a7")
    for name, q in (("p50", lat["p50"]), ("p99", lat["p99"])):
        hist.axvline(q, color="#333", linestyle="--", linewidth=1)
        hist.annotate(name, (q, 0), xytext=(3, 4), textcoords="offset points", fontsize=8)
    hist.set(title="command latency", xlabel="cycles", ylabel="commands")
    for is_read, colour, label in ((1, "#27c", "Read"), (0, "#c62", "Write")):
        points = [(e[0], e[1]) for e in log if e[2] == is_read]
        if points:
            xs, ys = zip(*points, strict=True)
            line.scatter(xs, ys, s=6, color=colour, label=label)
    line.set(title="latency over the run", xlabel="completion, cycles", ylabel="cycles")
    line.legend(loc="upper left", fontsize=8)
    if clock_mhz:
        fig.suptitle(f"{len(log)} commands; at {clock_mhz} MHz one cycle is "
                     f"{1000 / clock_mhz:.1f} ns", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def follow_progress(path, stop, what="commands", stream=None, poll=0.2):
    """Follow the ``done total`` lines a simulation appends to ``path`` until ``stop`` is
    set: a tqdm bar on a terminal, else a line at each quarter of the total."""
    from tqdm import tqdm

    stream = stream if stream is not None else sys.stderr
    bar, shown, quarter = None, 0, 0
    terminal = hasattr(stream, "isatty") and stream.isatty()
    while True:
        finished = stop.is_set()
        try:
            words = Path(path).read_text().split()
        except OSError:
            words = []
        if len(words) >= 2:
            done, total = int(words[-2]), int(words[-1])
            if terminal:
                if bar is None:
                    bar = tqdm(total=total, unit=" " + what, file=stream, leave=True)
                bar.update(done - shown)
            else:
                if done * 4 >= (quarter + 1) * max(total, 1):
                    quarter = done * 4 // max(total, 1)
                    print(f"progress: {done}/{total} {what}", file=stream, flush=True)
            shown = done
        if finished:
            break
        time.sleep(poll)
    if bar is not None:
        bar.close()
