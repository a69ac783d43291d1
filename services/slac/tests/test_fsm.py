"""State machines played on the simulated medium (no sockets, simulated clock)."""

from __future__ import annotations

import dataclasses

import pytest

from ccsbus_slac.evse_fsm import EvseMachine, EvseState
from ccsbus_slac.fsm import Context, Expired, Received, Send, Start, Stop
from ccsbus_slac.listen_fsm import ListenState
from ccsbus_slac.mme import (
    BROADCAST,
    AttenCharInd,
    Frame,
    SetKeyReq,
    SlacMatchReq,
    SlacParmCnf,
    SlacParmReq,
    StartAttenCharInd,
)
from ccsbus_slac.pev_fsm import PevState
from ccsbus_slac.settings import SlacSettings, SlacTimers
from ccsbus_slac.simloop import SimLoop
from ccsbus_slac.vmodem import PortConfig

PEV_MAC = bytes.fromhex("02aa00000001")
EVSE_MACS = [bytes.fromhex(f"02bb000000{i:02x}") for i in range(1, 4)]
ROGUE_MAC = bytes.fromhex("02cc00000001")
SETTINGS = SlacSettings()


def ports(*atten: int, noprofile: frozenset[int] = frozenset()) -> list[PortConfig]:
    return [PortConfig("udp", "x:0", atten=a, profile=i not in noprofile) for i, a in enumerate(atten)]


def start_all(sim: SimLoop) -> None:
    for index in sim.stations:
        sim.feed(index, Start("plug-in"))


def test_single_match_reaches_link_up_on_both_sides() -> None:
    sim = SimLoop(ports(0, 10))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)
    evse = sim.add(1, "EVSE", SETTINGS, EVSE_MACS[0])
    start_all(sim)
    sim.run(5.0, stop=lambda: bool(pev.ups and evse.ups))
    assert pev.machine.state is PevState.MATCHED
    assert evse.machine.state is EvseState.MATCHED
    assert pev.ups[0].peer_mac == EVSE_MACS[0] and evse.ups[0].peer_mac == PEV_MAC
    assert pev.ups[0].nid == evse.ups[0].nid == evse.machine.nid
    assert pev.machine.attenuation == [10] * 58
    assert sim.now < 1.5  # with the standard's timers a clean match is well under the budget


def test_pev_picks_the_evse_with_the_lowest_attenuation() -> None:
    sim = SimLoop(ports(0, 30, 8, 20))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)
    evses = [sim.add(i + 1, "EVSE", SETTINGS, EVSE_MACS[i]) for i in range(3)]
    start_all(sim)
    sim.run(5.0, stop=lambda: bool(pev.ups and evses[1].ups))
    assert pev.ups[0].peer_mac == EVSE_MACS[1]
    assert evses[1].machine.state is EvseState.MATCHED
    # the others answered and were not chosen: they wait for the next car once TT_EVSE_match_session ends
    sim.run(sim.now + SETTINGS.timers.TT_EVSE_match_session + 1)
    assert evses[0].machine.state is EvseState.WAIT_PARM_REQ
    assert evses[2].machine.state is EvseState.WAIT_PARM_REQ
    assert not evses[0].ups and not evses[2].ups


def test_rogue_atten_char_with_wrong_run_id_is_ignored() -> None:
    sim = SimLoop(ports(0, 25, 0))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)
    sim.add(1, "EVSE", SETTINGS, EVSE_MACS[0])
    start_all(sim)
    # a third station claims a perfect (0 dB) result, but for another RunID
    rogue = Frame(dst=PEV_MAC, src=ROGUE_MAC, body=AttenCharInd(
        source_address=PEV_MAC, run_id=b"\x99" * 8, num_sounds=10, aag=[0] * 58))
    for k in range(10):
        sim.at(0.05 * k, lambda: sim.inject(2, rogue.pack()))
    sim.run(5.0, stop=lambda: bool(pev.ups))
    assert pev.ups and pev.ups[0].peer_mac == EVSE_MACS[0]


