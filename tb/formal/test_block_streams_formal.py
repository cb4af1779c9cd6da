"""Formal checks (SymbiYosys through YoWASP, solver z3, as ``tb/formal/test_stream_formal.py``)
that every block's ``amaranth.lib.stream`` ports obey the stream rules.

One generic harness walks a block's signature (``component.signature.members``):

- every ``In(stream.Signature(...))`` port is driven by the environment, which obeys the
  rules (assumptions): once ``valid`` is high it stays high, and ``payload`` stays as it
  was, until the cycle ``ready`` is high; otherwise ``valid`` and ``payload`` are free;
- every ``Out(stream.Signature(...))`` port is checked (assertions) against the same
  rules: ``valid`` held, ``payload`` unchanged, from a cycle with ``valid`` and not
  ``ready`` to the next; its ``ready`` is a free input, so any back-pressure is modelled;
- every other input of the block is a free input (a port of the converted top, which
  smtbmc leaves free in every cycle: this Amaranth, 0.5, has ``AnySeq``/``AnyConst`` only
  in the private ``amaranth.hdl._ast``), with one contract assumed for every block, from the
  blocks' docstrings: a table read port's data (``X_data`` beside an output ``X_en``:
  ``qp_lookup``, ``qp_rd``, ``ss_rd``, ``bq_rd``, ``idx``, ``ns``) changes only the cycle
  after an ``X_en`` ("the entry, the cycle after en; held while en is low",
  ``rtl/table.py``). The harness starts from the initial (reset) state and never resets
  again (a reset may drop ``valid``; the rules hold between resets);
- a ``Cover`` per stream port (outputs and inputs) that a transfer (``valid & ready``)
  happens, so that a check whose outputs never move (or whose environment assumptions
  cannot be met) fails.

Each block is checked by BMC (task ``bmc``) at the depth below, the covers by ``cover``
tasks, and the small blocks also by k-induction (``prove``). BMC and cover run smtbmc
with ``--nopresat`` (the check that the assumptions can be met at each step, which costs
z3 minutes on blocks with a memory; the covers show it instead: a reached cover is a trace
that meets every assumption up to its step), BMC with ``--keep-going`` (every failing
assertion is reported, not only the first) and cover with ``--unroll`` (finds the traces
through the memories in seconds, not minutes). Blocks are elaborated with
``configs/small.toml`` (``P``), the staging memory and the parser with smaller memories
(``staging_bytes`` 4096, ``max_capsule_bytes`` 128: only the memories' depth and the
address widths change, not the hand-shake logic; at the configured sizes z3 spends
minutes a step on the memories' initial contents); the back end also at its smallest
parameters, memories mapped to registers (``backend_tiny``, note (*)). A cover run may
hold a few inputs at zero (a trace found with fewer inputs moving is a trace of the BMC's
environment too).

=======================  ===============================================  =====  ==========  =====
block (``rtl/``)         stream ports (``Out`` asserted, ``In`` assumed)  bmc    cover       prove
=======================  ===============================================  =====  ==========  =====
parser.CapsuleParser     Out o_cmd (5), o_data (6); In i_capsule (0)      24     8           -
  (parser_top's)
parser.CapsuleParser     as above; In i_verdict (4)                       20     8           -
  (external_verdict:
  the engine's)
front.Front              Out o_verdict (7), ns_req (1), o_resp (7),       10     8           -
                         o_exc (7), o_qp_error (7), o_event (7),
                         o_ns_count (7), o_subsystem_count (7),
                         o_backend (6), o_backend_data (7); In i_cmd,
                         i_data, ns_resp, i_qp_fail
backend.Backend          Out o_event (2), o_rdma_cmd (9), o_stg_wr (11),  11     3 (*)       -
  (``configs/small``)    o_resp, o_qp_error, o_ns_count, o_rdma_wr,
                         o_stg_rd, o_sqe, o_qp_fail; In i_cmd, i_data,
                         i_rdma_rd, i_rdma_sts, i_stg_rd, i_sq_done,
                         i_cqe, i_cq_error
backend.Backend          Out o_event (2), o_sqe (5), o_rdma_cmd (6),      9      9, 14 (*)   -
  (``backend_tiny``:     o_stg_wr (8), o_resp (7), o_ns_count (9),
  ``P_TINY``, memories   o_qp_fail (13), o_qp_error, o_rdma_wr, o_stg_rd
  mapped)                (not by 13); In i_cmd, i_rdma_rd, i_rdma_sts,
                         i_sq_done, i_cqe, i_cq_error (0), i_data (6),
                         i_stg_rd (not by 13)
backend._merge           Out o (1); In first, second                      4      4           -
  (``_Merge``)
sq_writer.SqWriter       Out o_done (4); In i_sqe                         16     6           -
cq_handler.CqHandler     Out o_cqe (5), o_error (6); In i_msix            24     8           -
control.ControlPlane     Out ns_resp (2); In ns_req, event, ns_count,     16     4 (**)      -
                         subsystem_count
control._NsLookup        Out resp (2); In req                             20     4           2
staging.StagingMemory    Out o_msix (2), o_rd (4); In i_wr, i_rd          10     4, 6 (***)  -
msix.MsixMatch           Out o_queue (2); In i_msg                        12     4           -
counters.CounterBank     In inc only (no output stream: nothing to        -      2           -
                         assert; its transfer is covered)
=======================  ===============================================  =====  ==========  =====

In brackets: the step at which a transfer on that port is first reached (a cover; (9):
in an exploration, not in the cover run here); the depth is the number of steps
(0 .. depth-1). Two more contracts are assumed, each for the blocks named:

- ``Backend`` (its docstring): RDMA READ data comes before its status: no status for a
  tag whose data beat is offered or whose packet is under way (without it, the back end
  withdraws a waiting ``o_stg_wr`` beat, dropped as stray, when its READ's status comes
  first: ``o_stg_wr.valid`` falls at step 10 of a 12-step run);
- ``SqWriter``, ``CqHandler`` (AXI4 on ``m_axi_*``): a write response only for a write
  whose address and last data beat were taken, read data only for a read address taken
  (without it, a response for no write sets a batch's error flag under its waiting
  ``o_done`` record, whose ``ok`` falls at step 13).

Every assumption can be met in every state by the inputs of that cycle alone (hold the
last ones, or offer nothing), so they never cut a trace short and skipping presat hides
no vacuous pass.

Found by these checks, and fixed in the RTL (the checks now pass):

- ``Front.ns_req``: ``valid`` fell without a transfer in a cycle with ``qp_cfg_valid``
  (it was ``s1_valid & flight.w_rdy & ~cfg``): a request offered and back-pressured at
  step 1 was withdrawn at step 2 by a QP configuration pulse. The request no longer waits
  for the pulse; a pulse that meets S1's SQ-head write is applied the cycle after.
- ``Backend``'s ``_merge`` (``o_event``, ``o_rdma_cmd``, ``o_stg_wr``, and the inner
  retirement and submission merges) re-arbitrated in every cycle: a higher-priority
  source that became valid while a lower one waited took the output, whose payload
  changed without a transfer (``_Merge``: step 1; on the back end at depth 12, an
  in-capsule data beat waiting on ``o_stg_wr`` at step 10 replaced by a PRP-list beat at
  step 11). The merge now keeps a source it offered until it is taken.

It also showed a contract the back end relies on, now written in its docstring and
assumed here (``_backend_contract``): a subsystem's entry is configured before its
traffic. Without it, a configuration pulse that loads a subsystem's slot size while a
PRP-list beat of one of its commands waits on ``o_stg_wr`` changes the beat's offset;
the driver never reconfigures a subsystem with commands in flight.

Not covered:

- ``table.Table``, ``cdc.AxiPortCrossing``, ``axi_arbiter.AxiWriteArbiter``,
  ``parser_top.ParserTop`` and the engine tops have no stream ports (the AXI and
  AXI4-Stream ports of the tops and the AXI master/target ports of the blocks are flat
  signals, not stream interfaces; they are not checked here);
  ``test_every_stream_block_is_checked`` fails when a component with stream ports is
  added to ``rtl/`` and not here;
- BMC is bounded: a violation that needs more steps than the depth (a full FIFO, a long
  capsule, many commands in flight) is not found; only the blocks with a ``prove`` depth
  are shown for every reachable state (k-induction does not close without invariants
  for the others: ``SqWriter`` at 2 fails from an unreachable state);
- (*) ``Backend``, twice. At ``configs/small.toml`` (``backend``) only ``o_event`` is
  covered (depth 3); in a 16-step exploration ``o_rdma_cmd`` and ``o_stg_wr`` first
  transferred at step 9 (four minutes of z3: not run here) and the other outputs not by
  step 9; ``o_stg_wr`` has since gained two register stages (two steps later, as in
  ``backend_tiny``), so its BMC at 11 checks the rules on ``o_event`` and, for one
  waiting cycle, on ``o_rdma_cmd`` only. ``backend_tiny`` is the same back end at
  its smallest parameters (``P_TINY``, ``test_backend_outcome_formal.PARAMS``: two
  contexts, one subsystem, one backend queue, one namespace, 64-bit data), its memories
  mapped to registers (``memory_map``, ``MAPPED``) before sby reads it; there every
  output but three moves early. Its BMC (general environment, nothing held idle) at 9
  checks ``o_event`` from step 2, ``o_sqe`` and ``o_rdma_cmd`` from step 5, ``o_stg_wr``
  and ``o_resp`` from step 7 (one waiting cycle) within its steps 0 .. 8; ``o_ns_count``
  (first valid by step 9) and ``o_qp_fail`` (by step 10) are covered but lie past it
  (z3 needs over a minute for step 8 alone, about twice that for each step further:
  a 14-step run was stopped in step 8). Its covers: a run of 9 steps with every input
  free (``o_event``, ``o_sqe``, ``o_rdma_cmd``, ``o_stg_wr``, ``o_resp``, ``i_data`` and
  the inputs taken at step 0), and a run of 13 for ``o_ns_count`` (9) and ``o_qp_fail``
  (12: the RDMA status unit's second stage added a step) with ``i_stg_rd`` and
  ``i_cq_error`` held idle (40 s instead of minutes). In a
  12-step exploration with everything free ``o_qp_error``, ``o_rdma_wr``, ``o_stg_rd`` and
  ``i_stg_rd`` are not reached (the RDMA WRITE of a Read's data needs its CQE and
  retirement first; ``o_qp_error`` an RDMA error status for a command with a response
  owed): they stay unchecked;
- (**) ``ControlPlane``'s ``ns_count`` and ``subsystem_count`` inputs are taken only after
  the reset sweep (64 cycles at this size): their covers are left out;
- (***) ``StagingMemory``: ``o_rd`` is covered with the AXI target and ``i_wr`` idle
  (z3 needs minutes for it with them free); ``o_msix`` with everything free.
"""

