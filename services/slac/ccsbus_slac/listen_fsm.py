"""Listen mode: watch a car and a charger match, learn their key from CM_SLAC_MATCH.CNF, join."""

from __future__ import annotations

from enum import Enum, auto

from .fsm import Context, Event, Expired, Failed, LinkDown, LinkUp, Machine, Observed, Received, Start, Stop, Timer
from .mme import LOCAL_MODEM, Frame, LinkStatusCnf, LinkStatusReq, SetKeyCnf, SetKeyReq, SlacMatchCnf, is_vendor


class ListenState(Enum):
    IDLE = auto()
    OBSERVING = auto()
    SET_KEY = auto()
    JOINING = auto()
    JOINED = auto()


S = ListenState
T = Timer


class ListenMachine(Machine):
    role = "LISTEN"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, S.IDLE)
        self.nmk: bytes | None = None
        self.tries = 0

    def _set_key(self) -> None:
        assert self.nmk is not None and self.nid is not None
        self.send(Frame(dst=self.ctx.modem_mac, src=self.ctx.host_mac,
                        body=SetKeyReq(nid=self.nid, new_key=self.nmk)))
        self.timer(T.T_modem_response, self.timers.T_modem_response)

    def _poll_link(self) -> None:
        self.send(Frame(dst=self.ctx.modem_mac, src=self.ctx.host_mac, body=LinkStatusReq(), mmv=0))
        self.timer(T.T_link_status_poll, self.timers.T_link_status_poll)

    def _from_modem(self, frame: Frame) -> bool:
        return frame.dst == self.ctx.host_mac and (
            frame.src == self.ctx.modem_mac or self.ctx.modem_mac == LOCAL_MODEM)

    def dispatch(self, event: Event) -> None:
        match event:
            case Start(reason):
                self.cancel_all()
                if self.state in (S.JOINING, S.JOINED):
                    self.emit(LinkDown(reason))
                self.go(S.OBSERVING, reason)
            case Stop(reason):
                self.cancel_all()
                if self.state in (S.JOINING, S.JOINED):
                    self.emit(LinkDown(reason))
                self.go(S.IDLE, reason)
            case Received(frame):
                self._received(frame)
            case Expired(timer):
                self._expired(timer)

    def _received(self, frame: Frame) -> None:
        if self.state is S.IDLE:
            return
        body = frame.body
        if not is_vendor(frame.mmtype):
            self.emit(Observed(frame))
        match body:
            case SlacMatchCnf() if body.nmk != self.nmk:
                if self.state in (S.JOINING, S.JOINED):
                    self.emit(LinkDown("a new match was observed"))
                self.cancel_all()
                self.nmk, self.nid = body.nmk, body.nid
                self.peer_mac, self.run_id = body.evse_mac, body.run_id
                self.tries = 0
                self._set_key()
                self.go(S.SET_KEY, "CM_SLAC_MATCH.CNF observed", nid=body.nid.hex())
            case SetKeyCnf() if self.state is S.SET_KEY and self._from_modem(frame):
                self.cancel(T.T_modem_response)
                if body.result != 0:
                    self.last_error = f"modem refused CM_SET_KEY (result {body.result})"
                    self.emit(Failed(self.last_error))
                    self.go(S.OBSERVING, "CM_SET_KEY.CNF failed")
                    return
                self.timer(T.TT_match_join, self.timers.TT_match_join)
                self._poll_link()
                self.go(S.JOINING, "CM_SET_KEY.CNF")
            case LinkStatusCnf() if self.state is S.JOINING and self._from_modem(frame):
                if body.up:
                    self.cancel(T.T_link_status_poll, T.TT_match_join)
                    assert self.peer_mac is not None and self.nid is not None
                    self.emit(LinkUp(self.peer_mac, self.nid))
                    self.go(S.JOINED, "link up")
                    self.supervise()
            case LinkStatusCnf() if self.state is S.JOINED and self._from_modem(frame):
                if not body.up:
                    self.emit(LinkDown("modem reports the link down"))
                    self.nmk = None
                    self.go(S.OBSERVING, "link lost")
            case _:
                return  # listening: everything else is only observed

    def _expired(self, timer: str) -> None:
        match (timer, self.state):
            case (T.T_modem_response, S.SET_KEY):
                self.tries += 1
                if self.tries > self.timers.C_EV_match_retry:
                    self.last_error = "modem did not confirm CM_SET_KEY.REQ"
                    self.emit(Failed(self.last_error))
                    self.go(S.OBSERVING, "no CM_SET_KEY.CNF")
                    return
                self._set_key()
            case (T.T_link_status_poll, S.JOINING):
                self._poll_link()
            case (T.T_link_supervision, S.JOINED):
                self.poll_supervision()
            case (T.TT_match_join, S.JOINING):
                self.last_error = "could not join the observed network within TT_match_join"
                self.emit(Failed(self.last_error))
                self.go(S.OBSERVING, "TT_match_join expired")
            case _:
                self.log.debug("stale timer", role=self.role, timer=timer, state=self.state.name)
