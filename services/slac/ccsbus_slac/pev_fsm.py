"""PEV side of SLAC (ISO 15118-3 clause 9): find the charger we are plugged into and join its network."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from .fsm import (
    Context,
    Event,
    Expired,
    Failed,
    LinkDown,
    LinkUp,
    Machine,
    Received,
    Start,
    Stop,
    Timer,
    id_bytes,
)
from .mme import (
    BROADCAST,
    LOCAL_MODEM,
    AttenCharInd,
    AttenCharRsp,
    Frame,
    LinkStatusCnf,
    LinkStatusReq,
    Message,
    MnbcSoundInd,
    SetKeyCnf,
    SetKeyReq,
    SlacMatchCnf,
    SlacMatchReq,
    SlacParmCnf,
    SlacParmReq,
    StartAttenCharInd,
    mac_text,
)
from .nid import nid_from_nmk


class PevState(Enum):
    IDLE = auto()
    WAIT_PARM_CNF = auto()
    START_ATTEN = auto()
    SOUNDING = auto()
    WAIT_RESULTS = auto()
    WAIT_MATCH_CNF = auto()
    SET_KEY = auto()
    JOINING = auto()
    MATCHED = auto()
    FAILED = auto()


S = PevState
T = Timer
COLLECTING = (S.START_ATTEN, S.SOUNDING, S.WAIT_RESULTS)


@dataclass
class Candidate:
    """One EVSE that answered our CM_SLAC_PARM.REQ."""

    mac: bytes
    aag: list[int] | None = None

    @property
    def average(self) -> float:
        return sum(self.aag) / len(self.aag) if self.aag else float("inf")


class PevMachine(Machine):
    role = "PEV"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, S.IDLE)
        self.attempt = 0
        self.tries = 0
        self.sent = 0
        self.num_sounds = ctx.settings.timers.C_EV_match_MNBC
        self.candidates: dict[bytes, Candidate] = {}
        self.chosen: bytes | None = None
        self.nmk: bytes | None = None

    # ------------------------------------------------------------------ builders
    def _send(self, dst: bytes, body: Message) -> None:
        self.send(Frame(dst=dst, src=self.ctx.host_mac, body=body))

    def _parm_req(self) -> None:
        assert self.run_id is not None
        self._send(BROADCAST, SlacParmReq(run_id=self.run_id))
        self.timer(T.TT_match_response, self.timers.TT_match_response)

    def _time_out_units(self) -> int:
        return max(1, round(self.timers.TT_EVSE_match_MNBC * 10))

    def _start_atten(self) -> None:
        assert self.run_id is not None
        self._send(BROADCAST, StartAttenCharInd(
            run_id=self.run_id, forwarding_sta=self.ctx.host_mac, num_sounds=self.num_sounds,
            time_out=self._time_out_units()))
        self.sent += 1
        self.timer(T.TP_EV_batch_msg_interval, self.timers.TP_EV_batch_msg_interval)

    def _sound(self) -> None:
        assert self.run_id is not None
        self.sent += 1
        self._send(BROADCAST, MnbcSoundInd(
            run_id=self.run_id, count=self.num_sounds - self.sent, sender_id=id_bytes(self.settings.pev_id),
            rnd=self.ctx.random_bytes(16)))
        if self.sent < self.num_sounds:
            self.timer(T.TP_EV_batch_msg_interval, self.timers.TP_EV_batch_msg_interval)

    def _match_req(self) -> None:
        assert self.run_id is not None and self.chosen is not None
        self._send(self.chosen, SlacMatchReq(
            run_id=self.run_id, pev_mac=self.ctx.host_mac, evse_mac=self.chosen,
            pev_id=id_bytes(self.settings.pev_id)))
        self.timer(T.TT_match_response, self.timers.TT_match_response)

    def _set_key(self, nmk: bytes, nid: bytes) -> None:
        self.send(Frame(dst=self.ctx.modem_mac, src=self.ctx.host_mac, body=SetKeyReq(nid=nid, new_key=nmk)))
        self.timer(T.T_modem_response, self.timers.T_modem_response)

    def _poll_link(self) -> None:
        self.send(Frame(dst=self.ctx.modem_mac, src=self.ctx.host_mac, body=LinkStatusReq(), mmv=0))
        self.timer(T.T_link_status_poll, self.timers.T_link_status_poll)

    # ------------------------------------------------------------------ steps
    def _begin_attempt(self, why: str) -> None:
        self.cancel_all()
        self.run_id = self.ctx.random_bytes(8)
        self.candidates = {}
        self.chosen = self.peer_mac = None
        self.attenuation = None
        self.tries = 0
        self.sent = 0
        self._parm_req()
        self.go(S.WAIT_PARM_CNF, why, run_id=self.run_id.hex(), attempt=self.attempt)

    def _attempt_failed(self, why: str) -> None:
        self.cancel_all()
        self.attempt += 1
        if self.attempt > self.timers.C_EV_match_retry:
            self.last_error = f"matching failed after {self.attempt} attempts: {why}"
            self.emit(Failed(self.last_error))
            self.go(S.FAILED, why)
            return
        self.log.info("slac attempt failed, retrying", role=self.role, why=why, attempt=self.attempt)
        self._begin_attempt(f"retry after: {why}")

    def _decide(self, why: str) -> None:
        self.cancel(T.TT_EV_atten_results, T.TP_EV_batch_msg_interval)
        results = [c for c in self.candidates.values() if c.aag is not None]
        limit = self.settings.atten_limit
        if limit > 0:
            results = [c for c in results if c.average <= limit]
        if not results:
            self._attempt_failed("no usable CM_ATTEN_CHAR.IND")
            return
        best = min(results, key=lambda c: c.average)
        self.chosen = self.peer_mac = best.mac
        self.attenuation = best.aag
        self.tries = 0
        self._match_req()
        self.go(S.WAIT_MATCH_CNF, why, evse=mac_text(best.mac), average=round(best.average, 2),
                candidates={mac_text(c.mac): round(c.average, 2) for c in results})

    def _all_reported(self) -> bool:
        return bool(self.candidates) and all(c.aag is not None for c in self.candidates.values())

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, event: Event) -> None:
        match event:
            case Start(reason):
                if self.state in (S.JOINING, S.MATCHED):
                    self.emit(LinkDown("matching restarted"))
                self.attempt = 0
                self.last_error = None
                self._begin_attempt(reason)
            case Stop(reason):
                self._stop(reason)
            case Received(frame):
                self._received(frame)
            case Expired(timer):
                self._expired(timer)

    def _stop(self, reason: str) -> None:
        if self.state is S.IDLE:
            return
        self.cancel_all()
        if self.state in (S.JOINING, S.MATCHED):
            self.emit(LinkDown(reason))
        if self.state in (S.SET_KEY, S.JOINING, S.MATCHED):
            # leave the charger's network: our modem gets a key nobody else has
            nmk = self.ctx.random_bytes(16)
            self.send(Frame(dst=self.ctx.modem_mac, src=self.ctx.host_mac,
                            body=SetKeyReq(nid=nid_from_nmk(nmk), new_key=nmk)))
        self.nid = self.nmk = None
        self.go(S.IDLE, reason)

    def _to_us(self, frame: Frame, run_id: bytes) -> bool:
        if frame.dst != self.ctx.host_mac:
            self.ignore(frame, "not addressed to us")
            return False
        if run_id != self.run_id:
            self.ignore(frame, f"RunID {run_id.hex()} is not this session's")
            return False
        return True

    def _from_modem(self, frame: Frame) -> bool:
        ok = frame.dst == self.ctx.host_mac and (
            frame.src == self.ctx.modem_mac or self.ctx.modem_mac == LOCAL_MODEM)
        if not ok:
            self.ignore(frame, "not from our modem")
        return ok

    def _received(self, frame: Frame) -> None:
        body = frame.body
        state = self.state
        match body:
            case SlacParmCnf() if state is S.WAIT_PARM_CNF or state in COLLECTING:
                if not self._to_us(frame, body.run_id):
                    return
                if body.forwarding_sta not in (self.ctx.host_mac, BROADCAST, bytes(6)):
                    self.ignore(frame, "FORWARDING_STA is not us")
                    return
                self.candidates.setdefault(frame.src, Candidate(frame.src))
                if state is S.WAIT_PARM_CNF:
                    self.cancel(T.TT_match_response)
                    self.num_sounds = body.num_sounds or self.timers.C_EV_match_MNBC
                    self.sent = 0
                    # V2G3-A09-30: the results timer runs from the first CM_START_ATTEN_CHAR.IND
                    self.timer(T.TT_EV_atten_results, self.timers.TT_EV_atten_results)
                    self._start_atten()
                    self.go(S.START_ATTEN, "CM_SLAC_PARM.CNF", evse=mac_text(frame.src))
            case AttenCharInd() if state in COLLECTING:
                if not self._to_us(frame, body.run_id):
                    return
                if body.source_address != self.ctx.host_mac:
                    self.ignore(frame, "SOURCE_ADDRESS is not us")
                    return
                self._send(frame.src, AttenCharRsp(
                    source_address=self.ctx.host_mac, run_id=body.run_id, result=0,
                    source_id=body.source_id, resp_id=body.resp_id))
                self.candidates.setdefault(frame.src, Candidate(frame.src)).aag = list(body.aag)
                self.log.info("slac attenuation", role=self.role, evse=mac_text(frame.src),
                              average=round(body.average, 2), sounds=body.num_sounds)
                if state is S.WAIT_RESULTS and self._all_reported():
                    self._decide("every answering EVSE reported")
            case SlacMatchCnf() if state is S.WAIT_MATCH_CNF:
                if not self._to_us(frame, body.run_id):
                    return
                if frame.src != self.chosen or body.pev_mac != self.ctx.host_mac or body.evse_mac != self.chosen:
                    self.ignore(frame, "MACs do not name us and the chosen EVSE")
                    return
                self.cancel(T.TT_match_response)
                if nid_from_nmk(body.nmk) != body.nid:
                    self.log.info("slac NID is not derived from the NMK; using it as given", role=self.role,
                                  nid=body.nid.hex())
                self.nmk, self.nid = body.nmk, body.nid
                self.tries = 0
                self._set_key(body.nmk, body.nid)
                self.go(S.SET_KEY, "CM_SLAC_MATCH.CNF", nid=body.nid.hex())
            case SetKeyCnf() if state is S.SET_KEY:
                if not self._from_modem(frame):
                    return
                self.cancel(T.T_modem_response)
                if body.result != 0:
                    self._attempt_failed(f"modem refused CM_SET_KEY (result {body.result})")
                    return
                self.timer(T.TT_match_join, self.timers.TT_match_join)
                self._poll_link()
                self.go(S.JOINING, "CM_SET_KEY.CNF")
            case LinkStatusCnf() if state is S.JOINING:
                if not self._from_modem(frame):
                    return
                if body.up:
                    self.cancel(T.TT_match_join, T.T_link_status_poll)
                    assert self.chosen is not None and self.nid is not None
                    self.emit(LinkUp(self.chosen, self.nid))
                    self.go(S.MATCHED, "link up")
                    self.supervise()
            case LinkStatusCnf() if state is S.MATCHED:
                if self._from_modem(frame) and not body.up:
                    self.emit(LinkDown("modem reports the link down"))
                    self.attempt = 0
                    self._begin_attempt("link lost")
            case AttenCharInd() if state in (S.WAIT_MATCH_CNF, S.SET_KEY, S.JOINING, S.MATCHED):
                return  # a late or repeated result of a charger we did not choose
            case SlacParmCnf() if state in (S.WAIT_MATCH_CNF, S.SET_KEY, S.JOINING, S.MATCHED):
                return  # a late answer of another charger on the cable
            case _:
                self.ignore(frame, "not expected in this state")

    def _expired(self, timer: str) -> None:
        state = self.state
        match (timer, state):
            case (T.TT_match_response, S.WAIT_PARM_CNF):
                self.tries += 1
                if self.tries > self.timers.C_EV_match_retry:
                    self._attempt_failed("no CM_SLAC_PARM.CNF")
                    return
                self._parm_req()
            case (T.TP_EV_batch_msg_interval, S.START_ATTEN):
                if self.sent < self.timers.C_EV_start_atten_char_inds:
                    self._start_atten()
                    return
                self.sent = 0
                self._sound()
                self.go(S.SOUNDING, "CM_START_ATTEN_CHAR.IND sent")
                if self.sent >= self.num_sounds:
                    self.go(S.WAIT_RESULTS, "sounds sent")
            case (T.TP_EV_batch_msg_interval, S.SOUNDING):
                self._sound()
                if self.sent >= self.num_sounds:
                    if self._all_reported():
                        self._decide("every answering EVSE reported")
                    else:
                        self.go(S.WAIT_RESULTS, "sounds sent")
            case (T.TT_EV_atten_results, s) if s in COLLECTING:
                self._decide("TT_EV_atten_results expired")
            case (T.TT_match_response, S.WAIT_MATCH_CNF):
                self.tries += 1
                if self.tries > self.timers.C_EV_match_retry:
                    self._attempt_failed("no CM_SLAC_MATCH.CNF")
                    return
                self._match_req()
            case (T.T_modem_response, S.SET_KEY):
                self.tries += 1
                if self.tries > self.timers.C_EV_match_retry:
                    self._attempt_failed("modem did not confirm CM_SET_KEY.REQ")
                    return
                assert self.nmk is not None and self.nid is not None
                self._set_key(self.nmk, self.nid)
            case (T.T_link_status_poll, S.JOINING):
                self._poll_link()
            case (T.T_link_supervision, S.MATCHED):
                self.poll_supervision()
            case (T.TT_match_join, S.JOINING):
                self._attempt_failed("link not up within TT_match_join")
            case _:
                self.log.debug("stale timer", role=self.role, timer=timer, state=state.name)