import os
import re
import signal
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cat, Cover, Module, ResetSignal, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Flow, In, Out

from rtl.backend import Backend, _merge
from rtl.control import ControlPlane, _NsLookup
from rtl.counters import CounterBank
from rtl.cq_handler import CqHandler
from rtl.formats import NsCounters
from rtl.front import Front
from rtl.msix import MsixMatch
from rtl.params import load_params
from rtl.parser import CapsuleParser
from rtl.sq_writer import SqWriter
from rtl.staging import StagingMemory
from rtl.staging_axi import StagingAxi
from tb.formal.test_backend_outcome_formal import PARAMS as P_TINY
from tb.formal.test_backend_outcome_formal import _mapped
from tb.formal.test_stream_formal import _sby

P = load_params("small")
P_STAGING = load_params("small", staging_bytes=4096, staging_mode="onchip")
P_PARSER = load_params("small", max_capsule_bytes=128)

BMC = "smtbmc --keep-going --nopresat z3"     # every failing assertion, not only the first
COVER = "smtbmc --nopresat --unroll z3"
PROVE = "smtbmc z3"


def _rdma_read_data_before_status(m, dut, started):
    """``Backend``: "READ data comes as one packet per descriptor (not interleaved) before
    its status": no status names a tag whose READ data beat is offered, or whose packet
    has begun and not ended."""
    rd, sts = dut.i_rdma_rd, dut.i_rdma_sts
    open_, open_tag = Signal(), Signal.like(rd.payload.tag)
    with m.If(rd.valid & rd.ready):
        m.d.sync += [open_.eq(~rd.payload.last), open_tag.eq(rd.payload.tag)]
    with m.If(sts.valid):
        m.d.comb += [Assume(~(rd.valid & (rd.payload.tag == sts.payload.tag))),
                     Assume(~(open_ & (open_tag == sts.payload.tag)))]


