"""The simulator's personalities: each reading of what the Boro documentation leaves open, alone and combined."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import time
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import yaml

from borobridge.app import _embedded_simulator
from borobridge.boro import hmac_auth
from borobridge.cli import _parser
from borobridge.errors import ConfigError
from borobridge.settings import SimulatorFaultSettings, SimulatorSettings, load_settings
from borobridge.simulator import (
    ENDPOINT_PATH,
    REPLY_ORDERS,
    TOKEN_COMPARES,
    TOKEN_KINDS,
    Faults,
    Personality,
    Simulator,
    TokenKind,
    describe,
    faults_from,
    personality_from,
)
from tests.support.processes import read_url

START = 1590570529.0
SECOND = int(START)
JSON = dict[str, Any]
EXAMPLE_REQUEST = (
    b'{"user_id":4,"methods":[{"method":"TaskAlarms","params":{"project_id":23,"task_ids":241555,"limit_value":1}}]}'
)


class Clock:
    """A hand-driven clock, so that runs are reproducible."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_sim(clock: Clock | None = None, **options: Any) -> Simulator:
    """One project on a hand-driven clock, no records arriving by themselves unless asked."""
    options.setdefault("projects", 1)
    options.setdefault("rate_per_second", 0.0)
    return Simulator(clock=clock or Clock(), **options)


def set_clock(sim: Simulator, now: float) -> None:
    clock = sim.clock
    assert isinstance(clock, Clock)
    clock.now = now


def ask(sim: Simulator, *methods: JSON) -> list[JSON]:
    reply = sim.handle("POST", ENDPOINT_PATH, {}, msgspec.json.encode({"user_id": 4, "methods": list(methods)}))
    assert reply.status == 200, reply.body
    items: list[JSON] = msgspec.json.decode(reply.body)["reply"]
    return items


def alarms(sim: Simulator, **params: Any) -> JSON:
    params.setdefault("project_id", 23)
    params.setdefault("task_ids", "*")
    [item] = ask(sim, {"method": "TaskAlarms", "params": params})
    assert "error" not in item, item
    result: JSON = item["result"]
    return result


def ids(result: JSON) -> list[int]:
    return [alarm["id"] for alarm in result["alarms"]]


def newest_first(sim: Simulator, task_ids: set[int] | None = None) -> list[int]:
    """Every record id of project 23 by (updated_at, id), newest first."""
    chosen = [r for r in sim.records() if r.project_id == 23 and (task_ids is None or r.task_id in task_ids)]
    return [r.id for r in reversed(chosen)]


def updated_at(sim: Simulator, result: JSON) -> list[int]:
    return [sim.record(record_id).updated_at for record_id in ids(result)]


