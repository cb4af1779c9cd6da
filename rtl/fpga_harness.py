"""Timing harness: a core inside a few-pin shell, for place-and-route measurements.

The engine has far more port bits than any FPGA package has pins, so a core is measured
the way it would sit in a real design, between registers, with every port bit reached
through a shift register:

- ``sin`` shifts one bit a clock into a chain of flip-flops, one per core input bit (``clk``
  and ``rst`` excepted); the chain's bits drive the core's inputs, so every input comes
  from a register and none is constant;
- every core output bit is captured into a second chain of flip-flops while ``load`` is
  high, and the chain shifts out through ``sout`` while it is low, so every output is
  observable at a pin and synthesis keeps all the logic behind it;
- the core's ``rst`` comes from a register of the ``rst`` pin.

The harness costs one flip-flop per input bit and one flip-flop plus one LUT per output
bit; ``sim/tools/fpga.py`` reports its share next to the totals. The core is an
:class:`~amaranth.hdl.Instance` of the Verilog module ``core``; its ports are read from
that Verilog text (:func:`verilog_ports`).
"""

import re

from amaranth.hdl import Cat, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal

__all__ = ["HARNESS_TOP", "TimingHarness", "verilog_ports"]

HARNESS_TOP = "nvmf_fpga_top"

_PORT = re.compile(
    r"^\s*(?P<dir>input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
    r"(?:\[(?P<msb>\d+):(?P<lsb>\d+)\]\s+)?(?P<name>\w+)\s*;", re.MULTILINE)


def verilog_ports(text, module):
    """``[(direction, name, width), ...]`` of ``module`` in Verilog ``text`` (as Amaranth
    writes it: one ``input``/``output`` declaration a port)."""
    start = re.search(rf"^module\s+{re.escape(module)}\s*\(", text, re.MULTILINE)
    if start is None:
        raise ValueError(f"module {module} not found")
    end = text.find("endmodule", start.end())
    body = text[start.end():end]
    ports = []
    for m in _PORT.finditer(body):
        width = int(m["msb"]) - int(m["lsb"]) + 1 if m["msb"] is not None else 1
        ports.append((m["dir"], m["name"], width))
    if not ports:
        raise ValueError(f"module {module}: no ports found")
    return ports


class TimingHarness(Elaboratable):
    """Shift-register shell around Verilog module ``core`` with ports ``ports``
    (:func:`verilog_ports`). Pins: ``clk``, ``rst`` (the ``sync`` domain), ``sin``,
    ``load``, ``sout``."""

    def __init__(self, core, ports):
        self.core = core
        self.inputs = [(n, w) for d, n, w in ports if d == "input" and n not in ("clk", "rst")]
        self.outputs = [(n, w) for d, n, w in ports if d == "output"]
        names = {n for _, n, _ in ports}
        if "clk" not in names:
            raise ValueError(f"{core} has no clk port")
        self.in_bits = sum(w for _, w in self.inputs)
        self.out_bits = sum(w for _, w in self.outputs)
        self.has_rst = "rst" in names
        self.sin = Signal()
        self.load = Signal()
        self.sout = Signal()

    def elaborate(self, platform):
        m = Module()
        conns = {"i_clk": ClockSignal()}
        if self.has_rst:
            rst_q = Signal(init=1)
            m.d.sync += rst_q.eq(ResetSignal())
            conns["i_rst"] = rst_q

        if self.in_bits:
            chain = Signal(self.in_bits, reset_less=True)
            m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
            offset = 0
            for name, width in self.inputs:
                conns[f"i_{name}"] = chain[offset:offset + width]
                offset += width

        outs = []
        for name, width in self.outputs:
            sig = Signal(width, name=f"core_{name}")
            conns[f"o_{name}"] = sig
            outs.append(sig)
        if outs:
            captured = Signal(self.out_bits, reset_less=True)
            with m.If(self.load):
                m.d.sync += captured.eq(Cat(*outs))
            with m.Else():
                m.d.sync += captured.eq(captured >> 1)
            m.d.comb += self.sout.eq(captured[0])

        m.submodules.core = Instance(self.core, **conns)
        return m