def _backend_contract(m, dut, started):
    """``Backend``: RDMA READ data before its status (above), and a subsystem's entry is
    configured before its traffic (``ss_cfg_valid`` only while no command was offered):
    the driver writes a SUBSYSTEM entry in ``create_srq`` and ``destroy_srq`` only, and
    refuses the latter while a namespace or QP uses it, every unmap having waited on the
    command fence (``docs/engine.md`` section 6) for that namespace's commands."""
    _rdma_read_data_before_status(m, dut, started)
    traffic = Signal(name="cmd_offered")
    with m.If(dut.i_cmd.valid):
        m.d.sync += traffic.eq(1)
    m.d.comb += Assume(~(dut.ss_cfg_valid & (traffic | dut.i_cmd.valid)))


def _axi_responses_follow_requests(m, dut, started, prefix="m_axi_"):
    """An AXI4 master port (``m_axi_*``): a write response comes only for a write whose
    address and last data beat were taken, read data only for a read address taken (the
    target answers requests; one ID, in order)."""
    def port(name):
        return getattr(dut, f"{prefix}{name}")

    def taken(name, valid, ready, last=1):
        count = Signal(6, name=f"axi_{name}_taken")        # more than the depth: no wrap
        with m.If(port(valid) & port(ready) & last):
            m.d.sync += count.eq(count + 1)
        return count

    aw, w_last = taken("aw", "awvalid", "awready"), taken("w", "wvalid", "wready", port("wlast"))
    b = taken("b", "bvalid", "bready")
    with m.If(port("bvalid")):
        m.d.comb += Assume((aw > b) & (w_last > b))
    if hasattr(dut, f"{prefix}arvalid"):
        ar = taken("ar", "arvalid", "arready")
        r_last = taken("r", "rvalid", "rready", port("rlast"))
        with m.If(port("rvalid")):
            m.d.comb += Assume(ar > r_last)