def test_evse_ignores_wrong_run_id_and_stays_in_state() -> None:
    ctx = Context(settings=SETTINGS, host_mac=EVSE_MACS[0])
    evse = EvseMachine(ctx)
    evse.handle(Start())
    evse.state = EvseState.WAIT_PARM_REQ  # as after CM_SET_KEY.CNF
    run_id = b"\x01" * 8
    out = evse.handle(Received(Frame(dst=BROADCAST, src=PEV_MAC, body=SlacParmReq(run_id=run_id))))
    assert any(isinstance(a, Send) and isinstance(a.frame.body, SlacParmCnf) for a in out)
    assert evse.state is EvseState.WAIT_START_ATTEN
    wrong = StartAttenCharInd(run_id=b"\x02" * 8, forwarding_sta=PEV_MAC)
    out = evse.handle(Received(Frame(dst=BROADCAST, src=PEV_MAC, body=wrong)))
    assert out == [] and evse.state is EvseState.WAIT_START_ATTEN
    # right RunID from a different source MAC: also not this session
    right = StartAttenCharInd(run_id=run_id, forwarding_sta=PEV_MAC)
    out = evse.handle(Received(Frame(dst=BROADCAST, src=ROGUE_MAC, body=right)))
    assert out == [] and evse.state is EvseState.WAIT_START_ATTEN
    evse.handle(Received(Frame(dst=BROADCAST, src=PEV_MAC, body=right)))
    assert evse.state is EvseState.SOUNDING


def test_out_of_state_messages_are_ignored() -> None:
    ctx = Context(settings=SETTINGS, host_mac=EVSE_MACS[0])
    evse = EvseMachine(ctx)
    match_req = SlacMatchReq(run_id=b"\x01" * 8, pev_mac=PEV_MAC, evse_mac=EVSE_MACS[0])
    assert evse.handle(Received(Frame(dst=EVSE_MACS[0], src=PEV_MAC, body=match_req))) == []
    assert evse.state is EvseState.IDLE
    assert evse.handle(Expired("TT_match_sequence")) == []  # a stale timer changes nothing


def test_pev_retries_parm_req_then_whole_matching_then_fails() -> None:
    sim = SimLoop(ports(0, 10))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)  # no EVSE on the cable
    sim.feed(0, Start())
    sim.run(30.0)
    retry = SETTINGS.timers.C_EV_match_retry
    parm_reqs = [f for _, i, f in sim.sent if i == 0 and f[15:17] == b"\x64\x60"]
    assert len(parm_reqs) == (retry + 1) * (retry + 1)
    assert pev.machine.state is PevState.FAILED
    assert len(pev.failures) == 1 and "CM_SLAC_PARM.CNF" in pev.failures[0].reason


def test_lost_match_cnf_is_retried() -> None:
    sim = SimLoop(ports(0, 10))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)
    evse = sim.add(1, "EVSE", SETTINGS, EVSE_MACS[0])
    lost = {"n": 0}

    def drop_first_match_cnf(port: int, frame: bytes) -> bool:
        if port == 0 and frame[15:17] == b"\x7d\x60" and lost["n"] == 0:
            lost["n"] += 1
            return True
        return False

    sim.drop = drop_first_match_cnf
    start_all(sim)
    sim.run(5.0, stop=lambda: bool(pev.ups and evse.ups))
    assert lost["n"] == 1
    assert pev.machine.state is PevState.MATCHED and evse.machine.state is EvseState.MATCHED


def test_ar7420_mode_reports_configured_profile() -> None:
    settings = dataclasses.replace(SETTINGS, no_atten_profile=True, fixed_attenuation=33)
    sim = SimLoop(ports(0, 5, noprofile=frozenset({1})))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)
    sim.add(1, "EVSE", settings, EVSE_MACS[0])
    start_all(sim)
    sim.run(5.0, stop=lambda: bool(pev.ups))
    assert pev.ups and pev.machine.attenuation == [33] * 58


def test_evse_without_profiles_and_without_switch_does_not_match() -> None:
    sim = SimLoop(ports(0, 5, noprofile=frozenset({1})))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)
    evse = sim.add(1, "EVSE", SETTINGS, EVSE_MACS[0])
    start_all(sim)
    sim.run(20.0)
    assert not pev.ups and pev.machine.state is PevState.FAILED
    assert not [f for _, i, f in sim.sent if i == 1 and f[15:17] == b"\x6e\x60"]  # no CM_ATTEN_CHAR.IND
    assert evse.machine.state is EvseState.WAIT_PARM_REQ
    assert "ATTEN_PROFILE" in pev.failures[0].reason or "ATTEN_CHAR" in pev.failures[0].reason


