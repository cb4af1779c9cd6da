"""The engine tops.

``Engine`` (Verilog ``nvmf_engine``) is the whole offload engine with the
top-level ports of ``../shared/spec/architecture.md`` section 3 (AXI names).
``EngineFront`` (``nvmf_engine_front``) is its first half alone: capsule
parser, control plane and command front end, with the served commands and
their in-capsule data on ``m_axis_backend_cmd`` / ``m_axis_backend_data``;
it exists to test the front end's routing in isolation.
"""

import dataclasses

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from .axi_arbiter import AxiWriteArbiter, axi4_master_ports
from .backend import Backend
from .cdc import AxiPortCrossing
from .control import AXIL_PORTS, ControlPlane
from .formats import QPN_WIDTH, BackendCommand, ExcSideband, RdmaCommand
from .front import Front
from .msix import MsixMatch
from .params import EngineParams
from .parser import CapsuleParser
from .stream_util import RegisterSlice, ReplicatedEnable

__all__ = ["Engine", "EngineFront", "BACKEND_CMD_TDATA_WIDTH", "RESP_TUSER_WIDTH",
           "RDMA_CMD_TDATA_WIDTH", "PCIE_ID_WIDTH", "SPLIT_DOMAINS"]


def _bytes_width(layout):
    return -(-data.Layout.cast(layout).size // 8) * 8


BACKEND_CMD_TDATA_WIDTH = _bytes_width(BackendCommand)
RDMA_CMD_TDATA_WIDTH = _bytes_width(RdmaCommand)
RESP_TUSER_WIDTH = QPN_WIDTH + 1 + 32          # {rkey, invalidate, qpn} LSB first
EXC_TUSER_WIDTH = data.Layout.cast(ExcSideband).size
PCIE_ID_WIDTH = 1
#: the clock domains besides ``sync`` of a ``clock_domains = "split"`` engine
SPLIT_DOMAINS = ("pcie", "csr")


def _common_members(W):
    members = {
        "s_axis_capsule_tdata": In(W), "s_axis_capsule_tkeep": In(W // 8),
        "s_axis_capsule_tlast": In(1), "s_axis_capsule_tuser": In(QPN_WIDTH),
        "s_axis_capsule_tvalid": In(1), "s_axis_capsule_tready": Out(1),
        "m_axis_resp_tdata": Out(128), "m_axis_resp_tuser": Out(RESP_TUSER_WIDTH),
        "m_axis_resp_tlast": Out(1), "m_axis_resp_tvalid": Out(1),
        "m_axis_resp_tready": In(1),
        "m_axis_exc_tdata": Out(W), "m_axis_exc_tkeep": Out(W // 8),
        "m_axis_exc_tlast": Out(1), "m_axis_exc_tuser": Out(EXC_TUSER_WIDTH),
        "m_axis_exc_tvalid": Out(1), "m_axis_exc_tready": In(1),
        "m_axis_qp_err_tdata": Out(32), "m_axis_qp_err_tlast": Out(1),
        "m_axis_qp_err_tvalid": Out(1), "m_axis_qp_err_tready": In(1),
        "irq": Out(1),
    }
    for name, direction, width in AXIL_PORTS:
        members[f"s_axil_csr_{name}"] = In(width) if direction == "i" else Out(width)
    return members


def _front_half(m, p, top):
    """Parser, control plane and front end, wired to each other and to ``top``'s
    capsule, CSR and irq ports. Returns the three blocks."""
    parser = m.submodules.parser = CapsuleParser(p, external_verdict=True)
    control = m.submodules.control = ControlPlane(p)
    front = m.submodules.front = Front(p)
    for name, direction, _ in AXIL_PORTS:
        outer, inner = getattr(top, f"s_axil_csr_{name}"), getattr(control, f"s_axil_csr_{name}")
        m.d.comb += (inner.eq(outer) if direction == "i" else outer.eq(inner))
    cap = parser.i_capsule
    m.d.comb += [
        top.irq.eq(control.irq),
        cap.payload.data.eq(top.s_axis_capsule_tdata),
        cap.payload.keep.eq(top.s_axis_capsule_tkeep),
        cap.payload.last.eq(top.s_axis_capsule_tlast),
        cap.payload.qpn.eq(top.s_axis_capsule_tuser),
        cap.valid.eq(top.s_axis_capsule_tvalid),
        top.s_axis_capsule_tready.eq(cap.ready),
        control.qp_rd_addr.eq(parser.qp_lookup_addr),
        control.qp_rd_en.eq(parser.qp_lookup_en),
        parser.qp_lookup_data.eq(control.qp_rd_data.attrs),
        control.qp2_rd_addr.eq(front.qp_rd_addr),
        control.qp2_rd_en.eq(front.qp_rd_en),
        front.qp_rd_data.eq(control.qp2_rd_data),
        control.ss_rd_addr.eq(front.ss_rd_addr),
        control.ss_rd_en.eq(front.ss_rd_en),
        front.ss_rd_data.eq(control.ss_rd_data),
        front.qp_cfg_valid.eq(control.qp_cfg_valid),
        front.qp_cfg_qpn.eq(control.qp_cfg_qpn),
    ]
    wiring.connect(m, parser.o_cmd, front.i_cmd)
    wiring.connect(m, parser.o_data, front.i_data)
    wiring.connect(m, front.o_verdict, parser.i_verdict)
    wiring.connect(m, front.ns_req, control.ns_req)
    wiring.connect(m, control.ns_resp, front.ns_resp)
    wiring.connect(m, front.o_subsystem_count, control.subsystem_count)
    return parser, control, front


def _drive_outputs(m, top, resp, exc, qperr):
    m.d.comb += [
        top.m_axis_resp_tdata.eq(resp.payload.cqe),
        top.m_axis_resp_tuser.eq(Cat(resp.payload.qpn, resp.payload.invalidate,
                                     resp.payload.rkey)),
        top.m_axis_resp_tlast.eq(1),
        top.m_axis_resp_tvalid.eq(resp.valid),
        resp.ready.eq(top.m_axis_resp_tready),
        top.m_axis_exc_tdata.eq(exc.payload.data),
        top.m_axis_exc_tkeep.eq(exc.payload.keep),
        top.m_axis_exc_tlast.eq(exc.payload.last),
        top.m_axis_exc_tuser.eq(exc.payload.side),
        top.m_axis_exc_tvalid.eq(exc.valid),
        exc.ready.eq(top.m_axis_exc_tready),
        top.m_axis_qp_err_tdata.eq(qperr.payload),
        top.m_axis_qp_err_tlast.eq(1),
        top.m_axis_qp_err_tvalid.eq(qperr.valid),
        qperr.ready.eq(top.m_axis_qp_err_tready),
    ]


def _fields(register, **values):
    """A 32-bit register value with each named field of ``register`` (a
    :class:`rtl.regmap.Register`) taken from ``values`` (truncated to its width)."""
    word = 0
    for name, value in values.items():
        f = register.field(name)
        word = word | (value[:f.width] << f.lsb)
    return word


def _sliced(m, name, src):
    """``src`` through a :class:`RegisterSlice` added to ``m`` as ``name``: the stream
    returned offers ``src``'s items one cycle later, from flip-flops, and ``src.ready``
    is a flip-flop."""
    sl = m.submodules[name] = RegisterSlice(src.payload.shape())
    out = stream.Signature(src.payload.shape()).create(path=(f"{name}_out",))
    m.d.comb += [sl.i_valid.eq(src.valid), src.ready.eq(sl.i_ready),
                 sl.i_data.eq(src.payload), out.valid.eq(sl.o_valid),
                 out.payload.eq(sl.o_data), sl.o_ready.eq(out.ready)]
    return out


def _merge2(m, first, second, sink):
    """Two streams into one; ``first`` wins when both are valid.

    ``first.ready`` is ``sink.ready`` whether or not ``first`` is valid (a ready without
    a valid takes nothing). The engine gives it register slices' outputs only
    (:func:`_sliced`), so no source's hand-shake reaches the other's through it."""
    m.d.comb += first.ready.eq(sink.ready)
    with m.If(first.valid):
        m.d.comb += [sink.valid.eq(1), sink.payload.eq(first.payload)]
    with m.Elif(second.valid):
        m.d.comb += [sink.valid.eq(1), sink.payload.eq(second.payload),
                     second.ready.eq(sink.ready)]


class EngineFront(wiring.Component):
    """The engine's front half (parser, control plane, front end), for unit tests.

    Interface: the capsule, response, software, QP-error, CSR and irq ports of
    :class:`Engine`, plus ``m_axis_backend_cmd_*`` (``BackendCommand``, one
    beat) and ``m_axis_backend_data_*`` (in-capsule data), in order.
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        W = params.data_width
        members = _common_members(W)
        members.update({
            "m_axis_backend_cmd_tdata": Out(BACKEND_CMD_TDATA_WIDTH),
            "m_axis_backend_cmd_tlast": Out(1), "m_axis_backend_cmd_tvalid": Out(1),
            "m_axis_backend_cmd_tready": In(1),
            "m_axis_backend_data_tdata": Out(W), "m_axis_backend_data_tkeep": Out(W // 8),
            "m_axis_backend_data_tlast": Out(1), "m_axis_backend_data_tvalid": Out(1),
            "m_axis_backend_data_tready": In(1),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        _, control, front = _front_half(m, self.params, self)
        wiring.connect(m, front.o_event, control.event)
        wiring.connect(m, front.o_ns_count, control.ns_count)
        _drive_outputs(m, self, front.o_resp, front.o_exc, front.o_qp_error)
        be, bd = front.o_backend, front.o_backend_data
        m.d.comb += [
            self.m_axis_backend_cmd_tdata.eq(be.payload),
            self.m_axis_backend_cmd_tlast.eq(1),
            self.m_axis_backend_cmd_tvalid.eq(be.valid),
            be.ready.eq(self.m_axis_backend_cmd_tready),
            self.m_axis_backend_data_tdata.eq(bd.payload.data),
            self.m_axis_backend_data_tkeep.eq(bd.payload.keep),
            self.m_axis_backend_data_tlast.eq(bd.payload.last),
            self.m_axis_backend_data_tvalid.eq(bd.valid),
            bd.ready.eq(self.m_axis_backend_data_tready),
        ]
        return m


class Engine(wiring.Component):
    """nvmf-offload: the whole engine.

    Interface attributes (all synchronous to ``clk``)
    -------------------------------------------------
    s_axis_capsule_* : AXI4-Stream slave, DATA_W; ``tuser`` = QPN.
    m_axis_resp_* : 128 bits, one response CQE a packet; ``tuser`` =
        {rkey[56:25], invalidate[24], qpn[23:0]}.
    m_axis_exc_* : DATA_W, capsules for software, whole; ``tuser`` =
        {reason[27:24], qpn[23:0]} on every beat.
    m_axis_qp_err_* : 32 bits, ``tdata`` = {reason[27:24], qpn[23:0]}.
    m_axis_rdma_cmd_* : one ``RdmaCommand`` a beat (READ/WRITE, QPN, address,
        rkey, length, tag).
    s_axis_rdma_rd_*, m_axis_rdma_wr_* : DATA_W data, one packet per
        descriptor; ``tuser`` = tag.
    s_axis_rdma_sts_* : 32 bits {status[23:16], tag[15:0]}; status 0 = success.
    m_axi_pcie_* : AXI4 master, DATA_W: SQE and doorbell writes, CQE reads.
    s_axi_p2p_* : AXI4 slave, DATA_W: MSI-X; with on-chip staging also the SSDs'
        DMA to and from staging.
    m_axi_stg_* : AXI4 master, DATA_W (external staging, the default): staging
        writes and reads to memory the integrator provides (``docs/backend.md``,
        "External staging"); in the core's clock domain.
    s_axil_csr_* : AXI4-Lite slave (``docs/registers.md``).
    irq : the event queue is not empty (and enabled).

    With ``clock_domains = "split"`` (:class:`rtl.params.EngineParams`) the engine
    has three clocks: ``clk`` / ``rst`` for the core and the capsule, response,
    software, QP-error and RDMA streams; ``pcie_clk`` / ``pcie_rst`` for
    ``m_axi_pcie`` and ``s_axi_p2p``; ``csr_clk`` / ``csr_rst`` for ``s_axil_csr``
    and ``irq`` (two flip-flops from the core's). Each AXI channel crosses in an
    asynchronous FIFO (:class:`rtl.cdc.AxiPortCrossing`); ``docs/clocks.md`` has
    the reset sequence.
    """

    def __init__(self, params=None):
        from .staging import p2p_ports
        from .staging_axi import stg_ports
        self.params = params = params or EngineParams()
        W = params.data_width
        members = _common_members(W)
        members.update({
            "m_axis_rdma_cmd_tdata": Out(RDMA_CMD_TDATA_WIDTH),
            "m_axis_rdma_cmd_tlast": Out(1), "m_axis_rdma_cmd_tvalid": Out(1),
            "m_axis_rdma_cmd_tready": In(1),
            "s_axis_rdma_rd_tdata": In(W), "s_axis_rdma_rd_tkeep": In(W // 8),
            "s_axis_rdma_rd_tlast": In(1), "s_axis_rdma_rd_tuser": In(16),
            "s_axis_rdma_rd_tvalid": In(1), "s_axis_rdma_rd_tready": Out(1),
            "m_axis_rdma_wr_tdata": Out(W), "m_axis_rdma_wr_tkeep": Out(W // 8),
            "m_axis_rdma_wr_tlast": Out(1), "m_axis_rdma_wr_tuser": Out(16),
            "m_axis_rdma_wr_tvalid": Out(1), "m_axis_rdma_wr_tready": In(1),
            "s_axis_rdma_sts_tdata": In(32), "s_axis_rdma_sts_tlast": In(1),
            "s_axis_rdma_sts_tvalid": In(1), "s_axis_rdma_sts_tready": Out(1),
        })
        for name, direction, width in _pcie_master_ports(W):
            members[f"m_axi_pcie_{name}"] = In(width) if direction == "i" else Out(width)
        for name, direction, width in p2p_ports(params):
            members[f"s_axi_p2p_{name}"] = In(width) if direction == "i" else Out(width)
        if not params.onchip_staging:
            for name, direction, width in stg_ports(params):
                members[f"m_axi_stg_{name}"] = In(width) if direction == "i" else Out(width)
        if params.clock_domains == "split":
            for domain in SPLIT_DOMAINS:
                members[f"{domain}_clk"] = In(1)
                members[f"{domain}_rst"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        if self.params.clock_domains == "split":
            return self._elaborate_split()
        return self._elaborate_core()

    def _elaborate_split(self):
        """The single-clock engine as the core, its AXI ports carried to their domains."""
        from .staging import p2p_ports

        m = Module()
        p = self.params
        for domain in SPLIT_DOMAINS:
            m.domains += ClockDomain(domain)
            m.d.comb += [ClockSignal(domain).eq(getattr(self, f"{domain}_clk")),
                         ResetSignal(domain).eq(getattr(self, f"{domain}_rst"))]
        core = m.submodules.core = Engine(dataclasses.replace(p, clock_domains="single"))
        crossings = {
            "m_axi_pcie": ("pcie", _pcie_master_ports(p.data_width)),
            "s_axi_p2p": ("pcie", p2p_ports(p)),
            "s_axil_csr": ("csr", AXIL_PORTS),
        }
        crossed = set()
        for prefix, (domain, ports) in crossings.items():
            cdc = m.submodules[f"{prefix}_cdc"] = AxiPortCrossing(ports, domain)
            for name, direction, _ in ports:
                outer, inner = getattr(self, f"{prefix}_{name}"), getattr(core, f"{prefix}_{name}")
                if direction == "i":
                    m.d.comb += [getattr(cdc, f"outer_{name}").eq(outer),
                                 inner.eq(getattr(cdc, f"inner_{name}"))]
                else:
                    m.d.comb += [outer.eq(getattr(cdc, f"outer_{name}")),
                                 getattr(cdc, f"inner_{name}").eq(inner)]
                crossed.add(f"{prefix}_{name}")
        m.submodules.irq_sync = FFSynchronizer(core.irq, self.irq, o_domain="csr")
        crossed.add("irq")
        # the streams stay in the core's domain
        for name, member in core.signature.members.items():
            if name in crossed:
                continue
            outer, inner = getattr(self, name), getattr(core, name)
            m.d.comb += (inner.eq(outer) if member.flow == In else outer.eq(inner))
        return m

    def _elaborate_core(self):
        from .cq_handler import CqHandler
        from .sq_writer import SqWriter
        from .staging import StagingMemory, p2p_ports
        from .staging_axi import StagingAxi, stg_ports

        m = Module()
        p = self.params
        _, control, front = _front_half(m, p, self)
        backend = m.submodules.backend = Backend(p)
        staging = m.submodules.staging = StagingMemory(p)
        sq = m.submodules.sq_writer = SqWriter(p)
        cq = m.submodules.cq_handler = CqHandler(p)
        # (the SQ writer, master 0, raises a write's W only with or after its AW)
        arbiter = m.submodules.pcie_write_arbiter = AxiWriteArbiter(2, p.data_width,
                                                                     w_after_aw=(0,))

        # front end -> back end; merged outcomes
        wiring.connect(m, front.o_backend, backend.i_cmd)
        # (the back end's QP failure through a register slice: retirement's state reached
        # the front end's S3 hand-shake through it)
        wiring.connect(m, _sliced(m, "qp_fail_slice", backend.o_qp_fail), front.i_qp_fail)
        # (in-capsule data through a register slice: the back end's ready reached the
        # parser's output slice through the front end's data router)
        wiring.connect(m, _sliced(m, "backend_data_slice", front.o_backend_data),
                       backend.i_data)
        # every outcome source through its own register slice before its merge, so that
        # neither source's hand-shake reaches the other's through the merge (RESPOND's
        # valid reached the front end's response FIFO): one cycle more from either source
        # to the port or the control plane
        resp = stream.Signature(front.o_resp.payload.shape()).create()
        qperr = stream.Signature(front.o_qp_error.payload.shape()).create()
        for name, sink in (("event", control.event), ("ns_count", control.ns_count),
                           ("resp", resp), ("qp_error", qperr)):
            _merge2(m, _sliced(m, f"{name}_slice_b", getattr(backend, f"o_{name}")),
                    _sliced(m, f"{name}_slice_f", getattr(front, f"o_{name}")), sink)
        _drive_outputs(m, self, resp, front.o_exc, qperr)

        # configuration pulses, each through a register of its consumer's own (kept apart
        # in synthesis), so that every consumer starts from a flip-flop placed beside it,
        # not from the control plane's across the die (the CQ handler's init check was
        # 18.8 ns placed); all consumers see a pulse in the same cycle, one after the
        # control plane's output. Then the table reads
        consumers = [("bq_cfg", (backend.bq_cfg_valid, backend.bq_cfg_index),
                      (sq.init_valid, sq.init_queue), (cq.init_valid, cq.init_queue)),
                     ("ss_cfg", (backend.ss_cfg_valid, backend.ss_cfg_index))]
        for pulse, *ports in consumers:
            for k, part in enumerate(("valid", "index")):
                src = getattr(control, f"{pulse}_{part}")
                copies = m.submodules[f"{pulse}_{part}_copies"] = ReplicatedEnable(
                    len(ports), name=src.name, width=len(src))
                m.d.comb += [copies.d.eq(src)] + [
                    port[k].eq(q) for port, q in zip(ports, copies.q, strict=True)]
        m.d.comb += [
            control.ss2_rd_addr.eq(backend.ss_rd_addr), control.ss2_rd_en.eq(backend.ss_rd_en),
            backend.ss_rd_data.eq(control.ss2_rd_data),
            control.bq_rd_addr.eq(backend.bq_rd_addr), control.bq_rd_en.eq(backend.bq_rd_en),
            backend.bq_rd_data.eq(control.bq_rd_data),
            control.bq2_rd_addr.eq(sq.bq_rd_addr), control.bq2_rd_en.eq(sq.bq_rd_en),
            sq.bq_rd_data.eq(control.bq2_rd_data),
            control.bq3_rd_addr.eq(cq.bq_rd_addr), control.bq3_rd_en.eq(cq.bq_rd_en),
            cq.bq_rd_data.eq(control.bq3_rd_data),
            cq.poll.eq(backend.poll),
            control.use_contexts.eq(_fields(control.regmap["USE_CONTEXTS"],
                                            live=backend.use_live,
                                            zombies=backend.use_zombies)),
            control.use_staging.eq(_fields(control.regmap["USE_STAGING"],
                                           pages=backend.use_pages,
                                           zombie_pages=backend.use_zombie_pages)),
            control.use_busy.eq(_fields(control.regmap["USE_BUSY"],
                                        backend_queues=backend.queues_busy,
                                        sq_writer=sq.busy, cq_handler=cq.busy)),
            front.fence_epoch.eq(control.fence_epoch),
        ]
        # the command fence: commands of the other epoch still without an outcome
        # (front end's count less the back end's, registered)
        other = ~control.fence_epoch
        fence_other = Signal(16)
        m.d.sync += fence_other.eq(Mux(other, front.fence_in[16:], front.fence_in[:16])
                                   - Mux(other, backend.fence_out[16:], backend.fence_out[:16]))
        m.d.comb += control.fence_other.eq(fence_other)

        # back end <-> staging (its own memory, or m_axi_stg), SQ writer, CQ handler
        if p.onchip_staging:
            wiring.connect(m, backend.o_stg_wr, staging.i_wr)
            wiring.connect(m, backend.o_stg_rd, staging.i_rd)
            wiring.connect(m, staging.o_rd, backend.i_stg_rd)
        else:
            stg_axi = m.submodules.staging_axi = StagingAxi(p)
            wiring.connect(m, backend.o_stg_wr, stg_axi.i_wr)
            wiring.connect(m, backend.o_stg_rd, stg_axi.i_rd)
            wiring.connect(m, stg_axi.o_rd, backend.i_stg_rd)
            m.d.comb += backend.stg_done.eq(stg_axi.wr_done)
            for name, direction, _ in stg_ports(p):
                outer, inner = getattr(self, f"m_axi_stg_{name}"), getattr(stg_axi,
                                                                           f"m_axi_stg_{name}")
                m.d.comb += (inner.eq(outer) if direction == "i" else outer.eq(inner))
        # the SQ writer's ready is a flip-flop and it writes the SQE into its slot RAM when
        # taken, so the back end's SQE goes to it directly
        wiring.connect(m, backend.o_sqe, sq.i_sqe)
        wiring.connect(m, cq.o_cqe, backend.i_cqe)
        # MSI-X messages name queues by their data value (BackendQueueEntry.msix_data), loaded
        # when the back end loads the queue's entry
        msix = m.submodules.msix = MsixMatch(p)
        wiring.connect(m, staging.o_msix, msix.i_msg)
        wiring.connect(m, msix.o_queue, cq.i_msix)
        m.d.comb += [msix.load_valid.eq(backend.bq_loaded),
                     msix.load_queue.eq(backend.bq_loaded_index),
                     msix.load_data.eq(backend.bq_rd_data.msix_data),
                     msix.load_armed.eq(backend.bq_rd_data.valid & ~backend.bq_rd_data.polling)]
        # SQ-writer reports and CQ-handler errors reach the back end through register
        # slices: without them one combinational path ran from the SQ writer's record FIFO
        # and B responses through the back end's queue-failure arbitration and the CQ
        # handler's error hand-shake to the back end's queue counters (34.9 ns, the whole
        # engine's worst path on the ECP5-85k)
        for name, src, dst in (("sq_done_slice", sq.o_done, backend.i_sq_done),
                               ("cq_error_slice", cq.o_error, backend.i_cq_error)):
            wiring.connect(m, _sliced(m, name, src), dst)

        # RDMA transport ports
        rc, rrd, rwr, rst = (backend.o_rdma_cmd, backend.i_rdma_rd, backend.o_rdma_wr,
                             backend.i_rdma_sts)
        m.d.comb += [
            self.m_axis_rdma_cmd_tdata.eq(rc.payload), self.m_axis_rdma_cmd_tlast.eq(1),
            self.m_axis_rdma_cmd_tvalid.eq(rc.valid), rc.ready.eq(self.m_axis_rdma_cmd_tready),
            rrd.payload.data.eq(self.s_axis_rdma_rd_tdata),
            rrd.payload.keep.eq(self.s_axis_rdma_rd_tkeep),
            rrd.payload.last.eq(self.s_axis_rdma_rd_tlast),
            rrd.payload.tag.eq(self.s_axis_rdma_rd_tuser),
            rrd.valid.eq(self.s_axis_rdma_rd_tvalid), self.s_axis_rdma_rd_tready.eq(rrd.ready),
            self.m_axis_rdma_wr_tdata.eq(rwr.payload.data),
            self.m_axis_rdma_wr_tkeep.eq(rwr.payload.keep),
            self.m_axis_rdma_wr_tlast.eq(rwr.payload.last),
            self.m_axis_rdma_wr_tuser.eq(rwr.payload.tag),
            self.m_axis_rdma_wr_tvalid.eq(rwr.valid), rwr.ready.eq(self.m_axis_rdma_wr_tready),
            rst.payload.eq(self.s_axis_rdma_sts_tdata[:24]),
            rst.valid.eq(self.s_axis_rdma_sts_tvalid), self.s_axis_rdma_sts_tready.eq(rst.ready),
        ]

        # s_axi_p2p straight to the staging memory
        for name, direction, _ in p2p_ports(p):
            outer, inner = getattr(self, f"s_axi_p2p_{name}"), getattr(staging,
                                                                       f"s_axi_p2p_{name}")
            m.d.comb += (inner.eq(outer) if direction == "i" else outer.eq(inner))

        # m_axi_pcie: writes from the SQ writer and the CQ handler, reads from the CQ handler
        for i, master in enumerate((sq, cq)):
            port = arbiter.inputs[i]
            for name in ("awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb",
                         "wlast", "wvalid", "bready"):
                m.d.comb += getattr(port, name).eq(getattr(master, f"m_axi_{name}"))
            for name in ("awready", "wready", "bresp", "bvalid"):
                m.d.comb += getattr(master, f"m_axi_{name}").eq(getattr(port, name))
        out = arbiter.output
        for name in ("awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb",
                     "wlast", "wvalid", "bready"):
            m.d.comb += getattr(self, f"m_axi_pcie_{name}").eq(getattr(out, name))
        for name in ("awready", "wready", "bresp", "bvalid"):
            m.d.comb += getattr(out, name).eq(getattr(self, f"m_axi_pcie_{name}"))
        for name in ("araddr", "arlen", "arsize", "arburst", "arvalid", "rready"):
            m.d.comb += getattr(self, f"m_axi_pcie_{name}").eq(getattr(cq, f"m_axi_{name}"))
        for name in ("arready", "rdata", "rresp", "rlast", "rvalid"):
            m.d.comb += getattr(cq, f"m_axi_{name}").eq(getattr(self, f"m_axi_pcie_{name}"))
        return m


def _pcie_master_ports(W):
    """AXI4 members of ``m_axi_pcie``: ``(name, direction seen from the engine, width)``."""
    return axi4_master_ports(W, PCIE_ID_WIDTH)
