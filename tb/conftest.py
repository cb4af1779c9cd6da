"""pytest configuration shared by every testbench launcher.

Simulator builds are per xdist worker; grouping the tests of one launcher
module and one simulator onto the same worker (``--dist loadgroup``, set by
``bootstrap.sh test``) builds each top once instead of once per worker.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        sim = callspec.params.get("sim") if callspec else None
        if sim is not None:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}-{sim}"))
