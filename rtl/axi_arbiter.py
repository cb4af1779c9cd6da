"""AXI4 write-channel arbiter: several write masters share one AXI4 master port.

A master is granted a whole write transaction: its AW, every W beat up to
``wlast``, and its B response; then the grant moves on (round robin). Read
channels are not arbitrated here.
"""

from amaranth.hdl import Elaboratable, Module, Signal

__all__ = ["AxiWriteArbiter", "AXI_WRITE_SIGNALS"]

# (name, width or None for data-width-dependent, direction seen from the master)
AXI_WRITE_SIGNALS = (
    ("awaddr", 64, "o"), ("awlen", 8, "o"), ("awsize", 3, "o"), ("awburst", 2, "o"),
    ("awvalid", 1, "o"), ("awready", 1, "i"),
    ("wdata", None, "o"), ("wstrb", "strb", "o"), ("wlast", 1, "o"), ("wvalid", 1, "o"),
    ("wready", 1, "i"),
    ("bresp", 2, "i"), ("bvalid", 1, "i"), ("bready", 1, "o"),
)


def _width(width, data_width):
    if width is None:
        return data_width
    if width == "strb":
        return data_width // 8
    return width


class _Port:
    def __init__(self, prefix, data_width):
        for name, width, _ in AXI_WRITE_SIGNALS:
            setattr(self, name, Signal(_width(width, data_width), name=f"{prefix}_{name}"))


class AxiWriteArbiter(Elaboratable):
    """Parameters
    ----------
    masters : int
    data_width : int

    Attributes
    ----------
    inputs : list of ports (``awaddr`` ... ``bready`` from the masters' side)
    output : the shared port (to the AXI slave)

    One transaction at a time; the grant is decided in the cycle a master's
    ``awvalid`` is seen while idle, and released when the B response is taken.
    """

    def __init__(self, masters, data_width):
        self.inputs = [_Port(f"m{i}", data_width) for i in range(masters)]
        self.output = _Port("out", data_width)

    def elaborate(self, platform):
        m = Module()
        n = len(self.inputs)
        grant = Signal(range(n))
        busy = Signal()
        aw_done = Signal()
        w_done = Signal()
        last = Signal(range(n))
        out = self.output

        with m.If(~busy):
            # round robin: the first requester after the last granted master
            chosen = Signal(range(n))
            found = Signal()
            for k in reversed(range(n)):
                with m.If(self.inputs[k].awvalid):
                    m.d.comb += [chosen.eq(k), found.eq(1)]
            for k in reversed(range(n)):
                with m.If(self.inputs[k].awvalid & (k > last)):
                    m.d.comb += chosen.eq(k)
            with m.If(found):
                m.d.sync += [grant.eq(chosen), busy.eq(1), aw_done.eq(0), w_done.eq(0),
                             last.eq(chosen)]

        for k, port in enumerate(self.inputs):
            with m.If(busy & (grant == k)):
                m.d.comb += [
                    out.awaddr.eq(port.awaddr), out.awlen.eq(port.awlen),
                    out.awsize.eq(port.awsize), out.awburst.eq(port.awburst),
                    out.awvalid.eq(port.awvalid & ~aw_done),
                    port.awready.eq(out.awready & ~aw_done),
                    out.wdata.eq(port.wdata), out.wstrb.eq(port.wstrb), out.wlast.eq(port.wlast),
                    out.wvalid.eq(port.wvalid & ~w_done), port.wready.eq(out.wready & ~w_done),
                    port.bresp.eq(out.bresp), port.bvalid.eq(out.bvalid),
                    out.bready.eq(port.bready),
                ]
                with m.If(out.awvalid & out.awready):
                    m.d.sync += aw_done.eq(1)
                with m.If(out.wvalid & out.wready & out.wlast):
                    m.d.sync += w_done.eq(1)
                with m.If(out.bvalid & out.bready):
                    m.d.sync += busy.eq(0)
        return m
