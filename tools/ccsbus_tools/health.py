"""Container health check: exit 0 when `<base>/<service>/status` says `online`, else 1.

The status topic is retained and carries the last will, so one subscribe answers at once: `online`
while the service's bus is connected, `offline` after it exited or lost the broker. Reads the broker
URL, credentials and base topic from the same config and environment as the service itself.
"""

from __future__ import annotations

import argparse
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ccsbus.config import BrokerConfig, ConfigError, load_config


def check(broker: BrokerConfig, service: str, timeout: float) -> str | None:
    """The retained status of `service`, or None when none arrived within `timeout`."""
    topic = f"{broker.base_topic}/{service}/status"
    got: list[str] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if broker.username:
        client.username_pw_set(broker.username, broker.password or None)
    if broker.tls:
        client.tls_set(ca_certs=broker.tls_ca or None)
        client.tls_insecure_set(broker.tls_insecure)

    def on_connect(c: mqtt.Client, userdata: object, flags: object, reason: object,
                   properties: object) -> None:
        c.subscribe(topic, qos=1)

    def on_message(c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload.decode("utf-8", "replace"))
        done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(broker.host, broker.port, keepalive=10)
    except OSError:
        return None
    client.loop_start()
    done.wait(timeout)
    client.loop_stop()
    client.disconnect()
    return got[0] if got else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ccsbus_tools.health",
        description="Exit 0 when the service's retained status topic says online (for container "
                    "health checks and systemd ExecStartPost).")
    parser.add_argument("service", help="service id: slac, v2g, exi, hw, can, soc, ha")
    parser.add_argument("-c", "--config", help="config file (default: $CCSBUS_CONFIG)")
    parser.add_argument("--broker", help="broker URL (default: broker.url of the config)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the status")
    args = parser.parse_args(argv)
    try:
        broker = load_config(args.config).broker
        if args.broker:
            broker = BrokerConfig(**{**broker.__dict__, "url": args.broker})
    except ConfigError as exc:
        print(f"health: {exc}", file=sys.stderr)
        return 2
    if not broker.url:
        print("health: broker.url is empty (the embedded broker cannot be checked from outside)",
              file=sys.stderr)
        return 2
    status = check(broker, args.service, args.timeout)
    print(f"{args.service}: {status or 'no status'}")
    return 0 if status == "online" else 1


if __name__ == "__main__":
    sys.exit(main())
