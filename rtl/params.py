"""Elaboration parameters of the engine, validated once.

Every block takes the parameters it needs from one :class:`EngineParams`;
``nvmf-offload verilog --config FILE`` reads them from a TOML file whose
``[engine]`` table uses the same names.
"""

import dataclasses
import tomllib

from .formats import CAPSULE_UNIT, SQE_BYTES

__all__ = ["EngineParams", "DATA_WIDTHS", "load_params"]

DATA_WIDTHS = (64, 128, 256, 512)


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
    """

    data_width: int = 128
    qp_count: int = 64
    max_capsule_bytes: int = 4160

    def __post_init__(self):
        if self.data_width not in DATA_WIDTHS:
            raise ValueError(
                f"data_width must be one of {DATA_WIDTHS}, not {self.data_width!r}")
        if not (isinstance(self.qp_count, int) and 1 <= self.qp_count <= 1 << 16):
            raise ValueError(f"qp_count must be an integer in 1..65536, not {self.qp_count!r}")
        m = self.max_capsule_bytes
        if not (isinstance(m, int) and SQE_BYTES <= m <= 65520 and m % CAPSULE_UNIT == 0):
            raise ValueError(
                f"max_capsule_bytes must be a multiple of 16 in 64..65520, not {m!r}")

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
        """A short, file-name-safe name of this parameter set."""
        return f"w{self.data_width}_q{self.qp_count}_c{self.max_capsule_bytes}"


def load_params(path=None, **overrides):
    """Read ``[engine]`` from a TOML file (if given), apply overrides, validate."""
    values = {}
    if path is not None:
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
