"""HomePlug AV/GP management messages (MMEs) used by SLAC and QCA modem management.

Pure byte handling: `parse_frame(bytes) -> Frame` and `Frame.pack() -> bytes`. Every message of
ISO 15118-3 SLAC and the Qualcomm vendor-specific messages we use is a dataclass with all of its
fields. Anything malformed raises `ParseError` (and nothing else), so callers can log and ignore.

Layout: Ethernet II (dst, src, ethertype 0x88E1), MMV (1 byte), MMTYPE (2 bytes LE, low 2 bits are
REQ/CNF/IND/RSP), then FMI (2 bytes) for HomePlug AV 1.1 messages or the 3-byte OUI 00:B0:52 for
Qualcomm vendor-specific ones (MMTYPE 0xA000..0xBFFF, MMV 0). Numbers inside payloads are
little-endian. Frames are padded to the 60-byte Ethernet minimum.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self

ETHERTYPE_HPAV = 0x88E1
ETHERTYPE_VLAN = 0x8100
MMV_AV11 = 0x01
MMV_AV10 = 0x00
QCA_OUI = b"\x00\xb0\x52"
LOCAL_MODEM = b"\x00\xb0\x52\x00\x00\x01"  # QCA host interface: "the modem on my cable"
BROADCAST = b"\xff" * 6
ETH_MIN_FRAME = 60
SLAC_GROUPS = 58
NID_LEN = 7
NMK_LEN = 16
ID_LEN = 17
RUN_ID_LEN = 8
VENDOR_FIRST = 0x8000  # manufacturer-specific (0x8000..) and vendor-specific (0xA000..) carry an OUI
VENDOR_LAST = 0xBFFF


class ParseError(ValueError):
    """The bytes are not a valid message of the kind expected."""


class Variant(IntEnum):
    REQ = 0
    CNF = 1
    IND = 2
    RSP = 3


class MMBase(IntEnum):
    CM_UNASSOCIATED_STA = 0x6000
    CM_ENCRYPTED_PAYLOAD = 0x6004
    CM_SET_KEY = 0x6008
    CM_GET_KEY = 0x600C
    CM_AMP_MAP = 0x601C
    CM_BRG_INFO = 0x6020
    CM_NW_INFO = 0x6038
    CM_NW_STATS = 0x6048
    CM_SLAC_PARM = 0x6064
    CM_START_ATTEN_CHAR = 0x6068
    CM_ATTEN_CHAR = 0x606C
    CM_PKCS_CERT = 0x6070
    CM_MNBC_SOUND = 0x6074
    CM_VALIDATE = 0x6078
    CM_SLAC_MATCH = 0x607C
    CM_SLAC_USER_DATA = 0x6080
    CM_ATTEN_PROFILE = 0x6084
    VS_SW_VER = 0xA000
    VS_RS_DEV = 0xA01C
    VS_NW_INFO = 0xA038
    VS_HST_ACTION = 0xA060
    VS_PL_LNK_STATUS = 0xA0B8


def mmtype(base: MMBase, variant: Variant) -> int:
    return int(base) | int(variant)


def mmtype_name(value: int) -> str:
    base, variant = value & ~0x3, Variant(value & 0x3)
    try:
        return f"{MMBase(base).name}.{variant.name}"
    except ValueError:
        return f"MMTYPE_{base:04X}.{variant.name}"


def is_vendor(value: int) -> bool:
    return VENDOR_FIRST <= value <= VENDOR_LAST


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02X}" for b in mac)


def parse_mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None


# ---------------------------------------------------------------------------- byte helpers
class Reader:
    """Cursor over a payload; every short read is a ParseError naming the field."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int, name: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ParseError(f"{self.what}: frame too short for {name} "
                             f"(needs {n} bytes at offset {self.pos}, has {len(self.data) - self.pos})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(chunk)

    def u8(self, name: str) -> int:
        return self.take(1, name)[0]

    def u16(self, name: str) -> int:
        value: int = struct.unpack("<H", self.take(2, name))[0]
        return value

    def u32(self, name: str) -> int:
        value: int = struct.unpack("<I", self.take(4, name))[0]
        return value

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return bytes(chunk)


