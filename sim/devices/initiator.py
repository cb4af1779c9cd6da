"""A modelled NVMe-oF initiator: host memory exposed to the engine by rkey.

The initiator owns a sparse 64-bit address space and a set of memory regions
``{rkey, addr, size}`` (what ``ibv_reg_mr`` registers). Two sides use it:

- the *host side* (a test, a replay trace) reads and writes memory by
  ``(rkey, offset)`` with :meth:`Initiator.write` / :meth:`Initiator.read`;
  a bad rkey or an out-of-range offset there is a caller bug and raises
  :class:`ValueError`;
- the *RDMA side* (the engine's RDMA READ / WRITE descriptors) uses
  ``(rkey, remote address, length)`` with :meth:`Initiator.rdma_read` /
  :meth:`Initiator.rdma_write`; an unknown rkey, an access that does not fit
  the region, or an injected fault is an RDMA *error status*
  (:class:`RdmaStatus`), never a Python exception, as a real responder
  answers with a NAK and the requester sees a failed work completion.

Regions may overlap: they are windows onto one address space, so two rkeys
over the same addresses see the same bytes. The module also has small
data-integrity helpers (:func:`pattern`, :func:`first_mismatch`).
"""

import dataclasses
import enum
import hashlib

from sim.devices.pcie import PAGE_BYTES, SparseMemory

__all__ = ["RdmaStatus", "RdmaResult", "Region", "Initiator", "pattern", "first_mismatch",
           "PAGE_BYTES"]

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1


class RdmaStatus(enum.IntEnum):
    """Completion status of one RDMA operation (0 is success)."""
    OK = 0
    REM_ACCESS_ERR = 1      # unknown rkey, or the access does not fit the region
    REM_OP_ERR = 2          # an injected fault (the responder failed the operation)


@dataclasses.dataclass(frozen=True)
class RdmaResult:
    """What :meth:`Initiator.rdma_read` returns: the status and, on success, the bytes."""
    status: RdmaStatus
    data: bytes = b""

    @property
    def ok(self):
        return self.status == RdmaStatus.OK


@dataclasses.dataclass(frozen=True)
class Region:
    """A registered memory region: ``size`` bytes at remote address ``addr`` under ``rkey``."""
    rkey: int
    addr: int
    size: int

    def contains(self, addr, length):
        """True when ``[addr, addr + length)`` lies inside the region (no wrap-around)."""
        return self.addr <= addr and addr + length <= self.addr + self.size


@dataclasses.dataclass(frozen=True)
class RdmaOp:
    """One RDMA operation as the initiator saw it (see :attr:`Initiator.log`)."""
    op: str                 # "read" or "write"
    rkey: int
    addr: int
    length: int
    status: RdmaStatus


