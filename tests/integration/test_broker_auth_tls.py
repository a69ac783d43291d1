"""Real deployments: mosquitto with a password and TLS; the bus connects with the configured credentials."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from ccsbus.broker import free_port
from ccsbus.bus import Bus
from ccsbus.config import BrokerConfig
from ccsbus.testing.fixtures import wait_port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path):
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ccsbus test CA",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=tmp_path)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", "server.key", "-out", "server.csr", cwd=tmp_path)
    (tmp_path / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt", cwd=tmp_path)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "slac", "s3cret"], check=True,
                   capture_output=True)
    port = free_port()
    # as root mosquitto would drop to its own user, who cannot read the key in the private tmp dir
    (tmp_path / "mosquitto.conf").write_text(
        f"user root\nlistener {port} 127.0.0.1\npersistence false\nallow_anonymous false\n"
        f"cafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'server.crt'}\nkeyfile {tmp_path / 'server.key'}\n"
        f"password_file {passwd}\n")
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                             str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    yield port, tmp_path
    proc.terminate()
    proc.wait(5)


def test_bus_connects_with_password_over_tls(tls_broker):
    port, certs = tls_broker

    async def main() -> tuple[bool, bool]:
        good = Bus("slac", BrokerConfig(url=f"mqtts://127.0.0.1:{port}", username="slac", password="s3cret",
                                        tls_ca=str(certs / "ca.crt")), "EVSE")
        await good.start(wait=10)
        ok = good.connected.is_set()
        await good.close()
        bad = Bus("slac", BrokerConfig(url=f"mqtts://127.0.0.1:{port}", username="slac", password="wrong",
                                       tls_ca=str(certs / "ca.crt")), "EVSE")
        await bad.start(wait=2)
        refused = not bad.connected.is_set()
        await bad.close()
        return ok, refused

    ok, refused = asyncio.run(main())
    assert ok, "the right password over TLS must connect"
    assert refused, "a wrong password must not connect"
