"""Clock-domain crossing of whole AXI4 / AXI4-Lite ports.

:class:`AxiPortCrossing` moves one AXI port between the engine's core domain
(``sync``) and the domain the port's outside lives in. Each of the port's five
channels (AW, W, B, AR, R) crosses through an asynchronous FIFO of its own
(Amaranth's :class:`~amaranth.lib.fifo.AsyncFIFOBuffered`: Gray-coded pointers
through two-flop synchronisers, read data from an output register). AXI orders
transfers within a channel only, so channels crossing independently keep the
protocol: a write's AW and W may reach the other side in any cycle relation,
as they may on any AXI interconnect.

Resets: each FIFO is emptied by the reset of the domain that writes it, and the
read side learns of it through the FIFO's own synchronised reset. The engine
is reset as a whole: every domain's reset asserted together, for at least four
cycles of the slowest clock (``docs/clocks.md``).
"""

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.fifo import AsyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["AxiPortCrossing", "axi_channels", "CHANNELS"]

CHANNELS = ("aw", "w", "b", "ar", "r")


def _channel_of(name):
    if name.startswith(("aw", "ar")):
        return name[:2]
    return name[0]


def axi_channels(ports):
    """``{channel: (direction, [(name, width) of the payload])}`` of an AXI port list.

    ``ports`` is ``[(name, "i" | "o", width)]`` as seen from the engine (``i``: driven
    from outside). A channel's direction is its ``valid``'s; ``valid`` and ``ready``
    are not payload.
    """
    out = {}
    by_name = {name: (direction, width) for name, direction, width in ports}
    for ch in CHANNELS:
        if f"{ch}valid" not in by_name:
            continue
        direction = by_name[f"{ch}valid"][0]
        payload = [(name, width) for name, d, width in ports
                   if _channel_of(name) == ch and name not in (f"{ch}valid", f"{ch}ready")]
        for name, _ in payload:
            if by_name[name][0] != direction:
                raise ValueError(f"AXI member {name} runs against its channel's valid")
        out[ch] = (direction, payload)
    return out


class AxiPortCrossing(wiring.Component):
    """One AXI4 or AXI4-Lite port carried across clock domains, channel by channel.

    Parameters
    ----------
    ports : list of ``(name, "i" | "o", width)``
        The port's members as seen from the engine (``rtl.control.AXIL_PORTS``,
        ``rtl.staging.p2p_ports``, ...).
    outer_domain : str
        The clock domain of the port's outside.
    data_depth, ctrl_depth : int
        Entries of the W / R FIFOs and of the AW / AR / B FIFOs (a power of two;
        one more entry sits in each FIFO's output register).

    Interface
    ---------
    outer_<name> : the port as the outside sees it, synchronous to ``outer_domain``;
        same directions as ``ports``.
    inner_<name> : the port as the engine's core sees it, synchronous to ``sync``;
        opposite directions (the crossing drives what the outside drove).

    Timing: a transfer accepted on one side is offered on the other after the
    pointer crossing, 3 to 4 cycles of the receiving clock; ``ready`` on either
    side is a FIFO's registered "not full", independent of the other side's
    ``valid`` in the same cycle. Each channel sustains one transfer a cycle of
    the slower of the two clocks.
    """

    def __init__(self, ports, outer_domain, *, data_depth=8, ctrl_depth=4):
        self._ports = tuple(ports)
        self._outer = outer_domain
        self._channels = axi_channels(self._ports)
        self._depth = {ch: data_depth if ch in ("w", "r") else ctrl_depth for ch in CHANNELS}
        members = {}
        for name, direction, width in self._ports:
            members[f"outer_{name}"] = In(width) if direction == "i" else Out(width)
            members[f"inner_{name}"] = Out(width) if direction == "i" else In(width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for ch, (direction, payload) in self._channels.items():
            width = sum(w for _, w in payload)
            inbound = direction == "i"
            fifo = AsyncFIFOBuffered(width=width, depth=self._depth[ch] + 1,
                                     w_domain=self._outer if inbound else "sync",
                                     r_domain="sync" if inbound else self._outer)
            m.submodules[f"{ch}_fifo"] = fifo
            src, dst = ("outer", "inner") if inbound else ("inner", "outer")

            def port(side, name):
                return getattr(self, f"{side}_{name}")

            m.d.comb += [
                fifo.w_data.eq(Cat(*(port(src, name) for name, _ in payload))),
                fifo.w_en.eq(port(src, f"{ch}valid")),
                port(src, f"{ch}ready").eq(fifo.w_rdy),
                port(dst, f"{ch}valid").eq(fifo.r_rdy),
                fifo.r_en.eq(port(dst, f"{ch}ready")),
            ]
            lsb = 0
            for name, w in payload:
                m.d.comb += port(dst, name).eq(fifo.r_data[lsb:lsb + w])
                lsb += w
        return m
