"""A finalizer that runs inside a decode (garbage collection triggered by an allocation within the
call) may call the codec again; neither call may see the other's buffers. Where exactly inside the
call the collection lands is up to the interpreter, so this exercises nesting rather than pinning
one interleaving."""

from __future__ import annotations

import gc

import ccsbus_exi

A = bytes.fromhex("809a02000000000000000011d01a63b5736b666000")  # DIN SessionSetupReq
B = bytes.fromhex("809802000000000000000011d0199135c0040b2000")  # ISO-2 SessionSetupReq
STATE = {"inside": False, "nested": 0, "nested_ok": 0}
EXPECTED_B = ccsbus_exi.decode("iso2", B)


class Cycle:
    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        if STATE["inside"]:
            STATE["nested"] += 1
            STATE["nested_ok"] += ccsbus_exi.decode("iso2", B) == EXPECTED_B


def test_decode_called_from_a_finalizer_during_decode() -> None:
    expected_a = ccsbus_exi.decode("din", A)
    old = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1, 1, 1)
    wrong = 0
    try:
        for _ in range(3000):
            gc.disable()
            Cycle()  # garbage collected by some allocation after enable()
            gc.enable()
            STATE["inside"] = True
            wrong += ccsbus_exi.decode("din", A) != expected_a
            STATE["inside"] = False
    finally:
        gc.set_threshold(*old)
        gc.collect()
    assert STATE["nested"] > 0, "no finalizer ran inside a decode: the test proves nothing"
    assert STATE["nested_ok"] == STATE["nested"]
    assert wrong == 0
