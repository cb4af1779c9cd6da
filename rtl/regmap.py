"""The control-plane register map, compiled from ``rtl/csr.rdl`` (the single source).

:func:`register_map` elaborates the SystemRDL with the capability parameters
taken from :class:`EngineParams` and flattens it into plain Python objects
(register arrays expanded to ``ARG[0]`` .. ``ARG[15]``) that the gateware,
the driver, the reference model and the generators use. The compiled node
tree (for PeakRDL exporters) is available from :func:`compile_rdl`.
"""

import dataclasses
import functools
from pathlib import Path

from .formats import PAGE_BYTES
from .params import EngineParams

__all__ = ["Field", "Register", "RegisterMap", "register_map", "compile_rdl", "rdl_parameters",
           "RDL_PATH"]

RDL_PATH = Path(__file__).with_name("csr.rdl")


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    sw: str              # "r", "w" or "rw"
    hw: str              # "r", "w" or "na"
    reset: int
    singlepulse: bool
    swmod: bool
    desc: str

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb


@dataclasses.dataclass(frozen=True)
class Register:
    name: str            # "CMD", "ARG[3]"
    offset: int
    fields: tuple
    desc: str

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")

    @property
    def reset(self):
        return sum(f.reset << f.lsb for f in self.fields)

    @property
    def readable(self):
        return any("r" in f.sw for f in self.fields)


@dataclasses.dataclass(frozen=True)
class RegisterMap:
    name: str
    registers: tuple

    def __getitem__(self, name):
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise KeyError(f"no register {name!r}")

    def by_offset(self):
        return {reg.offset: reg for reg in self.registers}

    @property
    def address_width(self):
        return max(reg.offset for reg in self.registers).bit_length()


def rdl_parameters(params: EngineParams):
    """Values of the RDL's addrmap parameters for an elaboration parameter set."""
    engine = params.staging_base if params.onchip_staging else params.staging_axi_base
    return {
        "MAX_SRQS": params.subsystems,
        "MAX_QPS": params.qp_count,
        "MAX_BACKEND_CTRLS": params.backend_queues,
        "MAX_SRQ_NAMESPACES": params.srq_namespaces,
        "MAX_NAMESPACES": params.namespaces,
        "MIN_STAGING_BUF_SIZE": params.min_staging_bytes,
        "MAX_IO_SZ": params.max_io_size,
        "MIN_QUEUE_DEPTH": params.min_queue_depth,
        "MAX_QUEUE_DEPTH": params.max_queue_depth,
        "MIN_IOCCSZ": 4,
        "MAX_IOCCSZ": params.max_capsule_bytes // 16,
        "MAX_ICDOFF": params.max_icdoff,
        "LBA_SIZES": params.lba_size_bitmap,
        "EVENT_DEPTH": params.event_depth,
        "MSIX_ADDR_LO": params.msix_addr & 0xFFFF_FFFF,
        "MSIX_ADDR_HI": params.msix_addr >> 32,
        "EXTERNAL_STAGING": int(not params.onchip_staging),
        "STAGING_ALIGN": PAGE_BYTES,
        "STAGING_BUS_LO": params.staging_base & 0xFFFF_FFFF,
        "STAGING_BUS_HI": params.staging_base >> 32,
        "STAGING_ENGINE_LO": engine & 0xFFFF_FFFF,
        "STAGING_ENGINE_HI": engine >> 32,
        "STAGING_SIZE": params.staging_bytes,
    }


def compile_rdl(params: EngineParams):
    """The elaborated systemrdl-compiler root node."""
    from systemrdl import RDLCompiler

    compiler = RDLCompiler()
    compiler.compile_file(str(RDL_PATH))
    return compiler.elaborate("nvmf_csr", parameters=rdl_parameters(params))


def _access(node, prop):
    from systemrdl.rdltypes import AccessType

    value = node.get_property(prop)
    return {AccessType.r: "r", AccessType.w: "w", AccessType.rw: "rw",
            AccessType.na: "na"}.get(value, str(value))


_DEFAULT = EngineParams()


@functools.lru_cache(maxsize=16)
def register_map(params: EngineParams = _DEFAULT):
    """The flattened register map for ``params`` (cached)."""
    from systemrdl.node import RegNode

    root = compile_rdl(params)
    top = root.top
    registers = []
    for node in top.descendants(unroll=True):
        if not isinstance(node, RegNode):
            continue
        name = node.inst_name
        if node.is_array:
            name += "".join(f"[{i}]" for i in node.current_idx)
        fields = tuple(
            Field(name=f.inst_name, lsb=f.lsb, width=f.width, sw=_access(f, "sw"),
                  hw=_access(f, "hw"), reset=f.get_property("reset") or 0,
                  singlepulse=bool(f.get_property("singlepulse")),
                  swmod=bool(f.get_property("swmod")),
                  desc=" ".join((f.get_property("desc") or "").split()))
            for f in node.fields())
        registers.append(Register(name=name, offset=node.absolute_address, fields=fields,
                                  desc=" ".join((node.get_property("desc") or "").split())))
    registers.sort(key=lambda r: r.offset)
    return RegisterMap(name=top.inst_name, registers=tuple(registers))
