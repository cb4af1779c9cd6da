"""Elaboration parameters of the engine, validated once.

Every block takes the parameters it needs from one :class:`EngineParams`;
``nvmf-offload verilog --config NAME`` reads them from a TOML file whose
``[engine]`` table uses the same names: ``configs/NAME.toml`` (a named
configuration, :func:`find_config`) or any file path.
"""

import dataclasses
import tomllib
from pathlib import Path

from .formats import CAPSULE_UNIT, PRP_MAX_IO_BYTES, SQE_BYTES

__all__ = ["EngineParams", "DATA_WIDTHS", "CLOCK_DOMAINS", "STAGING_MODES", "CONFIG_DIR",
           "config_names", "find_config", "load_params"]

DATA_WIDTHS = (64, 128, 256, 512)
CLOCK_DOMAINS = ("single", "split")
STAGING_MODES = ("external", "onchip")

# Named configurations: configs/<name>.toml, each an [engine] table.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclasses.dataclass(frozen=True)
class EngineParams:
    """Elaboration parameters.

    Parameters
    ----------
    data_width : int
        Width of every AXI4-Stream data path, in bits: 64, 128, 256 or 512.
    qp_count : int
        Entries of the QP table; a QPN at or above it is never offloaded.
    max_capsule_bytes : int
        Largest command capsule the engine stores (SQE + ICDOFF pad + in-capsule
        data), a multiple of 16; it bounds every QP's IOCCSZ.
    subsystems : int
        Subsystem (SRQ) table entries.
    backend_queues : int
        Backend NVMe queue-pair table entries, over all subsystems (at most 32).
    srq_namespaces : int
        Front-end NSIDs per subsystem: 1 .. srq_namespaces.
    namespaces : int
        Namespace table entries over all subsystems.
    max_icdoff : int
        Largest ICDOFF (16-byte units) a subsystem may use.
    max_io_size : int
        Largest transfer of one command, bytes: at most ``PRP_MAX_IO_BYTES``
        (2 MiB + 4 KiB, what PRP1 and one PRP list page describe).
    min_staging_bytes : int
        Smallest staging buffer a subsystem may be given, bytes.
    min_queue_depth, max_queue_depth : int
        Entries of a backend SQ / CQ.
    lba_sizes : tuple of int
        Supported lba_data_size values (powers of two from 512 to 65536).
    event_depth : int
        Event queue entries.
    staging_base, staging_bytes : int
        Bus address (what the SSDs' PRPs name) and size (a power of two) of the
        staging memory.
    staging_mode : str
        ``"external"`` (default): staging lives in memory the integrator provides
        (a DDR4/HBM controller, or a PCIe bridge into host memory), reached through
        the AXI4 master ``m_axi_stg``; the SSDs' DMA goes to that memory directly, and
        ``s_axi_p2p`` keeps only the MSI-X window. ``"onchip"``: staging is the
        engine's own block RAM behind ``s_axi_p2p`` (small boards).
    staging_axi_base : int
        Where the staging memory starts on ``m_axi_stg`` (the engine address of bus
        address ``staging_base``), aligned to ``staging_bytes``; external mode only.
    msix_addr : int
        Bus address the SSDs' MSI-X messages are written to (``s_axi_p2p``).
    contexts : int
        Outstanding commands over the whole engine (a power of two).
    clock_domains : str
        ``"single"``: the whole engine runs on ``clk``. ``"split"``: the capsule,
        response and RDMA ports and the core run on ``clk``, ``m_axi_pcie`` and
        ``s_axi_p2p`` on ``pcie_clk``, ``s_axil_csr`` and ``irq`` on ``csr_clk``,
        crossing through asynchronous FIFOs (``docs/clocks.md``).
    """

    data_width: int = 128
    qp_count: int = 64
    max_capsule_bytes: int = 4160
    subsystems: int = 4
    backend_queues: int = 8
    srq_namespaces: int = 16
    namespaces: int = 32
    max_icdoff: int = 0
    max_io_size: int = 131072
    min_staging_bytes: int = 65536
    min_queue_depth: int = 2
    max_queue_depth: int = 1024
    lba_sizes: tuple = (512, 4096)
    event_depth: int = 16
    staging_base: int = 0x0000_0080_0000_0000
    staging_bytes: int = 262144
    msix_addr: int = 0x0000_0080_F000_0000
    contexts: int = 32
    clock_domains: str = "single"
    staging_mode: str = "external"
    staging_axi_base: int = 0

    def __post_init__(self):
        if self.clock_domains not in CLOCK_DOMAINS:
            raise ValueError(f"clock_domains must be one of {CLOCK_DOMAINS}, "
                             f"not {self.clock_domains!r}")
        if self.data_width not in DATA_WIDTHS:
            raise ValueError(
                f"data_width must be one of {DATA_WIDTHS}, not {self.data_width!r}")
        if not (isinstance(self.qp_count, int) and 1 <= self.qp_count <= 1 << 16):
            raise ValueError(f"qp_count must be an integer in 1..65536, not {self.qp_count!r}")
        m = self.max_capsule_bytes
        if not (isinstance(m, int) and SQE_BYTES <= m <= 65520 and m % CAPSULE_UNIT == 0):
            raise ValueError(
                f"max_capsule_bytes must be a multiple of 16 in 64..65520, not {m!r}")

        object.__setattr__(self, "lba_sizes", tuple(self.lba_sizes))
        for name, lo, hi in (("subsystems", 1, 255), ("backend_queues", 1, 32),
                             ("srq_namespaces", 1, 1024), ("namespaces", 1, 4096),
                             ("min_queue_depth", 2, 65535), ("max_queue_depth", 2, 65535),
                             ("event_depth", 2, 4096), ("max_io_size", 512, PRP_MAX_IO_BYTES),
                             ("min_staging_bytes", 4096, 1 << 31)):
            value = getattr(self, name)
            if not (isinstance(value, int) and lo <= value <= hi):
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
        for name in ("staging_bytes", "contexts"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 2 and value & (value - 1) == 0):
                raise ValueError(f"{name} must be a power of two, not {value!r}")
        if self.staging_bytes < 4096 or self.staging_bytes > 1 << 28:
            raise ValueError(f"staging_bytes must be in 4096..2**28, not {self.staging_bytes}")
        if self.contexts > 1024:
            raise ValueError(f"contexts must be at most 1024, not {self.contexts}")
        for name in ("staging_base", "msix_addr"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 0 <= value < 1 << 64 and value % 4096 == 0):
                raise ValueError(f"{name} must be a 4 KiB-aligned 64-bit address, not {value!r}")
        if self.staging_base <= self.msix_addr < self.staging_base + self.staging_bytes:
            raise ValueError(f"msix_addr {self.msix_addr:#x} lies inside the staging memory")
        if self.staging_mode not in STAGING_MODES:
            raise ValueError(f"staging_mode must be one of {STAGING_MODES}, "
                             f"not {self.staging_mode!r}")
        a = self.staging_axi_base
        if not (isinstance(a, int) and 0 <= a < 1 << 64 and a % self.staging_bytes == 0):
            raise ValueError(f"staging_axi_base must be a 64-bit address aligned to "
                             f"staging_bytes ({self.staging_bytes}), not {a!r}")
        if self.min_queue_depth > self.max_queue_depth:
            raise ValueError(f"min_queue_depth {self.min_queue_depth} exceeds "
                             f"max_queue_depth {self.max_queue_depth}")
        if not (isinstance(self.max_icdoff, int)
                and 0 <= self.max_icdoff * CAPSULE_UNIT <= m - SQE_BYTES):
            raise ValueError(f"max_icdoff must leave room for the SQE in max_capsule_bytes "
                             f"({m}), not {self.max_icdoff!r}")
        for size in self.lba_sizes:
            if not (isinstance(size, int) and 512 <= size <= 65536 and size & (size - 1) == 0):
                raise ValueError(f"lba_sizes: {size!r} is not a power of two in 512..65536")
        if not self.lba_sizes:
            raise ValueError("lba_sizes must name at least one block size")

    @property
    def lba_size_bitmap(self):
        """Bit n set for each supported lba_data_size 2**n."""
        return sum(1 << (size.bit_length() - 1) for size in set(self.lba_sizes))

    @property
    def onchip_staging(self):
        """Staging is the engine's block RAM (else external memory on ``m_axi_stg``)."""
        return self.staging_mode == "onchip"

    @property
    def beat_bytes(self):
        """Bytes a data beat carries."""
        return self.data_width // 8

    @property
    def sqe_beats(self):
        """Beats an SQE occupies (an SQE is a whole number of beats at every width)."""
        return SQE_BYTES // self.beat_bytes

    @property
    def max_capsule_beats(self):
        return -(-self.max_capsule_bytes // self.beat_bytes)

    def tag(self):
        """A short, file-name-safe name of this parameter set (defaults left out)."""
        parts = [f"w{self.data_width}"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "data_width" and value != f.default:
                if isinstance(value, tuple):
                    value = "-".join(map(str, value))
                parts.append(f"{f.name}{value}")
        return "_".join(parts)


def config_names():
    """Names of the configurations in ``configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def find_config(spec):
    """``(name, path)`` of a configuration given by name (``configs/<name>.toml``) or by path.

    A path that exists is taken as it is (its name is the file's stem); otherwise ``spec``
    is looked up in ``configs/``. :class:`ValueError` names the known configurations.
    """
    path = Path(spec)
    if path.is_file():
        return path.stem, path
    named = CONFIG_DIR / f"{spec}.toml"
    if path.name == str(spec) and named.is_file():
        return str(spec), named
    raise ValueError(f"no configuration {str(spec)!r}: neither a file nor one of "
                     f"{', '.join(config_names())} (configs/)")


def load_params(path=None, **overrides):
    """Read ``[engine]`` from a TOML file (if given), apply overrides, validate.

    ``path`` is a file or the name of a configuration in ``configs/`` (:func:`find_config`).
    """
    values = {}
    if path is not None:
        path = find_config(path)[1]
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        table = doc.get("engine", {})
        known = {f.name for f in dataclasses.fields(EngineParams)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"{path}: unknown [engine] key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        values.update(table)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EngineParams(**values)
