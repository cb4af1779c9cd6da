"""The console scripts of the pinned Python packages (YoWASP's tools, fusesoc)."""

import shutil
import sys
from pathlib import Path

__all__ = ["console_script"]


def console_script(name):
    """The path of console script ``name``: next to this Python (the virtual environment's
    ``bin``) or on PATH. FileNotFoundError names what to install."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the pinned dependencies of "
                                f"pyproject.toml (./bootstrap.sh setup)")
    return found