def _stg_axi_contract(m, dut, started):
    """``m_axi_stg``: responses follow requests (as above); the block, a master, holds
    each request channel's valid and payload until it is taken (AXI4 A3.2.1)."""
    _axi_responses_follow_requests(m, dut, started, prefix="m_axi_stg_")
    for channel, fields in (("aw", ("awaddr", "awlen", "awsize", "awburst")),
                            ("w", ("wdata", "wstrb", "wlast")),
                            ("ar", ("araddr", "arlen", "arsize", "arburst"))):
        valid, ready = (getattr(dut, f"m_axi_stg_{channel}{x}") for x in ("valid", "ready"))
        payload = Cat(*(getattr(dut, f"m_axi_stg_{f}") for f in fields))
        was_waiting = Signal(name=f"stg_{channel}_waiting")
        was = Signal.like(payload, name=f"stg_{channel}_was")
        m.d.sync += [was_waiting.eq(valid & ~ready), was.eq(payload)]
        with m.If(started & was_waiting):
            m.d.comb += [Assert(valid, f"m_axi_stg {channel}valid held"),
                         Assert(payload == was, f"m_axi_stg {channel} payload stable")]


class _Merge(wiring.Component):
    """``Backend``'s fixed-priority merge (``rtl/backend._merge``, behind its ``o_event``,
    ``o_rdma_cmd`` and ``o_stg_wr``) of two streams, alone."""

    def __init__(self):
        super().__init__({"first": In(stream.Signature(4)), "second": In(stream.Signature(4)),
                          "o": Out(stream.Signature(4))})

    def elaborate(self, platform):
        m = Module()
        _merge(m, "o", [self.first, self.second], self.o)
        return m


