"""EVSE side of SLAC (ISO 15118-3 clause 9): answer the car, measure it, hand out the network key."""

from __future__ import annotations

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
    SLAC_GROUPS,
    AttenCharInd,
    AttenCharRsp,
    AttenProfileInd,
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


class EvseState(Enum):
    IDLE = auto()
    SET_KEY = auto()
    WAIT_PARM_REQ = auto()
    WAIT_START_ATTEN = auto()
    SOUNDING = auto()
    WAIT_ATTEN_RSP = auto()
    WAIT_MATCH_REQ = auto()
    JOINING = auto()
    MATCHED = auto()


S = EvseState
T = Timer
MATCHING = (S.WAIT_START_ATTEN, S.SOUNDING, S.WAIT_ATTEN_RSP, S.WAIT_MATCH_REQ)


class EvseMachine(Machine):
    role = "EVSE"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, S.IDLE)
        self.nmk: bytes | None = None
        self.pev_mac: bytes | None = None
        self.tries = 0
        self.expected_sounds = 0
        self.sounds = 0
        self.profiles = 0
        self.aag_sum = [0] * SLAC_GROUPS
        self.early_parm: tuple[Frame, SlacParmReq] | None = None

    # ------------------------------------------------------------------ message builders
    def _frame(self, dst: bytes, body: Message) -> Frame:
        return Frame(dst=dst, src=self.ctx.host_mac, body=body)

    def _set_key(self) -> None:
        self.nmk = self.ctx.random_bytes(16)
        self.nid = nid_from_nmk(self.nmk)
        self.send(self._frame(self.ctx.modem_mac, SetKeyReq(nid=self.nid, new_key=self.nmk)))
        self.timer(T.T_modem_response, self.timers.T_modem_response)

    def _atten_char(self) -> None:
        assert self.pev_mac is not None and self.run_id is not None and self.attenuation is not None
        self.send(self._frame(self.pev_mac, AttenCharInd(
            source_address=self.pev_mac, run_id=self.run_id, num_sounds=max(self.profiles, self.sounds),
            aag=list(self.attenuation), resp_id=id_bytes(self.settings.evse_id))))
        self.timer(T.TT_match_response, self.timers.TT_match_response)

    def _match_cnf(self, req: SlacMatchReq) -> None:
        assert self.pev_mac is not None and self.run_id is not None
        assert self.nid is not None and self.nmk is not None
        self.send(self._frame(self.pev_mac, SlacMatchCnf(
            run_id=self.run_id, pev_mac=self.pev_mac, evse_mac=self.ctx.host_mac, nid=self.nid,
            nmk=self.nmk, pev_id=req.pev_id, evse_id=id_bytes(self.settings.evse_id))))

    def _poll_link(self) -> None:
        self.send(Frame(dst=self.ctx.modem_mac, src=self.ctx.host_mac, body=LinkStatusReq(), mmv=0))
        self.timer(T.T_link_status_poll, self.timers.T_link_status_poll)

    # ------------------------------------------------------------------ checks
    def _from_modem(self, frame: Frame) -> bool:
        return frame.dst == self.ctx.host_mac and (
            frame.src == self.ctx.modem_mac or self.ctx.modem_mac == LOCAL_MODEM)

    def _from_pev(self, frame: Frame, run_id: bytes) -> bool:
        if frame.src != self.pev_mac:
            self.ignore(frame, f"source {mac_text(frame.src)} is not the PEV of this session")
            return False
        if run_id != self.run_id:
            self.ignore(frame, f"RunID {run_id.hex()} is not this session's")
            return False
        if frame.dst not in (self.ctx.host_mac, BROADCAST):
            self.ignore(frame, "not addressed to us")
            return False
        return True

    # ------------------------------------------------------------------ transitions
    def dispatch(self, event: Event) -> None:
        match event:
            case Start(reason):
                self._start(reason)
            case Stop(reason):
                self._stop(reason)
            case Received(frame):
                self._received(frame)
            case Expired(timer):
                self._expired(timer)

    def _start(self, reason: str) -> None:
        if self.state in (S.JOINING, S.MATCHED):
            self.emit(LinkDown("new plug-in"))
        self.cancel_all()
        self.tries = 0
        self.early_parm = None
        self.run_id = self.pev_mac = self.peer_mac = None
        self.attenuation = None
        self._set_key()
        self.go(S.SET_KEY, reason)

    def _stop(self, reason: str) -> None:
        if self.state is S.IDLE:
            return
        self.cancel_all()
        if self.state in (S.JOINING, S.MATCHED):
            self.emit(LinkDown(reason))
        if self.state is not S.SET_KEY:
            # a fresh key throws the car out of the logical network we built for it
            nmk = self.ctx.random_bytes(16)
            self.send(self._frame(self.ctx.modem_mac, SetKeyReq(nid=nid_from_nmk(nmk), new_key=nmk)))
        self.go(S.IDLE, reason)

    def _back_to_wait_parm(self, why: str) -> None:
        self.cancel_all()
        self.timer(T.TT_EVSE_SLAC_init, self.timers.TT_EVSE_SLAC_init)
        self.go(S.WAIT_PARM_REQ, why)

    def _parm_req(self, frame: Frame, req: SlacParmReq) -> None:
        if req.application_type != 0 or req.security_type != 0:
            self.ignore(frame, f"application {req.application_type} / security {req.security_type} not supported")
            return
        self.cancel_all()
        self.run_id = req.run_id
        self.pev_mac = self.peer_mac = frame.src
        self.attenuation = None
        mnbc_units = max(1, round(self.timers.TT_EVSE_match_MNBC * 10))
        self.send(self._frame(frame.src, SlacParmCnf(
            run_id=req.run_id, forwarding_sta=frame.src, num_sounds=self.timers.C_EV_match_MNBC,
            time_out=mnbc_units)))
        self.timer(T.TT_match_sequence, self.timers.TT_match_sequence)
        self.go(S.WAIT_START_ATTEN, "CM_SLAC_PARM.REQ", pev=mac_text(frame.src), run_id=req.run_id.hex())

    def _finish_sounding(self, why: str) -> None:
        self.cancel(T.TT_EVSE_match_MNBC)
        if self.settings.no_atten_profile:
            if self.sounds == 0:
                self._back_to_wait_parm("no sounds received")
                return
            self.attenuation = [self.settings.fixed_attenuation] * SLAC_GROUPS
        else:
            if self.profiles == 0:
                self._back_to_wait_parm("no CM_ATTEN_PROFILE.IND from the modem (set no_atten_profile for AR7420)")
                return
            self.attenuation = [round(s / self.profiles) for s in self.aag_sum]
        self.tries = 0
        self._atten_char()
        self.go(S.WAIT_ATTEN_RSP, why, sounds=self.sounds, profiles=self.profiles)

    def _received(self, frame: Frame) -> None:
        body = frame.body
        state = self.state
        match body:
            case SetKeyCnf() if state is S.SET_KEY:
                if not self._from_modem(frame):
                    self.ignore(frame, "not from our modem")
                    return
                self.cancel(T.T_modem_response)
                if body.result != 0:
                    self.last_error = f"modem refused CM_SET_KEY (result {body.result})"
                    self.emit(Failed(self.last_error))
                    self.go(S.IDLE, "CM_SET_KEY.CNF failed")
                    return
                self.timer(T.TT_EVSE_SLAC_init, self.timers.TT_EVSE_SLAC_init)
                self.go(S.WAIT_PARM_REQ, "CM_SET_KEY.CNF", nid=self.nid.hex() if self.nid else None)
                if self.early_parm is not None:
                    early, self.early_parm = self.early_parm, None
                    self._parm_req(*early)
            case SlacParmReq() if state is S.SET_KEY:
                # the car was quicker than our modem: answer as soon as the key is set
                if frame.dst in (BROADCAST, self.ctx.host_mac):
                    self.early_parm = (frame, body)
            case SlacParmReq() if state is S.WAIT_PARM_REQ or state in MATCHING or state in (S.JOINING, S.MATCHED):
                if frame.dst not in (BROADCAST, self.ctx.host_mac):
                    self.ignore(frame, "not addressed to us")
                    return
                if state is not S.WAIT_PARM_REQ and frame.src == self.pev_mac and body.run_id == self.run_id:
                    return  # a repetition of the request we answered already
                if state in (S.JOINING, S.MATCHED):
                    # the car starts over: a new session gets a new key, then the request is answered
                    self.emit(LinkDown("the car restarted SLAC"))
                    self.cancel_all()
                    self.early_parm = (frame, body)
                    self._set_key()
                    self.go(S.SET_KEY, "CM_SLAC_PARM.REQ while matched")
                    return
                self._parm_req(frame, body)
            case StartAttenCharInd() if state is S.WAIT_START_ATTEN:
                if not self._from_pev(frame, body.run_id):
                    return
                self.cancel(T.TT_match_sequence)
                self.expected_sounds = body.num_sounds or self.timers.C_EV_match_MNBC
                self.sounds = self.profiles = 0
                self.aag_sum = [0] * SLAC_GROUPS
                self.timer(T.TT_EVSE_match_MNBC, self.timers.TT_EVSE_match_MNBC)
                self.go(S.SOUNDING, "CM_START_ATTEN_CHAR.IND", sounds=self.expected_sounds)
            case StartAttenCharInd() if state is S.SOUNDING:
                return  # the car repeats it C_EV_start_atten_char_inds times
            case MnbcSoundInd() if state is S.SOUNDING:
                if not self._from_pev(frame, body.run_id):
                    return
                self.sounds += 1
                if self.settings.no_atten_profile and self.sounds >= self.expected_sounds:
                    self._finish_sounding("all sounds received")
            case AttenProfileInd() if state is S.SOUNDING:
                if not self._from_modem(frame) or body.pev_mac != self.pev_mac:
                    self.ignore(frame, f"profile for {mac_text(body.pev_mac)}, not this session's PEV")
                    return
                for i, value in enumerate(body.aag[:SLAC_GROUPS]):
                    self.aag_sum[i] += value
                self.profiles += 1
                if self.profiles >= self.expected_sounds:
                    self._finish_sounding("all profiles received")
            case AttenCharRsp() if state is S.WAIT_ATTEN_RSP:
                if not self._from_pev(frame, body.run_id):
                    return
                self.cancel(T.TT_match_response)
                if body.result != 0:
                    self._back_to_wait_parm(f"CM_ATTEN_CHAR.RSP result {body.result}")
                    return
                self.timer(T.TT_EVSE_match_session, self.timers.TT_EVSE_match_session)
                self.go(S.WAIT_MATCH_REQ, "CM_ATTEN_CHAR.RSP")
            case SlacMatchReq() if state in (S.WAIT_ATTEN_RSP, S.WAIT_MATCH_REQ):
                if not self._from_pev(frame, body.run_id):
                    return
                if body.evse_mac != self.ctx.host_mac or body.pev_mac != self.pev_mac:
                    self.ignore(frame, "MAC fields do not name this session's PEV and EVSE")
                    return
                self.cancel(T.TT_match_response, T.TT_EVSE_match_session)
                self._match_cnf(body)
                self.timer(T.TT_match_join, self.timers.TT_match_join)
                self._poll_link()
                self.go(S.JOINING, "CM_SLAC_MATCH.REQ")
            case SlacMatchReq() if state in (S.JOINING, S.MATCHED):
                if self._from_pev(frame, body.run_id):
                    self._match_cnf(body)  # the car missed our confirmation
            case LinkStatusCnf() if state is S.JOINING:
                if not self._from_modem(frame):
                    self.ignore(frame, "not from our modem")
                    return
                if body.up:
                    self.cancel(T.TT_match_join, T.T_link_status_poll)
                    assert self.pev_mac is not None and self.nid is not None
                    self.emit(LinkUp(self.pev_mac, self.nid))
                    self.go(S.MATCHED, "link up")
                    self.supervise()
            case LinkStatusCnf() if state is S.MATCHED:
                if self._from_modem(frame) and not body.up:
                    # the car left (or our modem lost its key): a fresh key for the next matching
                    self.emit(LinkDown("modem reports the link down"))
                    self.cancel_all()
                    self._set_key()
                    self.go(S.SET_KEY, "link lost")
            case _:
                self.ignore(frame, "not expected in this state")

    def _expired(self, timer: str) -> None:
        state = self.state
        match (timer, state):
            case (T.T_modem_response, S.SET_KEY):
                self.tries += 1
                if self.tries > self.timers.C_EV_match_retry:
                    self.last_error = "modem did not confirm CM_SET_KEY.REQ"
                    self.emit(Failed(self.last_error))
                    self.go(S.IDLE, "no CM_SET_KEY.CNF")
                    return
                self._set_key()
            case (T.TT_EVSE_SLAC_init, S.WAIT_PARM_REQ):
                self.last_error = "no CM_SLAC_PARM.REQ from the car within TT_EVSE_SLAC_init"
                self.emit(Failed(self.last_error))
                self.go(S.IDLE, "TT_EVSE_SLAC_init expired")
            case (T.TT_match_sequence, S.WAIT_START_ATTEN):
                self._back_to_wait_parm("no CM_START_ATTEN_CHAR.IND within TT_match_sequence")
            case (T.TT_EVSE_match_MNBC, S.SOUNDING):
                self._finish_sounding("TT_EVSE_match_MNBC expired")
            case (T.TT_match_response, S.WAIT_ATTEN_RSP):
                self.tries += 1
                if self.tries > self.timers.C_EV_match_retry:
                    self._back_to_wait_parm("no CM_ATTEN_CHAR.RSP")
                    return
                self._atten_char()
            case (T.TT_EVSE_match_session, S.WAIT_MATCH_REQ):
                self._back_to_wait_parm("no CM_SLAC_MATCH.REQ within TT_EVSE_match_session (another EVSE chosen?)")
            case (T.T_link_status_poll, S.JOINING):
                self._poll_link()
            case (T.T_link_supervision, S.MATCHED):
                self.poll_supervision()
            case (T.TT_match_join, S.JOINING):
                self.last_error = "the car did not join the logical network within TT_match_join"
                self.emit(Failed(self.last_error))
                self._back_to_wait_parm("TT_match_join expired")
            case _:
                self.log.debug("stale timer", role=self.role, timer=timer, state=state.name)
