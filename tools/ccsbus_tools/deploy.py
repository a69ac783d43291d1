"""Broker files for a deployment: the mosquitto ACL from the topic contract and the password file.

`python -m ccsbus_tools.deploy env` writes an env file with one fresh random password per service
(the compose file reads it); `python -m ccsbus_tools.deploy mosquitto --out DIR` writes `acl`,
`passwd` and `mosquitto.conf` into DIR from those passwords. The password hashes use mosquitto's
own PBKDF2-SHA512 format (`$7$`), so no mosquitto_passwd binary is needed in the init container.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from ccsbus.contract import Contract, load_contract
from ccsbus.render import to_acl

# mosquitto 2.x `$7$`: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt, 64-byte hash
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
ENV_PREFIX = "CCSBUS_PW_"

MOSQUITTO_CONF = """\
# written by `python -m ccsbus_tools.deploy mosquitto`; edit the generator, not this file
per_listener_settings false
listener {port}
allow_anonymous false
# the codec request/reply exchange is many small messages: no Nagle delay on the broker side either
set_tcp_nodelay true
password_file {config_dir}/passwd
acl_file {config_dir}/acl
persistence {persistence}
persistence_location {data_dir}/
log_dest stdout
log_type error
log_type warning
log_type notice
"""


def hash_password(password: str, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """One mosquitto password-file hash (`$7$<iterations>$<salt b64>$<hash b64>`)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        raise ValueError(f"not a mosquitto $7$ hash: {hashed[:12]!r}")
    iterations, salt = int(parts[2]), base64.b64decode(parts[3])
    return secrets.compare_digest(hash_password(password, salt, iterations), hashed)


def users(contract: Contract) -> list[str]:
    """Every broker user the ACL names: one per service plus `external` (tools, HA, Node-RED)."""
    return list(contract.services)


def password_file(passwords: Mapping[str, str]) -> str:
    return "".join(f"{user}:{hash_password(pw)}\n" for user, pw in sorted(passwords.items()))


def passwords_from_env(names: list[str], env: Mapping[str, str]) -> dict[str, str]:
    """`CCSBUS_PW_<USER>` for each user; a missing one is an error naming the variable."""
    out: dict[str, str] = {}
    missing = []
    for name in names:
        var = ENV_PREFIX + name.upper()
        value = env.get(var, "")
        if not value:
            missing.append(var)
        out[name] = value
    if missing:
        raise KeyError("missing password variables: " + ", ".join(missing)
                       + " (write them with `python -m ccsbus_tools.deploy env`)")
    return out


def env_file_text(names: list[str]) -> str:
    lines = ["# broker passwords, one per service user; generated, keep this file private"]
    lines += [f"{ENV_PREFIX}{name.upper()}={secrets.token_urlsafe(18)}" for name in names]
    return "\n".join(lines) + "\n"


def acl_text(contract: Contract) -> str:
    """The contract's ACL plus the broker's uptime topic for every user (the health check reads it)."""
    return to_acl(contract) + "\n# broker liveness for container health checks\npattern read $SYS/broker/uptime\n"


def write_mosquitto(out: Path, passwords: Mapping[str, str], contract: Contract, port: int,
                    config_dir: str | None = None, data_dir: str | None = None,
                    persistence: bool = True, owner: int | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    cfg_dir = config_dir or str(out)
    conf = MOSQUITTO_CONF.format(port=port, config_dir=cfg_dir, data_dir=data_dir or cfg_dir,
                                 persistence="true" if persistence else "false")
    files = {"acl": acl_text(contract), "passwd": password_file(passwords), "mosquitto.conf": conf}
    written = []
    for name, text in files.items():
        path = out / name
        path.write_text(text)
        # mosquitto 2 warns about (and later refuses) world-readable password and ACL files
        path.chmod(0o600 if name != "mosquitto.conf" else 0o644)
        if owner is not None:
            os.chown(path, owner, owner)
        written.append(path)
    if owner is not None and data_dir:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        os.chown(data_dir, owner, owner)
    return written


def write_service_env(out: Path, passwords: Mapping[str, str], broker_url: str) -> list[Path]:
    """One `<service>.env` per service user for systemd's EnvironmentFile= (mode 0600)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for user, password in sorted(passwords.items()):
        path = out / f"{user}.env"
        path.write_text(f"CCSBUS__BROKER__URL={broker_url}\nCCSBUS__BROKER__USERNAME={user}\n"
                        f"CCSBUS__BROKER__PASSWORD={password}\n")
        path.chmod(0o600)
        written.append(path)
    return written


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ccsbus_tools.deploy",
        description="Write the broker files of a deployment from the topic contract.")
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="write an env file with a random password per service user")
    env.add_argument("--out", default="deploy/passwords.env", help="env file to write")
    env.add_argument("--force", action="store_true", help="replace an existing file")
    mosq = sub.add_parser("mosquitto", help="write acl, passwd and mosquitto.conf into a folder")
    mosq.add_argument("--out", required=True, help="folder to write into")
    mosq.add_argument("--env-file", help="read CCSBUS_PW_* from this file instead of the environment")
    mosq.add_argument("--port", type=int, default=1883)
    mosq.add_argument("--config-dir", help="folder mosquitto will read the files from "
                                           "(default: --out; /mosquitto/config in the container)")
    mosq.add_argument("--data-dir", help="persistence folder (default: the config folder)")
    mosq.add_argument("--no-persistence", action="store_true")
    mosq.add_argument("--owner", type=int, help="uid/gid to own the files (the broker container's "
                                                 "mosquitto user is 1883)")
    mosq.add_argument("--contract", help="topic contract file (default: the packaged one)")
    senv = sub.add_parser("service-env", help="write <service>.env credential files for systemd")
    senv.add_argument("--out", default="/etc/ccsbus", help="folder to write into")
    senv.add_argument("--env-file", help="read CCSBUS_PW_* from this file instead of the environment")
    senv.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL the services use")
    args = parser.parse_args(argv)
    contract = load_contract(getattr(args, "contract", None))
    names = users(contract)
    if args.command == "env":
        target = Path(args.out)
        if target.exists() and not args.force:
            print(f"{target} exists; keep it or pass --force", file=sys.stderr)
            return 1
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(env_file_text(names))
        target.chmod(0o600)
        print(f"wrote {target} ({len(names)} users)")
        return 0
    source = _read_env_file(Path(args.env_file)) if args.env_file else dict(os.environ)
    try:
        passwords = passwords_from_env(names, source)
    except KeyError as exc:
        print(f"ccsbus deploy: {exc.args[0]}", file=sys.stderr)
        return 2
    if args.command == "service-env":
        written = write_service_env(Path(args.out), passwords, args.broker)
        print("wrote " + ", ".join(str(p) for p in written))
        return 0
    written = write_mosquitto(Path(args.out), passwords, contract, args.port, args.config_dir,
                              args.data_dir, not args.no_persistence, args.owner)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
