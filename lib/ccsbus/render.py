"""The contract printed for people and programs: a Markdown table, a mosquitto ACL, JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .contract import EXTERNAL, ROLES, Contract, Payload, PayloadType, Topic, load_contract


def payload_text(payload: Payload) -> str:
    match payload.type:
        case PayloadType.NUMBER:
            lo = "" if payload.minimum is None else f"{payload.minimum:g}"
            hi = "" if payload.maximum is None else f"{payload.maximum:g}"
            return f"number {lo}..{hi}"
        case PayloadType.WORD:
            return "word: " + " / ".join(payload.enum)
        case PayloadType.TEXT:
            return "text" + (f" ≤{payload.max_length}" if payload.max_length else "")
        case PayloadType.JSON:
            return "JSON"
    raise AssertionError(payload.type)  # pragma: no cover


def _roles_text(topic: Topic) -> str:
    if topic.per_service:
        return "every service"
    return "; ".join(f"{role} {use.direction} ({', '.join(use.publishers)})"
                     for role, use in topic.roles.items())


def to_markdown(contract: Contract) -> str:
    lines = [
        f"Base topic: `{contract.base}`. `in` = into the stack, `out` = produced by it; "
        "the names in brackets may publish the topic.",
        "",
        "| topic | roles (publishers) | payload | unit | retained | QoS | meaning |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in contract.topics:
        full = t.path if t.absolute else f"{contract.base}/{t.path}"
        meaning = t.meaning.replace("|", "\\|")
        lines.append(f"| `{full}` | {_roles_text(t)} | {payload_text(t.payload)} | {t.unit or ''} | "
                     f"{'yes' if t.retained else 'no'} | {t.qos} | {meaning} |")
    return "\n".join(lines) + "\n"


def to_acl(contract: Contract) -> str:
    """One mosquitto user per service: read everything, write only its own topics."""
    out = ["# mosquitto ACL generated from config/topics.yaml by `ccsbus contract --format acl`", ""]
    for service in contract.services:
        out.append(f"user {service}")
        out.append(f"topic read {contract.base}/#")
        writes: list[str] = []
        for topic in contract.topics:
            if topic.per_service:
                path = contract.expand(topic, service)
            elif service in topic.publishers():
                path = topic.mqtt_filter()
            else:
                continue
            full = path if topic.absolute else f"{contract.base}/{path}"
            if full not in writes:
                writes.append(full)
        if service == EXTERNAL:
            out.append("topic read homeassistant/#")
        for full in writes:
            out.append(f"topic write {full}")
        out.append("")
    return "\n".join(out)


def to_json(contract: Contract) -> dict[str, Any]:
    def topic_json(t: Topic) -> dict[str, Any]:
        p = t.payload
        payload: dict[str, Any] = {"type": p.type.value}
        if p.minimum is not None:
            payload["min"] = p.minimum
        if p.maximum is not None:
            payload["max"] = p.maximum
        if p.enum:
            payload["enum"] = list(p.enum)
        if p.max_length is not None:
            payload["max_length"] = p.max_length
        if p.schema is not None:
            payload["schema"] = p.schema
        return {
            "path": t.path, "absolute": t.absolute, "meaning": t.meaning, "payload": payload,
            "unit": t.unit, "retained": t.retained, "qos": t.qos, "per_service": t.per_service,
            "user_facing": t.user_facing,
            "roles": {r: {"dir": u.direction, "pub": list(u.publishers)} for r, u in t.roles.items()},
            "ha": t.ha,
        }

    return {"base": contract.base, "services": contract.services, "roles": list(ROLES),
            "topics": [topic_json(t) for t in contract.topics]}


DOC_HEADER = (
    "# Topics\n\nGenerated from `config/topics.yaml` by `ccsbus contract --write-doc docs/topics.md`; "
    "do not edit.\n\n"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ccsbus contract",
        description="Print the topic contract (config/topics.yaml) as docs, broker ACL or JSON.")
    parser.add_argument("--format", choices=["markdown", "acl", "json"], default="markdown")
    parser.add_argument("--base", help="base topic to print (default: the contract's, pyPlc)")
    parser.add_argument("--file", help="contract file (default: $CCSBUS_CONTRACT or config/topics.yaml)")
    parser.add_argument("--write-doc", metavar="FILE", help="write the Markdown table with its header to FILE")
    args = parser.parse_args(argv)
    contract = load_contract(args.file)
    if args.write_doc:
        with open(args.write_doc, "w", encoding="utf-8") as fh:
            fh.write(DOC_HEADER + to_markdown(contract))
        return 0
    if args.base:
        contract = contract.with_base(args.base)
    if args.format == "markdown":
        sys.stdout.write(to_markdown(contract))
    elif args.format == "acl":
        sys.stdout.write(to_acl(contract))
    else:
        sys.stdout.write(json.dumps(to_json(contract), indent=2) + "\n")
    return 0
