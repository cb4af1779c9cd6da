"""The PCIe fabric at transaction level: address routing between agents, plain memory,
and injected error responses.

:class:`PcieFabric` routes bus addresses to targets (ring memory, SSD BARs, the
engine's peer-to-peer target) and can fail chosen accesses (``fail_next``), which is
how PCIe errors are injected; :class:`SparseMemory` is memory whose unwritten bytes
read as zero. No clock and no bus signals: the reference model and the model backend
of ``replay`` use them (the RTL benches use :mod:`sim.devices.pcie_bus`).
"""

import dataclasses

__all__ = ["PAGE_BYTES", "PcieError", "SparseMemory", "PcieFabric"]

PAGE_BYTES = 4096                  # the memory page size (CC.MPS = 0) the models assume


class PcieError(Exception):
    """A PCIe access answered with an error (an unmapped address, or an injected fault)."""

    def __init__(self, kind, addr, length, why):
        super().__init__(f"PCIe {kind} of {length} bytes at {addr:#x}: {why}")
        self.kind = kind
        self.addr = addr
        self.length = length


class SparseMemory:
    """Plain memory as a bus target: bytes never written read as zero."""

    def __init__(self, name="memory"):
        self.name = name
        self._pages = {}

    def bus_read(self, offset, length):
        out = bytearray()
        while length:
            page, off = divmod(offset, PAGE_BYTES)
            n = min(length, PAGE_BYTES - off)
            buf = self._pages.get(page)
            out += buf[off:off + n] if buf is not None else bytes(n)
            offset += n
            length -= n
        return bytes(out)

    def bus_write(self, offset, data):
        data = memoryview(bytes(data))
        while data:
            page, off = divmod(offset, PAGE_BYTES)
            n = min(len(data), PAGE_BYTES - off)
            buf = self._pages.get(page)
            if buf is None:
                buf = self._pages[page] = bytearray(PAGE_BYTES)
            buf[off:off + n] = data[:n]
            offset += n
            data = data[n:]


@dataclasses.dataclass
class _Mapping:
    base: int
    size: int
    target: object
    name: str


class PcieFabric:
    """Address routing between PCIe agents.

    ``map(base, size, target, name)`` gives ``[base, base + size)`` to a target
    with ``bus_read(offset, length) -> bytes`` and ``bus_write(offset, data)``
    (``offset`` from ``base``). An access that does not fall wholly inside one
    mapping, or that an armed :meth:`fail_next` matches, raises
    :class:`PcieError`. ``log``, when a list, records ``(source, kind, addr,
    length)`` of every access.
    """

    def __init__(self):
        self._maps = []
        self._faults = []            # [kind, base, size, remaining]
        self.log = None

    def map(self, base, size, target, name):
        if not (isinstance(base, int) and isinstance(size, int) and size > 0
                and 0 <= base and base + size <= 1 << 64):
            raise ValueError(f"{name}: bad window {base!r} + {size!r}")
        for m in self._maps:
            if base < m.base + m.size and m.base < base + size:
                raise ValueError(f"{name} [{base:#x}, {base + size:#x}) overlaps {m.name} "
                                 f"[{m.base:#x}, {m.base + m.size:#x})")
        self._maps.append(_Mapping(base, size, target, name))
        self._maps.sort(key=lambda m: m.base)

    def mapping(self, addr):
        """``(name, base, size)`` of the mapping that holds ``addr``, or None."""
        for m in self._maps:
            if m.base <= addr < m.base + m.size:
                return m.name, m.base, m.size
        return None

    def fail_next(self, base, size, kind, count=1):
        """Answer the next ``count`` ``kind`` ("read"/"write") accesses touching the range
        with an error."""
        if kind not in ("read", "write"):
            raise ValueError(f"kind must be 'read' or 'write', not {kind!r}")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        self._faults.append([kind, base, size, count])

    def clear_faults(self):
        self._faults.clear()

    @property
    def pending_faults(self):
        return [tuple(f) for f in self._faults]

    def _route(self, kind, addr, length, source):
        if self.log is not None:
            self.log.append((source, kind, addr, length))
        for fault in self._faults:
            f_kind, base, size, _ = fault
            if f_kind == kind and addr < base + size and base < addr + max(length, 1):
                fault[3] -= 1
                if fault[3] == 0:
                    self._faults.remove(fault)
                raise PcieError(kind, addr, length, "injected error response")
        for m in self._maps:
            if m.base <= addr and addr + length <= m.base + m.size:
                return m
        raise PcieError(kind, addr, length, "no target decodes this address range (DECERR)")

    def read(self, addr, length, source="?"):
        m = self._route("read", addr, length, source)
        return m.target.bus_read(addr - m.base, length)

    def write(self, addr, data, source="?"):
        data = bytes(data)
        m = self._route("write", addr, len(data), source)
        m.target.bus_write(addr - m.base, data)
