"""The back end's fence unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Signal

from .common import (
    _Kind,
)


def build(m, top, u):
    """The command fence: outcomes of served commands, per epoch

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    # a release is in RESPOND or FREE: the command is retirement's kept copy
    job, rcmd, release_now = u.take("job rkept release_now")
    # the command fence: outcomes of served commands, per epoch
    outcome = release_now & (job.kind != _Kind.ZOMBIE)
    for e in range(2):
        done = Signal(16, name=f"fence_out{e}")
        with m.If(outcome & (rcmd.epoch == e)):
            m.d.sync += done.eq(done + 1)
        m.d.comb += top.fence_out[16 * e:16 * (e + 1)].eq(done)
