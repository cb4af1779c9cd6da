# Over 700 lines: the generator and its independent checker share one shadow of the
# SSD blocks, and must change together.
"""Seeded random ``nvmf-offload replay`` workloads with an independent data-integrity check.

:func:`generate` draws a TARGET (TOML text in the format of
``examples/replay/target.toml``) and a TRACE (a list of JSON lines) for a mixed
workload, and returns them with the :class:`Expectations` that
:func:`check` verifies a RESULTS list against. The expectations come from a
shadow of the SSD blocks kept here, not from the reference model, so a run
can be judged on its own: every byte a Read returns equals the byte last
written there, every dumped block holds what was last written (zeroes after
Write Zeroes), and every capsule has exactly one outcome, the one it should
have.

The TARGET (fixed shape, random numbers):

- ``ssd0``: three I/O queues, namespace 1 (512-byte blocks) and 2 (4096);
  ``ssd1``: two I/O queues, namespace 1 (4096) and 2 (512);
- ``sub0`` (fe 1 = ssd0/1 on queues 0-1, fe 2 = ssd1/1 on queue 0, fe 3 = ssd0/2 on
  queues 0-1) and ``sub1`` (fe 1 = ssd1/2 on queue 1, fe 2 = ssd0/2 and fe 5 = ssd0/1,
  both on ssd0's queue 2: two subsystems share those blocks);
- QPs 17, 18 (offload-only) and 19 on ``sub0``, 33 and 34 on ``sub1``, 50 not
  offloaded; regions ``SRC_RKEY`` (Write data, DSM range lists) and ``DST_RKEY``
  (Read buffers).

Both subsystems' staging windows fill 1 MiB together and ``[engine]`` only sets
``data_width = 128``, so the engine's parameters (``staging_bytes`` 1 MiB) are
those of ``examples/replay/target.toml``: the simulators reuse its build. With
``config`` the TARGET carries that configuration's ``[engine]`` table instead, and a
configuration too small for this shape gets :func:`_small_target`'s.

The TRACE is a sequence of bursts. A burst writes initiator memory
(``write_mem``: the data of its Writes, its DSM range lists), sends 1 to
``max_qd`` capsules on random QPs, waits for idle, then dumps every Read's
buffer (``dump_mem``) and every written or zeroed LBA range (``dump_lba``).
Inside a burst no two capsules touch the same blocks or the same memory, so
the expected data do not depend on timing. Capsules: Read, Write (keyed SGL or
in-capsule data), Flush, Write Zeroes, Dataset Management (keyed or
in-capsule range list, deallocate or not), from one block to the
subsystem's ``max_io_size``; at ``bad_rate`` a capsule with bad input: LBA
range beyond the namespace (0x80), a Dataset Management range past the
namespace or wrapping 64 bits (0x80, checked in staging), a transfer over ``max_io_size`` (0x02), an
unknown NSID (software ``unknown_nsid``, or 0x0B on the offload-only QP); now
and then a capsule on the QP that is not offloaded (software
``not_offloaded``). In a share (``control_rate``) of the bursts a control line
comes between two capsules: an ``unmap`` (the namespace's capsules then go to
software, or get 0x0B on the offload-only QP, until a ``map`` puts it back with
its blocks), a ``qp_set`` that starts a QP afresh, or a call the driver must
refuse (``control_error`` with ENOENT, EEXIST, EBUSY or EINVAL).

Deallocated blocks: the NVMe-oF facts the project works from
(``shared/spec/nvme-facts.md``) say nothing about what a read of a
deallocated block returns, and NVMe leaves it to the controller (DLFEAT may
report "not reported"). The SSD models read zeroes there, but the check does
not count on it: such bytes are undefined until written again, and a dump
of them is not compared.

:class:`TraceBuilder` is the machinery :func:`generate` uses; directed tests
(faults) use it to write small traces with their own expectations.
"""

import collections
import dataclasses
import json
import math
import random

from rtl.formats import PAGE_BYTES, Cqe, Opcode, decode
from rtl.params import EngineParams, load_params
from sim.traffic.capsules import dsm_ranges, icd_sgl, keyed_sgl, make_sqe

__all__ = ["generate", "generate_target", "check", "check_counters", "control_under_load",
           "TraceBuilder", "Expectations", "Outcome", "TargetShape", "SRC_RKEY", "DST_RKEY",
           "SUCCESS"]

SRC_RKEY = 0x1000       # Write data and DSM range lists
DST_RKEY = 0x2000       # Read buffers
REGION_BYTES = 8 << 20
STAGING_BYTES = 512 << 10   # each subsystem's window: 1 MiB together
SUCCESS = (0, 0x00)
UNDEFINED = None        # a block whose contents are undefined (deallocated)


# --- the target -------------------------------------------------------------------------------

@dataclasses.dataclass
class NsShape:
    """A front-end namespace: what a capsule needs to address it."""
    fe_nsid: int
    ssd: str
    nsid: int
    lba: int                # bytes per block
    nsze: int
    queues: tuple = ()      # the SSD's I/O queues that serve it


@dataclasses.dataclass
class SubShape:
    name: str
    max_io_size: int
    ioccsz: int
    namespaces: dict        # fe_nsid -> NsShape

    @property
    def icd_bytes(self):
        """In-capsule data bytes a capsule may carry."""
        return self.ioccsz * 16 - 64


@dataclasses.dataclass
class QpShape:
    qpn: int
    sub: str | None
    sqsize: int
    sqid: int
    offload: bool = True
    offload_only: bool = False


@dataclasses.dataclass
class TargetShape:
    """What :func:`generate_target` chose, for building traces."""
    text: str
    ssds: dict              # name -> {"nsid": (lba, nsze)}, "queues", "cmd_timeout", ...
    subs: dict              # name -> SubShape
    qps: dict               # qpn -> QpShape
    regions: dict           # rkey -> (addr, size)

    def ns(self, sub, fe_nsid):
        return self.subs[sub].namespaces[fe_nsid]


def generate_target(seed, cmd_timeout=None, polling=None, latency=None, config=None,
                    staging=STAGING_BYTES):
    """A TARGET of the fixed shape (module docstring) with seeded numbers.

    ``cmd_timeout`` (cycles, 0 = none) applies to ``ssd1``; None: none.
    ``polling``: ssd1 polls its CQs instead of MSI-X (None: one seed in four).
    ``latency``: both SSDs' ``latency_cycles`` (None: drawn).
    ``staging``: each subsystem's staging window, bytes.
    ``config``: a named configuration of ``configs/`` (or a TOML file) whose ``[engine]``
    table the TARGET carries; the shape shrinks to fit it (:func:`_small_target` when its
    tables are too small for the fixed shape).
    """
    if config is not None:
        params = load_params(config)
        if _needs_small_shape(params):
            return _small_target(seed, params, latency=latency)
        engine = _engine_table(params)
    else:
        engine = ["data_width = 128"]
    rng = random.Random(f"tracegen-target/{seed}")
    if polling is None:
        polling = rng.random() < 0.25
    lat0 = latency if latency is not None else rng.choice((50, 100, 200, 400))
    lat1 = latency if latency is not None else rng.choice((50, 150, 300))
    q0 = rng.choice((16, 32, 64))
    q1 = rng.choice((8, 16, 32))
    nsze = {("ssd0", 1): rng.choice((8192, 16384, 65536)),
            ("ssd0", 2): rng.choice((1024, 2048, 4096)),
            ("ssd1", 1): rng.choice((1024, 2048)),
            ("ssd1", 2): rng.choice((8192, 16384))}
    lbas = {("ssd0", 1): 512, ("ssd0", 2): 4096, ("ssd1", 1): 4096, ("ssd1", 2): 512}
    mio0 = rng.choice((65536, 131072, 131072))
    mio1 = rng.choice((16384, 32768, 65536, 131072))
    cc0 = rng.choice((132, 196, 260, 260))
    cc1 = rng.choice((68, 100, 132, 260))
    sq = {17: rng.choice((64, 128)), 18: rng.choice((32, 64)), 19: rng.choice((16, 32)),
          33: rng.choice((64, 128)), 34: rng.choice((8, 16)), 50: 128}
    src = rng.choice((0x1000_0000, 0x0000_7F12_3456_0000, 0xFFFF_0000_0000_0000))
    dst = rng.choice((0x2000_0000, 0x0000_0100_0000_1000, 0x8000_0000_4000_0000))

    lines = [
        f"# A random replay target (sim/traffic/tracegen.py, seed {seed}).",
        "format = 1", "",
        "[engine]", *engine, "",
        "[[ssd]]", 'name = "ssd0"', "io_queues = 3", f"queue_entries = {q0}",
        f"latency_cycles = {lat0}",
    ]
    for nsid in (1, 2):
        lines += ["  [[ssd.namespace]]", f"  nsid = {nsid}",
                  f"  lba_data_size = {lbas[('ssd0', nsid)]}", f"  nsze = {nsze[('ssd0', nsid)]}"]
    lines += ["", "[[ssd]]", 'name = "ssd1"', "io_queues = 2", f"queue_entries = {q1}",
              f"latency_cycles = {lat1}"]
    if cmd_timeout:
        lines.append(f"cmd_timeout = {cmd_timeout}")
    if polling:
        lines.append("polling = true")
    for nsid in (1, 2):
        lines += ["  [[ssd.namespace]]", f"  nsid = {nsid}",
                  f"  lba_data_size = {lbas[('ssd1', nsid)]}", f"  nsze = {nsze[('ssd1', nsid)]}"]

    maps = {"sub0": [(1, "ssd0", 1, [0, 1]), (2, "ssd1", 1, [0]), (3, "ssd0", 2, [0, 1])],
            "sub1": [(1, "ssd1", 2, [1]), (2, "ssd0", 2, [2]), (5, "ssd0", 1, [2])]}
    subs = {}
    for name, mio, cc in (("sub0", mio0, cc0), ("sub1", mio1, cc1)):
        lines += ["", "[[subsystem]]", f'name = "{name}"', f"max_io_size = {mio}",
                  f"ioccsz = {cc}", f"staging_bytes = {staging}"]
        namespaces = {}
        for fe, ssd, nsid, queues in maps[name]:
            lines += ["  [[subsystem.namespace]]", f"  fe_nsid = {fe}", f'  ssd = "{ssd}"',
                      f"  nsid = {nsid}", f"  queues = {queues}"]
            namespaces[fe] = NsShape(fe, ssd, nsid, lbas[(ssd, nsid)], nsze[(ssd, nsid)],
                                     tuple(queues))
        subs[name] = SubShape(name, mio, cc, namespaces)

    qps = {17: QpShape(17, "sub0", sq[17], 1), 18: QpShape(18, "sub0", sq[18], 2,
                                                         offload_only=True),
           19: QpShape(19, "sub0", sq[19], 3), 33: QpShape(33, "sub1", sq[33], 1),
           34: QpShape(34, "sub1", sq[34], 7), 50: QpShape(50, None, sq[50], 1, offload=False)}
    regions = {SRC_RKEY: (src, REGION_BYTES), DST_RKEY: (dst, REGION_BYTES)}
    lines += _qp_and_region_lines(qps, regions)
    ssds = {"ssd0": {"queues": 3, "entries": q0, "latency": lat0, "cmd_timeout": 0,
                     "polling": False},
            "ssd1": {"queues": 2, "entries": q1, "latency": lat1,
                     "cmd_timeout": cmd_timeout or 0, "polling": polling}}
    return TargetShape("\n".join(lines) + "\n", ssds, subs, qps, regions)


