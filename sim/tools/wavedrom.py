"""WaveDrom timing diagrams of the engine's interfaces, drawn from a real simulation.

Reads a VCD file written by a simulation of the whole engine (top ``nvmf_engine``):
the waveform of ``nvmf-offload replay --backend verilator|icarus --waves FILE.vcd``
(``--sim``, Verilator by default), which this tool runs itself when given no VCD
(``examples/replay/basic.jsonl`` against ``examples/replay/target.toml`` by default).
Only the engine's ports are read: the signals of the scope named ``--top`` (the
shallowest one; Verilator also writes a ``$rootio`` scope, which is not used). A small
reader of its own, one value change a line (as Verilator, Icarus and GTKWave write VCD).

Writes one WaveJSON diagram (the WaveDrom format) per interface, ``OUT/<name>.json``,
and, when the ``wavedrom`` package is installed, the same diagram rendered,
``OUT/<name>.svg`` (``docs/waves.md`` shows them):

=============  ==============================================================================
``capsule``    ``s_axis_capsule``: the first capsule, every beat
``response``   ``m_axis_resp``: the first response, ``tuser`` and the CQE decoded
``rdma``       ``m_axis_rdma_cmd``: the first RDMA READ and the first RDMA WRITE descriptor,
               decoded, each with the first beats of its data packet (``s_axis_rdma_rd`` /
               ``m_axis_rdma_wr``, ``tuser`` = the descriptor's tag)
``sqe``        ``m_axi_pcie`` AW/W/B: the first 64-byte burst (an SQE), then the next
               write, one beat (the SQ tail doorbell), up to their write responses
``msix``       ``s_axi_p2p`` AW/W/B: the first one-beat write to the TARGET's ``msix_addr``
=============  ==============================================================================

Each diagram is sampled at the rising edges of its clock (``clk``; ``pcie_clk`` for
the two AXI diagrams when the top has one): a column holds the value each signal
had just before the edge, the one the receiving flip-flops take; the first rising
edge of the file is cycle 0. The columns drawn are the transfer's key cycles
(handshakes: valid and ready high in one column) with ``MARGIN`` cycles either
side; more than ``JOIN`` cycles between two such windows are left out, a gap
(``|``) in their place. Data lanes are hexadecimal, shortened to ``SHORT`` characters (first
and last digits; addresses whole), and ``x`` (don't care) in the cycles where their
channel's valid is low. A diagram's title gives the cycles it shows.

Usage::

    python -m sim.tools.wavedrom [WAVES.vcd] [--out docs/waves] [--target TARGET.toml]
                                 [--trace TRACE.jsonl] [--seed N] [--sim SIM] [--no-svg]
"""

import argparse
import io
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.lib import data

from rtl.formats import QPN_WIDTH, Cqe, RdmaCommand, RdmaOp
from rtl.params import EngineParams

__all__ = ["Vcd", "read_vcd", "Waves", "Lane", "Diagram", "columns", "wavejson", "INTERFACES",
           "extract", "write_transactions", "to_json", "to_svg", "write_diagrams",
           "expand_wave", "lanes_of", "transfers", "record", "add_arguments", "run", "main"]

MARGIN = 2          # cycles drawn before and after each key cycle
JOIN = 6            # at most this many cycles between two windows are drawn, not a gap
SHORT = 8           # characters of a data label at most
SQE_BYTES = 64
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "replay"


# --- the VCD reader -----------------------------------------------------------------------------

@dataclass
class Vcd:
    """The top-level signals of one scope of a VCD file.

    ``widths``: signal name -> bits; ``changes``: name -> ``(times, values)``, two
    lists in time order, a value an ``int`` or ``None`` where any bit is x or z.
    """
    timescale: str
    scope: str
    widths: dict
    changes: dict


def _value(text):
    try:
        return int(text, 2)
    except ValueError:           # x or z in some bit
        return None


