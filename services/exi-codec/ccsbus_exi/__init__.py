"""Schema-informed EXI codec for ISO 15118 / DIN 70121 (AppProtocol, DIN 70121, ISO 15118-2).

decode(schema, data) -> dict and encode(schema, tree) -> bytes, with schema one of
"apphand", "din", "iso2". Errors raise ExiError with .code, .offset (bit offset) and .message.
The JSON mapping is described in services/exi-codec/README.md.
"""

from __future__ import annotations

from typing import Any

from . import _exi

SCHEMAS = ("apphand", "din", "iso2")

# code -> name, as the C core names them (0 ok, 1 truncated, ... 11 schema)
ERROR_NAMES: dict[int, str] = dict(enumerate(_exi.STATUS_NAMES))


class ExiError(Exception):
    """An EXI stream or a tree that the codec cannot handle."""

    def __init__(self, code: int, offset: int, message: str) -> None:
        super().__init__(f"{ERROR_NAMES.get(code, code)} at bit {offset}: {message}")
        self.code = code
        self.offset = offset
        self.message = message

    @property
    def name(self) -> str:
        return ERROR_NAMES.get(self.code, str(self.code))


def _schema(schema: str) -> str:
    if schema not in SCHEMAS:
        raise ExiError(11, 0, f"unknown schema {schema!r}; expected one of {', '.join(SCHEMAS)}")
    return schema


def decode(schema: str, data: bytes) -> dict[str, Any]:
    """Decode one EXI message into its tree."""
    try:
        result: dict[str, Any] = _exi.decode(_schema(schema), data)
    except _exi.Error as e:
        raise ExiError(*e.args) from None
    return result


def encode(schema: str, tree: dict[str, Any]) -> bytes:
    """Encode a tree (as decode returns it) into an EXI message."""
    try:
        result: bytes = _exi.encode(_schema(schema), tree)
    except _exi.Error as e:
        raise ExiError(*e.args) from None
    return result


def decode_json(schema: str, data: bytes) -> str:
    """Decode into JSON text rendered by the C core."""
    try:
        result: str = _exi.decode_json(_schema(schema), data)
    except _exi.Error as e:
        raise ExiError(*e.args) from None
    return result


def encode_json(schema: str, text: str) -> bytes:
    """Encode JSON text parsed by the C core."""
    try:
        result: bytes = _exi.encode_json(_schema(schema), text)
    except _exi.Error as e:
        raise ExiError(*e.args) from None
    return result


__all__ = ["SCHEMAS", "ExiError", "decode", "decode_json", "encode", "encode_json"]