def _qp_and_region_lines(qps, regions):
    """The ``[[qp]]`` and ``[[region]]`` tables of a TARGET for ``qps`` (QpShape) and
    ``regions`` (rkey -> (addr, size))."""
    lines = []
    for qp in qps.values():
        lines += ["", "[[qp]]", f"qpn = {qp.qpn}"]
        if qp.offload:
            lines += [f'subsystem = "{qp.sub}"', f"sqsize = {qp.sqsize}", f"sqid = {qp.sqid}"]
            if qp.offload_only:
                lines.append("offload_only = true")
        else:
            lines.append("offload = false")
    for rkey, (addr, size) in regions.items():
        lines += ["", "[[region]]", f"rkey = {rkey:#x}", f"addr = {addr:#x}", f"size = {size}"]
    return lines


def _engine_table(params):
    """``[engine]`` lines: the data width, and every parameter not at its default."""
    default = EngineParams()
    lines = [f"data_width = {params.data_width}"]
    for key, value in vars(params).items():
        if key != "data_width" and value != getattr(default, key):
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, str):
                value = f'"{value}"'
            lines.append(f"{key} = {value}")
    return lines


def _needs_small_shape(params):
    """True when the fixed shape (6 namespaces, 5 backend queues, QPNs up to 50, 128 KiB
    transfers) does not fit ``params`` (replay grows the staging memory to hold the
    windows when the configuration leaves its size at the default)."""
    fixed_staging = params.staging_bytes != EngineParams().staging_bytes
    return (params.qp_count <= 50 or params.backend_queues < 5 or params.namespaces < 6
            or params.subsystems < 2 or params.max_io_size < 131072
            or (fixed_staging and params.staging_bytes < 2 * STAGING_BYTES))