def read_vcd(path, top="nvmf_engine"):
    """Read the signals declared directly in the scope ``top`` (the shallowest such
    scope; without one, the first scope of the file) and all their value changes.

    One value change a line, as Verilator, Icarus and GTKWave write them; real
    values, ``$dumpvars`` / ``$dumpoff`` keywords and comments are skipped.
    """
    with open(path, encoding="ascii", errors="replace") as f:
        header = []
        for line in f:
            header.append(line)
            if "$enddefinitions" in line:
                break
        tokens = " ".join(header).split()
        timescale, scopes, stack, i = "", {}, [], 0
        while i < len(tokens):
            tok = tokens[i]
            if tok == "$timescale":
                j = tokens.index("$end", i)
                timescale, i = "".join(tokens[i + 1:j]), j
            elif tok == "$scope":
                stack.append(tokens[i + 2])
                scopes.setdefault(tuple(stack), {})
                i += 2
            elif tok == "$upscope":
                stack.pop()
            elif tok == "$var":
                width, code, name = int(tokens[i + 2]), tokens[i + 3], tokens[i + 4]
                scopes[tuple(stack)][name] = (code, width)
                i += 4
            i += 1
        named = sorted((p for p in scopes if p[-1] == top), key=len)
        path_ = named[0] if named else next(iter(scopes), ())
        signals = scopes.get(path_, {})
        by_code = {}
        for name, (code, _) in signals.items():
            by_code.setdefault(code, []).append(name)
        lists = {code: ([], []) for code in by_code}
        time = 0
        for line in f:
            c = line[:1]
            if c == "#":
                time = int(line[1:])
                continue
            if c in "bB":
                text, _, code = line[1:].partition(" ")
                code = code.strip()
            elif c in "01xXzZ":
                text, code = c, line[1:].strip()
            else:
                continue
            entry = lists.get(code)
            if entry is not None:
                entry[0].append(time)
                entry[1].append(_value(text))
    changes = {}
    for code, names in by_code.items():
        for name in names:
            changes[name] = lists[code]
    widths = {name: width for name, (_, width) in signals.items()}
    return Vcd(timescale, ".".join(path_), widths, changes)


# --- cycle sampling ------------------------------------------------------------------------------

class Waves:
    """The signals of a :class:`Vcd` sampled once a cycle of ``clock``: cycle ``k`` is
    the value just before the ``k``-th rising edge."""

    def __init__(self, vcd, clock="clk"):
        if clock not in vcd.changes:
            raise KeyError(f"no clock {clock!r} in scope {vcd.scope!r}")
        self.vcd, self.clock = vcd, clock
        times, values = vcd.changes[clock]
        self.edges = [t for t, v, prev in zip(times, values, [None] + values[:-1], strict=True)
                      if v == 1 and prev == 0]
        self._cache = {}

    def __len__(self):
        return len(self.edges)

    def width(self, name):
        return self.vcd.widths[name]

    def __getitem__(self, name):
        """The value of ``name`` at every cycle, a list."""
        if name not in self._cache:
            times, values = self.vcd.changes[name]
            out, j, value = [], 0, None
            for edge in self.edges:
                while j < len(times) and times[j] < edge:
                    value = values[j]
                    j += 1
                out.append(value)
            self._cache[name] = out
        return self._cache[name]

    def handshakes(self, valid, ready):
        """The cycles where ``valid`` and ``ready`` are both 1."""
        return [k for k, (v, r) in enumerate(zip(self[valid], self[ready], strict=True))
                if v == 1 and r == 1]


# --- diagrams ------------------------------------------------------------------------------------

@dataclass
class Lane:
    """One lane: ``port`` (a top-level signal) drawn as a bit or as data.

    ``field``: ``(offset, width)`` of a field of a data port; ``names``: value ->
    label (an enum); ``valid``: the port whose low cycles make a data lane ``x``;
    ``full``: every hexadecimal digit (addresses), not ``SHORT`` characters.
    """
    label: str
    port: str
    data: bool = False
    field: tuple = None
    names: dict = None
    valid: str = None
    full: bool = False


@dataclass
class Diagram:
    """A diagram to draw: lane groups ``[(group name, [Lane])]`` over the windows
    around ``keys`` (cycles) of the clock ``clock``, ``hscale`` WaveDrom's width of
    a cycle (1: 20 pixels)."""
    name: str
    title: str
    clock: str
    keys: list
    groups: list = field(default_factory=list)
    hscale: int = 2


_NEW = object()


def _short(value, full=False):
    """``value`` in hexadecimal; unless ``full``, its first and last digits only when
    it has more than ``SHORT``."""
    text = f"{value:x}"
    if full or len(text) <= SHORT:
        return text
    keep = (SHORT - 2) // 2
    return f"{text[:keep]}..{text[-keep:]}"


def columns(keys, length, margin=MARGIN, join=JOIN):
    """The cycles drawn for key cycles ``keys``: each key cycle with ``margin`` cycles
    either side; ``None`` (a gap) stands for more than ``join`` cycles between two
    windows, fewer are drawn."""
    spans = []
    for k in sorted(set(keys)):
        lo, hi = max(0, k - margin), min(length - 1, k + margin)
        if spans and lo - spans[-1][1] - 1 <= join:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    out = []
    for lo, hi in spans:
        if out:
            out.append(None)
        out.extend(range(lo, hi + 1))
    return out


