"""A tiny directed replay trace: ``write_mem`` lines after capsules that use the same memory.

Used on the model (``tb/unit/test_replay_write_mem.py``) and on the RTL
(``tb/replay/test_replay_rtl.py``); the results must be the model's
(docs/replay.md, "Ordering"):

- a keyed Write, then a ``write_mem`` over its data without a barrier between:
  the Write stores the bytes from before the ``write_mem``;
- a Read (on the fast SSD) and a keyed Write (on the slow one), then a
  ``write_mem`` over the Write's data and one over the Read's buffer: the Write
  stores the old bytes, and the Read's data ends up in its buffer (its RDMA
  WRITE comes after every ``write_mem`` of the segment, as in the model, whose
  SSD time runs only at barriers), even when it lands while the bench waits for
  the Write's RDMA READ.

The engine parameters are those of ``examples/replay/target.toml`` (the
simulators reuse its build).
"""

import json

from rtl.formats import Opcode
from sim.devices.initiator import pattern
from sim.traffic.capsules import keyed_sgl, make_sqe

__all__ = ["RKEY", "ADDR", "BLOCK", "trace", "target", "expected"]

RKEY = 0x1000
ADDR = 0x1000_0000
BLOCK = 512
QPN = 17
A, B, C = (pattern(f"write_mem_order/{x}", 2 * BLOCK) for x in "abc")
READ_BUF = 0x1000           # region offset of the Read's buffer


def target(fast=200, slow=1000):
    """Two SSDs: namespace 1 on ``ssd0`` (``fast`` cycles), namespace 2 on ``ssd1``."""
    ssds = "".join(f"""
[[ssd]]
name = "ssd{i}"
io_queues = 1
queue_entries = 16
latency_cycles = {latency}
  [[ssd.namespace]]
  nsid = 1
  lba_data_size = {BLOCK}
  nsze = 1024
""" for i, latency in enumerate((fast, slow)))
    return f"""format = 1

[engine]
data_width = 128
{ssds}
[[subsystem]]
name = "nqn.2026-11.io.example:wm"
  [[subsystem.namespace]]
  fe_nsid = 1
  ssd = "ssd0"
  nsid = 1
  queues = [0]
  [[subsystem.namespace]]
  fe_nsid = 2
  ssd = "ssd1"
  nsid = 1
  queues = [0]

[[qp]]
qpn = {QPN}
subsystem = "nqn.2026-11.io.example:wm"
sqsize = 32

[[region]]
rkey = {RKEY:#x}
addr = {ADDR:#x}
size = 65536
"""


def _capsule(opcode, cid, nsid, offset, slba):
    sqe = make_sqe(opcode, cid, nsid, slba=slba, nlb=1,
                   sgl=keyed_sgl(ADDR + offset, 2 * BLOCK, RKEY))
    return {"capsule": sqe.hex(), "qpn": QPN}


def _write_mem(offset, data):
    return {"write_mem": {"rkey": RKEY, "offset": offset, "data": data.hex()}}


def trace():
    """The trace, one JSON text a line."""
    lines = [
        # a keyed Write of A, then A's memory overwritten with B: the Write stores A
        _write_mem(0, A),
        _capsule(Opcode.WRITE, 1, 1, 0, 0),
        _write_mem(0, B),
        {"wait": "idle"},
        {"dump_lba": {"ssd": "ssd0", "nsid": 1, "slba": 0, "nlb": 2}},
        # a Read of A (fast SSD), a keyed Write of B (slow SSD), then B's memory and the
        # Read's buffer overwritten with C: the Write stores B, the buffer gets A
        _capsule(Opcode.READ, 2, 1, READ_BUF, 0),
        _capsule(Opcode.WRITE, 3, 2, 0, 0),
        _write_mem(0, C),
        _write_mem(READ_BUF, C),
        {"wait": "idle"},
        {"dump_mem": {"rkey": RKEY, "offset": READ_BUF, "length": 2 * BLOCK}},
        {"dump_lba": {"ssd": "ssd1", "nsid": 1, "slba": 0, "nlb": 2}},
    ]
    return [json.dumps(line) for line in lines]


def expected():
    """The dump records, in order."""
    return [{"lba": {"ssd": "ssd0", "nsid": 1, "slba": 0, "data": A.hex()}},
            {"mem": {"rkey": RKEY, "offset": READ_BUF, "data": A.hex()}},
            {"lba": {"ssd": "ssd1", "nsid": 1, "slba": 0, "data": B.hex()}}]