def _small_target(seed, params, latency=None):
    """The shape for a small configuration: one SSD with two I/O queues and two
    namespaces (512 and 4096 bytes a block), reached from two subsystems (``sub0`` fe 1
    and 2 on queue 0, ``sub1`` fe 1 and 3 on queue 1: the subsystems share the blocks),
    QPs 1, 2 (offload-only), 3 on ``sub0``, 5 on ``sub1``, and 7 not offloaded; staging,
    transfers and in-capsule data within ``params``."""
    rng = random.Random(f"tracegen-target/{seed}")
    lat = latency if latency is not None else rng.choice((50, 100, 200))
    entries = min(rng.choice((16, 32)), params.max_queue_depth)
    nsze = {1: rng.choice((2048, 4096)), 2: rng.choice((256, 512))}
    lbas = {1: 512, 2: 4096}
    window = params.staging_bytes // 2
    mio = [min(params.max_io_size, rng.choice((8192, 16384))) for _ in range(2)]
    icd = (params.max_capsule_bytes - 64) // 16 * 16
    cc = [(64 + rng.choice((icd, icd // 2))) // 16 for _ in range(2)]
    src = rng.choice((0x1000_0000, 0x0000_7F12_3456_0000))
    dst = rng.choice((0x2000_0000, 0x8000_0000_4000_0000))
    lines = [f"# A random replay target (sim/traffic/tracegen.py, seed {seed}, small shape).",
             "format = 1", "", "[engine]", *_engine_table(params), "",
             "[[ssd]]", 'name = "ssd0"', "io_queues = 2", f"queue_entries = {entries}",
             f"latency_cycles = {lat}"]
    for nsid in (1, 2):
        lines += ["  [[ssd.namespace]]", f"  nsid = {nsid}", f"  lba_data_size = {lbas[nsid]}",
                  f"  nsze = {nsze[nsid]}"]
    maps = {"sub0": [(1, 1, 0), (2, 2, 0)], "sub1": [(1, 2, 1), (3, 1, 1)]}
    subs = {}
    for k, name in enumerate(("sub0", "sub1")):
        lines += ["", "[[subsystem]]", f'name = "{name}"', f"max_io_size = {mio[k]}",
                  f"ioccsz = {cc[k]}", f"staging_bytes = {window}",
                  f"queue_depth = {min(64, params.max_queue_depth)}"]
        namespaces = {}
        for fe, nsid, queue in maps[name]:
            lines += ["  [[subsystem.namespace]]", f"  fe_nsid = {fe}", '  ssd = "ssd0"',
                      f"  nsid = {nsid}", f"  queues = [{queue}]"]
            namespaces[fe] = NsShape(fe, "ssd0", nsid, lbas[nsid], nsze[nsid], (queue,))
        subs[name] = SubShape(name, mio[k], cc[k], namespaces)
    qps = {1: QpShape(1, "sub0", rng.choice((32, 64)), 1),
           2: QpShape(2, "sub0", 16, 2, offload_only=True),
           3: QpShape(3, "sub0", rng.choice((8, 16)), 3),
           5: QpShape(5, "sub1", rng.choice((32, 64)), 1),
           7: QpShape(7, None, 64, 1, offload=False)}
    regions = {SRC_RKEY: (src, REGION_BYTES), DST_RKEY: (dst, REGION_BYTES)}
    lines += _qp_and_region_lines(qps, regions)
    ssds = {"ssd0": {"queues": 2, "entries": entries, "latency": lat, "cmd_timeout": 0,
                     "polling": False}}
    return TargetShape("\n".join(lines) + "\n", ssds, subs, qps, regions)


# --- expectations -------------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    """What one capsule must get. ``kind``: "response", "to_software", "qp_error" or None
    (any outcome, but exactly one). ``status``: (sct, sc) of a response, or None (any);
    ``dnr``: None (any) or 0/1; ``reason``: of to_software / qp_error; ``cqe``: other
    fields the response's CQE must hold (``dw0``, ``crd``, ``m``), or None."""
    kind: str | None = "response"
    status: tuple | None = SUCCESS
    dnr: int | None = None
    reason: str | None = None
    cqe: dict | None = None


@dataclasses.dataclass
class CapsuleExp:
    seq: int
    qpn: int
    cid: int | None
    capsule: str            # hex
    sqid: int | None
    invalidate_rkey: int | None
    outcome: Outcome
    label: str


@dataclasses.dataclass
class DumpExp:
    kind: str               # "mem" or "lba"
    key: dict               # the record's fields other than "data"
    data: bytes
    undefined: list         # [(start, end)] byte ranges not compared
    label: str


@dataclasses.dataclass
class Expectations:
    """What :func:`check` verifies: one entry per capsule (trace order) and per dump."""
    capsules: list = dataclasses.field(default_factory=list)
    dumps: list = dataclasses.field(default_factory=list)
    events: list = dataclasses.field(default_factory=list)   # (type, object): all there are
    control_errors: list = dataclasses.field(default_factory=list)  # (trace line, errno)
    # (subsystem, fe_nsid) -> {counter: value}: namespace counters at the end of the trace,
    # for the namespaces a directed workload follows (check_counters); other counters 0
    counters: dict = dataclasses.field(default_factory=dict)

    def stats(self):
        kinds = {}
        for c in self.capsules:
            kinds[c.label] = kinds.get(c.label, 0) + 1
        return kinds


# --- the trace builder ---------------------------------------------------------------------------

class TraceBuilder:
    """Trace lines and their expectations, with a shadow of every SSD block.

    Capsule methods take an ``outcome`` (default: success) and an ``effect``
    ("apply": the blocks change as the command says, "none": they do not,
    "undefined": they may or may not) so that directed tests can describe
    commands that fail. Reads return where their buffer is (``rkey``, ``offset``).
    """

    def __init__(self, shape):
        self.shape = shape
        self.lines = []
        self.exp = Expectations()
        self.blocks = {}            # (ssd, nsid) -> {lba: bytes | UNDEFINED}
        self.cids = {}
        self.seq = 0
        self.src = 0                # next free byte of SRC_RKEY in this burst
        self.dst = 0
        self.reads = []             # this burst's Reads to dump
        self.written = []           # this burst's written ranges to dump
        self.unmapped = set()       # (subsystem, fe_nsid) unmapped by a control line

    # --- plumbing

    def _cid(self, qpn):
        cid = self.cids.get(qpn, 0x10 + qpn * 0x400)
        self.cids[qpn] = (cid + 1) & 0xFFFF
        return cid

    def alloc(self, which, length, rng=None):
        """Room for ``length`` bytes in a region for this burst: ``(rkey, offset)``.
        With ``rng``, a random small misalignment."""
        skew = rng.randrange(64) if rng is not None and rng.random() < 0.5 else 0
        if which == "src":
            off = self.src + skew
            self.src = off + length
            rkey = SRC_RKEY
        else:
            off = self.dst + skew
            self.dst = off + length
            rkey = DST_RKEY
        if off + length > REGION_BYTES:
            raise ValueError(f"burst memory over {REGION_BYTES} bytes in rkey {rkey:#x}")
        return rkey, off

    def room(self, which):
        return REGION_BYTES - 64 - (self.src if which == "src" else self.dst)

    def addr(self, rkey, offset):
        return self.shape.regions[rkey][0] + offset

    def write_mem(self, rkey, offset, data):
        self.lines.append(json.dumps({"write_mem": {"rkey": rkey, "offset": offset,
                                                    "data": data.hex()}}))

    def _capsule(self, qpn, raw, cid, outcome, label, invalidate_rkey=None):
        qp = self.shape.qps[qpn]
        self.lines.append(json.dumps({"capsule": raw.hex(), "qpn": qpn}))
        self.exp.capsules.append(CapsuleExp(self.seq, qpn, cid, raw.hex(),
                                            qp.sqid if qp.offload else None,
                                            invalidate_rkey, outcome, label))
        self.seq += 1

    def _store(self, ns, slba, blocks, effect):
        """Shadow ``blocks`` (a list of bytes or UNDEFINED) from ``slba``."""
        if effect == "none":
            return
        shadow = self.blocks.setdefault((ns.ssd, ns.nsid), {})
        for i, block in enumerate(blocks):
            shadow[slba + i] = UNDEFINED if effect == "undefined" else block

    def expected_blocks(self, ns, slba, count):
        """(bytes, undefined byte ranges) the shadow says ``count`` blocks hold."""
        shadow = self.blocks.get((ns.ssd, ns.nsid), {})
        zero = bytes(ns.lba)
        out, undefined = bytearray(), []
        for lba in range(slba, slba + count):
            block = shadow.get(lba, zero)
            if block is UNDEFINED:
                undefined.append((len(out), len(out) + ns.lba))
                block = zero
            out += block
        return bytes(out), _merge(undefined)

    # --- capsules

    def read(self, qpn, fe_nsid, slba, nlb, rng=None, invalidate=False, fua=0,
             outcome=None, dump=True, label="read"):
        """A Read of ``nlb`` blocks (a count) into a fresh DST buffer."""
        ns = self.shape.ns(self.shape.qps[qpn].sub, fe_nsid)
        length = nlb * ns.lba
        rkey, off = self.alloc("dst", length, rng)
        cid = self._cid(qpn)
        raw = make_sqe(Opcode.READ, cid, fe_nsid, slba=slba, nlb=nlb - 1, fua=fua,
                       sgl=keyed_sgl(self.addr(rkey, off), length, rkey, invalidate))
        self._capsule(qpn, raw, cid, outcome or Outcome(), label,
                      rkey if invalidate else None)
        if dump:
            data, undefined = self.expected_blocks(ns, slba, nlb)
            self.reads.append(DumpExp("mem", {"rkey": rkey, "offset": off}, data, undefined,
                                      f"{label} seq {self.seq - 1}"))
        return rkey, off

    def write(self, qpn, fe_nsid, slba, nlb, data=None, rng=None, icd=False, invalidate=False,
              fua=0, outcome=None, effect="apply", dump=True, label=None):
        """A Write of ``nlb`` blocks (a count): keyed (data put in SRC memory first) or
        in-capsule."""
        ns = self.shape.ns(self.shape.qps[qpn].sub, fe_nsid)
        length = nlb * ns.lba
        if data is None:
            data = (rng or random).randbytes(length)
        cid = self._cid(qpn)
        if icd:
            raw = make_sqe(Opcode.WRITE, cid, fe_nsid, slba=slba, nlb=nlb - 1, fua=fua,
                           sgl=icd_sgl(0, length)) + data
            inv = None
        else:
            rkey, off = self.alloc("src", length, rng)
            self.write_mem(rkey, off, data)
            raw = make_sqe(Opcode.WRITE, cid, fe_nsid, slba=slba, nlb=nlb - 1, fua=fua,
                           sgl=keyed_sgl(self.addr(rkey, off), length, rkey, invalidate))
            inv = rkey if invalidate else None
        self._capsule(qpn, raw, cid, outcome or Outcome(), label or
                      ("write_icd" if icd else "write"), inv)
        self._store(ns, slba, [data[i * ns.lba:(i + 1) * ns.lba] for i in range(nlb)], effect)
        if dump:
            self.written.append((ns, slba, nlb))
        return data

    def write_zeroes(self, qpn, fe_nsid, slba, nlb, outcome=None, effect="apply", dump=True):
        ns = self.shape.ns(self.shape.qps[qpn].sub, fe_nsid)
        cid = self._cid(qpn)
        raw = make_sqe(Opcode.WRITE_ZEROES, cid, fe_nsid, slba=slba, nlb=nlb - 1)
        self._capsule(qpn, raw, cid, outcome or Outcome(), "write_zeroes")
        self._store(ns, slba, [bytes(ns.lba)] * nlb, effect)
        if dump:
            self.written.append((ns, slba, nlb))

    def flush(self, qpn, fe_nsid, outcome=None):
        cid = self._cid(qpn)
        self._capsule(qpn, make_sqe(Opcode.FLUSH, cid, fe_nsid), cid, outcome or Outcome(),
                      "flush")

    def dsm(self, qpn, fe_nsid, ranges, deallocate=True, icd=False, extra=0, rng=None,
            outcome=None, effect="apply"):
        """Dataset Management of ``ranges`` [(slba, count)]; ``extra`` bytes of SGL length
        beyond the range list (brought into staging, not ranges): a count of zero bytes,
        or the bytes themselves."""
        ns = self.shape.ns(self.shape.qps[qpn].sub, fe_nsid)
        attrs = [(rng.getrandbits(32) if rng is not None and rng.random() < 0.3 else 0)
                 for _ in ranges]
        payload = dsm_ranges((s, n, a) for (s, n), a in zip(ranges, attrs, strict=True))
        payload += extra if isinstance(extra, bytes) else bytes(extra)
        cid = self._cid(qpn)
        nr = len(ranges) - 1
        if icd:
            raw = make_sqe(Opcode.DSM, cid, fe_nsid, nr=nr, ad=int(deallocate),
                           sgl=icd_sgl(0, len(payload))) + payload
            inv = None
        else:
            rkey, off = self.alloc("src", len(payload), rng)
            self.write_mem(rkey, off, payload)
            raw = make_sqe(Opcode.DSM, cid, fe_nsid, nr=nr, ad=int(deallocate),
                           sgl=keyed_sgl(self.addr(rkey, off), len(payload), rkey))
            inv = None
        self._capsule(qpn, raw, cid, outcome or Outcome(), "dsm_icd" if icd else "dsm", inv)
        if deallocate:
            for slba, count in ranges:
                self._store(ns, slba, [UNDEFINED] * count,
                            "undefined" if effect != "none" else "none")

    def raw_capsule(self, qpn, raw, outcome, label, cid=None):
        """Any capsule, with the outcome it must get."""
        self._capsule(qpn, raw, cid, outcome, label)

    # --- control lines

    def control(self, kind, args, errno=None):
        """A control line; ``errno`` (a name): the driver must refuse it so."""
        self.lines.append(json.dumps({kind: args}))
        if errno is not None:
            self.exp.control_errors.append((len(self.lines), errno))

    def unmap(self, sub, fe_nsid):
        """Unmap (refused with ENOENT when it is not mapped)."""
        gone = (sub, fe_nsid) in self.unmapped
        self.control("unmap", {"subsystem": sub, "fe_nsid": fe_nsid}, "ENOENT" if gone else None)
        self.unmapped.add((sub, fe_nsid))

    def remap(self, sub, fe_nsid):
        """Map an unmapped namespace again, as the TARGET had it (EEXIST when mapped)."""
        ns = self.shape.ns(sub, fe_nsid)
        mapped = (sub, fe_nsid) not in self.unmapped
        self.control("map", {"subsystem": sub, "fe_nsid": fe_nsid, "ssd": ns.ssd,
                             "nsid": ns.nsid, "queues": list(ns.queues)},
                     "EEXIST" if mapped else None)
        self.unmapped.discard((sub, fe_nsid))

    def mapped(self, sub, fe_nsid):
        return (sub, fe_nsid) not in self.unmapped

    # --- barriers and dumps

    def wait(self):
        self.lines.append(json.dumps({"wait": "idle"}))

    def fault(self, **fault):
        self.lines.append(json.dumps({"fault": fault}))

    def dump_lba(self, ns, slba, nlb, label="lba"):
        data, undefined = self.expected_blocks(ns, slba, nlb)
        key = {"ssd": ns.ssd, "nsid": ns.nsid, "slba": slba}
        self.lines.append(json.dumps({"dump_lba": dict(key, nlb=nlb)}))
        self.exp.dumps.append(DumpExp("lba", key, data, undefined, label))

    def dump_mem(self, rkey, offset, data, undefined=(), label="mem"):
        self.lines.append(json.dumps({"dump_mem": {"rkey": rkey, "offset": offset,
                                                   "length": len(data)}}))
        self.exp.dumps.append(DumpExp("mem", {"rkey": rkey, "offset": offset}, data,
                                      list(undefined), label))

    def end_burst(self):
        """Wait for idle, dump this burst's Read buffers and written blocks, start afresh."""
        self.wait()
        for d in self.reads:
            self.dump_mem(d.key["rkey"], d.key["offset"], d.data, d.undefined, d.label)
        for ns, slba, nlb in self.written:
            self.dump_lba(ns, slba, nlb, f"{ns.ssd}/{ns.nsid} blocks {slba}+{nlb}")
        self.reads, self.written = [], []
        self.src = self.dst = 0


def _merge(ranges):
    out = []
    for lo, hi in ranges:
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


# --- the random workload -------------------------------------------------------------------------

_OPS = (("read", 34), ("write", 24), ("write_icd", 10), ("flush", 4), ("write_zeroes", 8),
        ("dsm", 6), ("dsm_icd", 3))
_BAD = (("lba_range", 4), ("dsm_range", 2), ("over_max_io", 3), ("unknown_nsid", 3),
        ("not_offloaded", 2))


def _pick(rng, weighted):
    names = [n for n, _ in weighted]
    return rng.choices(names, weights=[w for _, w in weighted])[0]


def _blocks(rng, most):
    """1 .. ``most`` blocks, log-uniform, with the largest and the smallest more often."""
    if most <= 1:
        return 1
    r = rng.random()
    if r < 0.08:
        return most
    if r < 0.16:
        return 1
    return max(1, min(most, int(math.exp(rng.uniform(0, math.log(most + 1))))))


class _Burst:
    """Block ranges taken in this burst, per SSD namespace."""

    def __init__(self):
        self.used = {}

    def free(self, ns, slba, count):
        return all(slba + count <= lo or hi <= slba
                   for lo, hi in self.used.get((ns.ssd, ns.nsid), ()))

    def take(self, ns, slba, count):
        self.used.setdefault((ns.ssd, ns.nsid), []).append((slba, slba + count))


def _place(rng, burst, hot, ns, count):
    """A free start block for ``count`` blocks: near earlier writes half the time."""
    key = (ns.ssd, ns.nsid)
    for _ in range(24):
        if hot.get(key) and rng.random() < 0.5:
            lo, n = rng.choice(hot[key])
            slba = max(0, min(ns.nsze - count, lo + rng.randint(-count + 1, max(0, n - 1))))
        else:
            slba = rng.randint(0, ns.nsze - count)
        if burst.free(ns, slba, count):
            burst.take(ns, slba, count)
            return slba
    return None


def generate(seed, capsules=200, max_qd=64, bad_rate=0.04, max_blocks=None,
             cmd_timeout=None, polling=None, latency=None, control_rate=0.15, config=None,
             staging=STAGING_BYTES):
    """A random workload: ``(target_text, trace_lines, expectations)``.

    ``capsules``: about how many (the last burst may end a few early);
    ``max_qd``: most capsules in one burst (1 .. 64 drawn per burst); ``bad_rate``:
    share of capsules with bad input; ``max_blocks``: cap on blocks a command
    moves (None: the subsystem's ``max_io_size``); ``cmd_timeout``, ``polling``,
    ``latency``: see :func:`generate_target`; ``control_rate``: share of bursts with a
    control line somewhere among their capsules (:func:`_control`); ``staging``: each
    subsystem's staging window (:func:`generate_target`).
    """
    shape = generate_target(seed, cmd_timeout=cmd_timeout, polling=polling, latency=latency,
                            config=config, staging=staging)
    rng = random.Random(f"tracegen-trace/{seed}")
    crng = random.Random(f"tracegen-control/{seed}")    # control lines draw apart
    tb = TraceBuilder(shape)
    offloaded = [q for q in shape.qps.values() if q.offload]
    hot = {}
    qds = [q for q in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64) if q <= max_qd] or [max_qd]
    while tb.seq < capsules:
        qd = min(rng.choice(qds), capsules - tb.seq)
        qd = qd if rng.random() < 0.25 else rng.randint(max(1, qd // 2), qd)
        burst = _Burst()
        per_qp = {}
        control_at = crng.randrange(qd) if crng.random() < control_rate else None
        for i in range(qd):
            if i == control_at:
                _control(crng, tb)
            choices = [q for q in offloaded if per_qp.get(q.qpn, 0) < q.sqsize - 1]
            qp = rng.choice(choices)
            per_qp[qp.qpn] = per_qp.get(qp.qpn, 0) + 1
            if rng.random() < bad_rate:
                _bad(rng, tb, qp, _pick(rng, _BAD))
            else:
                _good(rng, tb, burst, hot, qp, _pick(rng, _OPS), max_blocks)
        tb.end_burst()
    return shape.text, tb.lines, tb.exp


def _control(rng, tb):
    """One control line (``docs/replay.md``, "Control lines"): unmap a namespace or map
    one back (capsules for it in between go to software, or get 0x0B on the offload-only
    QP), start a QP afresh with ``qp_set``, or a refused call (unmap of what is not
    mapped, map of what is, ``destroy_ctrl`` of a queue that serves a namespace, offload
    on the QP without a subsystem)."""
    shape = tb.shape
    every = [(s, fe) for s in sorted(shape.subs) for fe in sorted(shape.subs[s].namespaces)]
    what = _pick(rng, (("unmap", 3), ("map", 5), ("qp_set", 3), ("refused", 2)))
    if what == "map" and tb.unmapped:
        tb.remap(*rng.choice(sorted(tb.unmapped)))
    elif what in ("unmap", "map"):
        mapped = [k for k in every if tb.mapped(*k)]
        if len(mapped) > 2:              # keep most of the workload served
            tb.unmap(*rng.choice(mapped))
    elif what == "qp_set":
        qp = rng.choice([q for q in shape.qps.values() if q.offload])
        tb.control("qp_set", {"qpn": qp.qpn, "offload": True, "offload_only": qp.offload_only})
    else:
        mapped = [k for k in every if tb.mapped(*k)]
        # a queue that serves a namespace mapped now: the driver will not destroy it
        served = sorted({(ns.ssd, q) for k in mapped for ns in [shape.ns(*k)]
                         for q in ns.queues})
        refusals = ["qp_set"] + ["unmap"] * bool(tb.unmapped) + ["map", "destroy_ctrl"] * bool(
            mapped)
        kind = rng.choice(refusals)
        if kind == "unmap":
            tb.unmap(*rng.choice(sorted(tb.unmapped)))
        elif kind == "map":
            tb.remap(*rng.choice(mapped))
        elif kind == "destroy_ctrl":
            ssd, q = rng.choice(served)
            tb.control("destroy_ctrl", {"ssd": ssd, "queue": q}, "EBUSY")
        else:
            qpn = next(q.qpn for q in shape.qps.values() if not q.offload)
            tb.control("qp_set", {"qpn": qpn, "offload": True}, "EINVAL")


def _unmapped(rng, tb, qp, fe):
    """A capsule for a namespace a control line unmapped: software, or 0x0B on the
    offload-only QP; nothing on the SSD changes."""
    outcome = (Outcome("response", (0, 0x0B), dnr=1) if qp.offload_only
               else Outcome("to_software", None, reason="unknown_nsid"))
    if rng.random() < 0.5 or tb.room("dst") < 512:
        tb.flush(qp.qpn, fe, outcome=outcome)
    else:
        tb.read(qp.qpn, fe, 0, 1, outcome=outcome, dump=False, label="unmapped_read")


def _good(rng, tb, burst, hot, qp, op, max_blocks):
    sub = tb.shape.subs[qp.sub]
    fe = rng.choice(sorted(sub.namespaces))
    ns = sub.namespaces[fe]
    if not tb.mapped(qp.sub, fe):
        _unmapped(rng, tb, qp, fe)
        return
    most = sub.max_io_size // ns.lba
    if max_blocks is not None:
        most = max(1, min(most, max_blocks))
    if op == "write_icd":
        icd_most = sub.icd_bytes // ns.lba
        if icd_most == 0:
            op = "write"
        else:
            most = min(most, icd_most)
    if op == "flush":
        tb.flush(qp.qpn, fe)
        return
    if op in ("dsm", "dsm_icd"):
        if op == "dsm_icd" and sub.icd_bytes < 16:
            op = "dsm"
        ranges = []
        for _ in range(rng.choice((1, 1, 2, 3, 4))):
            count = _blocks(rng, min(most, 64))
            slba = _place(rng, burst, hot, ns, count)
            if slba is not None:
                ranges.append((slba, count))
        if not ranges:
            tb.flush(qp.qpn, fe)
            return
        extra = rng.choice((0, 0, 0, 16, 100))
        if op == "dsm_icd":
            extra = min(extra, sub.icd_bytes - 16 * len(ranges))
            if extra < 0:
                ranges = ranges[:sub.icd_bytes // 16]
                extra = 0
        tb.dsm(qp.qpn, fe, ranges, deallocate=rng.random() < 0.75, icd=op == "dsm_icd",
               extra=extra, rng=rng)
        return
    count = _blocks(rng, most)
    side = "dst" if op == "read" else "src"
    if op in ("read", "write") and tb.room(side) < count * ns.lba:
        tb.flush(qp.qpn, fe)
        return
    slba = _place(rng, burst, hot, ns, count)
    if slba is None:
        tb.flush(qp.qpn, fe)
        return
    fua = int(rng.random() < 0.1)
    if op == "read":
        tb.read(qp.qpn, fe, slba, count, rng=rng, invalidate=rng.random() < 0.1, fua=fua)
    elif op == "write_zeroes":
        tb.write_zeroes(qp.qpn, fe, slba, count)
    else:
        tb.write(qp.qpn, fe, slba, count, rng=rng, icd=op == "write_icd",
                 invalidate=op == "write" and rng.random() < 0.1, fua=fua)
        spots = hot.setdefault((ns.ssd, ns.nsid), [])
        spots.append((slba, count))
        del spots[:-32]


def _bad(rng, tb, qp, kind):
    sub = tb.shape.subs[qp.sub]
    fe = rng.choice(sorted(sub.namespaces))
    ns = sub.namespaces[fe]
    if kind in ("lba_range", "dsm_range", "over_max_io") and not tb.mapped(qp.sub, fe):
        _unmapped(rng, tb, qp, fe)
        return
    op = rng.choice((Opcode.READ, Opcode.WRITE))
    cid = tb._cid(qp.qpn)
    bad_field = Outcome("response", (0, 0x02), dnr=1)
    if kind == "lba_range":
        count = _blocks(rng, min(64, sub.max_io_size // ns.lba))
        slba = rng.choice((ns.nsze - count + 1, ns.nsze, ns.nsze + 1000, (1 << 64) - 1))
        sgl = keyed_sgl(tb.addr(SRC_RKEY, 0), count * ns.lba, SRC_RKEY)
        raw = make_sqe(op, cid, fe, slba=slba, nlb=count - 1, sgl=sgl)
        tb.raw_capsule(qp.qpn, raw, Outcome("response", (0, 0x80), dnr=1), "bad_lba_range",
                       cid)
    elif kind == "dsm_range":
        # one range of a Dataset Management lies past the namespace (or wraps 64 bits): the
        # engine checks the list once it is in staging, 0x80 and the SSD untouched
        count = _blocks(rng, 64)
        ranges = [(rng.randrange(max(1, ns.nsze - count)), count)
                  for _ in range(rng.choice((0, 0, 1, 3)))]
        ranges.insert(rng.randrange(len(ranges) + 1),
                      (rng.choice((ns.nsze - count + 1, ns.nsze, (1 << 64) - 1)), count))
        icd = sub.icd_bytes >= 16 * len(ranges) and rng.random() < 0.4
        tb.dsm(qp.qpn, fe, ranges, icd=icd, rng=rng, effect="none",
               outcome=Outcome("response", (0, 0x80), dnr=1))
    elif kind == "over_max_io":
        count = sub.max_io_size // ns.lba + rng.choice((1, 1, 2, 64))
        count = min(count, 1 << 16)
        slba = rng.randint(0, ns.nsze - count) if count <= ns.nsze else None
        if slba is None or count * ns.lba >= 1 << 24:
            tb.raw_capsule(qp.qpn, make_sqe(Opcode.FLUSH, cid, fe), Outcome(), "flush", cid)
            return
        sgl = keyed_sgl(tb.addr(SRC_RKEY, 0), count * ns.lba, SRC_RKEY)
        raw = make_sqe(op, cid, fe, slba=slba, nlb=count - 1, sgl=sgl)
        tb.raw_capsule(qp.qpn, raw, bad_field, "bad_over_max_io", cid)
    elif kind == "unknown_nsid":
        nsid = rng.choice([n for n in (4, 6, 7, 9, 16, 0xFFFFFFFF) if n not in sub.namespaces])
        sgl = keyed_sgl(tb.addr(SRC_RKEY, 0), 512, SRC_RKEY)
        raw = make_sqe(op, cid, nsid, slba=0, nlb=0, sgl=sgl)
        outcome = (Outcome("response", (0, 0x0B), dnr=1) if qp.offload_only
                   else Outcome("to_software", None, reason="unknown_nsid"))
        tb.raw_capsule(qp.qpn, raw, outcome, "bad_unknown_nsid", cid)
    else:
        qpn = next(q.qpn for q in tb.shape.qps.values() if not q.offload)
        raw = make_sqe(op, cid, 1, slba=0, nlb=0,
                       sgl=keyed_sgl(tb.addr(SRC_RKEY, 0), 512, SRC_RKEY))
        tb.raw_capsule(qpn, raw, Outcome("to_software", None, reason="not_offloaded"),
                       "not_offloaded")


# --- the check -----------------------------------------------------------------------------------

def _status(cqe_hex):
    word = int.from_bytes(bytes.fromhex(cqe_hex)[14:16], "little")
    return (word >> 9 & 7, word >> 1 & 0xFF), word >> 15 & 1


def check(results, expectations):
    """Problems (a list of strings; empty: all good) of ``results`` (the RESULTS records,
    dicts) against ``expectations``: every capsule exactly one outcome, the one
    expected; every dump equal to the shadow except undefined bytes; the summary's
    counts; the events, exactly those expected (in any order)."""
    problems = []
    caps = expectations.capsules
    by_cid = {(c.qpn, c.cid): c for c in caps if c.cid is not None}
    by_bytes = {}
    for c in caps:
        by_bytes.setdefault((c.qpn, c.capsule), []).append(c)
    got = {}                    # seq -> record kind
    qp_errors = {}
    dumps = []
    summary = None
    events = []
    refused = []
    for r in results:
        if "response" in r:
            rec = r["response"]
            cqe = bytes.fromhex(rec["cqe"])
            cid = int.from_bytes(cqe[12:14], "little")
            c = by_cid.get((rec["qpn"], cid))
            if c is None:
                problems.append(f"a response for no capsule: {rec}")
                continue
            if c.seq in got:
                problems.append(f"capsule seq {c.seq} ({c.label}): a second outcome {rec}")
            got[c.seq] = "response"
            status, dnr = _status(rec["cqe"])
            want = c.outcome
            if want.kind not in (None, "response"):
                problems.append(f"capsule seq {c.seq} ({c.label}): response {rec['cqe']} "
                                f"(status {status}), expected {want.kind} {want.reason}")
            elif want.kind == "response":
                if want.status is not None and status != want.status:
                    problems.append(f"capsule seq {c.seq} ({c.label}) qpn {c.qpn} cid "
                                    f"{cid:#x}: status (sct, sc) {status}, expected "
                                    f"{want.status}")
                if want.dnr is not None and dnr != want.dnr:
                    problems.append(f"capsule seq {c.seq} ({c.label}): DNR {dnr}, expected "
                                    f"{want.dnr}")
                fields = decode(Cqe, cqe)
                got_more = {"dw0": fields["dw0"], "crd": fields["status"]["crd"],
                            "m": fields["status"]["m"]}
                for key, value in (want.cqe or {}).items():
                    if got_more[key] != value:
                        problems.append(f"capsule seq {c.seq} ({c.label}): CQE {key} "
                                        f"{got_more[key]:#x}, expected {value:#x}")
            sqid = int.from_bytes(cqe[10:12], "little")
            if c.sqid is not None and sqid != c.sqid:
                problems.append(f"capsule seq {c.seq}: SQID {sqid}, expected {c.sqid}")
            if rec.get("invalidate_rkey") != c.invalidate_rkey:
                problems.append(f"capsule seq {c.seq}: invalidate_rkey "
                                f"{rec.get('invalidate_rkey')}, expected {c.invalidate_rkey}")
        elif "to_software" in r:
            rec = r["to_software"]
            cands = [c for c in by_bytes.get((rec["qpn"], rec["capsule"]), ())
                     if c.seq not in got]
            if not cands:
                problems.append(f"a capsule handed to software that was not sent (or twice): "
                                f"qpn {rec['qpn']} {rec['capsule'][:32]}...")
                continue
            c = cands[0]
            got[c.seq] = "to_software"
            want = c.outcome
            if want.kind not in (None, "to_software") or (
                    want.reason is not None and want.reason != rec["reason"]):
                problems.append(f"capsule seq {c.seq} ({c.label}): to_software "
                                f"{rec['reason']}, expected {want.kind} "
                                f"{want.status or want.reason}")
        elif "qp_error" in r:
            rec = r["qp_error"]
            qp_errors.setdefault(rec["qpn"], []).append(rec["reason"])
        elif "event" in r:
            events.append((r["event"]["type"], r["event"]["object"]))
        elif "mem" in r or "lba" in r:
            dumps.append(r)
        elif "control_error" in r:
            refused.append((r["control_error"]["line"], r["control_error"]["errno"]))
        elif "summary" in r:
            summary = r["summary"]
    # QP errors: the capsules without another outcome, per QP, in order
    for qpn, reasons in qp_errors.items():
        left = [c for c in caps if c.qpn == qpn and c.seq not in got]
        if len(left) < len(reasons):
            problems.append(f"qpn {qpn}: {len(reasons)} qp_error records for {len(left)} "
                            f"capsules without another outcome")
        for c, reason in zip(left, reasons, strict=False):
            got[c.seq] = "qp_error"
            want = c.outcome
            if want.kind not in (None, "qp_error") or (
                    want.reason is not None and want.reason != reason):
                problems.append(f"capsule seq {c.seq} ({c.label}) qpn {qpn}: qp_error "
                                f"{reason}, expected {want.kind} "
                                f"{want.status or want.reason}")
    for c in caps:
        if c.seq not in got:
            problems.append(f"capsule seq {c.seq} ({c.label}) qpn {c.qpn} cid {c.cid}: no "
                            f"outcome")
    if summary is None:
        problems.append("no summary line")
    else:
        n_resp = sum(1 for k in got.values() if k == "response")
        n_sw = sum(1 for k in got.values() if k == "to_software")
        n_qpe = sum(len(v) for v in qp_errors.values())
        if summary["capsules"] != len(caps):
            problems.append(f"summary: {summary['capsules']} capsules, the trace has "
                            f"{len(caps)}")
        if (summary["responses"], summary["to_software"]) != (n_resp, n_sw):
            problems.append(f"summary {summary} disagrees with the records ({n_resp} "
                            f"responses, {n_sw} to software)")
        if summary["responses"] + summary["to_software"] + n_qpe != summary["capsules"]:
            problems.append(f"summary: responses + to_software + qp_error "
                            f"{summary['responses']} + {summary['to_software']} + {n_qpe} "
                            f"!= capsules {summary['capsules']}")
    if sorted(refused) != sorted(expectations.control_errors):
        problems.append(f"control_error lines {sorted(refused)}, expected (line, errno) "
                        f"{sorted(expectations.control_errors)}")
    if sorted(map(tuple, expectations.events)) != sorted(events):
        problems.append(f"events {events}, expected {expectations.events}")
    # dumps, in trace order
    if len(dumps) != len(expectations.dumps):
        problems.append(f"{len(dumps)} dump records, expected {len(expectations.dumps)}")
    for record, want in zip(dumps, expectations.dumps, strict=False):
        rec = record.get(want.kind)
        if rec is None or any(rec.get(k) != v for k, v in want.key.items()):
            problems.append(f"dump {want.label}: got {str(record)[:120]}, expected "
                            f"{want.kind} {want.key}")
            continue
        data = bytes.fromhex(rec["data"])
        if len(data) != len(want.data):
            problems.append(f"dump {want.label}: {len(data)} bytes, expected "
                            f"{len(want.data)}")
            continue
        bad = _first_difference(data, want.data, want.undefined)
        if bad is not None:
            problems.append(f"dump {want.label} ({want.kind} {want.key}): byte {bad} is "
                            f"{data[bad]:#04x}, the shadow says {want.data[bad]:#04x}")
    return problems


def _first_difference(got, want, undefined):
    if got == want:
        return None
    a, b = bytearray(got), bytearray(want)
    for lo, hi in undefined:
        a[lo:hi] = bytes(hi - lo)
        b[lo:hi] = bytes(hi - lo)
    if a == b:
        return None
    return next(i for i in range(len(a)) if a[i] != b[i])


# --- directed fault workloads ---------------------------------------------------------------------

FAULT_KINDS = ("ssd_status", "ssd_timeout_late", "ssd_timeout_never", "ssd_timeout_very_late",
               "rdma_error_read", "rdma_error_write",
               "pci_sqe_write", "pci_sq_doorbell", "pci_cqe_read", "pci_cq_doorbell",
               "pci_cqe_read_timeout",
               "unsolicited_cqe")
FAULT_TIMEOUT = 3000        # ssd1's cmd_timeout in the fault targets
PCI_COMPLETION_TIMEOUT = 25_000     # cycles before a never-completed read is answered
_SSD1_QUEUE0 = 2            # backend queue index of ssd1's queue 0 (sub0 fe 2's only queue)


#: SSD latency of :func:`control_under_load`: long enough that every command of a burst is
#: still at the SSD when the burst's control lines are made
LOAD_LATENCY = 3000


def large_outstanding(seed=0, config=None, count=24, staging=1 << 20):
    """Dozens of ``max_io_size`` Writes outstanding at once on several QPs, then Reads of
    the same blocks: ``(target_text, trace_lines, expectations)``.

    The TARGET is :func:`generate_target`'s (``config`` as there) with ``staging`` bytes
    of staging per subsystem and both SSDs answering after 2,000 cycles, so that the
    Writes of the first burst are all in flight together (as many as contexts, staging
    pages and queue entries allow), each on 33 pages of staging at 128 KiB. Every
    Read must return the bytes its Write stored.
    """
    shape = generate_target(seed, config=config, latency=2000, staging=staging)
    rng = random.Random(f"tracegen-large/{seed}")
    tb = TraceBuilder(shape)
    qps = [q for q in shape.qps.values() if q.offload and not q.offload_only]
    # each QP's namespace: the one of its subsystem with the most room, blocks handed out
    # from its start (a namespace shared by two subsystems is used by one QP only)
    used, plan = set(), []
    for qp in qps:
        sub = shape.subs[qp.sub]
        best = max((ns for ns in sub.namespaces.values() if (ns.ssd, ns.nsid) not in used),
                   key=lambda ns: ns.nsze * ns.lba, default=None)
        if best is None or sub.max_io_size < 65536:
            continue
        used.add((best.ssd, best.nsid))
        plan.append((qp, best, sub.max_io_size // best.lba))
    if len(plan) < 2:
        raise ValueError("the target's shape has fewer than two QPs for large commands")
    writes, at = [], {}
    for i in range(count):
        qp, ns, blocks = plan[i % len(plan)]
        slba = at.get(qp.qpn, 0)
        if slba + blocks > ns.nsze:
            raise ValueError(f"namespace {ns.nsid} of {ns.ssd} is too small")
        at[qp.qpn] = slba + blocks
        tb.write(qp.qpn, ns.fe_nsid, slba, blocks, rng=rng)
        writes.append((qp.qpn, ns.fe_nsid, slba, blocks))
    tb.end_burst()
    for qpn, fe, slba, blocks in writes:
        tb.read(qpn, fe, slba, blocks, rng=rng)
    tb.end_burst()
    return shape.text, tb.lines, tb.exp


def dsm_range_checks(seed=0, config=None):
    """Dataset Management range lists of 1 to 9 ranges, keyed and in-capsule, on the
    TARGET of :func:`generate_target` (``config`` as there): ``(target_text,
    trace_lines, expectations)``.

    Each list is sent whole and in range (one range ends exactly at nsze; after the list,
    bytes that would read as a range past nsze, which are not ranges), then again with
    its first, middle or last range moved past nsze, or to an SLBA whose sum with the
    length wraps 64 bits: those get 0x80 LBA Out of Range and leave the blocks alone.
    Across 64 to 512 bits a range sits in half a beat, one beat or a quarter of one, and
    the bad range falls in the first beat, a middle one and the last.
    """
    shape = generate_target(seed, config=config)
    rng = random.Random(f"tracegen-dsm/{seed}")
    tb = TraceBuilder(shape)
    past = Outcome("response", (0, 0x80), dnr=1)
    qps = [q for q in shape.qps.values() if q.offload and not q.offload_only]
    for n in (1, 2, 3, 4, 5, 8, 9):
        for icd in (False, True):
            qp = qps[(n + icd) % len(qps)]
            sub = shape.subs[qp.sub]
            fe = sorted(sub.namespaces)[n % len(sub.namespaces)]
            ns = sub.namespaces[fe]
            if icd and sub.icd_bytes < 16 * (n + 1):
                continue
            good = [(rng.randrange(ns.nsze - 8), rng.randint(1, 8)) for _ in range(n - 1)]
            good.insert(rng.randrange(n), (ns.nsze - 3, 3))
            not_a_range = dsm_ranges([(ns.nsze, 5, 0)])
            tb.dsm(qp.qpn, fe, good, icd=icd, rng=rng, extra=not_a_range)
            for at in sorted({0, n // 2, n - 1}):
                ranges = list(good)
                count = rng.randint(1, 8)
                slba = rng.choice((ns.nsze - count + 1, ns.nsze, (1 << 64) - count))
                ranges[at] = (slba, count)
                tb.dsm(qp.qpn, fe, ranges, icd=icd, rng=rng, outcome=past, effect="none")
            tb.end_burst()
    return shape.text, tb.lines, tb.exp


def control_under_load(seed=0):
    """Control lines made while commands are in flight (``docs/replay.md``, "Control
    lines"): ``(target_text, trace_lines, expectations)``, with the namespace counters
    the unmapped-and-mapped-again namespace must end with (``expectations.counters``).

    The TARGET is :func:`generate_target`'s with both SSDs answering after
    :data:`LOAD_LATENCY` cycles, so that every command before a control line is still
    at its SSD when the call is made.

    - Burst 1: Writes, a Read and a Flush of sub0's fe 1 (and commands on fe 2, fe 3),
      then ``unmap`` of fe 1 with all of them in flight: they are served, and the
      unmap frees the namespace slot only after them (the command fence). Capsules
      for fe 1 then go to software (0x0B on the offload-only QP 18). A ``map`` of fe 1
      takes the same slot again: its counters count only the commands after it, never
      the responses of those before the unmap. A ``qp_set`` restarts QP 17 with its
      commands in flight (they keep their SQHD). A Read after the map returns the
      blocks the in-flight Writes stored.
    - Burst 2: Reads of fe 2 in flight on QP 19; ``unmap`` of fe 2 and ``destroy_ctrl``
      of its only queue (ssd1 queue 0) succeed with them in flight and they are still
      served; ``qp_set`` takes offload off QP 19 with them in flight (they are still
      answered on it), its next capsule goes to software (``not_offloaded``), and
      offload comes back (SQHD starts again).
    - Burst 3: a ``map`` of fe 2 is refused (ENOENT: its queue is gone); fe 1 still
      serves.
    """
    shape = generate_target(seed, polling=False, latency=LOAD_LATENCY)
    rng = random.Random(f"tracegen-under-load/{seed}")
    tb = TraceBuilder(shape)
    fe1, fe2 = shape.ns("sub0", 1), shape.ns("sub0", 2)
    if fe1.lba != 512 or fe2.queues != (0,) or fe2.ssd != "ssd1":
        raise ValueError("the target's shape does not fit control_under_load")
    counts = collections.Counter()
    software = Outcome("to_software", None, reason="unknown_nsid")
    # burst 1: unmap and map again, qp_set, all with commands in flight
    for i in range(6):
        tb.write(17, 1, 100 + 8 * i, 8, rng=rng)
    tb.write(19, 1, 200, 2, rng=rng, icd=True)
    tb.read(19, 1, 0, 8, rng=rng)
    tb.flush(17, 1)
    tb.read(17, 2, 0, 2, rng=rng)
    tb.write(19, 3, 40, 1, rng=rng)
    tb.unmap("sub0", 1)
    tb.flush(19, 1, outcome=software)
    tb.flush(18, 1, outcome=Outcome("response", (0, 0x0B), dnr=1))
    tb.remap("sub0", 1)
    tb.control("qp_set", {"qpn": 17, "offload": True, "offload_only": False})
    tb.write(17, 1, 300, 2, rng=rng)
    tb.read(19, 1, 100, 8, rng=rng)             # the blocks the Writes before the unmap stored
    tb.flush(17, 1)
    counts.update(write_cmds=1, write_blocks=2, read_cmds=1, read_blocks=8, flushes=1)
    tb.end_burst()
    # burst 2: unmap, destroy_ctrl and QP teardown with Reads in flight
    for i in range(3):
        tb.read(19, 2, 4 * i, 2, rng=rng)
    tb.read(17, 1, 300, 2, rng=rng)
    tb.unmap("sub0", 2)
    tb.control("destroy_ctrl", {"ssd": fe2.ssd, "queue": 0})
    tb.control("qp_set", {"qpn": 19, "offload": False, "offload_only": False})
    tb.flush(19, 1, outcome=Outcome("to_software", None, reason="not_offloaded"))
    tb.control("qp_set", {"qpn": 19, "offload": True, "offload_only": False})
    tb.read(19, 1, 200, 2, rng=rng)
    tb.flush(17, 2, outcome=software)
    counts.update(read_cmds=2, read_blocks=4)
    tb.end_burst()
    # burst 3: fe 2 cannot come back without its queue; fe 1 serves
    tb.control("map", {"subsystem": "sub0", "fe_nsid": 2, "ssd": fe2.ssd, "nsid": fe2.nsid,
                       "queues": list(fe2.queues)}, "ENOENT")
    tb.read(17, 1, 100, 16, rng=rng)
    tb.flush(17, 2, outcome=software)
    counts.update(read_cmds=1, read_blocks=16)
    tb.end_burst()
    tb.exp.counters[("sub0", 1)] = dict(counts)
    return shape.text, tb.lines, tb.exp


def check_counters(counters, expectations):
    """Problems of the counters a replay read at its end (``sim/replay/counters.py``)
    against ``expectations.counters``: each namespace listed there has exactly those
    counts (unlisted counters 0)."""
    problems = []
    for (sub, fe_nsid), want in sorted(expectations.counters.items()):
        got = counters.get(sub, {}).get("namespaces", {}).get(str(fe_nsid))
        if got is None:
            problems.append(f"{sub} fe_nsid {fe_nsid}: not mapped at the end")
            continue
        for name, value in sorted(got.items()):
            if value != want.get(name, 0):
                problems.append(f"{sub} fe_nsid {fe_nsid}: {name} {value}, expected "
                                f"{want.get(name, 0)}")
    return problems


def fault_workload(kind, seed=0):
    """A small directed trace for one fault kind (:data:`FAULT_KINDS`):
    ``(target_text, trace_lines, expectations)``; the expectations name the status
    the faulted capsule must get, what its blocks hold afterwards, and the event
    (``expectations.events``) that must appear.

    The target is :func:`generate_target`'s with ``ssd1`` timing out after
    :data:`FAULT_TIMEOUT` cycles and MSI-X on. sub0's fe 1 is ssd0 namespace 1 on
    two queues, fe 2 is ssd1 namespace 1 on one queue (backend queue 2): a PCIe
    error on that queue leaves fe 2 with no queue, so the next command gets
    0x82 Namespace Not Ready.
    """
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault workload {kind!r}; known: {', '.join(FAULT_KINDS)}")
    # a completion timeout is far shorter than an NVMe command timeout (microseconds to
    # milliseconds against seconds): ssd1's cmd_timeout stays longer than it
    timeout = 4 * PCI_COMPLETION_TIMEOUT if kind == "pci_cqe_read_timeout" else FAULT_TIMEOUT
    shape = generate_target(seed, cmd_timeout=timeout, polling=False, latency=100)
    rng = random.Random(f"tracegen-fault/{kind}/{seed}")
    tb = TraceBuilder(shape)
    fe1, fe2 = shape.ns("sub0", 1), shape.ns("sub0", 2)
    internal = Outcome("response", (0, 0x06), dnr=0)
    if kind == "ssd_status":
        tb.write(17, 1, 100, 8, rng=rng)
        tb.end_burst()
        # a status with unusual bits (CRD, More) and a command-specific DW0: all passed on
        tb.fault(kind="ssd_status", ssd=fe1.ssd, nsid=fe1.nsid, sct=2, sc=0x81, dnr=1,
                 crd=2, m=1, dw0=0xDEAD_BEEF)
        tb.write(17, 1, 100, 8, rng=rng, effect="none",
                 outcome=Outcome("response", (2, 0x81), dnr=1,
                                 cqe={"dw0": 0xDEAD_BEEF, "crd": 2, "m": 1}))
        tb.end_burst()
        tb.read(17, 1, 100, 8, rng=rng)
        tb.write(17, 1, 200, 2, rng=rng)            # the fault hit one command only
        tb.end_burst()
    elif kind == "ssd_timeout_late":
        tb.write(17, 2, 10, 2, rng=rng)
        tb.end_burst()
        # the CQE comes between the timeout and the reclaim (twice the timeout): it frees
        # the zombie context, and the SSD's late DMA finds its staging still held
        tb.fault(kind="ssd_timeout", ssd=fe2.ssd, nsid=fe2.nsid, mode="late",
                 delay_cycles=FAULT_TIMEOUT + FAULT_TIMEOUT // 2)
        tb.write(17, 2, 10, 2, rng=rng, outcome=internal)     # a late Write still stores
        tb.exp.events.append(("NVME_TIMEOUT", _SSD1_QUEUE0))
        tb.end_burst()
        tb.read(17, 2, 10, 2, rng=rng)
        tb.end_burst()
    elif kind == "ssd_timeout_never":
        # as many largest Writes as sub0's staging pages hold (docs/engine.md: a command
        # takes ceil(bytes / 4096) pages, one more for its PRP list past two) never
        # complete: each is answered at the timeout and reclaimed at twice it; only then
        # can sub0's next large command get staging (without the reclaim it would wait
        # for ever)
        sub0 = shape.subs["sub0"]
        data_pages = -(-sub0.max_io_size // PAGE_BYTES)
        count = (STAGING_BYTES // PAGE_BYTES) // (data_pages + (data_pages > 2))
        blocks = sub0.max_io_size // fe2.lba
        if count * blocks > fe2.nsze or count + 2 > shape.ssds[fe2.ssd]["entries"]:
            raise ValueError("the fault target's shape does not fit ssd_timeout_never")
        tb.write(17, 2, 0, 1, rng=rng)
        tb.end_burst()
        tb.fault(kind="ssd_timeout", ssd=fe2.ssd, nsid=fe2.nsid, mode="never", count=count)
        for i in range(count):
            tb.write(17, 2, i * blocks, blocks, rng=rng, outcome=internal, effect="none")
            tb.exp.events.append(("NVME_TIMEOUT", _SSD1_QUEUE0))
        tb.end_burst()
        tb.write(19, 1, 700, sub0.max_io_size // fe1.lba, rng=rng)
        tb.end_burst()
        tb.read(17, 1, 700, 8, rng=rng)
        tb.read(17, 2, 0, 1, rng=rng)                # the queue still serves
        tb.end_burst()
    elif kind == "ssd_timeout_very_late":
        # a Flush (no data: nothing touches staging late) whose CQE comes long after the
        # reclaim: answered at the timeout, reclaimed at twice it, the CQE dropped and its
        # reserved CQ slot given back; the queue goes on
        tb.flush(17, 2)
        tb.end_burst()
        tb.fault(kind="ssd_timeout", ssd=fe2.ssd, nsid=fe2.nsid, mode="late",
                 delay_cycles=4 * FAULT_TIMEOUT)
        tb.flush(17, 2, outcome=internal)
        tb.exp.events.append(("NVME_TIMEOUT", _SSD1_QUEUE0))
        tb.end_burst()
        tb.write(17, 2, 5, 1, rng=rng)
        tb.flush(19, 2)
        tb.end_burst()
    elif kind == "rdma_error_read":
        tb.write(17, 1, 300, 4, rng=rng)
        tb.end_burst()
        tb.fault(kind="rdma_error", rkey=SRC_RKEY, op="read")
        tb.write(19, 1, 300, 4, rng=rng, outcome=Outcome("response", (0, 0x04), dnr=0),
                 effect="none")
        tb.exp.events.append(("QP_FATAL", 19))
        tb.end_burst()
        tb.read(19, 1, 300, 4, rng=rng, dump=False,
                outcome=Outcome("qp_error", None, reason="qp_in_error"))
        tb.read(17, 1, 300, 4, rng=rng)
        tb.end_burst()
    elif kind == "rdma_error_write":
        tb.write(17, 1, 400, 4, rng=rng)
        tb.end_burst()
        tb.fault(kind="rdma_error", rkey=DST_RKEY, op="write")
        tb.read(19, 1, 400, 4, rng=rng, dump=False,
                outcome=Outcome("qp_error", None, reason="rdma_error"))
        tb.exp.events.append(("QP_FATAL", 19))
        tb.end_burst()
        tb.read(17, 1, 400, 4, rng=rng)
        tb.end_burst()
    elif kind == "unsolicited_cqe":
        tb.write(17, 1, 500, 2, rng=rng)
        tb.read(17, 2, 30, 1, rng=rng)
        tb.end_burst()
        # CQEs for commands never submitted, on every queue: the CIDs of free contexts
        # (0 and 1, the ones just used) and one beyond every context; a non-zero status
        # too. Each is dropped: no response, no event, and the queues go on working.
        for queue, cid, sc in ((0, 0, 0), (1, 1, 0x02), (0, 0xFFFF, 0)):
            tb.fault(kind="unsolicited_cqe", ssd=fe1.ssd, queue=queue, cid=cid, sc=sc)
        tb.fault(kind="unsolicited_cqe", ssd=fe2.ssd, queue=0, cid=1, sc=0)
        tb.write(17, 1, 502, 2, rng=rng)
        tb.read(19, 1, 500, 2, rng=rng)
        tb.write(19, 2, 30, 1, rng=rng)
        tb.end_burst()
        # and one that comes while commands are outstanding on its queue (the SSD posts
        # it 150 cycles after the barrier, amid the next burst's completions)
        tb.fault(kind="unsolicited_cqe", ssd=fe2.ssd, queue=0, cid=0xFFFE, delay_cycles=150)
        for i in range(6):
            tb.write(17 + 2 * (i % 2), 2, 40 + i, 1, rng=rng)
        tb.end_burst()
        tb.read(17, 2, 40, 6, rng=rng)
        tb.end_burst()
    else:
        access = kind[len("pci_"):]
        delay = 0
        if access.endswith("_timeout"):
            # the CQE read is never completed: the PCIe requester's completion timeout
            # answers it with an error PCI_COMPLETION_TIMEOUT cycles later, longer than
            # the simulator backends' hang detection waits for a quiet engine
            access, delay = access[:-len("_timeout")], PCI_COMPLETION_TIMEOUT
        tb.write(17, 2, 20, 1, rng=rng)
        tb.end_burst()
        fault = dict(kind="pci_error", ssd=fe2.ssd, queue=0, access=access)
        if delay:
            fault["delay_cycles"] = delay
        tb.fault(**fault)
        if access == "cq_doorbell":     # the CQE was consumed: the command had succeeded
            tb.write(17, 2, 20, 1, rng=rng)
        else:                           # the SSD executed it only if its CQE was lost
            tb.write(17, 2, 20, 1, rng=rng, outcome=internal,
                     effect="apply" if access == "cqe_read" else "none")
        tb.exp.events.append(("NVME_PCI_ERR", _SSD1_QUEUE0))
        tb.end_burst()
        not_ready = Outcome("response", (0, 0x82), dnr=0)
        tb.write(17, 2, 20, 1, rng=rng, outcome=not_ready, effect="none")
        tb.read(19, 2, 20, 1, rng=rng, outcome=not_ready, dump=False)
        tb.read(17, 1, 0, 1, rng=rng)               # ssd0 is unharmed
        tb.end_burst()
    return shape.text, tb.lines, tb.exp