def _lane_json(waves, lane, cols):
    series = waves[lane.port]
    valid = waves[lane.valid] if lane.valid else None
    wave, labels, prev = "", [], _NEW
    for k in cols:
        if k is None:
            wave += "|"
            prev = _NEW if lane.data else prev     # after a gap, data labels again
            continue
        value = series[k]
        if value is not None and lane.field is not None:
            value = (value >> lane.field[0]) & ((1 << lane.field[1]) - 1)
        if valid is not None and valid[k] != 1:
            value = None
        if value == prev:
            char = "."
        elif value is None:
            char = "x"
        elif not lane.data:
            char = str(value)
        else:
            char = "="
            labels.append(lane.names[value] if lane.names and value in lane.names
                          else _short(value, lane.full))
        wave, prev = wave + char, value
    out = {"name": lane.label, "wave": wave}
    if labels:
        out["data"] = labels
    return out


def wavejson(waves, diagram):
    """The WaveJSON of ``diagram`` drawn from ``waves`` (a dict)."""
    cols = columns(diagram.keys, len(waves))
    clock = "".join("|" if k is None else "." for k in cols)
    signal = [{"name": diagram.clock, "wave": "p" + clock[1:]}]
    for group, lanes in diagram.groups:
        signal.append([group] + [_lane_json(waves, lane, cols) for lane in lanes])
    spans, span = [], []
    for k in cols + [None]:
        if k is None:
            spans, span = spans + [span], []
        else:
            span.append(k)
    head = {"text": f"{diagram.title}, cycles "
                    f"{', '.join(f'{span[0]}-{span[-1]}' for span in spans)}"}
    if len(spans) == 1:
        head["tick"] = spans[0][0]          # WaveDrom numbers the columns from there
    return {"signal": signal, "head": head, "config": {"hscale": diagram.hscale}}


# --- the interfaces ------------------------------------------------------------------------------

def _fields(layout, port, valid, prefix, only=None, names=None):
    """Data lanes of the fields of the ``data.Layout`` packed in ``port`` (LSB first)."""
    return [Lane(f"{prefix}.{name}", port, data=True, field=(fld.offset, fld.width),
                 valid=valid, names=(names or {}).get(name), full=name == "addr")
            for name, fld in data.Layout.cast(layout) if only is None or name in only]


def _stream(p, data_lanes=()):
    return [Lane("tvalid", f"{p}_tvalid"), Lane("tready", f"{p}_tready"),
            Lane("tlast", f"{p}_tlast"), *data_lanes]


def _packet(waves, p, start=0, tag=None):
    """The handshake cycles of the first whole packet on stream ``p`` that starts at or
    after cycle ``start`` (with ``tuser == tag`` unless ``tag`` is None), or None."""
    user = waves[f"{p}_tuser"] if tag is not None else None
    last = waves[f"{p}_tlast"]
    beats = []
    for k in waves.handshakes(f"{p}_tvalid", f"{p}_tready"):
        if k < start or (user is not None and user[k] != tag):
            continue
        beats.append(k)
        if last[k] == 1:
            return beats
    return None


def capsule(waves, params):
    """The first capsule on ``s_axis_capsule``, every beat (the first and last three
    of a long one)."""
    p = "s_axis_capsule"
    beats = _packet(waves, p)
    if beats is None:
        return None
    v = f"{p}_tvalid"
    return Diagram("capsule", "capsule in (s_axis_capsule)", "clk",
                   beats if len(beats) <= 8 else beats[:3] + beats[-3:],
                   [(p, _stream(p, [Lane("tuser (qpn)", f"{p}_tuser", data=True, valid=v),
                                    Lane("tkeep", f"{p}_tkeep", data=True, valid=v),
                                    Lane("tdata", f"{p}_tdata", data=True, valid=v)]))])