# the back end at its smallest parameters, its memories mapped to registers (``MAPPED``)
# (module docstring, (*)): BMC with every input free; covers: a run with every input free,
# and one (o_ns_count, o_qp_fail) with the staging read data and the CQ errors idle
BACKEND_TINY_BMC = 9
BACKEND_TINY_COVERS = [
    (9, ("o_event", "o_sqe", "o_rdma_cmd", "o_stg_wr", "o_resp", "i_cmd", "i_data",
         "i_rdma_rd", "i_rdma_sts", "i_sq_done", "i_cqe", "i_cq_error"), ()),
    # (14: a READ's status is taken from the cycle after admission's WAIT_RD write, which
    # comes from registers the cycle after ALLOC ends, as the descriptor is first offered)
    (14, ("o_ns_count", "o_qp_fail"), ("i_stg_rd__valid", "i_cq_error__valid"))]
MAPPED = {"backend_tiny"}

_STAGING_AXI_QUIET = ("s_axi_p2p_awvalid", "s_axi_p2p_wvalid", "s_axi_p2p_arvalid")

# name: (block, bmc depth (None: no output stream), cover runs, prove depth (None: no
# k-induction), contract). A cover run is (depth, ports whose transfer is covered (None:
# every stream port), inputs held at zero in that run only): a trace found with fewer
# inputs moving is a trace of the bmc's environment too, and z3 finds it in seconds.
BLOCKS = {
    "parser": (lambda: CapsuleParser(P_PARSER), 24, [(8, None, ())], None, None),
    "parser_ext": (lambda: CapsuleParser(P_PARSER, external_verdict=True), 20,
                   [(8, None, ())], None, None),
    "front": (lambda: Front(P), 10, [(8, None, ())], None, None),
    "backend": (lambda: Backend(P), 11,
                [(3, ("o_event", "i_cmd", "i_rdma_rd", "i_rdma_sts", "i_sq_done", "i_cqe",
                      "i_cq_error"), ())], None, _backend_contract),
    "backend_tiny": (lambda: Backend(P_TINY), BACKEND_TINY_BMC, BACKEND_TINY_COVERS, None,
                     _backend_contract),
    "backend_merge": (_Merge, 4, [(4, None, ())], None, None),
    "sq_writer": (lambda: SqWriter(P), 16, [(6, None, ())], None,
                  _axi_responses_follow_requests),
    "cq_handler": (lambda: CqHandler(P), 24, [(8, None, ())], None,
                   _axi_responses_follow_requests),
    "control": (lambda: ControlPlane(P), 16, [(4, ("ns_resp", "ns_req", "event"), ())],
                None, None),
    "ns_lookup": (lambda: _NsLookup(P), 20, [(4, None, ())], 2, None),
    "staging": (lambda: StagingMemory(P_STAGING), 10,
                [(4, ("o_msix", "i_wr", "i_rd"), ()),
                 (6, ("o_rd",), _STAGING_AXI_QUIET + ("i_wr__valid",))], None, None),
    "msix": (lambda: MsixMatch(P), 12, [(4, None, ())], None, None),
    "staging_axi": (lambda: StagingAxi(P_STAGING), 12, [(6, None, ())], None,
                    _stg_axi_contract),
    "counters": (lambda: CounterBank(NsCounters, P.namespaces), None, [(2, None, ())],
                 None, None),
}


def _stream_ports(dut):
    """``(name, flow)`` of the stream interfaces among ``dut``'s members."""
    out = []
    for name, member in dut.signature.members.items():
        if member.is_port:
            continue
        sig = member.signature
        if isinstance(sig, wiring.FlippedSignature):
            sig = sig.flip()
        if isinstance(sig, stream.Signature):
            out.append((name, member.flow))
    return out