def _fit(value: bytes, n: int, name: str) -> bytes:
    if len(value) != n:
        raise ParseError(f"{name} must be {n} bytes, got {len(value)}")
    return value


def _u8(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ParseError(f"{name} out of range 0..255: {value}")
    return bytes([value])


def _u16(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ParseError(f"{name} out of range 0..65535: {value}")
    return struct.pack("<H", value)


def _u32(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ParseError(f"{name} out of range: {value}")
    return struct.pack("<I", value)


def _groups(values: list[int], name: str) -> bytes:
    if len(values) > 255:
        raise ParseError(f"{name}: too many groups ({len(values)})")
    return bytes(_u8(v, name)[0] for v in values)


# ---------------------------------------------------------------------------- messages
class Message:
    """A payload of one MMTYPE. Subclasses are dataclasses with every field of the payload."""

    MMTYPE: ClassVar[int]

    def pack(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        raise NotImplementedError

    @classmethod
    def name(cls) -> str:
        return mmtype_name(cls.MMTYPE)


REGISTRY: dict[int, type[Message]] = {}


def _register(cls: type[Message]) -> type[Message]:
    REGISTRY[cls.MMTYPE] = cls
    return cls


@_register
@dataclass
class SlacParmReq(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_SLAC_PARM, Variant.REQ)
    run_id: bytes
    application_type: int = 0
    security_type: int = 0
    extra: bytes = b""  # cipher-suite list when security_type is 1

    def pack(self) -> bytes:
        return (_u8(self.application_type, "application_type") + _u8(self.security_type, "security_type")
                + _fit(self.run_id, RUN_ID_LEN, "run_id") + self.extra)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_SLAC_PARM.REQ")
        app, sec = r.u8("application_type"), r.u8("security_type")
        run_id = r.take(RUN_ID_LEN, "run_id")
        return cls(run_id=run_id, application_type=app, security_type=sec)


@_register
@dataclass
class SlacParmCnf(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_SLAC_PARM, Variant.CNF)
    run_id: bytes
    forwarding_sta: bytes
    msound_target: bytes = BROADCAST
    num_sounds: int = 10
    time_out: int = 6  # units of 100 ms (TT_EVSE_match_MNBC)
    resp_type: int = 1  # 1: sounds are answered through the forwarding station (the EV host)
    application_type: int = 0
    security_type: int = 0

    def pack(self) -> bytes:
        return (_fit(self.msound_target, 6, "msound_target") + _u8(self.num_sounds, "num_sounds")
                + _u8(self.time_out, "time_out") + _u8(self.resp_type, "resp_type")
                + _fit(self.forwarding_sta, 6, "forwarding_sta")
                + _u8(self.application_type, "application_type")
                + _u8(self.security_type, "security_type") + _fit(self.run_id, RUN_ID_LEN, "run_id"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_SLAC_PARM.CNF")
        target = r.take(6, "msound_target")
        num, tmo, resp = r.u8("num_sounds"), r.u8("time_out"), r.u8("resp_type")
        fwd = r.take(6, "forwarding_sta")
        app, sec = r.u8("application_type"), r.u8("security_type")
        return cls(run_id=r.take(RUN_ID_LEN, "run_id"), forwarding_sta=fwd, msound_target=target,
                   num_sounds=num, time_out=tmo, resp_type=resp, application_type=app, security_type=sec)


@_register
@dataclass
class StartAttenCharInd(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_START_ATTEN_CHAR, Variant.IND)
    run_id: bytes
    forwarding_sta: bytes
    num_sounds: int = 10
    time_out: int = 6
    resp_type: int = 1
    application_type: int = 0
    security_type: int = 0

    def pack(self) -> bytes:
        return (_u8(self.application_type, "application_type") + _u8(self.security_type, "security_type")
                + _u8(self.num_sounds, "num_sounds") + _u8(self.time_out, "time_out")
                + _u8(self.resp_type, "resp_type") + _fit(self.forwarding_sta, 6, "forwarding_sta")
                + _fit(self.run_id, RUN_ID_LEN, "run_id"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_START_ATTEN_CHAR.IND")
        app, sec = r.u8("application_type"), r.u8("security_type")
        num, tmo, resp = r.u8("num_sounds"), r.u8("time_out"), r.u8("resp_type")
        fwd = r.take(6, "forwarding_sta")
        return cls(run_id=r.take(RUN_ID_LEN, "run_id"), forwarding_sta=fwd, num_sounds=num,
                   time_out=tmo, resp_type=resp, application_type=app, security_type=sec)


@_register
@dataclass
class MnbcSoundInd(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_MNBC_SOUND, Variant.IND)
    run_id: bytes
    count: int  # sounds still to come after this one
    sender_id: bytes = bytes(ID_LEN)
    rnd: bytes = bytes(16)
    reserved: bytes = bytes(8)
    application_type: int = 0
    security_type: int = 0

    def pack(self) -> bytes:
        return (_u8(self.application_type, "application_type") + _u8(self.security_type, "security_type")
                + _fit(self.sender_id, ID_LEN, "sender_id") + _u8(self.count, "count")
                + _fit(self.run_id, RUN_ID_LEN, "run_id") + _fit(self.reserved, 8, "reserved")
                + _fit(self.rnd, 16, "rnd"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_MNBC_SOUND.IND")
        app, sec = r.u8("application_type"), r.u8("security_type")
        sender, cnt = r.take(ID_LEN, "sender_id"), r.u8("count")
        run_id, rsvd = r.take(RUN_ID_LEN, "run_id"), r.take(8, "reserved")
        return cls(run_id=run_id, count=cnt, sender_id=sender, rnd=r.take(16, "rnd"), reserved=rsvd,
                   application_type=app, security_type=sec)


@_register
@dataclass
class AttenProfileInd(Message):
    """Modem -> its own host: attenuation of one received sound per carrier group (dB)."""

    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_ATTEN_PROFILE, Variant.IND)
    pev_mac: bytes
    aag: list[int] = field(default_factory=lambda: [0] * SLAC_GROUPS)
    reserved: int = 0

    def pack(self) -> bytes:
        return (_fit(self.pev_mac, 6, "pev_mac") + _u8(len(self.aag), "num_groups")
                + _u8(self.reserved, "reserved") + _groups(self.aag, "aag"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_ATTEN_PROFILE.IND")
        mac, groups, rsvd = r.take(6, "pev_mac"), r.u8("num_groups"), r.u8("reserved")
        return cls(pev_mac=mac, aag=list(r.take(groups, "aag")), reserved=rsvd)


@_register
@dataclass
class AttenCharInd(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_ATTEN_CHAR, Variant.IND)
    source_address: bytes  # the EV host MAC
    run_id: bytes
    num_sounds: int
    aag: list[int]
    source_id: bytes = bytes(ID_LEN)
    resp_id: bytes = bytes(ID_LEN)
    application_type: int = 0
    security_type: int = 0

    def pack(self) -> bytes:
        return (_u8(self.application_type, "application_type") + _u8(self.security_type, "security_type")
                + _fit(self.source_address, 6, "source_address") + _fit(self.run_id, RUN_ID_LEN, "run_id")
                + _fit(self.source_id, ID_LEN, "source_id") + _fit(self.resp_id, ID_LEN, "resp_id")
                + _u8(self.num_sounds, "num_sounds") + _u8(len(self.aag), "num_groups")
                + _groups(self.aag, "aag"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_ATTEN_CHAR.IND")
        app, sec = r.u8("application_type"), r.u8("security_type")
        src, run_id = r.take(6, "source_address"), r.take(RUN_ID_LEN, "run_id")
        sid, rid = r.take(ID_LEN, "source_id"), r.take(ID_LEN, "resp_id")
        num, groups = r.u8("num_sounds"), r.u8("num_groups")
        return cls(source_address=src, run_id=run_id, num_sounds=num, aag=list(r.take(groups, "aag")),
                   source_id=sid, resp_id=rid, application_type=app, security_type=sec)

    @property
    def average(self) -> float:
        return sum(self.aag) / len(self.aag) if self.aag else float("inf")


@_register
@dataclass
class AttenCharRsp(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_ATTEN_CHAR, Variant.RSP)
    source_address: bytes
    run_id: bytes
    result: int = 0
    source_id: bytes = bytes(ID_LEN)
    resp_id: bytes = bytes(ID_LEN)
    application_type: int = 0
    security_type: int = 0

    def pack(self) -> bytes:
        return (_u8(self.application_type, "application_type") + _u8(self.security_type, "security_type")
                + _fit(self.source_address, 6, "source_address") + _fit(self.run_id, RUN_ID_LEN, "run_id")
                + _fit(self.source_id, ID_LEN, "source_id") + _fit(self.resp_id, ID_LEN, "resp_id")
                + _u8(self.result, "result"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_ATTEN_CHAR.RSP")
        app, sec = r.u8("application_type"), r.u8("security_type")
        src, run_id = r.take(6, "source_address"), r.take(RUN_ID_LEN, "run_id")
        sid, rid = r.take(ID_LEN, "source_id"), r.take(ID_LEN, "resp_id")
        return cls(source_address=src, run_id=run_id, result=r.u8("result"), source_id=sid, resp_id=rid,
                   application_type=app, security_type=sec)


MATCH_REQ_MVF_LEN = 0x3E
MATCH_CNF_MVF_LEN = 0x56


@_register
@dataclass
class SlacMatchReq(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_SLAC_MATCH, Variant.REQ)
    run_id: bytes
    pev_mac: bytes
    evse_mac: bytes
    pev_id: bytes = bytes(ID_LEN)
    evse_id: bytes = bytes(ID_LEN)
    mvf_length: int = MATCH_REQ_MVF_LEN
    reserved: bytes = bytes(8)
    application_type: int = 0
    security_type: int = 0

    def pack(self) -> bytes:
        return (_u8(self.application_type, "application_type") + _u8(self.security_type, "security_type")
                + _u16(self.mvf_length, "mvf_length") + _fit(self.pev_id, ID_LEN, "pev_id")
                + _fit(self.pev_mac, 6, "pev_mac") + _fit(self.evse_id, ID_LEN, "evse_id")
                + _fit(self.evse_mac, 6, "evse_mac") + _fit(self.run_id, RUN_ID_LEN, "run_id")
                + _fit(self.reserved, 8, "reserved"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_SLAC_MATCH.REQ")
        app, sec, mvf = r.u8("application_type"), r.u8("security_type"), r.u16("mvf_length")
        pev_id, pev_mac = r.take(ID_LEN, "pev_id"), r.take(6, "pev_mac")
        evse_id, evse_mac = r.take(ID_LEN, "evse_id"), r.take(6, "evse_mac")
        run_id, rsvd = r.take(RUN_ID_LEN, "run_id"), r.take(8, "reserved")
        return cls(run_id=run_id, pev_mac=pev_mac, evse_mac=evse_mac, pev_id=pev_id, evse_id=evse_id,
                   mvf_length=mvf, reserved=rsvd, application_type=app, security_type=sec)


@_register
@dataclass
class SlacMatchCnf(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_SLAC_MATCH, Variant.CNF)
    run_id: bytes
    pev_mac: bytes
    evse_mac: bytes
    nid: bytes
    nmk: bytes
    pev_id: bytes = bytes(ID_LEN)
    evse_id: bytes = bytes(ID_LEN)
    mvf_length: int = MATCH_CNF_MVF_LEN
    reserved: bytes = bytes(8)
    reserved2: int = 0
    application_type: int = 0
    security_type: int = 0

    def pack(self) -> bytes:
        return (_u8(self.application_type, "application_type") + _u8(self.security_type, "security_type")
                + _u16(self.mvf_length, "mvf_length") + _fit(self.pev_id, ID_LEN, "pev_id")
                + _fit(self.pev_mac, 6, "pev_mac") + _fit(self.evse_id, ID_LEN, "evse_id")
                + _fit(self.evse_mac, 6, "evse_mac") + _fit(self.run_id, RUN_ID_LEN, "run_id")
                + _fit(self.reserved, 8, "reserved") + _fit(self.nid, NID_LEN, "nid")
                + _u8(self.reserved2, "reserved2") + _fit(self.nmk, NMK_LEN, "nmk"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_SLAC_MATCH.CNF")
        app, sec, mvf = r.u8("application_type"), r.u8("security_type"), r.u16("mvf_length")
        pev_id, pev_mac = r.take(ID_LEN, "pev_id"), r.take(6, "pev_mac")
        evse_id, evse_mac = r.take(ID_LEN, "evse_id"), r.take(6, "evse_mac")
        run_id, rsvd = r.take(RUN_ID_LEN, "run_id"), r.take(8, "reserved")
        nid, rsvd2 = r.take(NID_LEN, "nid"), r.u8("reserved2")
        return cls(run_id=run_id, pev_mac=pev_mac, evse_mac=evse_mac, nid=nid, nmk=r.take(NMK_LEN, "nmk"),
                   pev_id=pev_id, evse_id=evse_id, mvf_length=mvf, reserved=rsvd, reserved2=rsvd2,
                   application_type=app, security_type=sec)


@_register
@dataclass
class ValidateReq(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_VALIDATE, Variant.REQ)
    signal_type: int = 0
    timer: int = 0
    result: int = 1

    def pack(self) -> bytes:
        return (_u8(self.signal_type, "signal_type") + _u8(self.timer, "timer")
                + _u8(self.result, "result"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_VALIDATE.REQ")
        return cls(signal_type=r.u8("signal_type"), timer=r.u8("timer"), result=r.u8("result"))


@_register
@dataclass
class ValidateCnf(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_VALIDATE, Variant.CNF)
    signal_type: int = 0
    toggle_num: int = 0
    result: int = 0

    def pack(self) -> bytes:
        return (_u8(self.signal_type, "signal_type") + _u8(self.toggle_num, "toggle_num")
                + _u8(self.result, "result"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_VALIDATE.CNF")
        return cls(signal_type=r.u8("signal_type"), toggle_num=r.u8("toggle_num"), result=r.u8("result"))


KEY_TYPE_NMK = 0x01


@_register
@dataclass
class SetKeyReq(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_SET_KEY, Variant.REQ)
    nid: bytes
    new_key: bytes
    key_type: int = KEY_TYPE_NMK
    my_nonce: int = 0xAAAAAAAA
    your_nonce: int = 0
    pid: int = 4  # HLE protocol
    prn: int = 0xAAAA
    pmn: int = 0
    cco_capability: int = 0
    new_eks: int = 1

    def pack(self) -> bytes:
        return (_u8(self.key_type, "key_type") + _u32(self.my_nonce, "my_nonce")
                + _u32(self.your_nonce, "your_nonce") + _u8(self.pid, "pid") + _u16(self.prn, "prn")
                + _u8(self.pmn, "pmn") + _u8(self.cco_capability, "cco_capability")
                + _fit(self.nid, NID_LEN, "nid") + _u8(self.new_eks, "new_eks") + self.new_key)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_SET_KEY.REQ")
        key_type, mine, yours = r.u8("key_type"), r.u32("my_nonce"), r.u32("your_nonce")
        pid, prn, pmn, cco = r.u8("pid"), r.u16("prn"), r.u8("pmn"), r.u8("cco_capability")
        nid, eks = r.take(NID_LEN, "nid"), r.u8("new_eks")
        key = r.take(NMK_LEN, "new_key") if key_type == KEY_TYPE_NMK else r.rest()
        return cls(nid=nid, new_key=key, key_type=key_type, my_nonce=mine, your_nonce=yours, pid=pid,
                   prn=prn, pmn=pmn, cco_capability=cco, new_eks=eks)


@_register
@dataclass
class SetKeyCnf(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_SET_KEY, Variant.CNF)
    result: int = 0  # 0 success
    my_nonce: int = 0
    your_nonce: int = 0
    pid: int = 4
    prn: int = 0
    pmn: int = 0
    cco_capability: int = 0

    def pack(self) -> bytes:
        return (_u8(self.result, "result") + _u32(self.my_nonce, "my_nonce")
                + _u32(self.your_nonce, "your_nonce") + _u8(self.pid, "pid") + _u16(self.prn, "prn")
                + _u8(self.pmn, "pmn") + _u8(self.cco_capability, "cco_capability"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_SET_KEY.CNF")
        return cls(result=r.u8("result"), my_nonce=r.u32("my_nonce"), your_nonce=r.u32("your_nonce"),
                   pid=r.u8("pid"), prn=r.u16("prn"), pmn=r.u8("pmn"),
                   cco_capability=r.u8("cco_capability"))


@_register
@dataclass
class GetKeyReq(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_GET_KEY, Variant.REQ)
    nid: bytes = bytes(NID_LEN)
    request_type: int = 0  # 0 direct
    key_type: int = KEY_TYPE_NMK
    my_nonce: int = 0xAAAAAAAA
    pid: int = 4
    prn: int = 0xAAAA
    pmn: int = 0
    hash_key: bytes = b""

    def pack(self) -> bytes:
        return (_u8(self.request_type, "request_type") + _u8(self.key_type, "key_type")
                + _fit(self.nid, NID_LEN, "nid") + _u32(self.my_nonce, "my_nonce") + _u8(self.pid, "pid")
                + _u16(self.prn, "prn") + _u8(self.pmn, "pmn") + self.hash_key)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_GET_KEY.REQ")
        rtype, ktype, nid = r.u8("request_type"), r.u8("key_type"), r.take(NID_LEN, "nid")
        nonce, pid, prn, pmn = r.u32("my_nonce"), r.u8("pid"), r.u16("prn"), r.u8("pmn")
        # the remainder is the hash key or Ethernet padding; neither is needed to answer
        return cls(nid=nid, request_type=rtype, key_type=ktype, my_nonce=nonce, pid=pid, prn=prn, pmn=pmn)


@_register
@dataclass
class GetKeyCnf(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_GET_KEY, Variant.CNF)
    result: int = 0
    key_type: int = KEY_TYPE_NMK
    my_nonce: int = 0
    your_nonce: int = 0
    nid: bytes = bytes(NID_LEN)
    eks: int = 1
    pid: int = 4
    prn: int = 0
    pmn: int = 0
    key: bytes = b""

    def pack(self) -> bytes:
        return (_u8(self.result, "result") + _u8(self.key_type, "key_type")
                + _u32(self.my_nonce, "my_nonce") + _u32(self.your_nonce, "your_nonce")
                + _fit(self.nid, NID_LEN, "nid") + _u8(self.eks, "eks") + _u8(self.pid, "pid")
                + _u16(self.prn, "prn") + _u8(self.pmn, "pmn") + self.key)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_GET_KEY.CNF")
        result, ktype = r.u8("result"), r.u8("key_type")
        mine, yours, nid = r.u32("my_nonce"), r.u32("your_nonce"), r.take(NID_LEN, "nid")
        eks, pid, prn, pmn = r.u8("eks"), r.u8("pid"), r.u16("prn"), r.u8("pmn")
        key = r.take(NMK_LEN, "key") if len(data) - r.pos >= NMK_LEN and ktype == KEY_TYPE_NMK else b""
        return cls(result=result, key_type=ktype, my_nonce=mine, your_nonce=yours, nid=nid, eks=eks,
                   pid=pid, prn=prn, pmn=pmn, key=key)


@_register
@dataclass
class AmpMapReq(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_AMP_MAP, Variant.REQ)
    amdata: bytes = b""  # 4-bit amplitude values, two per byte
    amlen: int = 0  # number of carriers

    def pack(self) -> bytes:
        return _u16(self.amlen, "amlen") + self.amdata

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "CM_AMP_MAP.REQ")
        amlen = r.u16("amlen")
        return cls(amlen=amlen, amdata=r.take((amlen + 1) // 2, "amdata"))


@_register
@dataclass
class AmpMapCnf(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.CM_AMP_MAP, Variant.CNF)
    res_type: int = 0

    def pack(self) -> bytes:
        return _u8(self.res_type, "res_type")

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls(res_type=Reader(data, "CM_AMP_MAP.CNF").u8("res_type"))


# ---- Qualcomm vendor-specific (payload after the OUI)
@_register
@dataclass
class SwVerReq(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.VS_SW_VER, Variant.REQ)
    cookie: bytes = b""  # newer firmware echoes a 4-byte cookie; optional

    def pack(self) -> bytes:
        return self.cookie

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls()


SW_VER_FIELD = 128


@_register
@dataclass
class SwVerCnf(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.VS_SW_VER, Variant.CNF)
    version: str
    status: int = 0
    device_id: int = 0x20  # QCA7000 family
    upgradeable: int = 0

    def pack(self) -> bytes:
        text = self.version.encode("ascii", "replace")[:SW_VER_FIELD - 1]
        return (_u8(self.status, "status") + _u8(self.device_id, "device_id")
                + _u8(len(text) + 1, "version_length") + text.ljust(SW_VER_FIELD, b"\0")
                + _u8(self.upgradeable, "upgradeable"))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "VS_SW_VER.CNF")
        status, dev, length = r.u8("status"), r.u8("device_id"), r.u8("version_length")
        raw = r.take(length, "version")
        text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        return cls(version=text, status=status, device_id=dev)


@_register
@dataclass
class RsDevReq(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.VS_RS_DEV, Variant.REQ)

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls()


@_register
@dataclass
class RsDevCnf(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.VS_RS_DEV, Variant.CNF)
    status: int = 0

    def pack(self) -> bytes:
        return _u8(self.status, "status")

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls(status=Reader(data, "VS_RS_DEV.CNF").u8("status"))


@_register
@dataclass
class LinkStatusReq(Message):
    MMTYPE: ClassVar[int] = mmtype(MMBase.VS_PL_LNK_STATUS, Variant.REQ)

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls()


LINK_DOWN = 0x00
LINK_UP = 0x01


@_register
@dataclass
class LinkStatusCnf(Message):
    """Whether the modem is member of a logical network with at least one other station."""

    MMTYPE: ClassVar[int] = mmtype(MMBase.VS_PL_LNK_STATUS, Variant.CNF)
    link_status: int = LINK_DOWN
    status: int = 0

    def pack(self) -> bytes:
        return _u8(self.status, "status") + _u8(self.link_status, "link_status")

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        r = Reader(data, "VS_PL_LNK_STATUS.CNF")
        return cls(status=r.u8("status"), link_status=r.u8("link_status"))

    @property
    def up(self) -> bool:
        return self.status == 0 and self.link_status == LINK_UP


@dataclass
class Unknown(Message):
    """A payload of an MMTYPE we do not decode (kept raw, e.g. for capture statistics)."""

    raw: bytes = b""
    mmtype_value: int = 0

    def pack(self) -> bytes:
        return self.raw


# ---------------------------------------------------------------------------- frames
@dataclass
class Frame:
    """One HomePlug management frame: Ethernet addresses, MME header and the decoded payload."""

    dst: bytes
    src: bytes
    body: Message
    mmv: int = MMV_AV11
    fmi: int = 0  # fragment info (AV 1.1 standard messages)
    oui: bytes = QCA_OUI  # vendor-specific messages only

    @property
    def mmtype(self) -> int:
        if isinstance(self.body, Unknown):
            return self.body.mmtype_value
        return type(self.body).MMTYPE

    @property
    def name(self) -> str:
        return mmtype_name(self.mmtype)

    @property
    def known(self) -> bool:
        return not isinstance(self.body, Unknown)

    # FMI (first byte: fragment count - 1 in the high nibble, fragment number in the low one;
    # second byte: fragmentation sequence number). SLAC messages are never fragmented.
    @property
    def fragment_count(self) -> int:
        return ((self.fmi & 0xFF) >> 4) + 1

    @property
    def fragment_number(self) -> int:
        return self.fmi & 0x0F

    @property
    def fragment_sequence(self) -> int:
        return self.fmi >> 8

    def pack(self) -> bytes:
        mt = self.mmtype
        head = _fit(self.dst, 6, "dst") + _fit(self.src, 6, "src") + struct.pack("!H", ETHERTYPE_HPAV)
        mme = bytes([self.mmv]) + struct.pack("<H", mt)
        if self.mmv == MMV_AV11:
            mme += _u16(self.fmi, "fmi")
        if is_vendor(mt):
            mme += _fit(self.oui, 3, "oui")
        frame = head + mme + self.body.pack()
        return frame.ljust(ETH_MIN_FRAME, b"\0")


def vendor_frame(dst: bytes, src: bytes, body: Message) -> Frame:
    return Frame(dst=dst, src=src, body=body, mmv=MMV_AV10)


def parse_frame(data: bytes) -> Frame:
    """Decode one Ethernet frame carrying a HomePlug MME; ParseError for anything else."""
    if len(data) < 14:
        raise ParseError(f"frame too short for an Ethernet header ({len(data)} bytes)")
    dst, src = bytes(data[0:6]), bytes(data[6:12])
    pos = 12
    ethertype = struct.unpack("!H", data[pos:pos + 2])[0]
    if ethertype == ETHERTYPE_VLAN:
        if len(data) < 18:
            raise ParseError("frame too short for a VLAN tag")
        pos += 4
        ethertype = struct.unpack("!H", data[pos:pos + 2])[0]
    if ethertype != ETHERTYPE_HPAV:
        raise ParseError(f"ethertype 0x{ethertype:04X} is not HomePlug AV (0x88E1)")
    pos += 2
    if len(data) < pos + 5:
        raise ParseError(f"frame too short for the MME header ({len(data)} bytes)")
    mmv = data[pos]
    mt = struct.unpack("<H", data[pos + 1:pos + 3])[0]
    vendor = is_vendor(mt)
    pos += 3
    if mmv == MMV_AV11:
        fmi = struct.unpack("<H", data[pos:pos + 2])[0]
        pos += 2
    elif vendor and mmv == MMV_AV10:
        fmi = 0
    else:
        raise ParseError(f"MMV 0x{mmv:02X} not supported for {mmtype_name(mt)} (expected 0x01)")
    oui = QCA_OUI
    if vendor:
        if len(data) < pos + 3:
            raise ParseError(f"frame too short for the vendor OUI ({len(data)} bytes)")
        oui = bytes(data[pos:pos + 3])
        pos += 3
    payload = bytes(data[pos:])
    cls = REGISTRY.get(mt)
    if cls is None or (vendor and oui != QCA_OUI):
        return Frame(dst=dst, src=src, body=Unknown(raw=payload, mmtype_value=mt), mmv=mmv, fmi=fmi, oui=oui)
    # Reader turns every short read into ParseError, the only exception a payload decoder raises
    return Frame(dst=dst, src=src, body=cls.unpack(payload), mmv=mmv, fmi=fmi, oui=oui)


def fields_of(body: Message) -> dict[str, object]:
    """The payload's fields as JSON-friendly values (bytes as hex, MACs as text)."""
    out: dict[str, object] = {}
    for name, value in vars(body).items():
        if isinstance(value, bytes):
            out[name] = mac_text(value) if len(value) == 6 else value.hex()
        else:
            out[name] = value
    return out