def response(waves, params):
    """The first response on ``m_axis_resp``: ``tuser`` and the CQE, decoded."""
    p = "m_axis_resp"
    beats = _packet(waves, p)
    if beats is None:
        return None
    v = f"{p}_tvalid"
    user = [Lane("tuser.qpn", f"{p}_tuser", data=True, field=(0, QPN_WIDTH), valid=v),
            Lane("tuser.invalidate", f"{p}_tuser", data=True, field=(QPN_WIDTH, 1), valid=v),
            Lane("tuser.rkey", f"{p}_tuser", data=True, field=(QPN_WIDTH + 1, 32), valid=v)]
    cqe = _fields(Cqe, f"{p}_tdata", v, "cqe", only=("dw0", "sqhd", "sqid", "cid", "status"))
    return Diagram("response", "response out (m_axis_resp)", "clk", beats,
                   [(p, _stream(p, user + cqe))])


def rdma(waves, params):
    """The first RDMA READ and the first RDMA WRITE descriptor on ``m_axis_rdma_cmd``,
    decoded, each with the first beat of its data packet (``tuser`` = its tag) on
    ``s_axis_rdma_rd`` / ``m_axis_rdma_wr``; None unless both packets are whole."""
    c = "m_axis_rdma_cmd"
    layout = data.Layout.cast(RdmaCommand)
    op, tag = layout["op"], layout["tag"]
    tdata = waves[f"{c}_tdata"]
    firsts = {}
    for k in waves.handshakes(f"{c}_tvalid", f"{c}_tready"):
        if tdata[k] is not None:
            firsts.setdefault((tdata[k] >> op.offset) & 1, k)
    names = {"op": {m.value: m.name for m in RdmaOp}}
    groups = [(c, _stream(c, _fields(RdmaCommand, f"{c}_tdata", f"{c}_tvalid", "tdata",
                                     names=names)))]
    keys = []
    for kind, p in ((RdmaOp.READ, "s_axis_rdma_rd"), (RdmaOp.WRITE, "m_axis_rdma_wr")):
        if kind.value not in firsts:
            return None
        k = firsts[kind.value]
        beats = _packet(waves, p, k, (tdata[k] >> tag.offset) & ((1 << tag.width) - 1))
        if beats is None:
            return None
        keys += [k, beats[0]]
        v = f"{p}_tvalid"
        groups.append((p, _stream(p, [Lane("tuser (tag)", f"{p}_tuser", data=True, valid=v),
                                      Lane("tdata", f"{p}_tdata", data=True, valid=v)])))
    return Diagram("rdma", "RDMA command (m_axis_rdma_cmd), READ then WRITE", "clk", keys,
                   groups)


def _axi_write_groups(p):
    aw, w = f"{p}_awvalid", f"{p}_wvalid"
    return [
        ("aw", [Lane("awvalid", aw), Lane("awready", f"{p}_awready"),
                Lane("awaddr", f"{p}_awaddr", data=True, valid=aw, full=True),
                Lane("awlen", f"{p}_awlen", data=True, valid=aw)]),
        ("w", [Lane("wvalid", w), Lane("wready", f"{p}_wready"), Lane("wlast", f"{p}_wlast"),
               Lane("wstrb", f"{p}_wstrb", data=True, valid=w),
               Lane("wdata", f"{p}_wdata", data=True, valid=w)]),
        ("b", [Lane("bvalid", f"{p}_bvalid"), Lane("bready", f"{p}_bready"),
               Lane("bresp", f"{p}_bresp", data=True, valid=f"{p}_bvalid")]),
    ]


def write_transactions(waves, p):
    """The writes on AXI4 port ``p`` in AW order: ``(aw cycle, [w beat cycles], b cycle
    or None)``. W bursts come in AW order (AXI4 has no write interleaving); a B
    response is the first unused one with the AW's ID after its last W beat."""
    ws = waves.handshakes(f"{p}_wvalid", f"{p}_wready")
    bs = waves.handshakes(f"{p}_bvalid", f"{p}_bready")
    wlast, awid, bid = waves[f"{p}_wlast"], waves[f"{p}_awid"], waves[f"{p}_bid"]
    bursts, beats = [], []
    for k in ws:
        beats.append(k)
        if wlast[k] == 1:
            bursts.append(beats)
            beats = []
    used, out = set(), []
    for aw, beats in zip(waves.handshakes(f"{p}_awvalid", f"{p}_awready"), bursts,
                         strict=False):
        after = max(aw, beats[-1])
        b = next((k for k in bs if k > after and k not in used and bid[k] == awid[aw]), None)
        used.add(b)
        out.append((aw, beats, b))
    return out


