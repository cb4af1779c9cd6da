"""Clock periods of a simulated engine: ``--clocks CORE[,PCIE,CSR]`` (nanoseconds).

One period runs the single-clock engine (``clock_domains = "single"``) at it.
Three periods build the engine with ``clock_domains = "split"`` and give the
core (capsule, response and RDMA streams), the PCIe side (``m_axi_pcie``,
``s_axi_p2p``) and the CSR bus a clock each (``docs/clocks.md``). The
simulators run at 1 ps resolution, so half of each period must be a whole
number of picoseconds.
"""

import dataclasses

__all__ = ["ClockPeriods", "DEFAULT_NS", "ENV"]

DEFAULT_NS = 4.0
#: environment variable that carries the periods into a cocotb bench
ENV = "NVMF_CLOCKS"


@dataclasses.dataclass(frozen=True)
class ClockPeriods:
    """Periods in ns of the core, PCIe and CSR clocks; ``split``: three domains."""

    core: float = DEFAULT_NS
    pcie: float = DEFAULT_NS
    csr: float = DEFAULT_NS
    split: bool = False

    @classmethod
    def parse(cls, text):
        """``"4"`` or ``"4,5.3,13"``; :class:`ValueError` names the bad value."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) not in (1, 3):
            raise ValueError(f"--clocks {text!r}: give one period or three (CORE,PCIE,CSR), "
                             f"in ns")
        values = []
        for part in parts:
            try:
                ns = float(part)
            except ValueError:
                raise ValueError(f"--clocks: {part!r} is not a number of ns") from None
            half_ps = ns * 500
            if not (0.5 <= ns <= 1000) or abs(half_ps - round(half_ps)) > 1e-6:
                raise ValueError(f"--clocks: {part!r} ns is not a period from 0.5 to 1000 ns "
                                 f"whose half is a whole number of ps")
            values.append(ns)
        if len(values) == 1:
            return cls(values[0], values[0], values[0], split=False)
        return cls(*values, split=True)

    def text(self):
        """The form :meth:`parse` reads back."""
        if not self.split:
            return f"{self.core:g}"
        return f"{self.core:g},{self.pcie:g},{self.csr:g}"

    def params(self, params):
        """``params`` with the clock domains these periods need."""
        want = "split" if self.split else params.clock_domains
        return dataclasses.replace(params, clock_domains=want)
