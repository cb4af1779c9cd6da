"""AXI4 write-channel arbiter: several write masters share one AXI4 master port.

A master is granted one write burst at a time: its AW and its W beats up to
``wlast``; the next burst (of any master, round robin) may start in the cycle
after, without waiting for B responses. Several bursts may await their B
responses: a FIFO keeps the granted master of each AW in order, and each B
(one AXI ID, so in AW order) goes back to the master at its head. Read
channels are not arbitrated here.
"""

from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib import fifo

from .stream_util import round_robin

__all__ = ["AxiWriteArbiter", "AXI_WRITE_SIGNALS", "axi4_master_ports"]

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
    outstanding : int
        Bursts whose B response may be awaited at once (the order FIFO's depth);
        a further AW waits.
    w_after_aw : tuple of int
        Masters whose W beats never come before the AW of their burst has been
        raised (or while the W of an earlier burst of theirs has ended and its AW
        waits: the arbiter holds that W anyway). Their W is not gated by their own
        ``awvalid``, so their ``wready`` does not depend on it (the SQ writer's AW
        leaves through a register slice that it fills as the write starts).

    Attributes
    ----------
    inputs : list of ports (``awaddr`` ... ``bready`` from the masters' side)
    output : the shared port (to the AXI slave)

    Timing: the shared port is connected to one master at a time, the one in the
    ``grant`` register, so no master's ``awready`` / ``wready`` depends on another
    master's ``valid`` (the grant is a register, not a choice made in the cycle
    ``awvalid`` rises). The granted master keeps the port until its AW and its
    ``wlast`` beat have handed over. In the cycle a burst ends, and in any cycle the
    granted master offers no AW and has no burst begun, ``grant`` moves to the first
    master after it (round robin) with ``awvalid`` high, and back to master 0 when
    none is: so a burst that waits behind another starts in the cycle after its
    ``wlast`` (no idle cycle between bursts), master 0 starts at once on a port idle
    for a cycle (the grant parks on it then), and a master on an idle port without the
    grant starts the cycle after it raises ``awvalid``. A burst that ends with its AW hand-shake
    counts its own ``awvalid`` in the choice, so the grant stays on its master when no
    other master asks in that cycle: master 0 asking in the very next cycle then waits
    one cycle too. Master 0 is the latency-critical one (the SQ writer). A master's W
    beats pass only while its own ``awvalid`` is up or its AW has handed over; while
    the order FIFO is full its AW waits and its W beats may reach the port first (AXI
    allows it); a master in ``w_after_aw`` needs no such gate. ``bvalid`` / ``bresp`` reach the
    master whose AW is the oldest without a B, combinationally; ``bready`` comes back
    from it.
    """

    def __init__(self, masters, data_width, outstanding=16, w_after_aw=()):
        if not (isinstance(outstanding, int) and outstanding >= 1):
            raise ValueError(f"outstanding must be a positive integer, not {outstanding!r}")
        bad = [k for k in w_after_aw if not (isinstance(k, int) and 0 <= k < masters)]
        if bad:
            raise ValueError(f"w_after_aw names no master: {bad!r} (masters 0 to "
                             f"{masters - 1})")
        self.w_after_aw = frozenset(w_after_aw)
        self.inputs = [_Port(f"m{i}", data_width) for i in range(masters)]
        self.output = _Port("out", data_width)
        self.outstanding = outstanding

    def elaborate(self, platform):
        m = Module()
        n = len(self.inputs)
        out = self.output
        grant = Signal(range(n))            # the master connected (a register)
        aw_done, w_done = Signal(), Signal()

        m.submodules.order = order = fifo.SyncFIFO(width=max(1, (n - 1).bit_length()),
                                                   depth=self.outstanding)
        g_awvalid = Signal()
        aw_ok = Signal()                    # W may pass: its master offers AW or it is done
        for k, port in enumerate(self.inputs):
            with m.If(grant == k):
                m.d.comb += aw_ok.eq(1 if k in self.w_after_aw else aw_done | port.awvalid)
                m.d.comb += [
                    g_awvalid.eq(port.awvalid),
                    out.awaddr.eq(port.awaddr), out.awlen.eq(port.awlen),
                    out.awsize.eq(port.awsize), out.awburst.eq(port.awburst),
                    out.awvalid.eq(port.awvalid & ~aw_done & order.w_rdy),
                    port.awready.eq(out.awready & ~aw_done & order.w_rdy),
                    out.wdata.eq(port.wdata), out.wstrb.eq(port.wstrb), out.wlast.eq(port.wlast),
                    out.wvalid.eq(port.wvalid & ~w_done & aw_ok),
                    port.wready.eq(out.wready & ~w_done & aw_ok),
                ]
        aw_fire = out.awvalid & out.awready
        w_end = out.wvalid & out.wready & out.wlast
        end = (aw_done | aw_fire) & (w_done | w_end)
        m.d.comb += [order.w_data.eq(grant), order.w_en.eq(aw_fire)]
        with m.If(end):
            m.d.sync += [aw_done.eq(0), w_done.eq(0)]
        with m.Else():
            m.d.sync += [aw_done.eq(aw_done | aw_fire), w_done.eq(w_done | w_end)]

        # the next grant: chosen from this cycle's requests into the register only
        chosen = Signal(range(n))
        found = Signal()
        round_robin(m, [port.awvalid for port in self.inputs], grant, chosen, found)
        free = end | ~(aw_done | w_done | g_awvalid)
        with m.If(free):
            m.d.sync += grant.eq(Mux(found, chosen, 0))

        # B responses, in AW order, to the master of the oldest AW
        head = order.r_data
        for k, port in enumerate(self.inputs):
            m.d.comb += [port.bresp.eq(out.bresp),
                         port.bvalid.eq(out.bvalid & order.r_rdy & (head == k))]
            with m.If(head == k):
                m.d.comb += out.bready.eq(port.bready & order.r_rdy)
        m.d.comb += order.r_en.eq(out.bvalid & out.bready)
        return m


def axi4_master_ports(data_width, id_width):
    """The members of an AXI4 master port (``m_axi_pcie``, ``m_axi_stg``): ``(name,
    direction seen from the master, width)``, 64-bit addresses."""
    W, ID = data_width, id_width
    return (
        ("awid", "o", ID), ("awaddr", "o", 64), ("awlen", "o", 8),
        ("awsize", "o", 3), ("awburst", "o", 2), ("awvalid", "o", 1), ("awready", "i", 1),
        ("wdata", "o", W), ("wstrb", "o", W // 8), ("wlast", "o", 1), ("wvalid", "o", 1),
        ("wready", "i", 1),
        ("bid", "i", ID), ("bresp", "i", 2), ("bvalid", "i", 1), ("bready", "o", 1),
        ("arid", "o", ID), ("araddr", "o", 64), ("arlen", "o", 8),
        ("arsize", "o", 3), ("arburst", "o", 2), ("arvalid", "o", 1), ("arready", "i", 1),
        ("rid", "i", ID), ("rdata", "i", W), ("rresp", "i", 2), ("rlast", "i", 1),
        ("rvalid", "i", 1), ("rready", "o", 1),
    )