# ---- construction --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token": "cookie"}, "Personality.token must be one of"),
        ({"token_compare": "between"}, "Personality.token_compare"),
        ({"token_order": "random"}, "Personality.token_order"),
        ({"period_order": "random"}, "Personality.period_order"),
        ({"clock_offset": -3601.0}, "clock_offset must be within"),
        ({"probe_stops": 1.5}, "Personality.probe_stops must be a probability"),
        ({"moving_records": -0.1}, "Personality.moving_records must be a probability"),
        ({"stop_seconds": 0.0}, "stop_seconds must be greater than 0"),
    ],
)
def test_a_personality_refuses_readings_it_does_not_know(options: JSON, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Personality(**options)


def test_token_mode_is_a_shortcut_for_the_token_reading() -> None:
    assert make_sim(token_mode="reply_time").personality == Personality(token="reply_time")
    assert make_sim().personality == Personality()
    with pytest.raises(ValueError, match="contradicts"):
        make_sim(token_mode="timestamp", personality=Personality(token="sequence"))
    with pytest.raises(ValueError, match="token_mode must be one of"):
        make_sim(token_mode=typing.cast(TokenKind, "cookie"))


# ---- the default is the simulator as it was -------------------------------------------------------------------

# Digests of scenario_digest's replies and ground truth, recorded from the simulator before it had personalities.
RECORDED = {
    ("sequence", False): "29c4061ec9ac460294e09e5bd708b6186f87038b2d2baa43b190a920760a387d",
    ("sequence", True): "ee1adb4ca175a55a2956b4b7a9678ebe83f43538799042db04fdab11e757b01f",
    ("timestamp", False): "43411c473575764c072a83b47706c36be42f1613b0aa060c1d933771055fac9c",
    ("timestamp", True): "bc97f419dbc1982942b8e00e2dda47b7d0f01d8b7ace75faeafb0c12bb30c2ff",
}
SOME_FAULTS = Faults(http_5xx=0.1, http_429=0.1, slow=0.1, malformed=0.1, error_item=0.1, repeat=0.3, burst=0.05)


def _request(*methods: JSON) -> bytes:
    return msgspec.json.encode({"user_id": 4, "methods": list(methods)})


def _listing(**params: Any) -> JSON:
    return {"method": "TaskAlarms", "params": {"project_id": 23, "task_ids": "*", **params}}


def _token_of(body: bytes, previous: int) -> int:
    """The token of a TaskAlarms reply, or ``previous`` when the reply is faulty."""
    try:
        return int(msgspec.json.decode(body)["reply"][0]["result"]["update_token"])
    except (msgspec.DecodeError, KeyError, TypeError, IndexError):
        return previous


def scenario_digest(**options: Any) -> str:
    """Token polls, period paging, filters, discovery, bursts, a stopped probe: every reply byte, digested."""
    clock = Clock()
    sim = Simulator(seed=5, projects=2, clock=clock, rate_per_second=12.0, mean_state_seconds=4.0, **options)
    digest = hashlib.sha256()

    def send(*methods: JSON) -> bytes:
        reply = sim.handle("POST", ENDPOINT_PATH, {}, _request(*methods))
        digest.update(msgspec.json.encode([reply.status, reply.headers, reply.delay]) + reply.body)
        return reply.body

    token = _token_of(send(_listing()), 0)
    for step in range(40):
        clock.now += 0.7
        sim.advance()
        if step % 9 == 4:
            sim.burst(130)
        if step in (12, 25):
            sim.set_probe_alive(703, step == 25)
        if step == 20:
            record = sim.trigger(241556, "BadSource", level="fatal")
            clock.now += 0.3
            sim.clear(record.id)
        token = _token_of(send(_listing(update_token=token, limit_value=50)), token)
        if step % 5 == 0:
            period = {"period_from": SECOND + step // 2, "period_to": int(clock.now)}
            for page in (1, 2, 3):
                send(_listing(limit_value=20, page=page, filter=period))
            send(_listing(active_states_only=True, filter={"trigger_groups": ["eth", "qoe"]}))
            send(_listing(task_ids=[241555, 241557], filter={"level": "warning"}), {**_listing(), "id": 7})
            send(
                {"method": "ProjectsList"},
                {"method": "AppList", "params": {"project_id": 23}},
                {"method": "AppTasks", "params": {"project_id": 23}},
                {"method": "TaskInfo", "params": {"project_id": 23}},
            )
    digest.update(msgspec.json.encode([msgspec.to_builtins(c) for c in sim.changes()]))
    digest.update(msgspec.json.encode([msgspec.to_builtins(r) for r in sim.records()]))
    return digest.hexdigest()


@pytest.mark.parametrize(("token", "faulty"), sorted(RECORDED))
def test_the_default_personality_answers_byte_for_byte_as_before(token: TokenKind, faulty: bool) -> None:
    faults = SOME_FAULTS if faulty else Faults()
    assert scenario_digest(token_mode=token, faults=faults) == RECORDED[token, faulty]
    assert scenario_digest(personality=Personality(token=token), faults=faults) == RECORDED[token, faulty]


def test_no_personality_is_the_sequence_default() -> None:
    assert scenario_digest() == RECORDED["sequence", False]


# ---- token: record_time ---------------------------------------------------------------------------------------


def three_records(sim: Simulator) -> list[int]:
    """Three events at START+1, +2 and +3 on the first task."""
    made = [sim.trigger(241555, "TosDscp", now=START + n) for n in (1, 2, 3)]
    set_clock(sim, START + 9.5)
    return [record.id for record in made]


def test_record_time_token_is_the_second_of_the_last_record_listed() -> None:
    sim = make_sim(personality=Personality(token="record_time"))
    first, second, third = three_records(sim)
    short = alarms(sim, update_token=SECOND, limit_value=10)
    assert ids(short) == [first, second, third]
    assert short["update_token"] == SECOND + 3, "not the reply second, although the page is not full"
    page = alarms(sim, limit_value=2, filter={"period_from": SECOND})
    assert ids(page) == [first, second]
    assert page["update_token"] == SECOND + 2, "listings without a token too"
    again = alarms(sim, update_token=short["update_token"], limit_value=10)
    assert ids(again) == [third], "inclusive: the last record comes back with its own second"


def test_record_time_empty_page_returns_the_token_asked_or_the_server_second() -> None:
    sim = make_sim(personality=Personality(token="record_time"))
    three_records(sim)
    empty = alarms(sim, update_token=SECOND + 4.5, limit_value=10)
    assert (empty["alarms"], empty["update_token"]) == ([], SECOND + 4.5)
    nothing = alarms(sim, filter={"period_from": SECOND + 5})
    assert (nothing["alarms"], nothing["update_token"]) == ([], SECOND + 9)


def test_exclusive_record_time_does_not_repeat_the_last_record() -> None:
    sim = make_sim(personality=Personality(token="record_time", token_compare="exclusive"))
    first, second, third = three_records(sim)
    short = alarms(sim, update_token=SECOND, limit_value=10)
    assert ids(short) == [first, second, third]
    assert alarms(sim, update_token=short["update_token"], limit_value=10)["alarms"] == []


# ---- token: reply_time ----------------------------------------------------------------------------------------


def test_reply_time_token_is_the_server_second_at_the_reply() -> None:
    sim = make_sim(personality=Personality(token="reply_time"))
    three_records(sim)
    assert alarms(sim, update_token=SECOND, limit_value=1)["update_token"] == SECOND + 9
    assert alarms(sim)["update_token"] == SECOND + 9 == sim.current_token()


def test_reply_time_drops_the_overflow_of_a_full_page_for_good() -> None:
    sim = make_sim(personality=Personality(token="reply_time"))
    token = alarms(sim)["update_token"]
    sim.burst(150, START + 5)
    set_clock(sim, START + 6)
    full = alarms(sim, update_token=token, limit_value=100)
    assert len(full["alarms"]) == 100
    assert full["update_token"] == SECOND + 6
    set_clock(sim, START + 60)
    later = alarms(sim, update_token=full["update_token"], limit_value=100)
    assert (later["alarms"], later["update_token"]) == ([], SECOND + 60)
    overflow = set(newest_first(sim)) - set(ids(full))
    assert len(overflow) == 50
    by_period = [alarms(sim, limit_value=100, page=n, filter={"period_from": SECOND + 5}) for n in (1, 2)]
    assert overflow <= {i for page in by_period for i in ids(page)}, "the gap is still there to read by period"


def same_second_records(sim: Simulator) -> tuple[int, int, int]:
    """A record at START+5.2, a token reply at START+5.5, a record at START+5.8: (first, token, second)."""
    first = sim.trigger(241555, "TosDscp", now=START + 5.2).id
    set_clock(sim, START + 5.5)
    token = alarms(sim, update_token=SECOND, limit_value=10)
    assert ids(token) == [first]
    second = sim.trigger(241556, "Ttl", now=START + 5.8).id
    set_clock(sim, START + 7)
    return first, token["update_token"], second


def test_inclusive_reply_time_repeats_the_token_second() -> None:
    sim = make_sim(personality=Personality(token="reply_time"))
    first, token, second = same_second_records(sim)
    assert token == SECOND + 5
    assert ids(alarms(sim, update_token=token, limit_value=10)) == [first, second]


def test_exclusive_reply_time_loses_a_record_written_later_in_the_token_second() -> None:
    sim = make_sim(personality=Personality(token="reply_time", token_compare="exclusive"))
    _, token, second = same_second_records(sim)
    assert token == SECOND + 5
    assert alarms(sim, update_token=token, limit_value=10)["alarms"] == []
    assert sim.record(second).updated_at == token, "it exists, in the token's own second"


def test_exclusive_timestamp_tokens_skip_the_token_second() -> None:
    sim = make_sim(personality=Personality(token="timestamp", token_compare="exclusive"))
    _, token, second = same_second_records(sim)
    assert alarms(sim, update_token=token, limit_value=10)["alarms"] == []
    inclusive = make_sim(personality=Personality(token="timestamp"))
    _, token, second = same_second_records(inclusive)
    assert second in ids(alarms(inclusive, update_token=token, limit_value=10))


# ---- order ----------------------------------------------------------------------------------------------------


def spread_records(sim: Simulator, count: int = 250) -> int:
    """``count`` records spread over ten seconds after a first token; returns that token."""
    token = int(alarms(sim)["update_token"])
    sim.advance(START + 10, new_records=count)
    set_clock(sim, START + 10)
    return token


@pytest.mark.parametrize("token", ["timestamp", "record_time", "reply_time"])
def test_newest_first_token_replies_hold_the_newest_records(token: TokenKind) -> None:
    sim = make_sim(personality=Personality(token=token, token_order="newest_first"))
    first = spread_records(sim)
    page = alarms(sim, update_token=first, limit_value=100)
    assert ids(page) == newest_first(sim)[:100]
    seconds = updated_at(sim, page)
    expected = {"timestamp": seconds[0], "record_time": seconds[-1], "reply_time": SECOND + 10}
    assert page["update_token"] == expected[token]


def test_newest_first_sequence_token_is_the_newest_seq_and_skips_the_rest() -> None:
    sim = make_sim(personality=Personality(token_order="newest_first"))
    first = spread_records(sim)
    page = alarms(sim, update_token=first, limit_value=100)
    by_change = sorted((r for r in sim.records() if r.project_id == 23), key=lambda r: r.seq, reverse=True)
    assert ids(page) == [r.id for r in by_change[:100]]
    assert page["update_token"] == sim.record(ids(page)[0]).seq == sim.current_token()
    assert alarms(sim, update_token=page["update_token"], limit_value=100)["alarms"] == []


def test_period_order_pages_from_the_newest_and_token_order_stays_apart() -> None:
    sim = make_sim(personality=Personality(token="timestamp", period_order="newest_first"))
    first = spread_records(sim, 60)
    pages = [ids(alarms(sim, limit_value=25, page=n, filter={"period_from": SECOND})) for n in (1, 2, 3)]
    assert [i for page in pages for i in page] == newest_first(sim)
    assert len(pages[0]) == 25
    by_token = alarms(sim, update_token=first, limit_value=100)
    assert ids(by_token) == newest_first(sim)[::-1], "token replies keep the oldest-first default"


# ---- clock offset ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-300.0, 120.0])
def test_clock_offset_shows_in_record_times_tokens_and_periods(offset: float) -> None:
    sim = make_sim(personality=Personality(token="timestamp", clock_offset=offset))
    server_second = int(START + 10 + offset)
    set_clock(sim, START + 10)
    assert sim.server_time() == START + 10 + offset
    record = sim.trigger(241555, "AudioTrackMissing")
    assert record.alarm["trigger_time"] == record.updated_at == server_second
    assert alarms(sim)["update_token"] == server_second == sim.current_token()
    around_server = {"period_from": server_second - 1, "period_to": server_second + 1}
    around_host = {"period_from": int(START) + 9, "period_to": int(START) + 11}
    assert ids(alarms(sim, filter=around_server)) == [record.id]
    assert alarms(sim, filter=around_host)["alarms"] == []
    [info] = ask(sim, {"method": "TaskInfo", "params": {"project_id": 23, "task_ids": 241555}})[0]["result"]
    assert info["start_f"] + record.alarm["info"]["time"] <= server_second + 1


def test_hmac_signatures_are_checked_on_the_host_clock_whatever_the_offset() -> None:
    key = bytes(range(32))
    sim = Simulator(hmac_keys={"4": key}, personality=Personality(clock_offset=-3600.0))
    headers = hmac_auth.signed_headers("POST", ENDPOINT_PATH, EXAMPLE_REQUEST, "4", key, datetime.now(UTC))
    assert sim.handle("POST", ENDPOINT_PATH, headers, EXAMPLE_REQUEST).status == 200


# ---- probe stops ----------------------------------------------------------------------------------------------


def stopped_world(seed: int = 3) -> tuple[Simulator, set[int]]:
    """States pending on every task, then one step of two minutes in which one probe stops for good."""
    personality = Personality(probe_stops=1.0, stop_seconds=10_000.0)
    sim = make_sim(seed=seed, personality=personality, rate_per_second=5.0, mean_state_seconds=10.0)
    sim.burst(80)
    set_clock(sim, START + 120)
    sim.advance()
    [stopped] = [p.app_id for p in sim.probes() if not sim.probe_alive(p.app_id)]
    return sim, {t.task_id for t in sim.tasks() if t.app_id == stopped}


def listing(sim: Simulator, task_ids: Any) -> list[int]:
    pages = [alarms(sim, task_ids=task_ids, limit_value=100, page=n) for n in range(1, 20)]
    return [i for page in pages for i in ids(page)]


def test_a_stopped_probes_records_keep_changing_without_new_states() -> None:
    sim, stopped = stopped_world()
    after_burst = [c for c in sim.changes() if c.seq > 80]
    on_stopped = [c for c in after_burst if c.task_id in stopped]
    assert any(c.transition == "cleared" for c in on_stopped), "its pending states still clear"
    created = [c for c in on_stopped if c.transition == "created"]
    assert {c.type for c in created} == {"event"}, "events still fire, no new states"
    arrivals = [c for c in after_burst if c.transition == "created"]
    assert 0.25 < len(created) / len(arrivals) < 0.75, "half the tasks, about half the new records"


def test_star_leaves_a_stopped_probe_out_and_explicit_ids_reach_it() -> None:
    sim, stopped = stopped_world()
    running = {t.task_id for t in sim.tasks()} - stopped
    assert listing(sim, "*") == listing(sim, sorted(running)) == newest_first(sim, running)[::-1]
    explicit = listing(sim, sorted(stopped))
    assert explicit == newest_first(sim, stopped)[::-1]
    assert any(sim.record(i).active is False for i in explicit)
    [token_reply] = [alarms(sim, update_token=80, limit_value=100)]
    assert not {sim.record(i).task_id for i in ids(token_reply)} & stopped
    apps = ask(sim, {"method": "AppList", "params": {"project_id": 23}})[0]["result"]
    assert sorted(app["alive"] for app in apps) == [False, True]


def test_a_stopped_probe_starts_again_by_itself() -> None:
    personality = Personality(probe_stops=1.0, stop_seconds=5.0)
    sim = make_sim(personality=personality, probes_per_project=1, rate_per_second=5.0)
    sim.advance(START + 1)
    [probe] = sim.probes()
    assert not sim.probe_alive(probe.app_id)
    assert alarms(sim)["total_pages"] == 0
    sim.advance(START + 4)
    assert not sim.probe_alive(probe.app_id)
    sim.advance(START + 6)
    assert sim.probe_alive(probe.app_id)
    states = [c.updated_at for c in sim.changes() if c.transition == "created" and c.type == "state"]
    assert states, "states again once running"
    assert min(states) >= START + 5, "no new state before the probe's stop_seconds are over"


def test_probe_stops_are_seeded() -> None:
    def run(seed: int) -> tuple[list[Any], list[bool]]:
        sim = make_sim(seed=seed, personality=Personality(probe_stops=0.3, stop_seconds=3.0), rate_per_second=8.0)
        for step in range(1, 30):
            sim.advance(START + step)
        return sim.changes(), [sim.probe_alive(p.app_id) for p in sim.probes()]

    assert run(4) == run(4)
    assert run(4) != run(5)


# ---- moving records -------------------------------------------------------------------------------------------


def test_a_moving_record_leaves_the_window_and_shifts_the_later_pages() -> None:
    sim = make_sim(personality=Personality(moving_records=1.0))
    states = [sim.trigger(241555, "AudioTrackMissing", now=START + 1), sim.trigger(241556, "BadSource", now=START + 2)]
    events = [sim.trigger(241557, "TosDscp", now=START + 3 + n).id for n in range(8)]
    set_clock(sim, START + 30)
    window = {"period_from": SECOND, "period_to": SECOND + 20}
    first = alarms(sim, limit_value=4, page=1, filter=window)
    [kept] = [s.id for s in states if s.id in ids(first)]
    assert ids(first) == [kept, *events[:3]]
    second = alarms(sim, limit_value=4, page=2, filter=window)
    assert ids(second) == events[4:8], "the state listed on page 1 left, so events[3] moved up to page 1"
    assert alarms(sim, limit_value=4, page=3, filter=window)["alarms"] == []
    for state in states:
        assert (sim.record(state.id).updated_at, sim.record(state.id).active) == (SECOND + 30, False)
    assert [c.record_id for c in sim.changes() if c.transition == "cleared"] == [
        s.id for s in states if s.id != kept
    ] + [kept]


def test_token_requests_and_records_outside_the_period_never_move() -> None:
    sim = make_sim(personality=Personality(moving_records=1.0))
    state = sim.trigger(241555, "AudioTrackMissing", now=START + 1)
    set_clock(sim, START + 30)
    alarms(sim, update_token=0, limit_value=10)
    alarms(sim, filter={"period_from": SECOND + 5})
    assert sim.record(state.id).active is True
    alarms(sim)
    assert sim.record(state.id).active is False


# ---- combined -------------------------------------------------------------------------------------------------

EVERYTHING = Personality(
    token="reply_time",
    token_compare="exclusive",
    token_order="newest_first",
    period_order="newest_first",
    clock_offset=-300.0,
    probe_stops=0.2,
    stop_seconds=4.0,
    moving_records=0.5,
)


def follow_everything(seed: int, faults: Faults = Faults()) -> tuple[list[bytes], Simulator]:  # noqa: B008
    clock = Clock()
    sim = Simulator(seed=seed, projects=2, clock=clock, personality=EVERYTHING, faults=faults, mean_state_seconds=3)
    bodies: list[bytes] = []
    token = 0
    for step in range(1, 41):
        clock.now = START + step * 0.5
        sim.advance()
        reply = sim.handle("POST", ENDPOINT_PATH, {}, _request(_listing(update_token=token, limit_value=20)))
        token = _token_of(reply.body, token)
        period = {"period_from": SECOND - 400, "period_to": int(clock.now) - 300}
        pages = [sim.handle("POST", ENDPOINT_PATH, {}, _request(_listing(page=n, filter=period))) for n in (1, 2)]
        bodies += [reply.body, *(page.body for page in pages)]
    return bodies, sim


def test_personalities_combine_and_stay_seeded() -> None:
    bodies, sim = follow_everything(8)
    assert follow_everything(8)[0] == bodies
    assert follow_everything(9)[0] != bodies
    assert any(c.transition == "cleared" and c.updated_at > SECOND - 300 for c in sim.changes())
    assert all(c.updated_at <= SECOND + 20 - 300 for c in sim.changes()), "every time on the server's clock"
    last = msgspec.json.decode(bodies[-3])["reply"][0]["result"]
    assert last["update_token"] == SECOND + 20 - 300
    listed = [sim.record(i).updated_at for i in ids(last)]
    assert listed == sorted(listed, reverse=True)


def test_personalities_combine_with_faults() -> None:
    bodies, sim = follow_everything(8, SOME_FAULTS)
    assert follow_everything(8, SOME_FAULTS)[0] == bodies
    assert len(sim.changes()) > 100


# ---- settings and the simulate command ------------------------------------------------------------------------


def test_settings_mirror_the_simulator_types() -> None:
    personality_fields = set(Personality.__struct_fields__)
    settings_fields = set(SimulatorSettings.__struct_fields__) - {
        "seed",
        "projects",
        "rate_per_second",
        "faults",
        "webhooks",
    }
    assert settings_fields == personality_fields - {"token"} | {"token_mode"}
    assert personality_from(SimulatorSettings()) == Personality()
    assert faults_from(SimulatorSettings()) == Faults()
    assert SimulatorFaultSettings.__struct_fields__ == Faults.__struct_fields__
    hints = typing.get_type_hints(SimulatorSettings, include_extras=False)
    assert typing.get_args(hints["token_mode"]) == TOKEN_KINDS
    assert typing.get_args(hints["token_compare"]) == TOKEN_COMPARES
    assert typing.get_args(hints["token_order"]) == typing.get_args(hints["period_order"]) == REPLY_ORDERS


def test_settings_select_a_personality_and_faults(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "simulator": {
                    "token_mode": "reply_time",
                    "token_order": "newest_first",
                    "clock_offset": -300,
                    "faults": {"http_5xx": 0.1},
                }
            }
        )
    )
    environ = {"BOROBRIDGE_SIMULATOR__TOKEN_COMPARE": "exclusive", "BOROBRIDGE_SIMULATOR__FAULTS__REPEAT": "0.25"}
    options = load_settings(config, environ).simulator
    assert personality_from(options) == Personality(
        token="reply_time", token_compare="exclusive", token_order="newest_first", clock_offset=-300.0
    )
    assert faults_from(options) == Faults(http_5xx=0.1, repeat=0.25)
    assert describe(personality_from(options)) == (
        "token=reply_time, token_compare=exclusive, token_order=newest_first, clock_offset=-300.0"
    )


