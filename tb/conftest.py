"""pytest configuration shared by every testbench launcher.

Simulator builds are shared by the xdist workers (``sim/cosim/harness.py``: one
builds a top while the others wait on its lock). Grouping the tests of one
launcher module and one simulator onto the same worker (``--dist loadgroup``, in
``pyproject.toml``'s ``addopts``) keeps the other worker from waiting on that build. A
test with a ``config`` parameter other than ``default`` builds its own top, so its
group also names the configuration: the long replay module then spreads over both
workers.

The hook runs first (``tryfirst``): xdist's own hook turns each ``xdist_group``
marker into the ``@group`` suffix of the test's node id, which is what
``loadgroup`` schedules by, so a marker added after it would be ignored. (So under
``-n`` these tests' ids end in ``@<group>``, in the JUnit report too; with the pinned
pytest 9.0 and pytest-xdist 3.8.)
"""

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        sim = callspec.params.get("sim") if callspec else None
        if sim is not None:
            config = callspec.params.get("config")
            own = config not in (None, "default")
            group = f"{item.module.__name__}-{sim}" + (f"-{config}" if own else "")
            item.add_marker(pytest.mark.xdist_group(group))
