"""Fast encoding and decoding of the formats of :mod:`rtl.formats` for the models.

:class:`Codec` reads a layout's field offsets and widths once; encoding and decoding
are then plain shifts and masks. ``SQE``, ``CQE`` and ``DSM_RANGE`` are the codecs the
models use per command.
"""

import enum

from amaranth.lib import data

from rtl.formats import Cqe, DsmRange, Sqe

__all__ = ["Codec", "SQE", "CQE", "DSM_RANGE"]


class Codec:
    """Fast :func:`rtl.formats.encode` / :func:`rtl.formats.decode` for one layout.

    The field offsets and widths are read once from the ``amaranth.lib.data``
    layout of :mod:`rtl.formats` (the single source); encoding and decoding are
    then plain shifts and masks, with the same results as the generic functions
    (nested dicts, lists for arrays, enum members for enum fields; unnamed fields
    encode as zero). The models encode and decode an SQE or a CQE per command,
    where the generic functions would dominate the run time.
    """

    def __init__(self, layout):
        self.layout = data.Layout.cast(layout)
        self.nbytes = (self.layout.size + 7) // 8
        self._tree = self._build(self.layout)

    @classmethod
    def _build(cls, layout, base=0):
        if isinstance(layout, data.ArrayLayout):
            shape = layout.elem_shape
            width = data.Layout.cast(shape).size if cls._is_layout(shape) else \
                data.Layout.cast(data.StructLayout({"x": shape})).size
            return ("array", [cls._node(shape, base + i * width, width)
                              for i in range(layout.length)])
        return ("struct", {name: cls._node(f.shape, base + f.offset, f.width)
                           for name, f in layout})

    @classmethod
    def _node(cls, shape, offset, width):
        if cls._is_layout(shape):
            return cls._build(data.Layout.cast(shape), offset)
        if isinstance(shape, type) and issubclass(shape, enum.Enum):
            return ("enum", offset, (1 << width) - 1, shape)
        return ("int", offset, (1 << width) - 1, None)

    @staticmethod
    def _is_layout(shape):
        return isinstance(shape, data.Layout) or (
            isinstance(shape, type) and issubclass(shape, (data.Struct, data.Union)))

    def decode(self, raw):
        """Bytes (exactly the layout's size) or an int -> nested dict."""
        if isinstance(raw, (bytes, bytearray)):
            if len(raw) != self.nbytes:
                raise ValueError(f"{len(raw)} bytes given to decode a {self.nbytes}-byte "
                                 f"layout")
            raw = int.from_bytes(raw, "little")
        return self._decode(self._tree, raw)

    def _decode(self, node, raw):
        kind = node[0]
        if kind == "struct":
            return {name: self._decode(sub, raw) for name, sub in node[1].items()}
        if kind == "array":
            return [self._decode(sub, raw) for sub in node[1]]
        _, offset, mask, enum_type = node
        value = raw >> offset & mask
        return enum_type(value) if enum_type is not None else value

    def encode(self, fields):
        """Nested dict (missing fields zero; one view of a union) -> bytes."""
        return self._encode(self._tree, fields, "").to_bytes(self.nbytes, "little")

    def _encode(self, node, value, path):
        kind = node[0]
        if kind == "struct":
            if not isinstance(value, dict):
                raise ValueError(f"{path}: expected a dict of fields, got {value!r}")
            out = 0
            for name, sub in value.items():
                if name not in node[1]:
                    raise ValueError(f"{path}: unknown field {name}")
                out |= self._encode(node[1][name], sub, f"{path}.{name}" if path else name)
            return out
        if kind == "array":
            if not isinstance(value, (list, tuple)) or len(value) != len(node[1]):
                raise ValueError(f"{path}: expected {len(node[1])} elements, got {value!r}")
            out = 0
            for i, (sub, element) in enumerate(zip(node[1], value, strict=True)):
                out |= self._encode(sub, element, f"{path}[{i}]")
            return out
        _, offset, mask, _ = node
        value = int(getattr(value, "value", value))
        if not 0 <= value <= mask:
            raise ValueError(f"{path}: {value!r} does not fit in {mask.bit_length()} bits")
        return value << offset


SQE = Codec(Sqe)
CQE = Codec(Cqe)
DSM_RANGE = Codec(DsmRange)
