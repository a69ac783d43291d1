"""Build schema-informed EXI grammars (W3C EXI 1.0, section 8.5) from an XSD set.

The result is a plain data model (`SchemaGrammar`) that `emit_c` turns into C tables. Grammars are
built per complex type as a position automaton over the content model: every particle occurrence
is a position, the state reached after a position lists the productions that may follow, in the
order the spec's grammar concatenation produces (loop-backs of the innermost repetition first,
then what follows outward, EE last). Bounded repetitions are unrolled, which is what the spec's
construction yields after normalisation (after maxOccurs copies the element is no longer offered).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xmlschema

XS = "{http://www.w3.org/2001/XMLSchema}"

SCHEMA_ENTRIES = {
    "apphand": "apphand/V2G_CI_AppProtocol.xsd",
    "din": "din/V2G_CI_MsgDef.xsd",
    "iso2": "iso2/V2G_CI_MsgDef.xsd",
}


FOREIGN_NS = {"http://www.w3.org/2001/XMLSchema", "http://www.w3.org/XML/1998/namespace"}


def split_qname(qname: str) -> tuple[str, str]:
    if qname.startswith("{"):
        ns, local = qname[1:].split("}", 1)
        return local, ns
    return qname, ""


def qname_key(qname: str) -> tuple[str, str]:
    return split_qname(qname)


# ---------------------------------------------------------------- datatypes


@dataclass(frozen=True)
class Dtype:
    kind: str  # STRING HEX BASE64 BOOL INT UINT NBIT ENUM
    nbits: int = 0
    min: int = 0
    max: int = 0
    enum: tuple[str, ...] = ()
    max_len: int = 0


INT_BOUNDS = {
    "byte": (-128, 127),
    "unsignedByte": (0, 255),
    "short": (-32768, 32767),
    "unsignedShort": (0, 65535),
    "int": (-(2**31), 2**31 - 1),
    "unsignedInt": (0, 2**32 - 1),
    "long": (-(2**63), 2**63 - 1),
    "unsignedLong": (0, 2**64 - 1),
    "nonNegativeInteger": (0, None),
    "positiveInteger": (1, None),
    "nonPositiveInteger": (None, 0),
    "negativeInteger": (None, -1),
    "integer": (None, None),
}
STRINGISH = {
    "string", "normalizedString", "token", "anyURI", "ID", "IDREF", "NCName", "Name",
    "language", "NMTOKEN", "QName",
}


def _builtin_chain(t: Any) -> list[str]:
    """Local names of the built-in types t derives from, nearest first."""
    names = []
    cur = t
    while cur is not None:
        if getattr(cur, "is_builtin", lambda: False)() or (
            cur.name and cur.name.startswith(XS)
        ):
            names.append(split_qname(cur.name)[0])
        cur = getattr(cur, "base_type", None)
    return names


def _facet_int(t: Any, attr: str) -> int | None:
    """The tightest min/max facet along the restriction chain (xmlschema resolves it)."""
    v = getattr(t, attr, None)
    return None if v is None else int(v)


def _max_len(t: Any) -> int:
    cur = t
    while cur is not None and not (cur.name or "").startswith(XS):
        facets = getattr(cur, "facets", {}) or {}
        for key in (XS + "maxLength", XS + "length"):
            if key in facets and facets[key] is not None:
                return int(facets[key].value)
        cur = getattr(cur, "base_type", None)
    return 0


def make_dtype(t: Any) -> Dtype:
    if t.is_list() or t.is_union():
        raise NotImplementedError(f"list or union type {t!r} in {t.parent!r}")
    enum = getattr(t, "enumeration", None)
    chain = _builtin_chain(t)
    if enum:
        # EXI enumerations: n-bit index in schema order (not for boolean/float types)
        values = tuple(str(v) for v in enum)
        return Dtype("ENUM", nbits=_bits_for(len(values)), min=0, max=len(values) - 1, enum=values)
    for name in chain:
        if name == "boolean":
            return Dtype("BOOL", nbits=1, min=0, max=1)
        if name == "hexBinary":
            return Dtype("HEX", max_len=_max_len(t))
        if name == "base64Binary":
            return Dtype("BASE64", max_len=_max_len(t))
        if name in INT_BOUNDS:
            lo, hi = INT_BOUNDS[name]
            fmin = _facet_int(t, "min_value")
            fmax = _facet_int(t, "max_value")
            if fmin is not None:
                lo = fmin if lo is None else max(lo, fmin)
            if fmax is not None:
                hi = fmax if hi is None else min(hi, fmax)
            if lo is not None and hi is not None and hi - lo + 1 <= 4096:
                return Dtype("NBIT", nbits=_bits_for(hi - lo + 1), min=lo, max=hi)
            if lo is not None and lo >= 0:
                return Dtype("UINT", min=lo, max=hi if hi is not None else 2**64 - 1)
            return Dtype("INT", min=lo if lo is not None else -(2**63),
                         max=hi if hi is not None else 2**63 - 1)
        if name in STRINGISH:
            return Dtype("STRING", max_len=_max_len(t))
    raise NotImplementedError(f"unsupported simple type {t.name} ({chain})")


def _bits_for(n: int) -> int:
    """Bits to encode n distinct values (ceil(log2(n)), 0 for n <= 1)."""
    return max(0, (n - 1).bit_length())


# ---------------------------------------------------------------- content model

@dataclass(eq=False)
class Node:
    kind: str  # "seq", "choice", "star", "pos"
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None
    # positions only
    terminals: list[tuple[str, str, Any]] = field(default_factory=list)  # (kind, qname, payload)
    array: bool = False
    index: int = -1


@dataclass
class Prod:
    kind: str  # SE AT CH EE SE_ANY CH_ANY
    qname: str = ""
    payload: Any = None  # element decl (SE), simple type (AT/CH)
    next_state: int = -1
    array: bool = False


@dataclass
class TypeGrammar:
    key: str
    simple: bool
    states: list[list[Prod]]
    label: str


class Builder:
    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.grammars: dict[str, TypeGrammar] = {}
        self.order: list[str] = []
        self.pending: list[tuple[str, Any]] = []
        self._anon = 0

    # substitution groups, transitive, sorted by qname as EXI requires
    def members(self, elem: Any) -> list[Any]:
        out: dict[str, Any] = {}
        stack = [elem]
        while stack:
            e = stack.pop()
            if e.name in out:
                continue
            out[e.name] = e
            stack.extend(self.schema.maps.substitution_groups.get(e.name, []))
        res = list(out.values())
        res.sort(key=lambda e: qname_key(e.name))
        return res

    def type_key(self, t: Any) -> str:
        if t.name:
            return t.name
        if not hasattr(t, "_ccsbus_key"):
            self._anon += 1
            t._ccsbus_key = f"#anon{self._anon}"
        return str(t._ccsbus_key)

    def grammar_for(self, elem: Any) -> str:
        t = elem.type
        key = self.type_key(t)
        if key not in self.grammars and key not in dict(self.pending):
            self.pending.append((key, t))
        return key

    def build_all(self, roots: list[Any]) -> None:
        for e in roots:
            self.grammar_for(e)
        while self.pending:
            key, t = self.pending.pop(0)
            if key in self.grammars:
                continue
            self.grammars[key] = self.build_type(key, t)
            self.order.append(key)

    # -- particle tree
    def particle(self, p: Any, mult: int) -> Node | None:
        lo = p.min_occurs
        hi = p.max_occurs  # None = unbounded
        eff = mult * (hi if hi is not None else 2)
        if isinstance(p, xmlschema.validators.XsdElement):
            base = p.ref if getattr(p, "ref", None) is not None else p
            terms = [("SE", m.name, m) for m in self.members(base)]
            for _, _, m in terms:
                self.grammar_for(m)

            def term() -> Node:
                return Node("pos", terminals=list(terms), array=eff > 1)
        elif isinstance(p, xmlschema.validators.XsdAnyElement):
            def term() -> Node:
                return Node("pos", terminals=[("SE_ANY", "*", None)], array=eff > 1)
        else:
            model = p.model
            inner_mult = eff

            def term() -> Node:
                kids = [self.particle(c, inner_mult) for c in p]
                kids2 = [k for k in kids if k is not None]
                if model == "choice":
                    return Node("choice", kids2)
                if model == "sequence":
                    return Node("seq", kids2)
                raise NotImplementedError(f"xs:{model}")
            if model == "sequence" and len(p) == 0:
                return None
        return repeat(term, lo, hi)

    def build_type(self, key: str, t: Any) -> TypeGrammar:
        label = split_qname(key)[0]
        seq: list[Node] = []
        if t.is_simple():
            p = Node("pos", terminals=[("CH", "", t)])
            states = automaton(Node("seq", [p]), mixed=False)
            return TypeGrammar(key, True, states, label)
        attrs = [a for k, a in t.attributes.items() if k is not None]
        attrs.sort(key=lambda a: qname_key(a.name))
        for a in attrs:
            pos = Node("pos", terminals=[("AT", a.name, a.type)])
            seq.append(pos if a.use == "required" else Node("choice", [pos, Node("seq", [])]))
        if t.has_simple_content():
            seq.append(Node("pos", terminals=[("CH", "", t.content)]))
        elif t.content is not None and not t.is_empty():
            n = self.particle(t.content, 1)
            if n is not None:
                seq.append(n)
        mixed = bool(getattr(t, "mixed", False))
        states = automaton(Node("seq", seq), mixed=mixed)
        return TypeGrammar(key, False, states, label)


def repeat(term: Any, lo: int, hi: int | None) -> Node:
    parts: list[Node] = [term() for _ in range(lo)]
    if hi is None:
        parts.append(Node("star", [term()]))
    else:
        # nested optionals: (t (t (t)?)?)? for the copies beyond minOccurs
        tail: Node | None = None
        for _ in range(hi - lo):
            inner = [term()] + ([tail] if tail is not None else [])
            tail = Node("choice", [Node("seq", inner), Node("seq", [])])
        if tail is not None:
            parts.append(tail)
    if len(parts) == 1:
        return parts[0]
    return Node("seq", parts)


def _link(n: Node, positions: list[Node]) -> None:
    stack = [n]
    while stack:
        cur = stack.pop()
        if cur.kind == "pos":
            cur.index = len(positions)
            positions.append(cur)
        for c in reversed(cur.children):
            c.parent = cur
            stack.append(c)


def _nullable(n: Node, memo: dict[int, bool]) -> bool:
    k = id(n)
    if k in memo:
        return memo[k]
    if n.kind == "pos":
        r = False
    elif n.kind == "star":
        r = True
    elif n.kind == "seq":
        r = all(_nullable(c, memo) for c in n.children)
    else:
        r = any(_nullable(c, memo) for c in n.children)
    memo[k] = r
    return r


def _first(n: Node, memo: dict[int, bool]) -> list[Node]:
    if n.kind == "pos":
        return [n]
    if n.kind == "star":
        return _first(n.children[0], memo)
    out: list[Node] = []
    if n.kind == "seq":
        for c in n.children:
            out += _first(c, memo)
            if not _nullable(c, memo):
                break
        return out
    for c in n.children:
        out += _first(c, memo)
    return out


def _follow(p: Node, memo: dict[int, bool]) -> tuple[list[Node], bool]:
    """Positions that may follow p in grammar order, and whether EE may follow."""
    out: list[Node] = []
    node = p
    while node.parent is not None:
        parent = node.parent
        if parent.kind == "seq":
            idx = next(i for i, c in enumerate(parent.children) if c is node)
            for sib in parent.children[idx + 1:]:
                out += _first(sib, memo)
                if not _nullable(sib, memo):
                    return out, False
        elif parent.kind == "star":
            out += _first(parent.children[0], memo)
        node = parent
    return out, True


CATEGORY = {"AT": 0, "SE": 2, "SE_ANY": 4, "EE": 5, "CH": 6, "CH_ANY": 7}


def automaton(root: Node, mixed: bool) -> list[list[Prod]]:
    sys.setrecursionlimit(100000)
    positions: list[Node] = []
    _link(root, positions)
    memo: dict[int, bool] = {}
    # state 0 = start, state i+1 = after position i
    lists: list[tuple[list[Node], bool]] = [(_first(root, memo), _nullable(root, memo))]
    lists += [_follow(p, memo) for p in positions]
    states: list[list[Prod]] = []
    for follow, can_end in lists:
        prods: list[Prod] = []
        seen: dict[tuple[str, str], int] = {}
        for pos in follow:
            for kind, qname, payload in pos.terminals:
                k = (kind, qname)
                if k in seen:
                    if seen[k] != pos.index:
                        raise ValueError(f"non-deterministic content model at {qname}")
                    continue
                seen[k] = pos.index
                prods.append(Prod(kind, qname, payload, pos.index + 1, pos.array))
        if can_end:
            prods.append(Prod("EE"))
        has_content = any(p.kind != "AT" for p in prods)
        if mixed and has_content:
            prods.append(Prod("CH_ANY"))
        # EXI event-code order: AT sorted by qname, then SE in grammar order, EE, CH
        prods.sort(key=lambda p: (CATEGORY[p.kind],
                                  qname_key(p.qname) if p.kind == "AT" else ("", "")))
        states.append(prods)
    return _prune(states)


def _prune(states: list[list[Prod]]) -> list[list[Prod]]:
    """Drop unreachable states and renumber; state 0 stays the start."""
    reach = [False] * len(states)
    reach[0] = True
    stack = [0]
    while stack:
        s = stack.pop()
        for p in states[s]:
            if p.next_state >= 0 and not reach[p.next_state]:
                reach[p.next_state] = True
                stack.append(p.next_state)
    newidx: dict[int, int] = {}
    for i, r in enumerate(reach):
        if r:
            newidx[i] = len(newidx)
    out: list[list[Prod]] = []
    for i, prods in enumerate(states):
        if reach[i]:
            for p in prods:
                if p.next_state >= 0:
                    p.next_state = newidx[p.next_state]
            out.append(prods)
    return out


@dataclass
class SchemaGrammar:
    id: str
    globals: list[Any]
    builder: Builder


def load(schema_id: str, schemas_dir: Path) -> SchemaGrammar:
    path = schemas_dir / SCHEMA_ENTRIES[schema_id]
    schema = xmlschema.XMLSchema10(str(path))
    globs = [e for e in schema.maps.elements.values()
             if split_qname(e.name)[1] not in FOREIGN_NS]
    globs.sort(key=lambda e: qname_key(e.name))
    b = Builder(schema)
    b.build_all(globs)
    return SchemaGrammar(schema_id, globs, b)