def _harness(dut, covers=None, quiet=(), contract=None):
    """The block ``dut`` with the assumptions, assertions and covers of the module
    docstring (covers on the stream ports ``covers``, all if None; the inputs ``quiet``,
    flattened names, held at zero; ``contract(m, dut, started)`` adds a block's own
    assumptions); returns the module and its free inputs (ports of the top)."""
    m = Module()
    m.submodules.dut = dut
    started = Signal()
    m.d.sync += started.eq(1)
    m.d.comb += Assume(~ResetSignal())
    for name, flow in _stream_ports(dut):
        s = getattr(dut, name)
        payload = Value.cast(s.payload)
        was_valid, was_ready = Signal(name=f"{name}_was_valid"), Signal(name=f"{name}_was_ready")
        was_payload = Signal.like(payload, name=f"{name}_was_payload")
        m.d.sync += [was_valid.eq(s.valid), was_ready.eq(s.ready), was_payload.eq(payload)]
        waiting = started & was_valid & ~was_ready
        check = Assume if flow == Flow.In else Assert
        with m.If(waiting):
            m.d.comb += check(s.valid, f"{name}.valid held")
            m.d.comb += check(payload == was_payload, f"{name}.payload stable")
        if covers is None or name in covers:
            m.d.comb += Cover(s.valid & s.ready, f"{name} transfer")
    # a table read port: the data changes only the cycle after its enable
    members = dut.signature.members
    for name, member in members.items():
        data_name = name[:-len("_en")] + "_data"
        if (name.endswith("_en") and member.is_port and member.flow == Flow.Out
                and data_name in members and members[data_name].flow == Flow.In):
            en, rd_data = getattr(dut, name), Value.cast(getattr(dut, data_name))
            was_en = Signal(name=f"{name}_was")
            was_data = Signal.like(rd_data, name=f"{data_name}_was")
            m.d.sync += [was_en.eq(en), was_data.eq(rd_data)]
            with m.If(started & ~was_en):
                m.d.comb += Assume(rd_data == was_data)
    if contract is not None:
        contract(m, dut, started)
    ports = []
    for path, member, value in dut.signature.flatten(dut):
        if member.flow == Flow.In:
            ports.append(Value.cast(value))
            if "__".join(map(str, path)) in quiet:
                m.d.comb += Assume(Value.cast(value) == 0)
    return m, ports


def _checks(tmp_path, name, task):
    """``{witness cell: (flavor, message)}`` of the design sby ran."""
    il = (tmp_path / f"{name}_{task}" / "model" / "design.il").read_text()
    found = {}
    for cell in re.finditer(r"cell \$check \\_witness_\.(check_\d+)\n((?:\s+parameter .*\n)+)", il):
        flavor = re.search(r'FLAVOR "(.*)"', cell.group(2)).group(1)
        message = re.search(r'FORMAT "(.*)"', cell.group(2)).group(1)
        found[cell.group(1)] = (flavor, message)
    return found


def _summary(tmp_path, name, task, log):
    """The failed assertions and the covers of ``log``, by port."""
    try:
        checks = _checks(tmp_path, name, task)
    except (OSError, AttributeError):
        checks = {}

    def name(check):
        return f"{check.group(0)} [{checks.get(check.group(0), ('', '?'))[1]}]"

    lines = []
    for line in log.splitlines():
        if re.search(r"failed assertion|Reached cover|Unreached cover|DONE", line):
            lines.append(re.sub(r"check_\d+", name, line).split("] ", 1)[-1])
    return "\n".join(dict.fromkeys(lines))


@pytest.fixture(autouse=True)
def _no_stray_solvers(tmp_path):
    """Ends the solver processes a run left behind in ``tmp_path`` (``_sby``'s timeout
    ends sby itself, not the smtbmc and z3 it started)."""
    yield
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if cwd == tmp_path or tmp_path in cwd.parents:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


