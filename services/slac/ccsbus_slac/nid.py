"""Network identifier (NID) from the network membership key (NMK), as HomePlug AV defines it.

The NID is 54 bits: the leftmost 52 bits of a PBKDF1-style key derivation over the NMK (SHA-256,
no salt, 5 iterations in total), followed by the 2-bit security level. ISO 15118-3 uses security
level 0 (simple connect) for SLAC.
"""

from __future__ import annotations

import hashlib
import os

NMK_LEN = 16
NID_LEN = 7
NID_HASH_ITERATIONS = 5
SECURITY_LEVEL_SC = 0  # simple connect, the level SLAC uses
SECURITY_LEVEL_HS = 1  # high security


def nid_from_nmk(nmk: bytes, security_level: int = SECURITY_LEVEL_SC) -> bytes:
    if len(nmk) != NMK_LEN:
        raise ValueError(f"NMK must be {NMK_LEN} bytes, got {len(nmk)}")
    if not 0 <= security_level <= 3:
        raise ValueError(f"security level must be 0..3, got {security_level}")
    digest = nmk
    for _ in range(NID_HASH_ITERATIONS):
        digest = hashlib.sha256(digest).digest()
    nid = bytearray(digest[:NID_LEN])
    # byte 7 carries only the 4 remaining hash bits (in its low nibble) and the security level above them
    nid[6] = (nid[6] >> 4) | (security_level << 4)
    return bytes(nid)


def random_nmk() -> bytes:
    return os.urandom(NMK_LEN)