def test_invalid_personality_settings_are_reported_with_their_path() -> None:
    environ = {
        "BOROBRIDGE_SIMULATOR__TOKEN_MODE": "cookie",
        "BOROBRIDGE_SIMULATOR__CLOCK_OFFSET": "-4000",
        "BOROBRIDGE_SIMULATOR__PROBE_STOPS": "2",
        "BOROBRIDGE_SIMULATOR__FAULTS__HTTP_5XX": "1.5",
        "BOROBRIDGE_SIMULATOR__FAULTS__TEAPOT": "0.1",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    text = str(caught.value)
    assert "simulator.token_mode: expected one of sequence, timestamp, record_time, reply_time" in text
    assert "simulator.clock_offset: expected a number >= -3600" in text
    assert "simulator.probe_stops: expected a number <= 1" in text
    assert "simulator.faults.http_5xx: expected a number <= 1" in text
    assert "simulator.faults.teapot: unknown key" in text


async def test_the_embedded_simulator_plays_the_configured_personality() -> None:
    environ = {"BOROBRIDGE_SIMULATOR__TOKEN_MODE": "reply_time", "BOROBRIDGE_SIMULATOR__CLOCK_OFFSET": "-600"}
    async with _embedded_simulator(load_settings(None, environ)) as url, httpx.AsyncClient() as client:
        body = {"user_id": 1, "methods": [_listing(update_token=0)]}
        response = await client.post(url, json=body)
    token = response.json()["reply"][0]["result"]["update_token"]
    assert abs(token - (time.time() - 600)) < 5


def test_simulate_flags_map_to_simulator_settings(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["simulate", "--token-mode", "timestamp", "--fault", "burst=0.5"])
    assert (args.token_mode, args.fault) == ("timestamp", [("burst", "0.5")])
    with pytest.raises(SystemExit):
        _parser().parse_args(["simulate", "--help"])
    simulate_help = capsys.readouterr().out
    assert "--token-mode" not in simulate_help
    for flag in ("--token ", "--token-compare", "--token-order", "--period-order", "--clock-offset", "--fault"):
        assert flag in simulate_help
    assert "borobridge simulate --port 8000 --token reply_time" in simulate_help


async def test_simulate_command_serves_the_configured_personality_flags_winning(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    settings = {"token_mode": "reply_time", "clock_offset": -300, "faults": {"error_item": 1.0}}
    config.write_text(yaml.safe_dump({"simulator": settings}))
    command = ["simulate", "--config", str(config), "--port", "0", "--clock-offset", "-600", "--fault", "error_item=0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOROBRIDGE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "borobridge", *command, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert process.stderr is not None
        url = await read_url(process.stderr)
        async with httpx.AsyncClient() as client:
            response = await client.post(url, json={"user_id": 1, "methods": [_listing(update_token=0)]})
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await process.wait()
    [item] = response.json()["reply"]
    assert "error" not in item, "the flag's fault rate wins over the file's"
    assert abs(item["result"]["update_token"] - (time.time() - 600)) < 5, "the file's token, the flag's offset"