def test_unplug_takes_link_down_and_leaves_the_network() -> None:
    sim = SimLoop(ports(0, 10))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)
    evse = sim.add(1, "EVSE", SETTINGS, EVSE_MACS[0])
    start_all(sim)
    sim.run(5.0, stop=lambda: bool(pev.ups and evse.ups))
    for index in (0, 1):
        sim.feed(index, Stop("CP state A"))
    sim.run(sim.now + 0.1)
    assert pev.downs and evse.downs
    assert pev.machine.state is PevState.IDLE and evse.machine.state is EvseState.IDLE
    assert not sim.medium.same_network(sim.medium.modems[0], sim.medium.modems[1])
    # and a new plug-in matches again with a fresh key
    old_nid = evse.ups[0].nid
    start_all(sim)
    sim.run(sim.now + 5.0, stop=lambda: len(pev.ups) == 2)
    assert len(pev.ups) == 2 and pev.ups[1].nid != old_nid


def test_lost_link_is_noticed_and_matching_starts_again() -> None:
    sim = SimLoop(ports(0, 10))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)
    evse = sim.add(1, "EVSE", SETTINGS, EVSE_MACS[0])
    start_all(sim)
    sim.run(5.0, stop=lambda: bool(pev.ups and evse.ups))
    first_nid = pev.ups[0].nid
    lost_at = sim.now
    sim.medium.modems[1].new_key(bytes(16), bytes(7), sim.now)  # e.g. the charger's modem rebooted
    sim.run(lost_at + 5.0, stop=lambda: len(pev.ups) == 2 and len(evse.ups) == 2)
    supervision = SETTINGS.timers.T_link_supervision
    assert pev.downs and evse.downs
    assert pev.machine.state is PevState.MATCHED and evse.machine.state is EvseState.MATCHED
    assert pev.ups[1].nid == evse.ups[1].nid != first_nid
    assert sim.now - lost_at < supervision + 1.5


def test_listen_mode_learns_the_key_and_joins() -> None:
    sim = SimLoop(ports(0, 10, 10))
    pev = sim.add(0, "PEV", SETTINGS, PEV_MAC)
    sim.add(1, "EVSE", SETTINGS, EVSE_MACS[0])
    listener = sim.add(2, "LISTEN", SETTINGS, ROGUE_MAC)
    start_all(sim)
    sim.run(5.0, stop=lambda: bool(pev.ups and listener.ups))
    assert listener.machine.state is ListenState.JOINED
    assert listener.ups[0].nid == pev.ups[0].nid
    assert sim.medium.same_network(sim.medium.modems[2], sim.medium.modems[1])


def test_timers_are_named_after_the_standard() -> None:
    names = {f.name for f in dataclasses.fields(SlacTimers)}
    for required in ("TT_match_sequence", "TT_match_response", "TT_EV_atten_results", "TT_EVSE_match_MNBC",
                     "TP_EV_batch_msg_interval", "C_EV_match_MNBC", "C_EV_start_atten_char_inds",
                     "C_EV_match_retry", "TT_match_join"):
        assert required in names


@pytest.mark.parametrize("interval", [0.02, 0.05])
def test_sounds_are_spaced_by_tp_ev_batch_msg_interval(interval: float) -> None:
    settings = dataclasses.replace(SETTINGS, timers=dataclasses.replace(SETTINGS.timers,
                                                                         TP_EV_batch_msg_interval=interval))
    sim = SimLoop(ports(0, 10))
    pev = sim.add(0, "PEV", settings, PEV_MAC)
    sim.add(1, "EVSE", SETTINGS, EVSE_MACS[0])
    start_all(sim)
    sim.run(5.0, stop=lambda: bool(pev.ups))
    sounds = [t for t, i, f in sim.sent if i == 0 and f[15:17] == b"\x76\x60"]
    starts = [t for t, i, f in sim.sent if i == 0 and f[15:17] == b"\x6a\x60"]
    assert len(sounds) == 10 and len(starts) == 3
    gaps = [b - a for a, b in zip(starts + sounds, (starts + sounds)[1:], strict=False)]
    assert all(abs(g - interval) < 1e-6 for g in gaps)


def test_evse_stop_sets_a_fresh_key() -> None:
    ctx = Context(settings=SETTINGS, host_mac=EVSE_MACS[0])
    evse = EvseMachine(ctx)
    evse.handle(Start())
    evse.state = EvseState.MATCHED
    out = evse.handle(Stop("CP state A"))
    assert any(isinstance(a, Send) and isinstance(a.frame.body, SetKeyReq) for a in out)
    assert evse.state is EvseState.IDLE
