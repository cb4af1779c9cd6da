"""The replay contract's constants (``docs/replay.md``): format, exit statuses, bus
addresses of the configuration, and its two errors.
"""


from rtl.formats import OpBit

FORMAT = 1
EXIT_OK, EXIT_INVARIANT, EXIT_INPUT, EXIT_BACKEND = 0, 1, 2, 3
WAIT_BUDGET_CYCLES = 10_000_000     # a barrier that does not reach idle in this many: a hang
BACKENDS = ("model", "icarus", "verilator")

U16 = (1 << 16) - 1
U24 = (1 << 24) - 1
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
MiB = 1 << 20

# Bus addresses (docs/replay.md, "How the engine is configured"). The staging windows and
# the MSI-X address are the engine's (EngineParams staging_base / staging_bytes / msix_addr).
RING_BASE = 0x0200_0000_0000             # SQ and CQ rings, in backend queue creation order
RING_SPACE = 0x0100_0000_0000
BAR_BASE = 0x0300_0000_0000              # SSD i's BAR0 at BAR_BASE + i MiB
BAR_STRIDE = MiB
RING_ALIGN = 4096
# MSI-X data of the backend queue created n-th: MSIX_DATA_BASE + n (the engine recognises a
# message by this value, not by the queue index)
MSIX_DATA_BASE = 0x4E56_4D00

OP_NAMES = {"flush": OpBit.FLUSH, "write": OpBit.WRITE, "read": OpBit.READ,
            "write_zeroes": OpBit.WRITE_ZEROES, "dsm": OpBit.DSM}


# --- errors ---------------------------------------------------------------------------------------

class ReplayInputError(Exception):
    """A malformed TARGET or TRACE (exit status 2): ``file:line: field: problem``."""

    def __init__(self, path, line, field, problem):
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")


class BackendUnavailable(Exception):
    """The requested backend cannot run here (exit status 3)."""


# --- TOML: where each key was written -------------------------------------------------------------
