"""Control lines of a TRACE (``unmap``, ``map``, ``qp_set``, ``destroy_ctrl``): the driver
call each makes, on any backend's :class:`sim.driver.NvmfDevice`.

:func:`apply_control` resolves the TARGET names of a checked control line
(:mod:`sim.replay.trace`) to the driver's objects that :func:`sim.replay.layout.
configure_device` returned, and makes the call. A refusal is the driver's
:class:`~sim.driver.NvmfError` (errno and message), which the results writer turns
into a ``control_error`` line; a queue with no backend queue behind it (never
created, or destroyed) is ENOENT, one of another subsystem EINVAL.
"""

import errno

from sim.driver import NvmfError

__all__ = ["apply_control", "control_error"]


def _ctrl(handles, ssd, queue):
    ctrl = handles["ctrls"].get((ssd, queue))
    if ctrl is None:
        raise NvmfError(errno.ENOENT, f"queue {queue} of ssd {ssd!r} has no backend queue "
                                      f"(the TARGET gave it to no subsystem, or destroy_ctrl "
                                      f"removed it)")
    return ctrl


async def apply_control(dev, handles, target, kind, args):
    """Make the driver call of control line ``kind``; raises :class:`NvmfError`."""
    srqs = handles["srqs"]
    if kind == "unmap":
        await dev.unmap_nvmf_nsid(srqs[args["subsystem"]], args["fe_nsid"])
    elif kind == "map":
        srq = srqs[args["subsystem"]]
        ctrls = []
        for q in args["queues"]:
            ctrl = _ctrl(handles, args["ssd"], q)
            if ctrl.srq is not srq:
                owner = next(name for name, s in srqs.items() if s is ctrl.srq)
                raise NvmfError(errno.EINVAL, f"queue {q} of ssd {args['ssd']!r} serves "
                                              f"subsystem {owner!r}, not {args['subsystem']!r}")
            ctrls.append(ctrl)
        ns = target.ssd(args["ssd"]).namespace(args["nsid"])
        await dev.map_nvmf_nsid(ctrls, args["fe_nsid"], ns.lba_data_size, ns.nsid, ns.nsze)
    elif kind == "qp_set":
        qp = next(q for q in target.qps if q.qpn == args["qpn"])
        srq = srqs[qp.subsystem] if qp.subsystem is not None else None
        if args["offload"] and srq is None:
            raise NvmfError(errno.EINVAL, f"offload true on qpn {qp.qpn}, whose [[qp]] names no "
                                          f"subsystem")
        await dev.qp_set_nvmf(qp.qpn, srq if args["offload"] else None,
                              offload=args["offload"], offload_only=args["offload_only"],
                              sqsize=qp.sqsize, sqid=qp.sqid)
    elif kind == "destroy_ctrl":
        ctrl = _ctrl(handles, args["ssd"], args["queue"])
        await dev.destroy_nvme_ctrl(ctrl)
        del handles["ctrls"][(args["ssd"], args["queue"])]
    else:
        raise ValueError(f"unknown control line {kind!r}")


def control_error(line, exc):
    """The ``control_error`` result record of a refused control line."""
    return {"line": line, "errno": errno.errorcode.get(exc.errno, str(exc.errno)),
            "message": exc.strerror}
