"""The engine top: capsule parser, control plane and command front end wired together.

Top-level ports follow ``../shared/spec/architecture.md`` section 3 with AXI
names. The execution back end (staging DMA engine, SQ doorbell writer, MSI-X
completion handler) is not built yet: until it is, the served commands and
their in-capsule data leave through ``m_axis_backend_cmd`` and
``m_axis_backend_data`` (see ``docs/architecture.md``).
"""

from amaranth.hdl import Cat, Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .control import AXIL_PORTS, ControlPlane
from .formats import QPN_WIDTH, BackendCommand, ExcSideband
from .front import Front
from .params import EngineParams
from .parser import CapsuleParser

__all__ = ["Engine", "BACKEND_CMD_TDATA_WIDTH", "RESP_TUSER_WIDTH"]


def _bytes_width(layout):
    return -(-data.Layout.cast(layout).size // 8) * 8


BACKEND_CMD_TDATA_WIDTH = _bytes_width(BackendCommand)
RESP_TUSER_WIDTH = QPN_WIDTH + 1 + 32          # {rkey, invalidate, qpn} LSB first
EXC_TUSER_WIDTH = data.Layout.cast(ExcSideband).size


class Engine(wiring.Component):
    """nvmf-offload engine.

    Interface attributes (all synchronous to ``clk``)
    -------------------------------------------------
    s_axis_capsule_* : AXI4-Stream slave, DATA_W; ``tuser`` = QPN.
    m_axis_resp_* : AXI4-Stream master, 128 bits: one response CQE a packet;
        ``tuser`` = {rkey[56:25], invalidate[24], qpn[23:0]}.
    m_axis_exc_* : AXI4-Stream master, DATA_W: capsules for software, whole;
        ``tuser`` = {reason[27:24], qpn[23:0]} on every beat.
    m_axis_qp_err_* : AXI4-Stream master, 32 bits: ``tdata`` = {reason[27:24],
        qpn[23:0]}: the transport must put the QP in error (reason
        ``qp_in_error``: a capsule discarded on a QP already in error).
    m_axis_backend_cmd_*, m_axis_backend_data_* : served commands
        (``BackendCommand``) and their in-capsule data, in order.
    s_axil_csr_* : AXI4-Lite slave (``docs/registers.md``).
    irq : event queue not empty (and enabled).
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        W = params.data_width
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
            "m_axis_backend_cmd_tdata": Out(BACKEND_CMD_TDATA_WIDTH),
            "m_axis_backend_cmd_tlast": Out(1), "m_axis_backend_cmd_tvalid": Out(1),
            "m_axis_backend_cmd_tready": In(1),
            "m_axis_backend_data_tdata": Out(W), "m_axis_backend_data_tkeep": Out(W // 8),
            "m_axis_backend_data_tlast": Out(1), "m_axis_backend_data_tvalid": Out(1),
            "m_axis_backend_data_tready": In(1),
            "irq": Out(1),
        }
        for name, direction, width in AXIL_PORTS:
            members[f"s_axil_csr_{name}"] = In(width) if direction == "i" else Out(width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        parser = m.submodules.parser = CapsuleParser(p, external_verdict=True)
        control = m.submodules.control = ControlPlane(p)
        front = m.submodules.front = Front(p)

        for name, direction, _ in AXIL_PORTS:
            outer, inner = getattr(self, f"s_axil_csr_{name}"), getattr(control,
                                                                     f"s_axil_csr_{name}")
            m.d.comb += (inner.eq(outer) if direction == "i" else outer.eq(inner))
        m.d.comb += self.irq.eq(control.irq)

        cap = parser.i_capsule
        m.d.comb += [
            cap.payload.data.eq(self.s_axis_capsule_tdata),
            cap.payload.keep.eq(self.s_axis_capsule_tkeep),
            cap.payload.last.eq(self.s_axis_capsule_tlast),
            cap.payload.qpn.eq(self.s_axis_capsule_tuser),
            cap.valid.eq(self.s_axis_capsule_tvalid),
            self.s_axis_capsule_tready.eq(cap.ready),

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
        wiring.connect(m, front.o_event, control.event)
        wiring.connect(m, front.o_ns_count, control.ns_count)
        wiring.connect(m, front.o_subsystem_count, control.subsystem_count)

        resp = front.o_resp
        exc = front.o_exc
        qperr = front.o_qp_error
        be, bd = front.o_backend, front.o_backend_data
        m.d.comb += [
            self.m_axis_resp_tdata.eq(resp.payload.cqe),
            self.m_axis_resp_tuser.eq(Cat(resp.payload.qpn, resp.payload.invalidate,
                                          resp.payload.rkey)),
            self.m_axis_resp_tlast.eq(1),
            self.m_axis_resp_tvalid.eq(resp.valid),
            resp.ready.eq(self.m_axis_resp_tready),

            self.m_axis_exc_tdata.eq(exc.payload.data),
            self.m_axis_exc_tkeep.eq(exc.payload.keep),
            self.m_axis_exc_tlast.eq(exc.payload.last),
            self.m_axis_exc_tuser.eq(exc.payload.side),
            self.m_axis_exc_tvalid.eq(exc.valid),
            exc.ready.eq(self.m_axis_exc_tready),

            self.m_axis_qp_err_tdata.eq(qperr.payload),
            self.m_axis_qp_err_tlast.eq(1),
            self.m_axis_qp_err_tvalid.eq(qperr.valid),
            qperr.ready.eq(self.m_axis_qp_err_tready),

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