def _run(tmp_path, name, dut, task, depth, engine, covers=None, quiet=(), contract=None):
    m, ports = _harness(dut, covers, quiet, contract)
    design = rtlil.convert(m, ports=ports)
    if name in MAPPED:                # memories as registers: z3 is faster on bit-vectors
        design = _mapped(tmp_path, design)
    rc, log = _sby(tmp_path, name, design, task, depth=depth, engine=engine)
    return rc, log, _summary(tmp_path, name, task, log)


@pytest.mark.parametrize("block", [b for b in BLOCKS if BLOCKS[b][1]])
def test_output_streams_obey_the_stream_rules_bmc(tmp_path, block):
    make, depth, _, _, contract = BLOCKS[block]
    rc, log, summary = _run(tmp_path, block, make(), "bmc", depth, BMC, contract=contract)
    assert rc == 0 and "DONE (PASS" in log, f"{block}:\n{summary}\n{log[-2000:]}"


@pytest.mark.parametrize("block, run", [(b, i) for b in BLOCKS for i in range(len(BLOCKS[b][2]))])
def test_every_stream_port_transfers_cover(tmp_path, block, run):
    make, _, runs, _, contract = BLOCKS[block]
    depth, covers, quiet = runs[run]
    rc, log, summary = _run(tmp_path, block, make(), "cover", depth, COVER, covers, quiet,
                            contract)
    assert rc == 0 and "DONE (PASS" in log, f"{block}:\n{summary}\n{log[-2000:]}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if BLOCKS[b][3]])
def test_output_streams_obey_the_stream_rules_prove(tmp_path, block):
    make, _, _, depth, contract = BLOCKS[block]
    rc, log, summary = _run(tmp_path, block, make(), "prove", depth, PROVE, contract=contract)
    assert rc == 0 and "DONE (PASS" in log, f"{block}:\n{summary}\n{log[-2000:]}"
    assert "returned pass for induction" in log, log[-3000:]


class _Dropping(_NsLookup):
    """A broken lookup: ``resp.valid`` falls after one cycle of waiting."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        waited = Signal()
        m.d.sync += waited.eq(self.resp.valid & ~self.resp.ready)
        with m.If(waited & ~self.resp.ready):
            m.d.sync += self.resp.valid.eq(0)         # overrides: the response vanishes
        return m


class _Changing(_NsLookup):
    """A broken lookup: ``resp.payload.slot`` counts while the response waits."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        bump = Signal(2)
        with m.If(self.resp.valid & ~self.resp.ready):
            m.d.sync += bump.eq(bump + 1)
        m.d.comb += self.resp.payload.slot.eq(bump)   # overrides the lookup's slot
        return m


@pytest.mark.parametrize("broken, message", [(_Dropping, "resp.valid held"),
                                             (_Changing, "resp.payload stable")])
def test_the_check_catches_a_block_that_breaks_the_rules(tmp_path, broken, message):
    """A block whose output drops ``valid`` (or changes its payload) while it waits fails
    the generic check, on that port and rule."""
    rc, log, summary = _run(tmp_path, "broken", broken(P), "bmc", 6, BMC)
    assert rc != 0 and "DONE (FAIL" in log, log[-3000:]
    assert re.search(rf"failed assertion .*\[{re.escape(message)}\]", summary), summary


def test_every_stream_block_is_checked():
    """Every ``wiring.Component`` of ``rtl/`` with stream ports is one of ``BLOCKS``."""
    import importlib
    import inspect

    def silent(component):
        component._MustUse__silence = True            # built to be inspected, not elaborated
        return component

    checked = {type(silent(make())) for make, *_ in BLOCKS.values()}
    missing = []
    for path in sorted(Path(__file__).resolve().parents[2].joinpath("rtl").glob("*.py")):
        module = importlib.import_module(f"rtl.{path.stem}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ != module.__name__ or not issubclass(cls, wiring.Component)
                    or cls in checked):
                continue
            if list(inspect.signature(cls).parameters)[:1] != ["params"]:
                continue      # built from other arguments (Table, AxiPortCrossing): no streams
            if _stream_ports(silent(cls(P))):
                missing.append(cls.__qualname__)
    assert not missing, missing
