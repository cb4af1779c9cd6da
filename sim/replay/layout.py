"""Where everything sits on the bus (:func:`plan_layout`, deterministic) and the
driver calls that configure the engine for a TARGET (:func:`configure_device`); a
TARGET the driver refuses is a :class:`ReplayInputError` with its errno.
"""

import asyncio
import dataclasses
import errno

from sim.driver import NvmeCtrlAttrs, NvmfDevice, NvmfError, SrqAttrs
from sim.model.csr import CsrModel, ModelRegs
from sim.replay.contract import (
    BAR_BASE,
    BAR_STRIDE,
    MSIX_DATA_BASE,
    RING_ALIGN,
    RING_BASE,
    RING_SPACE,
)

# --- addresses and configuration ----------------------------------------------------------------

@dataclasses.dataclass
class QueuePlan:
    """One backend queue: an SSD I/O queue pair given to one subsystem."""
    order: int                  # creation order (= the backend queue index on a fresh device)
    subsystem: str
    ssd: str
    queue: int                  # the SSD's I/O queue index (qid = queue + 1)
    sq_addr: int
    cq_addr: int
    entries: int
    sq_db_addr: int
    cq_db_addr: int
    path: tuple                 # the [[subsystem.namespace]] that first uses it

    @property
    def msix_data(self):
        """The MSI-X data value of its CQ's messages."""
        return MSIX_DATA_BASE + self.order


@dataclasses.dataclass
class Layout:
    """Every bus address replay chooses, from the TARGET alone."""
    staging: dict               # subsystem name -> staging_addr
    bars: dict                  # ssd name -> BAR0 base
    queues: list                # QueuePlan, in creation order
    msix_addr: int

    def queue(self, ssd, queue):
        return next(q for q in self.queues if q.ssd == ssd and q.queue == queue)


