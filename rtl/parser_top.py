"""Verilog top of the capsule parser with AXI4-Stream port names.

Wraps :class:`CapsuleParser` and a QP attribute :class:`Table` so that
cocotbext-axi's bus models attach by prefix (``s_axis_capsule``,
``m_axis_cmd``, ``m_axis_data``) and a board or testbench can configure QPs
through the ``cfg_qp_*`` write port. Until the engine top exists this is the
unit emitted by ``nvmf-offload verilog``.
"""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .formats import QPN_WIDTH, ParsedCommand, QpCapsuleAttrs
from .params import EngineParams
from .parser import CapsuleParser
from .table import Table

__all__ = ["ParserTop", "CMD_TDATA_WIDTH"]

CMD_TDATA_WIDTH = -(-data.Layout.cast(ParsedCommand).size // 8) * 8


class ParserTop(wiring.Component):
    """Capsule parser with AXI names.

    Interface attributes (all synchronous to ``clk``)
    -------------------------------------------------
    s_axis_capsule_* : AXI4-Stream slave, DATA_W
        Capsules; ``tuser`` = QPN (24 bits), sampled on the first beat.
    m_axis_cmd_* : AXI4-Stream master
        One single-beat packet per capsule: ``tdata`` = ``ParsedCommand``
        (zero-padded to whole bytes), ``tlast`` = 1.
    m_axis_data_* : AXI4-Stream master, DATA_W
        In-capsule data of served commands and whole capsules for software.
    cfg_qp_wr_en, cfg_qp_wr_addr, cfg_qp_wr_data : inputs
        Write one QP's ``QpCapsuleAttrs``; takes effect for capsules whose
        first beat is accepted at least one cycle later.
    """

    def __init__(self, params=None):
        self.params = params = params or EngineParams()
        W = params.data_width
        super().__init__({
            "s_axis_capsule_tdata": In(W),
            "s_axis_capsule_tkeep": In(W // 8),
            "s_axis_capsule_tlast": In(1),
            "s_axis_capsule_tuser": In(QPN_WIDTH),
            "s_axis_capsule_tvalid": In(1),
            "s_axis_capsule_tready": Out(1),
            "m_axis_cmd_tdata": Out(CMD_TDATA_WIDTH),
            "m_axis_cmd_tlast": Out(1),
            "m_axis_cmd_tvalid": Out(1),
            "m_axis_cmd_tready": In(1),
            "m_axis_data_tdata": Out(W),
            "m_axis_data_tkeep": Out(W // 8),
            "m_axis_data_tlast": Out(1),
            "m_axis_data_tvalid": Out(1),
            "m_axis_data_tready": In(1),
            "cfg_qp_wr_en": In(1),
            "cfg_qp_wr_addr": In(QPN_WIDTH),
            "cfg_qp_wr_data": In(QpCapsuleAttrs),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.parser = parser = CapsuleParser(self.params)
        m.submodules.qp_table = table = Table(QpCapsuleAttrs, self.params.qp_count, QPN_WIDTH)
        m.d.comb += [
            parser.i_capsule.payload.data.eq(self.s_axis_capsule_tdata),
            parser.i_capsule.payload.keep.eq(self.s_axis_capsule_tkeep),
            parser.i_capsule.payload.last.eq(self.s_axis_capsule_tlast),
            parser.i_capsule.payload.qpn.eq(self.s_axis_capsule_tuser),
            parser.i_capsule.valid.eq(self.s_axis_capsule_tvalid),
            self.s_axis_capsule_tready.eq(parser.i_capsule.ready),

            table.rd0_addr.eq(parser.qp_lookup_addr),
            table.rd0_en.eq(parser.qp_lookup_en),
            parser.qp_lookup_data.eq(table.rd0_data),
            table.wr_en.eq(self.cfg_qp_wr_en),
            table.wr_addr.eq(self.cfg_qp_wr_addr),
            table.wr_data.eq(self.cfg_qp_wr_data),

            self.m_axis_cmd_tdata.eq(parser.o_cmd.payload.as_value()),
            self.m_axis_cmd_tlast.eq(1),
            self.m_axis_cmd_tvalid.eq(parser.o_cmd.valid),
            parser.o_cmd.ready.eq(self.m_axis_cmd_tready),

            self.m_axis_data_tdata.eq(parser.o_data.payload.data),
            self.m_axis_data_tkeep.eq(parser.o_data.payload.keep),
            self.m_axis_data_tlast.eq(parser.o_data.payload.last),
            self.m_axis_data_tvalid.eq(parser.o_data.valid),
            parser.o_data.ready.eq(self.m_axis_data_tready),
        ]
        return m
