"""AXI4-Lite register bank generated from the compiled register map.

The bank knows nothing of what the registers mean: for every register of
:class:`~rtl.regmap.RegisterMap` it provides

* ``rw`` fields: storage with the RDL reset value, readable by the design
  (``bank.value[name]``);
* ``sw=r, hw=w`` fields: a design-driven input (``bank.hw_in[name]``, the
  whole 32-bit register, fields in place);
* ``sw=r, hw=na`` fields: constants (capabilities);
* ``sw=w`` fields: ``bank.wstb[name]`` pulses for one cycle on an accepted
  write, with the written word in ``bank.wdata``.

Access rules (``docs/control-plane.md``): address bits [1:0] ignored; a read
of an unmapped or write-only register, and a write to an unmapped or
read-only register, with ``WSTRB != 0b1111``, or to a register whose
``block[name]`` input is high, answer SLVERR and change nothing.
"""

from amaranth.hdl import Const, Elaboratable, Module, Signal

from .regmap import RegisterMap

__all__ = ["AxiLiteBank", "RESP_OKAY", "RESP_SLVERR"]

RESP_OKAY = 0b00
RESP_SLVERR = 0b10


class AxiLiteBank(Elaboratable):
    """AXI4-Lite slave over a register map.

    AXI4-Lite ports (attributes, AXI names without prefix): ``awaddr awvalid
    awready wdata wstrb wvalid wready bresp bvalid bready araddr arvalid
    arready rdata rresp rvalid rready``. A write is taken in the cycle both
    ``awvalid`` and ``wvalid`` are high and no response is pending; its
    response is valid the next cycle and held until ``bready``. A read is
    taken when ``arvalid`` is high and no read response is pending; ``rdata``
    is valid the next cycle and held until ``rready``.
    """

    def __init__(self, regmap: RegisterMap, addr_width=12):
        self.regmap = regmap
        self.addr_width = addr_width
        self.awaddr = Signal(addr_width)
        self.awvalid = Signal()
        self.awready = Signal()
        self.wdata = Signal(32)
        self.wstrb = Signal(4)
        self.wvalid = Signal()
        self.wready = Signal()
        self.bresp = Signal(2)
        self.bvalid = Signal()
        self.bready = Signal()
        self.araddr = Signal(addr_width)
        self.arvalid = Signal()
        self.arready = Signal()
        self.rdata = Signal(32)
        self.rresp = Signal(2)
        self.rvalid = Signal()
        self.rready = Signal()

        self.value = {}      # name -> Signal(32): stored rw fields (others 0)
        self.hw_in = {}      # name -> Signal(32): design-driven readable fields
        self.wstb = {}       # name -> Signal(): write accepted (registers with sw=w fields)
        self.block = {}      # name -> Signal(): writes answer SLVERR while high
        self.written = Signal(32)   # the word of the accepted write (for wstb users)
        for reg in regmap.registers:
            safe = reg.name.replace("[", "_").replace("]", "")
            if any(f.sw == "rw" for f in reg.fields):
                self.value[reg.name] = Signal(32, name=f"reg_{safe}", init=reg.reset)
            if any(f.sw == "r" and f.hw == "w" for f in reg.fields):
                self.hw_in[reg.name] = Signal(32, name=f"hw_{safe}")
            if any(f.sw == "w" for f in reg.fields):
                self.wstb[reg.name] = Signal(name=f"wstb_{safe}")
                self.block[reg.name] = Signal(name=f"block_{safe}")

    def _read_value(self, reg):
        """Expression of what a read of ``reg`` returns."""
        value = Const(0, 32)
        for f in reg.fields:
            if "r" not in f.sw:
                continue
            if f.sw == "rw":
                part = self.value[reg.name] & f.mask
            elif f.hw == "w":
                part = self.hw_in[reg.name] & f.mask
            else:
                part = Const(f.reset << f.lsb, 32)
            value = value | part
        return value

    def elaborate(self, platform):
        m = Module()
        word = lambda addr: addr[2:]                      # noqa: E731

        # --- writes ---------------------------------------------------------------------------
        take_w = self.awvalid & self.wvalid & ~self.bvalid
        m.d.comb += [self.awready.eq(take_w), self.wready.eq(take_w)]
        with m.If(self.bvalid & self.bready):
            m.d.sync += self.bvalid.eq(0)
        with m.If(take_w):
            m.d.sync += [self.bvalid.eq(1), self.bresp.eq(RESP_SLVERR)]
            full = self.wstrb == 0b1111
            with m.Switch(word(self.awaddr)):
                for reg in self.regmap.registers:
                    writable = [f for f in reg.fields if "w" in f.sw]
                    if not writable:
                        continue
                    with m.Case(reg.offset >> 2):
                        ok = full
                        if reg.name in self.block:
                            ok = ok & ~self.block[reg.name]
                        with m.If(ok):
                            m.d.sync += self.bresp.eq(RESP_OKAY)
                            if reg.name in self.value:
                                mask = sum(f.mask for f in reg.fields if f.sw == "rw")
                                stored = self.value[reg.name]
                                m.d.sync += stored.eq((stored & ~mask) | (self.wdata & mask))
                            if reg.name in self.wstb:
                                m.d.comb += self.wstb[reg.name].eq(1)
        m.d.comb += self.written.eq(self.wdata)

        # --- reads ----------------------------------------------------------------------------
        take_r = self.arvalid & ~self.rvalid
        m.d.comb += self.arready.eq(take_r)
        with m.If(self.rvalid & self.rready):
            m.d.sync += self.rvalid.eq(0)
        with m.If(take_r):
            m.d.sync += [self.rvalid.eq(1), self.rresp.eq(RESP_SLVERR), self.rdata.eq(0)]
            with m.Switch(word(self.araddr)):
                for reg in self.regmap.registers:
                    if not reg.readable:
                        continue
                    with m.Case(reg.offset >> 2):
                        m.d.sync += [self.rresp.eq(RESP_OKAY), self.rdata.eq(self._read_value(reg))]
        return m
