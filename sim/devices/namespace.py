"""One NVMe namespace's blocks, stored sparsely (:class:`SsdNamespace`).

A block never written, written with zeroes or deallocated reads as zeroes.
"""

__all__ = ["SsdNamespace", "NSID_BROADCAST"]

NSID_BROADCAST = 0xFFFF_FFFF
U64 = (1 << 64) - 1


class SsdNamespace:
    """One namespace: ``nsze`` blocks of ``lba_data_size`` bytes, stored sparsely."""

    def __init__(self, nsid, lba_data_size, nsze):
        if not isinstance(nsid, int) or not 1 <= nsid < NSID_BROADCAST:
            raise ValueError(f"nsid must be in 1..0xfffffffe, not {nsid!r}")
        if (not isinstance(lba_data_size, int) or lba_data_size < 512
                or lba_data_size & (lba_data_size - 1)):
            raise ValueError(f"lba_data_size must be a power of two >= 512, "
                             f"not {lba_data_size!r}")
        if not isinstance(nsze, int) or not 1 <= nsze <= U64:
            raise ValueError(f"nsze must be in 1..2**64-1, not {nsze!r}")
        self.nsid = nsid
        self.lba_data_size = lba_data_size
        self.nsze = nsze
        self._blocks = {}           # lba -> bytes (never all zero)

    @property
    def lba_shift(self):
        return self.lba_data_size.bit_length() - 1

    def in_range(self, slba, count):
        """True when blocks ``slba .. slba + count - 1`` exist (no wrap-around)."""
        return 0 <= slba and slba + count <= self.nsze

    def _check(self, slba, count):
        if not isinstance(slba, int) or not isinstance(count, int) or count < 0:
            raise ValueError(f"bad block range {slba!r} + {count!r}")
        if not self.in_range(slba, count):
            raise ValueError(f"blocks {slba} + {count} are beyond nsze {self.nsze} "
                             f"of nsid {self.nsid}")

    def read(self, slba, count):
        """``count`` blocks from ``slba`` (unwritten blocks read as zeroes)."""
        self._check(slba, count)
        size = self.lba_data_size
        zero = bytes(size)
        return b"".join(self._blocks.get(lba, zero) for lba in range(slba, slba + count))

    def write(self, slba, data):
        """Store whole blocks from ``slba``."""
        data = bytes(data)
        size = self.lba_data_size
        if len(data) % size:
            raise ValueError(f"{len(data)} bytes are not a whole number of {size}-byte blocks")
        self._check(slba, len(data) // size)
        for i in range(len(data) // size):
            block = data[i * size:(i + 1) * size]
            if block.count(0) == size:
                self._blocks.pop(slba + i, None)
            else:
                self._blocks[slba + i] = block

    def _forget(self, slba, count):
        if count > len(self._blocks):
            for lba in [lba for lba in self._blocks if slba <= lba < slba + count]:
                del self._blocks[lba]
        else:
            for lba in range(slba, slba + count):
                self._blocks.pop(lba, None)

    def write_zeroes(self, slba, count):
        self._check(slba, count)
        self._forget(slba, count)

    def deallocate(self, slba, count):
        """Deallocated blocks read as zeroes (DLFEAT "read zeroes")."""
        self._check(slba, count)
        self._forget(slba, count)

    @property
    def written_blocks(self):
        """LBAs that currently hold nonzero data, ascending."""
        return sorted(self._blocks)