def _check_uint(name, value, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= hi:
        raise ValueError(f"{name} must be an integer in 0..{hi:#x}, not {value!r}")
    return value


class Initiator:
    """Host memory by rkey, with RDMA access checks and fault injection."""

    def __init__(self, regions=()):
        self._memory = SparseMemory("initiator")   # the address space of every region
        self._regions = {}          # rkey -> Region
        self._faults = []           # [op, rkey, remaining count]
        self.log = []               # RdmaOp per RDMA operation, in order
        for region in regions:
            if isinstance(region, Region):
                self.add_region(region.rkey, region.addr, region.size)
            else:
                self.add_region(**region)

    # --- regions ------------------------------------------------------------------------------

    def add_region(self, rkey, addr, size):
        """Register ``size`` bytes at ``addr`` under ``rkey`` (a duplicate rkey is an error)."""
        _check_uint("rkey", rkey, U32)
        _check_uint("addr", addr, U64)
        _check_uint("size", size, U64)
        if size == 0:
            raise ValueError(f"region {rkey:#x}: size must be at least 1")
        if addr + size > 1 << 64:
            raise ValueError(f"region {rkey:#x}: {addr:#x} + {size} wraps the address space")
        if rkey in self._regions:
            raise ValueError(f"rkey {rkey:#x} is already registered")
        region = Region(rkey, addr, size)
        self._regions[rkey] = region
        return region

    def remove_region(self, rkey):
        """Deregister (invalidate) ``rkey``: later RDMA accesses under it fail."""
        if rkey not in self._regions:
            raise ValueError(f"rkey {rkey!r} is not registered")
        del self._regions[rkey]

    def region(self, rkey):
        """The :class:`Region` of ``rkey`` (ValueError when it is not registered)."""
        try:
            return self._regions[rkey]
        except KeyError:
            raise ValueError(f"rkey {rkey!r} is not registered") from None

    @property
    def regions(self):
        return dict(self._regions)

    # --- raw memory ---------------------------------------------------------------------------

    def _mem_read(self, addr, length):
        return self._memory.bus_read(addr, length)

    def _mem_write(self, addr, data):
        self._memory.bus_write(addr, data)

    # --- host side: by (rkey, offset) ---------------------------------------------------------

    def _host_span(self, rkey, offset, length):
        region = self.region(rkey)
        _check_uint("offset", offset, U64)
        _check_uint("length", length, U64)
        if offset + length > region.size:
            raise ValueError(f"rkey {rkey:#x}: offset {offset} + length {length} is beyond "
                             f"the region's {region.size} bytes")
        return region.addr + offset

    def write(self, rkey, offset, data):
        """Host side: store ``data`` at ``offset`` bytes into the region of ``rkey``."""
        data = bytes(data)
        self._mem_write(self._host_span(rkey, offset, len(data)), data)

    def read(self, rkey, offset, length):
        """Host side: ``length`` bytes at ``offset`` into the region of ``rkey``."""
        return self._mem_read(self._host_span(rkey, offset, length), length)

    # --- RDMA side: by (rkey, remote address) -------------------------------------------------

    def inject_error(self, rkey, op, count=1):
        """Fail the next ``count`` RDMA ``op`` ("read" or "write") operations under ``rkey``."""
        if op not in ("read", "write"):
            raise ValueError(f"op must be 'read' or 'write', not {op!r}")
        _check_uint("rkey", rkey, U32)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        self._faults.append([op, rkey, count])

    def clear_faults(self):
        """Drop every injected fault that has not fired yet."""
        self._faults.clear()

    @property
    def pending_faults(self):
        return [tuple(f) for f in self._faults]

    def _status(self, op, rkey, addr, length):
        for fault in self._faults:
            if fault[0] == op and fault[1] == rkey:
                fault[2] -= 1
                if fault[2] == 0:
                    self._faults.remove(fault)
                return RdmaStatus.REM_OP_ERR
        region = self._regions.get(rkey)
        if region is None or not region.contains(addr, length):
            return RdmaStatus.REM_ACCESS_ERR
        return RdmaStatus.OK

    def rdma_read(self, rkey, addr, length):
        """An RDMA READ the engine issued: :class:`RdmaResult` (data only on success)."""
        status = self._status("read", rkey, addr, length)
        self.log.append(RdmaOp("read", rkey, addr, length, status))
        if status != RdmaStatus.OK:
            return RdmaResult(status)
        return RdmaResult(status, self._mem_read(addr, length))

    def rdma_write(self, rkey, addr, data):
        """An RDMA WRITE the engine issued; returns its :class:`RdmaStatus`.

        A failed WRITE changes no byte (the model's choice: a real responder may
        have placed part of the data before the error).
        """
        data = bytes(data)
        status = self._status("write", rkey, addr, len(data))
        self.log.append(RdmaOp("write", rkey, addr, len(data), status))
        if status == RdmaStatus.OK:
            self._mem_write(addr, data)
        return status


# --- data-integrity helpers -------------------------------------------------------------------

def pattern(seed, length):
    """``length`` deterministic pseudo-random bytes named by ``seed`` (any str or int).

    The same seed always gives the same bytes, and a prefix of a longer pattern
    is the shorter pattern, so a test can write ``pattern("w1", 4096)`` and
    later check any prefix of it.
    """
    out = bytearray()
    counter = 0
    tag = repr(seed).encode()
    while len(out) < length:
        out += hashlib.blake2b(tag + counter.to_bytes(8, "little"), digest_size=64).digest()
        counter += 1
    return bytes(out[:length])


def first_mismatch(expected, actual):
    """Offset of the first differing byte, or None when equal (a length difference counts)."""
    expected, actual = bytes(expected), bytes(actual)
    for i, (a, b) in enumerate(zip(expected, actual, strict=False)):
        if a != b:
            return i
    if len(expected) != len(actual):
        return min(len(expected), len(actual))
    return None
