"""Payload shapes: the small part of JSON Schema the topic contract uses, compiled to plain checks.

Every internal message is checked against its shape on publish and on receipt, so the check sits on the
latency path of every V2G exchange and in the memory of every service. A general JSON Schema library
costs tens of microseconds per message and megabytes per process; these compiled checks cost about a
microsecond. A keyword outside the subset is refused when the contract loads, never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any, str], str | None]  # (value, where) -> error message or None

KEYWORDS = frozenset({
    "type", "enum", "required", "properties", "additionalProperties", "items",
    "pattern", "minimum", "maximum", "minLength", "maxLength", "maxItems", "description",
})

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class ShapeError(ValueError):
    """The shape itself uses something this checker does not know."""


def compile_shape(schema: dict[str, Any], where: str = "") -> Check:
    """Turn a schema of the supported subset into one function; ShapeError on anything else."""
    if not isinstance(schema, dict):
        raise ShapeError(f"{where or 'schema'}: a shape must be a mapping")
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ShapeError(f"{where or 'schema'}: unsupported keywords {sorted(unknown)}")
    checks: list[Check] = []

    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for name in names:
            if name not in _TYPES:
                raise ShapeError(f"{where or 'schema'}: unknown type {name!r}")
        tests = [_TYPES[n] for n in names]
        wanted = " or ".join(names)

        def check_type(v: Any, at: str) -> str | None:
            return None if any(t(v) for t in tests) else f"{at}: {_short(v)} is not of type {wanted}"

        checks.append(check_type)

    if "enum" in schema:
        options = list(schema["enum"])

        def check_enum(v: Any, at: str) -> str | None:
            ok = any(v == o and type(v) is type(o) for o in options)
            return None if ok else f"{at}: {_short(v)} is not one of {options}"

        checks.append(check_enum)

    if "required" in schema or "properties" in schema or "additionalProperties" in schema:
        required = list(schema.get("required", ()))
        props = {k: compile_shape(v, f"{where}/{k}") for k, v in (schema.get("properties") or {}).items()}
        extra = schema.get("additionalProperties", True)
        if not isinstance(extra, bool):
            raise ShapeError(f"{where or 'schema'}: additionalProperties must be true or false")

        def check_object(v: Any, at: str) -> str | None:
            if not isinstance(v, dict):
                return None  # the type check says what is wrong
            for key in required:
                if key not in v:
                    return f"{at}: {key!r} is a required property"
            for key, item in v.items():
                sub = props.get(key)
                if sub is not None:
                    error = sub(item, f"{at}/{key}")
                    if error:
                        return error
                elif not extra:
                    return f"{at}: unexpected property {key!r}"
            return None

        checks.append(check_object)

    if "items" in schema or "maxItems" in schema:
        item_check = compile_shape(schema["items"], f"{where}[]") if "items" in schema else None
        max_items = schema.get("maxItems")

        def check_array(v: Any, at: str) -> str | None:
            if not isinstance(v, list):
                return None
            if max_items is not None and len(v) > max_items:
                return f"{at}: more than {max_items} items"
            if item_check is not None:
                for i, item in enumerate(v):
                    error = item_check(item, f"{at}[{i}]")
                    if error:
                        return error
            return None

        checks.append(check_array)

    if "pattern" in schema or "minLength" in schema or "maxLength" in schema:
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
        lo, hi = schema.get("minLength"), schema.get("maxLength")

        def check_string(v: Any, at: str) -> str | None:
            if not isinstance(v, str):
                return None
            if lo is not None and len(v) < lo:
                return f"{at}: shorter than {lo} characters"
            if hi is not None and len(v) > hi:
                return f"{at}: longer than {hi} characters"
            if pattern is not None and not pattern.search(v):
                return f"{at}: {_short(v)} does not match {pattern.pattern!r}"
            return None

        checks.append(check_string)

    if "minimum" in schema or "maximum" in schema:
        low, high = schema.get("minimum"), schema.get("maximum")

        def check_range(v: Any, at: str) -> str | None:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return None
            if low is not None and v < low:
                return f"{at}: {v} is less than the minimum of {low}"
            if high is not None and v > high:
                return f"{at}: {v} is greater than the maximum of {high}"
            return None

        checks.append(check_range)

    if len(checks) == 1:
        return checks[0]

    def check_all(v: Any, at: str) -> str | None:
        for check in checks:
            error = check(v, at)
            if error:
                return error
        return None

    return check_all


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
