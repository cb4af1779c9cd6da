"""The driver's leak check (``NvmfDevice.leaks``) over the USE_* registers."""

import asyncio

import pytest

from rtl.params import EngineParams
from sim.driver import NvmfDevice
from sim.model.csr import CsrModel, ModelRegs

P = EngineParams()


class _UseRegs(ModelRegs):
    """The control-plane model, with USE_* registers reading chosen fields."""

    def __init__(self, device_regmap, **use):
        super().__init__(CsrModel(P))
        self.words = {}
        for name in ("USE_CONTEXTS", "USE_STAGING", "USE_BUSY"):
            reg = device_regmap[name]
            word = 0
            for f in reg.fields:
                word |= use.get(f.name, 0) << f.lsb
            self.words[reg.offset] = word

    async def read(self, offset):
        if offset in self.words:
            return self.words[offset]
        return await super().read(offset)


def _leaks(**use):
    async def run():
        probe = NvmfDevice(ModelRegs(CsrModel(P)), P)
        device = NvmfDevice(_UseRegs(probe.regmap, **use), P)
        await device.open()
        return await device.resource_use(), await device.leaks()
    return asyncio.run(run())


def test_an_idle_engine_has_no_leak():
    use, leaks = _leaks()
    assert use == {"live": 0, "zombies": 0, "pages": 0, "zombie_pages": 0, "backend_queues": 0,
                   "sq_writer": 0, "cq_handler": 0}
    assert leaks == []


@pytest.mark.parametrize("use, words", [
    ({"live": 3, "pages": 3}, ["3 context(s) still hold a command", "3 staging page(s)"]),
    ({"pages": 2}, ["2 staging page(s) in use, 0 of them kept by zombie"]),
    ({"backend_queues": 1}, ["backend queue still owes"]),
    ({"sq_writer": 1}, ["sq writer is still busy"]),
    ({"cq_handler": 1}, ["cq handler is still busy"]),
])
def test_each_kind_of_leak_is_named(use, words):
    _, leaks = _leaks(**use)
    text = "; ".join(leaks)
    for word in words:
        assert word in text, text


def test_zombies_keep_their_pages_and_credit_without_a_leak():
    _, leaks = _leaks(zombies=2, pages=33, zombie_pages=33, backend_queues=1, cq_handler=1)
    assert leaks == []
    _, leaks = _leaks(zombies=2, pages=34, zombie_pages=33, backend_queues=1)
    assert leaks == ["34 staging page(s) in use, 33 of them kept by zombie context(s)"]


def test_the_model_control_plane_reads_zero_use():
    async def run():
        device = NvmfDevice(ModelRegs(CsrModel(P)), P)
        await device.open()
        return await device.resource_use()
    assert set(asyncio.run(run()).values()) == {0}
