"""The back end's context fields keep one writer each (docs/backend.md, "Context state")."""

import pytest
from amaranth.hdl import Module

from rtl.backend.context_store import _CtxField


def test_a_second_writer_of_a_context_field_is_refused_by_name():
    m = Module()
    field = _CtxField(m, "ctx_queue", 8, 32)
    field.write(0, 1)
    with pytest.raises(ValueError, match="ctx_queue already has its one writer"):
        field.write(1, 2)
