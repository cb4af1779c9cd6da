"""What the RTL replay bench (:mod:`sim.cosim.replay_bench`) knows of each capsule it
delivered: its bytes, what they say, and the outcome and events the monitors gave it.
"""

import dataclasses

from rtl.formats import Sqe, decode

__all__ = ["DeliveredCapsule"]


@dataclasses.dataclass
class DeliveredCapsule:
    """A delivered capsule and what has been learnt about it."""
    seq: int
    qpn: int
    data: bytes
    sqhd: int | None            # the SQHD its response must carry (offloaded QPs)
    cid: int | None = None
    opcode: int | None = None
    sgl: tuple | None = None    # (address, key) of a keyed SGL
    sgl_length: int = 0         # its length in bytes
    outcome: str | None = None  # "response", "to_software" or "qp_error"
    record: dict | None = None
    queue: int | None = None    # backend queue its SQE was written to
    rdma_failed: str | None = None
    events: set = dataclasses.field(default_factory=set)

    @classmethod
    def of(cls, seq, qpn, capsule, sqhd):
        """What the bytes of a capsule say: its CID, opcode and keyed SGL (when it has
        them)."""
        c = cls(seq, qpn, capsule, sqhd)
        if len(capsule) >= 4:
            c.cid = int.from_bytes(capsule[2:4], "little")
        if len(capsule) >= 64:
            sqe = decode(Sqe, capsule[:64])
            c.opcode = sqe["opcode"]
            keyed = sqe["dptr"]["keyed"]
            if int(getattr(keyed["type"], "value", keyed["type"])) == 0x4:
                c.sgl = (keyed["address"], keyed["key"])
                c.sgl_length = keyed["length"]
        return c

    def status(self):
        """``(sct, sc)`` of its response, or None."""
        if self.outcome != "response":
            return None
        word = int.from_bytes(bytes.fromhex(self.record["cqe"])[14:16], "little")
        return word >> 9 & 7, word >> 1 & 0xFF