def sqe(waves, params):
    """On ``m_axi_pcie``: the first burst of 64 bytes (an SQE), then the next write, a
    one-beat one (the SQ tail doorbell), each up to its write response."""
    p = "m_axi_pcie"
    beats_per_sqe = SQE_BYTES * 8 // waves.width(f"{p}_wdata")
    awlen = waves[f"{p}_awlen"]
    txns = write_transactions(waves, p)
    for (aw, beats, b), (db_aw, db_beats, db_b) in zip(txns, txns[1:], strict=False):
        if (awlen[aw], awlen[db_aw]) == (beats_per_sqe - 1, 0) and None not in (b, db_b):
            return Diagram("sqe", "SQE write and doorbell (m_axi_pcie)", waves.clock,
                           [aw, *beats, b, db_aw, *db_beats, db_b], _axi_write_groups(p),
                           hscale=3)
    return None


def msix(waves, params):
    """On ``s_axi_p2p``: the first one-beat write to ``params.msix_addr``."""
    p = "s_axi_p2p"
    addr, awlen = waves[f"{p}_awaddr"], waves[f"{p}_awlen"]
    for aw, beats, b in write_transactions(waves, p):
        if addr[aw] == params.msix_addr and awlen[aw] == 0 and b is not None:
            return Diagram("msix", "MSI-X (s_axi_p2p)", waves.clock, [aw, *beats, b],
                           _axi_write_groups(p), hscale=3)
    return None


#: name -> (the function finding its diagram, whether it is on the PCIe clock)
INTERFACES = {"capsule": (capsule, False), "response": (response, False),
              "rdma": (rdma, False), "sqe": (sqe, True), "msix": (msix, True)}


def extract(vcd, params=None):
    """``{name: WaveJSON dict}`` for every interface of :data:`INTERFACES` whose ports
    are in ``vcd`` (a :class:`Vcd`, or a path to read with :func:`read_vcd`) with a whole
    transfer on them. ``params``: the engine's (``msix_addr``; default
    :class:`EngineParams`). KeyError without ``clk``."""
    if not isinstance(vcd, Vcd):
        vcd = read_vcd(vcd)
    params = params or EngineParams()
    clocks = {False: "clk", True: "pcie_clk" if "pcie_clk" in vcd.changes else "clk"}
    waves = {clock: Waves(vcd, clock) for clock in set(clocks.values())}
    out = {}
    for name, (find, pcie) in INTERFACES.items():
        w = waves[clocks[pcie]]
        try:
            diagram = find(w, params)
        except KeyError:                # a port of it is not in the waveform
            diagram = None
        if diagram is not None:
            out[name] = wavejson(w, diagram)
    return out


# --- reading diagrams back (tests, checks) -------------------------------------------------------

def expand_wave(wave):
    """A WaveJSON ``wave`` string with every column's own character: ``.`` and ``|``
    repeat the previous one."""
    out = []
    for c in wave:
        out.append(out[-1] if c in ".|" and out else c)
    return "".join(out)


def lanes_of(diagram):
    """``[(group, lane name)]`` of a WaveJSON dict, in order (group "" at the top)."""
    out = []

    def walk(items, group):
        for item in items:
            if isinstance(item, list):
                walk(item[1:], item[0])
            elif isinstance(item, dict) and "name" in item:
                out.append((group, item["name"]))
    walk(diagram["signal"], "")
    return out


def transfers(diagram):
    """``[(group, column)]``: the columns where a group's valid and ready lanes are
    both 1."""
    out = []
    for item in diagram["signal"]:
        if not isinstance(item, list):
            continue
        lanes = {lane["name"]: expand_wave(lane["wave"]) for lane in item[1:]}
        for prefix in ("t", "aw", "w", "b"):
            v, r = lanes.get(f"{prefix}valid"), lanes.get(f"{prefix}ready")
            if v and r:
                out += [(item[0], i) for i, (a, b) in enumerate(zip(v, r, strict=True))
                        if a == b == "1"]
    return out


# --- files ---------------------------------------------------------------------------------------

def to_json(diagram):
    """WaveJSON text, one lane a line."""
    lines = []
    for item in diagram["signal"]:
        if isinstance(item, list):
            lanes = ",\n".join(f"   {json.dumps(lane)}" for lane in item[1:])
            lines.append(f"  [{json.dumps(item[0])},\n{lanes}]")
        else:
            lines.append(f"  {json.dumps(item)}")
    rest = "".join(f',\n "{key}": {json.dumps(value)}' for key, value in diagram.items()
                   if key != "signal")
    return '{\n "signal": [\n' + ",\n".join(lines) + "\n ]" + rest + "\n}\n"


