"""Command line of the EXI codec: `decode <schema> <hex|->` and `encode <schema> <json|->`."""

from __future__ import annotations

import argparse
import json
import sys

from . import SCHEMAS, ExiError, decode, encode

EPILOG = """examples:
  decode din 809a0011d00000    prints the message as JSON
  encode din '{"V2G_Message": {...}}'    prints the EXI bytes as hex
  echo 8000... | decode apphand -    reads the argument from stdin

schemas: apphand (supportedAppProtocol handshake), din (DIN 70121), iso2 (ISO 15118-2).
The EXI stream does not name its schema: the handshake result decides it."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ccsbus exi", description="Schema-informed EXI codec for DIN 70121 / ISO 15118-2.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decode", help="EXI hex -> JSON")
    d.add_argument("schema", choices=SCHEMAS)
    d.add_argument("hex", help="EXI message as hex (spaces allowed), or - to read stdin")
    d.add_argument("--compact", action="store_true", help="one-line JSON")
    e = sub.add_parser("encode", help="JSON -> EXI hex")
    e.add_argument("schema", choices=SCHEMAS)
    e.add_argument("json", help="message tree as JSON, or - to read stdin")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "decode":
        text = sys.stdin.read() if args.hex == "-" else args.hex
        try:
            data = bytes.fromhex("".join(text.split()))
        except ValueError as exc:
            print(f"error: not hex: {exc}", file=sys.stderr)
            return 2
        try:
            tree = decode(args.schema, data)
        except ExiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(tree, separators=(",", ":")) if args.compact else json.dumps(tree, indent=2))
        return 0
    text = sys.stdin.read() if args.json == "-" else args.json
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"error: not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(tree, dict):
        print("error: the tree must be a JSON object", file=sys.stderr)
        return 2
    try:
        print(encode(args.schema, tree).hex())
    except ExiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
