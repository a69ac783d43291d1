"""The codec as its own process: EXI decode/encode requests and replies over MQTT.

Request on `exi/request`: {"id", "reply_to": "exi/reply/<client>", "op": "decode"|"encode", "schema",
"hex"|"tree"}. The reply goes to the topic the request names: {"id", "ok": true, "tree"|"hex"} or
{"id", "ok": false, "error": {"code", "name", "message", "offset"}}. A request that names where to reply
always gets a reply; one that does not is reported on `exi/error`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ccsbus.config import setting
from ccsbus.lifecycle import ServiceContext, ServiceSpec

REPLY_TOPIC = re.compile(r"^exi/reply/[^/#+]+$")
SCHEMAS = ("apphand", "din", "iso2")
MAX_HEX = 2 * 65536


@dataclass(frozen=True)
class ExiSettings:
    max_message_bytes: int = setting(
        65536, min=64, max=1 << 20, help="largest EXI message accepted in a request (bytes)")


class RequestError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _parse_request(raw: bytes) -> dict[str, Any]:
    try:
        request = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError("json", f"request is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError("json", "request is not a JSON object")
    return request


def handle(request: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Run one request; the reply body without routing. Pure apart from the codec call."""
    from . import ExiError, decode, encode

    reply: dict[str, Any] = {"id": request.get("id")}
    op, schema = request.get("op"), request.get("schema")
    try:
        if schema not in SCHEMAS:
            raise RequestError("schema", f"schema {schema!r} is not one of {', '.join(SCHEMAS)}")
        if op == "decode":
            text = request.get("hex")
            if not isinstance(text, str):
                raise RequestError("request", "decode needs a 'hex' string")
            if len(text) > 2 * max_bytes:
                raise RequestError("request", f"message longer than {max_bytes} bytes")
            try:
                data = bytes.fromhex(text)
            except ValueError:
                raise RequestError("request", "'hex' is not hexadecimal") from None
            reply["tree"] = decode(schema, data)
        elif op == "encode":
            tree = request.get("tree")
            if not isinstance(tree, dict):
                raise RequestError("request", "encode needs a 'tree' object")
            reply["hex"] = encode(schema, tree).hex()
        else:
            raise RequestError("request", f"op {op!r} is not decode or encode")
    except RequestError as exc:
        reply.update(ok=False, error={"code": -1, "name": exc.name, "message": str(exc), "offset": None})
        return reply
    except ExiError as exc:
        reply.update(ok=False, error={"code": exc.code, "name": "exi", "message": exc.message,
                                      "offset": exc.offset})
        return reply
    reply["ok"] = True
    return reply


async def run(ctx: ServiceContext[ExiSettings]) -> None:
    from . import decode  # noqa: F401 - fail at start, not on the first request, if the codec is missing

    bus, log = ctx.bus, ctx.log

    def on_request(path: str, raw: bytes) -> None:
        try:
            request = _parse_request(raw)
        except RequestError as exc:
            log.warning("rejected request", reason=str(exc))
            bus.publish_error(str(exc), topic=path, payload=raw)
            return
        reply_to = request.get("reply_to")
        if not isinstance(reply_to, str) or not REPLY_TOPIC.match(reply_to):
            reason = f"reply_to {reply_to!r} is not exi/reply/<client>"
            log.warning("rejected request", reason=reason)
            bus.publish_error(reason, topic=path, payload=raw)
            return
        reply = handle(request, ctx.settings.max_message_bytes)
        if not reply["ok"]:
            log.info("request failed", id=reply["id"], error=reply["error"]["message"])
        bus.publish(reply_to, reply)

    # the codec call is short and pure: answering from the MQTT thread saves a thread hop per request
    bus.subscribe("exi/request", on_request, raw=True, in_network_thread=True)
    await ctx.stopping.wait()


SPEC = ServiceSpec(
    name="exi",
    settings=ExiSettings,
    run=run,
    description="EXI codec service: decode/encode requests over MQTT with replies on the named topic.",
)