def _align(value, align):
    return -(-value // align) * align


def plan_layout(target):
    """Bus addresses: staging windows packed in the engine's staging memory (4 KiB aligned,
    in file order), SSD BARs, and SQ/CQ rings (4 KiB aligned) in backend-queue creation
    order."""
    p = target.params
    staging = {}
    cursor = p.staging_base
    for sub in target.subsystems:
        staging[sub.name] = cursor
        cursor = _align(cursor + sub.staging_bytes, RING_ALIGN)
    if cursor > p.staging_base + p.staging_bytes:
        sub = target.subsystems[-1]
        raise target.error(sub.path + ("staging_bytes",),
                           f"the staging windows need {cursor - p.staging_base} bytes; the "
                           f"engine's staging memory ([engine] staging_bytes) has "
                           f"{p.staging_bytes}")
    ours = ((RING_BASE, RING_SPACE, "the rings"),
            (BAR_BASE, BAR_STRIDE * max(1, len(target.ssds)), "the SSD BARs"))
    for name, base, size in (("staging_base", p.staging_base, p.staging_bytes),
                             ("msix_addr", p.msix_addr, 4)):
        for lo, n, what in ours:
            if base < lo + n and lo < base + size:
                raise target.error(("engine", name),
                                   f"{base:#x} overlaps {what}, which replay places at "
                                   f"[{lo:#x}, {lo + n:#x})")
    stride = 4
    bars = {ssd.name: BAR_BASE + i * BAR_STRIDE for i, ssd in enumerate(target.ssds)}
    queues = []
    ring = RING_BASE
    for sub in target.subsystems:
        for ns in sub.namespaces:
            ssd = target.ssd(ns.ssd)
            for q in ns.queues:
                if any(p.ssd == ssd.name and p.queue == q for p in queues):
                    continue
                qid = q + 1
                sq_addr = ring
                cq_addr = _align(sq_addr + ssd.queue_entries * 64, RING_ALIGN)
                ring = _align(cq_addr + ssd.queue_entries * 16, RING_ALIGN)
                bar = bars[ssd.name]
                queues.append(QueuePlan(len(queues), sub.name, ssd.name, q, sq_addr, cq_addr,
                                        ssd.queue_entries,
                                        bar + 0x1000 + 2 * qid * stride,
                                        bar + 0x1000 + (2 * qid + 1) * stride, ns.path))
    return Layout(staging, bars, queues, p.msix_addr)


def _driver_error(target, path, call, exc, keys=None):
    """A driver refusal as a TARGET error; ``keys`` maps the driver's argument names (the
    first word of its message) to the TARGET key that gave the value."""
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    words = exc.strerror.split()
    if keys and words and words[0] in keys:
        path = keys[words[0]]
    return target.error(path, f"{call} refused it: {name}: {exc.strerror}")


async def configure_device(dev, target, layout):
    """Configure an opened-or-not :class:`NvmfDevice` for ``target``; returns
    ``{"srqs": {name: Srq}, "ctrls": {(ssd, queue): NvmeCtrl}}``.

    Driver errors become :class:`ReplayInputError` naming the TARGET table that
    asked for the call, with the errno name and the driver's message.
    """
    try:
        await dev.open()
    except NvmfError as exc:
        raise _driver_error(target, (), "open", exc) from None
    srqs, ctrls = {}, {}
    ssd_by_name = {s.name: s for s in target.ssds}
    for sub in target.subsystems:
        attrs = SrqAttrs(ops=sub.ops, max_namespaces=sub.max_namespaces, ioccsz=sub.ioccsz,
                         icdoff=sub.icdoff, max_io_size=sub.max_io_size,
                         queue_depth=sub.queue_depth, staging_addr=layout.staging[sub.name],
                         staging_len=sub.staging_bytes)
        try:
            srqs[sub.name] = await dev.create_srq(attrs)
        except NvmfError as exc:
            keys = {k: sub.path + (k,) for k in ("ops", "max_namespaces", "ioccsz", "icdoff",
                                                 "max_io_size", "queue_depth")}
            keys["staging_len"] = sub.path + ("staging_bytes",)
            if sub.queue_depth_from is not None:
                keys["queue_depth"] = sub.queue_depth_from
            raise _driver_error(target, sub.path, "create_srq", exc, keys) from None
    for plan in layout.queues:
        ssd = ssd_by_name[plan.ssd]
        attrs = NvmeCtrlAttrs(sq_addr=plan.sq_addr, sq_entries=plan.entries,
                              cq_addr=plan.cq_addr, cq_entries=plan.entries,
                              sq_db_addr=plan.sq_db_addr, cq_db_addr=plan.cq_db_addr,
                              cmd_timeout=ssd.cmd_timeout,
                              msix_data=None if ssd.polling else plan.msix_data)
        try:
            ctrl = await dev.create_nvme_ctrl(srqs[plan.subsystem], attrs)
            if ctrl.index != plan.order:
                raise NvmfError(errno.EIO, f"backend queue index {ctrl.index} is not its "
                                           f"creation order {plan.order} (the device was "
                                           f"not fresh)")
            # what the SSD's MSI-X table entry is programmed with (the SSD models take it
            # from the same plan)
            want = (None, None) if ssd.polling else (layout.msix_addr, plan.msix_data)
            if (ctrl.msix_addr, ctrl.msix_data) != want:
                raise NvmfError(errno.EIO, f"create_nvme_ctrl returned MSI-X "
                                           f"{ctrl.msix_addr}/{ctrl.msix_data}, not {want}")
            ctrls[(plan.ssd, plan.queue)] = ctrl
        except NvmfError as exc:
            keys = {"sq_entries": ssd.path + ("queue_entries",),
                    "cq_entries": ssd.path + ("queue_entries",),
                    "cmd_timeout": ssd.path + ("cmd_timeout",)}
            raise _driver_error(target, plan.path + ("queues",),
                                f"create_nvme_ctrl (ssd {plan.ssd!r} queue {plan.queue})",
                                exc, keys) from None
    for sub in target.subsystems:
        for ns in sub.namespaces:
            ssd_ns = ssd_by_name[ns.ssd].namespace(ns.nsid)
            try:
                await dev.map_nvmf_nsid([ctrls[(ns.ssd, q)] for q in ns.queues], ns.fe_nsid,
                                        ssd_ns.lba_data_size, ns.nsid, ssd_ns.nsze,
                                        ops=ns.ops)
            except NvmfError as exc:
                keys = {"fe_nsid": ns.path + ("fe_nsid",), "nvme_nsid": ns.path + ("nsid",),
                        "ops": ns.path + ("ops",),
                        "lba_data_size": ssd_ns.path + ("lba_data_size",),
                        "nsze": ssd_ns.path + ("nsze",)}
                raise _driver_error(target, ns.path, "map_nvmf_nsid", exc, keys) from None
    for qp in target.qps:
        srq = srqs[qp.subsystem] if qp.subsystem is not None else None
        try:
            await dev.qp_set_nvmf(qp.qpn, srq if qp.offload else None, offload=qp.offload,
                                  offload_only=qp.offload_only, sqsize=qp.sqsize,
                                  sqid=qp.sqid)
        except NvmfError as exc:
            keys = {k: qp.path + (k,) for k in ("qpn", "sqsize", "sqid", "offload_only")}
            raise _driver_error(target, qp.path, "qp_set_nvmf", exc, keys) from None
    return {"srqs": srqs, "ctrls": ctrls}


def check_with_driver(target):
    """Run the configuration against the control-plane model: the driver's verdict."""
    layout = plan_layout(target)
    csr = CsrModel(target.params)
    dev = NvmfDevice(ModelRegs(csr), target.params)
    asyncio.run(configure_device(dev, target, layout))
    return layout


# --- backends -----------------------------------------------------------------------------------
