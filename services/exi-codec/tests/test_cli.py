"""The codec's command line: decode/encode, stdin, errors on stderr with a non-zero exit."""

from __future__ import annotations

import io
import json

import pytest

from ccsbus_exi.cli import main

HEX = "809a02000000000000000011d01a63b5736b666000"
TREE = {"V2G_Message": {"Header": {"SessionID": "0000000000000000"},
                        "Body": {"SessionSetupReq": {"EVCCID": "98ED5CDAD998"}}}}


def test_decode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "din", HEX]) == 0
    assert json.loads(capsys.readouterr().out) == TREE


def test_encode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", "din", json.dumps(TREE)]) == 0
    assert capsys.readouterr().out.strip() == HEX


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(" ".join(HEX[i:i + 2] for i in range(0, 42, 2))))
    assert main(["decode", "din", "-", "--compact"]) == 0
    out = capsys.readouterr().out
    assert "\n" not in out.strip() and json.loads(out) == TREE
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(TREE)))
    assert main(["encode", "din", "-"]) == 0
    assert capsys.readouterr().out.strip() == HEX


@pytest.mark.parametrize(("argv", "needle"), [
    (["decode", "din", "zz"], "not hex"),
    (["decode", "din", "809a"], "truncated"),
    (["encode", "din", "{"], "not JSON"),
    (["encode", "din", "[1]"], "object"),
    (["encode", "din", '{"V2G_Message": {}}'], "missing Header"),
])
def test_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) != 0
    captured = capsys.readouterr()
    assert captured.out == "" and needle in captured.err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "decode" in out and "apphand" in out
    with pytest.raises(SystemExit):
        main(["decode", "iso20", HEX])
