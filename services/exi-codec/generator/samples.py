"""Sample message trees for every message of a schema, made by walking the grammars.

Two trees per message: "full" (every optional element and attribute, two items where an element
repeats, extreme values) and "minimal" (required content only). The codec tests encode them,
decode the result and compare, so every message type is exercised in both directions.
"""

from __future__ import annotations

from typing import Any

from .grammar import Dtype, Prod, SchemaGrammar, make_dtype, split_qname

UNICODE_SAMPLE = "Zäh€𝄞abcdefghijklmnopqrstuvwxyz0123456789"


def sample_value(d: Dtype, full: bool) -> Any:
    if d.kind == "BOOL":
        return full
    if d.kind == "NBIT":
        return d.max if full else d.min
    if d.kind == "UINT":
        return d.max if full else min(d.max, 42)
    if d.kind == "INT":
        return d.min if full else 42
    if d.kind == "ENUM":
        return d.enum[-1] if full else d.enum[0]
    if d.kind == "STRING":
        n = d.max_len or 20
        text = (UNICODE_SAMPLE * (1 + n // len(UNICODE_SAMPLE)))[: min(n, 60)]
        return text if full else text[: min(n, 3)]
    if d.kind in ("HEX", "BASE64"):
        n = d.max_len or 16
        n = min(n, 300) if full else min(n, 2)
        return bytes((i * 37 + 5) & 0xFF for i in range(n)).hex().upper()
    raise ValueError(d.kind)


class Walker:
    def __init__(self, sg: SchemaGrammar, full: bool) -> None:
        self.b = sg.builder
        self.full = full

    def element(self, decl: Any, depth: int = 0) -> Any:
        g = self.b.grammars[self.b.type_key(decl.type)]
        if g.simple:
            return sample_value(make_dtype(g.states[0][0].payload), self.full)
        return self.content(g.states, depth)

    def content(self, states: list[list[Prod]], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        counts: dict[str, int] = {}
        last = ""
        state = 0
        while True:
            prods = [p for p in states[state] if p.kind not in ("SE_ANY", "CH_ANY")]
            chosen = self._choose(prods, counts, last, depth)
            if chosen is None or chosen.kind == "EE":
                return out
            key = "value" if chosen.kind == "CH" else split_qname(chosen.qname)[0]
            if chosen.kind == "SE":
                v = self.element(chosen.payload, depth + 1)
            else:
                v = sample_value(make_dtype(chosen.payload), self.full)
            if chosen.array:
                out.setdefault(key, []).append(v)
            else:
                out[key] = v
            counts[key] = counts.get(key, 0) + 1
            last = key
            state = chosen.next_state

    def _choose(self, prods: list[Prod], counts: dict[str, int], last: str,
                depth: int) -> Prod | None:
        def key(p: Prod) -> str:
            return "value" if p.kind == "CH" else split_qname(p.qname)[0]

        ee = next((p for p in prods if p.kind == "EE"), None)
        named = [p for p in prods if p.kind != "EE"]
        if self.full and depth < 12:
            for p in named:  # a second item right after the first, never interleaved
                if p.array and key(p) == last and counts.get(last, 0) < 2:
                    return p
            for p in named:
                if key(p) not in counts:
                    return p
        if ee is not None:
            return ee
        for p in named:
            if key(p) not in counts or (p.array and key(p) == last):
                return p
        return named[0] if named else None


def message_samples(sg: SchemaGrammar) -> dict[str, dict[str, Any]]:
    """name -> {"full": tree, "minimal": tree} for every message of the schema."""
    out: dict[str, dict[str, Any]] = {}
    globs = {split_qname(e.name)[0]: e for e in sg.globals}
    if sg.id == "apphand":
        for name in ("supportedAppProtocolReq", "supportedAppProtocolRes"):
            out[name] = {v: {name: Walker(sg, v == "full").element(globs[name])}
                         for v in ("full", "minimal")}
        return out
    root = globs["V2G_Message"]
    head = next(e for e in sg.globals if split_qname(e.name)[0] == "BodyElement")
    for member in sg.builder.members(head):
        name = split_qname(member.name)[0]
        if member.abstract or name == "BodyElement":
            continue
        out[name] = {}
        for variant in ("full", "minimal"):
            w = Walker(sg, variant == "full")
            header_type = root.type.content[0]
            header = w.element(header_type)
            out[name][variant] = {"V2G_Message": {"Header": header,
                                                  "Body": {name: w.element(member)}}}
    return out