def _renderer():
    """The ``wavedrom`` package, or None (not installed; or this file run as a script,
    which would import itself under that name)."""
    try:
        import wavedrom
    except ImportError:
        return None
    same = Path(getattr(wavedrom, "__file__", "")).resolve() == Path(__file__).resolve()
    return None if same else wavedrom


def to_svg(text):
    """The SVG of WaveJSON ``text``, drawn by the ``wavedrom`` package (None without it)."""
    renderer = _renderer()
    if renderer is None:
        return None
    out = io.StringIO()
    renderer.render(text).write(out)
    return out.getvalue()


def write_diagrams(diagrams, out_dir, svg=True):
    """Write ``OUT/<name>.json`` (and ``OUT/<name>.svg`` when ``svg`` and the ``wavedrom``
    package is installed); returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, diagram in diagrams.items():
        text = to_json(diagram)
        paths.append(out_dir / f"{name}.json")
        paths[-1].write_text(text)
        picture = to_svg(text) if svg else None
        if picture is not None:
            paths.append(out_dir / f"{name}.svg")
            paths[-1].write_text(picture)
    return paths


def record(target, trace, vcd, seed=0, sim="verilator"):
    """Run ``trace`` against ``target`` on the RTL engine in ``sim`` (``nvmf-offload
    replay --backend SIM --waves VCD``: a ``.vcd`` name makes Icarus write VCD too);
    SystemExit unless it ran to its end."""
    from sim.replay import replay

    with tempfile.TemporaryDirectory() as tmp:
        status = replay(str(target), str(trace), backend=sim,
                        out=str(Path(tmp) / "results.jsonl"), seed=seed, waves=str(vcd))
    if status != 0 or not Path(vcd).exists():
        raise SystemExit(f"wavedrom: the replay of {trace} ended with exit status {status}"
                         f"{'' if Path(vcd).exists() else ' and wrote no waveform'}")


def add_arguments(p):
    """The command line (also ``nvmf-offload waves``)."""
    p.add_argument("vcd", metavar="WAVES.vcd", nargs="?",
                   help="VCD of a whole-engine simulation; without it, TRACE is replayed "
                        "against TARGET in Verilator first and its waveform used")
    p.add_argument("--out", default="docs/waves", metavar="DIR",
                   help="where the diagrams go (default docs/waves)")
    p.add_argument("--target", default=str(EXAMPLES / "target.toml"), metavar="TARGET.toml",
                   help="the replay target; its [engine] gives the MSI-X address "
                        "(default examples/replay/target.toml)")
    p.add_argument("--trace", default=str(EXAMPLES / "basic.jsonl"), metavar="TRACE.jsonl",
                   help="the trace replayed without WAVES.vcd (default "
                        "examples/replay/basic.jsonl)")
    p.add_argument("--seed", type=int, default=0, help="the replay's --seed (default 0)")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                   help="the simulator the trace is replayed on without WAVES.vcd (default "
                        "verilator; Icarus builds faster, runs slower)")
    p.add_argument("--top", default="nvmf_engine", help="the VCD scope of the engine's ports")
    p.add_argument("--no-svg", action="store_true", help="write the WaveJSON only")
    return p


def run(args):
    """Draw the diagrams as ``args`` (from :func:`add_arguments`) say; exit status 0, or
    1 when an interface had no whole transfer (the others are written)."""
    from sim.replay import ReplayInputError, load_target

    try:
        params = load_target(args.target).params
    except ReplayInputError as exc:
        raise SystemExit(f"wavedrom: {exc}") from exc
    with tempfile.TemporaryDirectory() as tmp:
        vcd = args.vcd
        if vcd is None:
            vcd = Path(tmp) / "waves.vcd"
            record(args.target, args.trace, vcd, args.seed, args.sim)
        try:
            diagrams = extract(read_vcd(vcd, args.top), params)
        except OSError as exc:
            raise SystemExit(f"wavedrom: {vcd}: {exc.strerror}") from exc
        except KeyError as exc:
            raise SystemExit(f"wavedrom: {vcd}: {exc.args[0]}") from exc
    for path in write_diagrams(diagrams, args.out, svg=not args.no_svg):
        print(path)
    if not args.no_svg and _renderer() is None:
        print("wavedrom: the wavedrom package is not installed: no SVG written",
              file=sys.stderr)
    missing = [name for name in INTERFACES if name not in diagrams]
    if missing:
        print(f"wavedrom: no whole transfer of {', '.join(missing)} in the waveform",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m sim.tools.wavedrom",
                                 description=__doc__.splitlines()[0])
    return run(add_arguments(ap).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
