"""The Boro simulator against boro-api.md: envelope, TaskAlarms parameters, tokens, faults, HMAC, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from borobridge.boro import hmac_auth
from borobridge.simulator import (
    LEVELS,
    TRIGGER_GROUPS,
    TRIGGER_NAMES,
    Faults,
    Simulator,
    StoredRecord,
    TokenKind,
    as_mock_transport_handler,
    run_simulator,
    serve_simulator,
)

START = 1590570529.0
URL = "http://boro.test/ctrl_api/v1/json"
EXAMPLE_REQUEST = (
    b'{"user_id":4,"methods":[{"method":"TaskAlarms","params":{"project_id":23,"task_ids":241555,"limit_value":1}}]}'
)
KNOWN_INFO_KEYS = {"time", "time_end", "event_data", "count", "pids", "messages"}
JSON = dict[str, Any]
TIMESTAMP: TokenKind = "timestamp"


class Clock:
    """A hand-driven clock, so that runs are reproducible."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_sim(**options: Any) -> Simulator:
    """A simulator on a hand-driven clock; one project unless asked, so bursts land where tests look."""
    options.setdefault("clock", Clock())
    options.setdefault("projects", 1)
    return Simulator(**options)


@contextlib.contextmanager
def mock_client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(as_mock_transport_handler(sim))) as client:
        yield client


def call(sim: Simulator, *methods: JSON, user_id: int = 4) -> list[JSON]:
    with mock_client(sim) as client:
        response = client.post(URL, json={"user_id": user_id, "methods": list(methods)})
    assert response.status_code == 200, response.text
    reply: list[JSON] = response.json()["reply"]
    return reply


def alarms(sim: Simulator, **params: Any) -> JSON:
    params.setdefault("project_id", 23)
    params.setdefault("task_ids", "*")
    [item] = call(sim, {"method": "TaskAlarms", "params": params})
    assert "error" not in item, item
    result: JSON = item["result"]
    return result


def alarm_error(sim: Simulator, **params: Any) -> str:
    [item] = call(sim, {"method": "TaskAlarms", "params": params})
    assert "result" not in item
    return str(item["error"])


def ids(result: JSON) -> list[int]:
    return [alarm["id"] for alarm in result["alarms"]]


def expected_ids(sim: Simulator, project_id: int = 23, **_: Any) -> list[int]:
    return [r.id for r in sim.records() if r.project_id == project_id]


@functools.cache
def busy_world() -> Simulator:
    """Two projects with a few hundred records over two minutes, some states cleared (built once, read only)."""
    sim = make_sim(seed=7, projects=2)
    clock = sim_clock(sim)
    for _ in range(24):
        clock.now += 5.0
        sim.advance()
    return sim


def sim_clock(sim: Simulator) -> Clock:
    clock = sim.clock
    assert isinstance(clock, Clock)
    return clock


# ---- the documented example and the envelope -------------------------------------------------------------------


class DocumentedAlarm(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    project_id: int
    app_id: int
    task_id: int
    profile_id: int
    trigger_time: int
    active: bool
    kind: str
    level: str
    trigger_group: str
    type: str
    name: str
    info: dict[str, Any]


class DocumentedResult(msgspec.Struct, forbid_unknown_fields=True):
    alarms: list[DocumentedAlarm]
    current_page: int
    limit_value: int
    total_pages: int
    update_token: int


class DocumentedItem(msgspec.Struct, forbid_unknown_fields=True):
    method: str
    result: DocumentedResult


class DocumentedReply(msgspec.Struct, forbid_unknown_fields=True):
    reply: list[DocumentedItem]


def test_documented_example_request_gets_the_documented_reply() -> None:
    sim = make_sim()
    sim.trigger(241555, "AudioTrackMissing", level="warning")
    with mock_client(sim) as client:
        response = client.post(URL, content=EXAMPLE_REQUEST, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    reply = msgspec.json.decode(response.content, type=DocumentedReply)
    [item] = reply.reply
    assert item.method == "TaskAlarms"
    assert (item.result.current_page, item.result.limit_value, item.result.total_pages) == (1, 1, 1)
    [alarm] = item.result.alarms
    assert (alarm.id, alarm.project_id, alarm.app_id, alarm.task_id, alarm.profile_id) == (
        13522793,
        23,
        702,
        241555,
        390,
    )
    assert (alarm.trigger_time, alarm.active, alarm.kind, alarm.level) == (1590570529, True, "alarm", "warning")
    assert (alarm.trigger_group, alarm.type, alarm.name) == ("qoe", "state", "AudioTrackMissing")
    assert alarm.info["event_data"]["pid"] in {7010, 7011, 7020}
    assert isinstance(alarm.info["time"], float)
    assert list(response.json()["reply"][0]["result"]["alarms"][0]) == [
        "id", "project_id", "app_id", "task_id", "profile_id", "trigger_time", "active", "kind", "level",
        "trigger_group", "type", "name", "info",
    ]  # fmt: skip


def test_batched_calls_answer_in_request_order_with_their_ids() -> None:
    sim = busy_world()
    same = {"project_id": 23, "task_ids": "*", "limit_value": 3}
    reply = call(
        sim,
        {"method": "TaskAlarms", "id": 1, "params": same},
        {"method": "TaskAlarms", "id": 2, "params": {"project_id": 24, "task_ids": "*", "limit_value": 3}},
        {"method": "TaskAlarms", "params": same},
        {"method": "NoSuchMethod", "id": 9},
        {"method": "ProjectsList", "id": 10},
    )
    assert [item["method"] for item in reply] == ["TaskAlarms"] * 3 + ["NoSuchMethod", "ProjectsList"]
    assert [item.get("id") for item in reply] == [1, 2, None, 9, 10]
    assert "id" not in reply[2]
    assert reply[0]["result"] == reply[2]["result"]
    assert {a["project_id"] for a in reply[1]["result"]["alarms"]} == {24}
    assert "unknown method" in reply[3]["error"]
    assert "result" not in reply[3]
    assert [p["id"] for p in reply[4]["result"]["projects"]] == [23, 24]


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"methods": [{"method": "ProjectsList"}]}', b'{"user_id": 4}', b'{"user_id": 4, "methods": [1]}'],
)
def test_unusable_envelopes_get_400_with_a_json_error(body: bytes) -> None:
    with mock_client(busy_world()) as client:
        response = client.post(URL, content=body)
    assert response.status_code == 400
    assert response.json()["error"]


def test_wrong_path_is_404_and_wrong_verb_405() -> None:
    with mock_client(busy_world()) as client:
        assert client.post("http://boro.test/ctrl_api/v2/json", content=EXAMPLE_REQUEST).status_code == 404
        response = client.get(URL)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_another_user_gets_an_error_item_per_call() -> None:
    reply = call(busy_world(), {"method": "TaskAlarms", "params": {"project_id": 23, "task_ids": "*"}}, user_id=5)
    assert "access denied" in reply[0]["error"]


# ---- TaskAlarms parameters --------------------------------------------------------------------------------------


def test_task_ids_forms_and_the_deprecated_task_id() -> None:
    sim = make_sim()
    sim.advance(START + 60, new_records=120)
    by_task = {t.task_id: [r.id for r in sim.records() if r.task_id == t.task_id] for t in sim.tasks(23)}
    limit = {"limit_value": 100}
    assert ids(alarms(sim, task_ids=241556, **limit)) == by_task[241556]
    assert sorted(ids(alarms(sim, task_ids=[241555, 241557], **limit))) == sorted(by_task[241555] + by_task[241557])
    assert ids(alarms(sim, task_ids=241556, task_id=241558, **limit)) == by_task[241556]
    assert ids(alarms(sim, task_ids=[999999], **limit)) == []


def test_deprecated_task_id_alone_selects_its_task() -> None:
    sim = make_sim()
    sim.advance(START + 60, new_records=60)
    [item] = call(sim, {"method": "TaskAlarms", "params": {"project_id": 23, "task_id": 241556, "limit_value": 100}})
    assert ids(item["result"]) == [r.id for r in sim.records() if r.task_id == 241556]


def test_star_means_every_task_of_every_running_probe() -> None:
    sim = make_sim()
    sim.advance(START + 60, new_records=80)
    sim.set_probe_alive(703, False)
    stopped = {t.task_id for t in sim.tasks(23) if t.app_id == 703}
    everything = ids(alarms(sim, limit_value=100))
    assert everything
    assert {sim.record(i).task_id for i in everything}.isdisjoint(stopped)
    assert ids(alarms(sim, task_ids=sorted(stopped), limit_value=100))  # named explicitly, still served


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"task_ids": "*"}, "project_id is required"),
        ({"project_id": 99, "task_ids": "*"}, "project 99 not found"),
        ({"project_id": "23", "task_ids": "*"}, "project_id must be an integer"),
        ({"project_id": 23}, "task_ids is required"),
        ({"project_id": 23, "task_ids": "all"}, "task_ids must be"),
        ({"project_id": 23, "task_ids": [1, "2"]}, "task_ids must be"),
        ({"project_id": 23, "task_ids": "*", "kind": "report"}, "kind must be one of alarm"),
        ({"project_id": 23, "task_ids": "*", "limit_value": 0}, "limit_value must be at least 1"),
        ({"project_id": 23, "task_ids": "*", "page": 0}, "page must be at least 1"),
        ({"project_id": 23, "task_ids": "*", "active_states_only": "yes"}, "active_states_only must be a boolean"),
        ({"project_id": 23, "task_ids": "*", "update_token": "abc"}, "update_token must be a number"),
        ({"project_id": 23, "task_ids": "*", "filter": []}, "filter must be an object"),
        ({"project_id": 23, "task_ids": "*", "filter": {"period_from": 0}}, "period_from must not be 0"),
        ({"project_id": 23, "task_ids": "*", "filter": {"period_from": 5, "period_to": 5}}, "period_to must be"),
        ({"project_id": 23, "task_ids": "*", "filter": {"level": "critical"}}, "level must be one of"),
        ({"project_id": 23, "task_ids": "*", "filter": {"trigger_groups": ["net"]}}, "unknown values: net"),
        ({"project_id": 23, "task_ids": "*", "filter": {"trigger_names": "Ttl"}}, "must be a list of strings"),
    ],
)
def test_bad_parameters_give_an_error_item_naming_the_parameter(params: JSON, message: str) -> None:
    assert message in alarm_error(busy_world(), **params)


def test_kind_defaults_to_alarm() -> None:
    sim = busy_world()
    assert alarms(sim, kind="alarm") == alarms(sim)
    assert {a["kind"] for a in alarms(sim, limit_value=100)["alarms"]} == {"alarm"}


def test_active_states_only_returns_the_still_active_states() -> None:
    sim = busy_world()
    result = alarms(sim, active_states_only=True, limit_value=100)
    expected = [r.id for r in sim.records() if r.project_id == 23 and r.active is True]
    assert ids(result) == expected
    assert expected
    assert any(r.active is False for r in sim.records())


def test_limit_value_defaults_to_25_and_is_clamped_to_100() -> None:
    sim = busy_world()
    assert len(expected_ids(sim)) > 100
    default = alarms(sim)
    assert (default["limit_value"], len(default["alarms"])) == (25, 25)
    clamped = alarms(sim, limit_value=150)
    assert (clamped["limit_value"], len(clamped["alarms"])) == (100, 100)
    assert clamped["total_pages"] == -(-len(expected_ids(sim)) // 100)


def test_pages_cover_every_record_once_in_updated_at_then_id_order() -> None:
    sim = busy_world()
    first = alarms(sim, limit_value=7)
    pages = [alarms(sim, limit_value=7, page=n) for n in range(1, first["total_pages"] + 1)]
    assert [p["current_page"] for p in pages] == list(range(1, first["total_pages"] + 1))
    assert [i for p in pages for i in ids(p)] == expected_ids(sim)
    keys = [(sim.record(i).updated_at, i) for i in expected_ids(sim)]
    assert keys == sorted(keys)
    beyond = alarms(sim, limit_value=7, page=first["total_pages"] + 1)
    assert (beyond["alarms"], beyond["current_page"]) == ([], first["total_pages"] + 1)


def test_empty_answer_has_zero_pages_and_a_token() -> None:
    result = alarms(make_sim())
    assert (result["alarms"], result["total_pages"], result["current_page"], result["update_token"]) == ([], 0, 1, 0)


def test_period_filter_is_inclusive_on_updated_at() -> None:
    sim = busy_world()
    seconds = sorted({r.updated_at for r in sim.records()})
    low, high = seconds[5], seconds[-5]
    result = alarms(sim, limit_value=100, filter={"period_from": low, "period_to": high})
    expected = [r.id for r in sim.records() if r.project_id == 23 and low <= r.updated_at <= high][:100]
    assert ids(result) == expected
    only_to = alarms(sim, limit_value=100, filter={"period_to": low})
    assert ids(only_to) == [r.id for r in sim.records() if r.project_id == 23 and r.updated_at <= low]


def test_cleared_states_are_found_by_their_clear_time_not_their_trigger_time() -> None:
    sim = busy_world()
    cleared = next(r for r in sim.records() if r.project_id == 23 and r.active is False)
    assert cleared.updated_at > cleared.alarm["trigger_time"]
    after = alarms(sim, limit_value=100, filter={"period_from": cleared.alarm["trigger_time"] + 1})
    before = alarms(sim, limit_value=100, filter={"period_to": cleared.alarm["trigger_time"]})
    assert cleared.id in ids(after) or len(after["alarms"]) == 100
    assert cleared.id not in ids(before)


def test_groups_and_names_combine_with_and() -> None:
    sim = busy_world()
    assert alarms(sim, filter={"trigger_groups": ["eth"], "trigger_names": ["AudioTrackMissing"]})["alarms"] == []
    both = alarms(sim, limit_value=100, filter={"trigger_groups": ["qoe"], "trigger_names": ["AudioTrackMissing"]})
    assert {a["name"] for a in both["alarms"]} == {"AudioTrackMissing"}


def expected_matches(sim: Simulator, project_id: int, tasks: set[int], active_only: bool, flt: JSON) -> list[int]:
    def wanted(record: StoredRecord) -> bool:
        alarm = record.alarm
        return (
            record.project_id == project_id
            and record.task_id in tasks
            and (not active_only or record.active is True)
            and record.updated_at >= flt.get("period_from", 0)
            and record.updated_at <= flt.get("period_to", 2**62)
            and alarm["level"] == flt.get("level", alarm["level"])
            and alarm["trigger_group"] in (flt.get("trigger_groups") or TRIGGER_GROUPS)
            and alarm["name"] in (flt.get("trigger_names") or TRIGGER_NAMES)
        )

    return [r.id for r in sim.records() if wanted(r)]


@st.composite
def filters(draw: st.DrawFn) -> JSON:
    seconds = sorted({r.updated_at for r in busy_world().records()})
    chosen: JSON = {}
    if draw(st.booleans()):
        chosen["period_from"] = draw(st.sampled_from(seconds[:-1]))
    if draw(st.booleans()):
        chosen["period_to"] = draw(st.sampled_from([s for s in seconds if s > chosen.get("period_from", 0)]))
    if draw(st.booleans()):
        chosen["level"] = draw(st.sampled_from(LEVELS))
    if draw(st.booleans()):
        chosen["trigger_groups"] = draw(st.lists(st.sampled_from(TRIGGER_GROUPS), min_size=1, unique=True))
    if draw(st.booleans()):
        chosen["trigger_names"] = draw(st.lists(st.sampled_from(sorted(TRIGGER_NAMES)), min_size=1, unique=True))
    return chosen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flt=filters(),
    project_id=st.sampled_from([23, 24]),
    task_pick=st.lists(st.integers(min_value=0, max_value=5), unique=True),
    active_only=st.booleans(),
)
def test_any_filter_combination_returns_exactly_the_matching_records(
    flt: JSON, project_id: int, task_pick: list[int], active_only: bool
) -> None:
    sim = busy_world()
    project_tasks = [t.task_id for t in sim.tasks(project_id)]
    tasks = {project_tasks[i] for i in task_pick} if task_pick else set(project_tasks)
    params = {"project_id": project_id, "task_ids": sorted(tasks) if task_pick else "*", "limit_value": 100}
    got: list[int] = []
    for page in range(1, 10):
        result = alarms(sim, page=page, active_states_only=active_only, filter=flt, **params)
        got += ids(result)
        if page >= result["total_pages"]:
            break
    assert got == expected_matches(sim, project_id, tasks, active_only, flt)


# ---- records as the world makes them ---------------------------------------------------------------------------


def test_records_use_the_documented_vocabulary() -> None:
    sim = make_sim(seed=3)
    sim.burst(800)
    records = sim.records()
    assert {r.alarm["trigger_group"] for r in records} == set(TRIGGER_GROUPS)
    assert {r.alarm["level"] for r in records} == set(LEVELS)
    udp_tasks = {t.task_id for t in sim.tasks() if t.transport == "udp"}
    for record in records:
        alarm = record.alarm
        assert TRIGGER_NAMES[alarm["name"]] == alarm["trigger_group"]
        assert ("active" in alarm) == (alarm["type"] == "state")
        assert alarm["trigger_group"] != ("ott" if record.task_id in udp_tasks else "eth")
    names = {r.alarm["name"] for r in records}
    assert {"TosDscp", "Ttl", "IatError", "MlrWarning", "BadSource", "AudioTrackMissing", "PsiChanged"} <= names
    assert any(set(r.alarm["info"]) - KNOWN_INFO_KEYS for r in records), "some info carries unknown fields"


def test_info_details_follow_the_documented_shapes() -> None:
    sim = make_sim(seed=4)
    sim.burst(600)
    by_name = {r.alarm["name"]: r.alarm["info"] for r in sim.records()}
    for item in by_name["PsiChanged"]["event_data"]["diff"] + by_name["VI_changed"]["event_data"]["diff"]:
        assert item["op"] in {"add", "replace", "remove"}
        if item["op"] == "replace":
            assert item["value"] != item["prevValue"]
    cc = by_name["ContinuityCountError"]
    assert cc["count"] == sum(pid["count"] for pid in cc["pids"].values())
    assert all(
        key.startswith("PID") and set(v) == {"count", "type", "detectedType", "program"}
        for key, v in cc["pids"].items()
    )
    [message] = by_name["HttpError"]["messages"]
    assert {"id", "params", "HTTP_error", "CURL_error"} <= set(message)
    assert message["HTTP_error"]["code"] >= 400


def test_states_clear_later_under_the_same_id() -> None:
    sim = make_sim(seed=5, mean_state_seconds=3.0)
    clock = sim_clock(sim)
    raised = [c for c in sim.advance(START + 10, new_records=40) if c.active is True]
    clock.now = START + 200
    sim.advance()
    cleared = {c.record_id: c for c in sim.changes() if c.transition == "cleared"}
    assert raised
    assert {c.record_id for c in raised} <= set(cleared)
    for change in raised:
        record = sim.record(change.record_id)
        info = record.alarm["info"]
        assert record.active is False
        assert info["time_end"] >= info["time"]
        assert record.updated_at == cleared[change.record_id].updated_at >= record.alarm["trigger_time"]
        assert record.alarm["trigger_time"] == change.updated_at


def test_changes_are_numbered_and_never_go_back_in_time() -> None:
    changes = busy_world().changes()
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    assert [c.updated_at for c in changes] == sorted(c.updated_at for c in changes)
    assert busy_world().changes(after_seq=len(changes) - 3) == changes[-3:]


def test_info_time_counts_from_the_task_start() -> None:
    sim = busy_world()
    starts = {t.task_id: t.start_f for t in sim.tasks()}
    for record in sim.records():
        absolute = starts[record.task_id] + record.alarm["info"]["time"]
        assert record.alarm["trigger_time"] - 601 <= absolute <= record.alarm["trigger_time"] + 1


def test_rate_is_roughly_respected() -> None:
    sim = make_sim(seed=11, rate_per_second=5.0)
    sim_clock(sim).now = START + 20
    created = [c for c in sim.advance() if c.transition == "created"]
    assert 50 <= len(created) <= 160


def test_a_long_idle_gap_only_simulates_the_last_five_minutes() -> None:
    sim = make_sim(rate_per_second=1.0)
    created = [c for c in sim.advance(START + 86_400) if c.transition == "created"]
    assert 200 <= len(created) <= 420
    assert min(c.updated_at for c in created) >= START + 86_400 - 301


def test_retention_forgets_old_history_but_keeps_active_states_and_tokens() -> None:
    sim = make_sim(seed=6, rate_per_second=10.0, mean_state_seconds=5.0, retain_seconds=30.0)
    kept = sim.trigger(241556, "BadSource")
    token = alarms(sim)["update_token"]
    for step in range(1, 13):
        sim_clock(sim).now = START + 10 * step
        sim.advance()
    records = sim.records()
    assert min(r.updated_at for r in records if r.active is not True) >= START + 120 - 30
    assert sim.record(kept.id).active is True
    assert sim.changes()[0].seq > 1
    got, final = drain(sim, token)
    assert {a["id"] for a in got} == {r.id for r in records if r.seq > token}
    assert kept.id not in {a["id"] for a in got}
    assert final == sim.current_token() == sim.changes()[-1].seq


def test_same_seed_same_world_other_seed_other_world() -> None:
    def run(seed: int) -> list[bytes]:
        sim = make_sim(seed=seed)
        bodies = []
        for step in range(1, 6):
            sim_clock(sim).now = START + 7 * step
            sim.advance()
            with mock_client(sim) as client:
                bodies.append(
                    client.post(URL, content=EXAMPLE_REQUEST.replace(b'"limit_value":1', b'"limit_value":50')).content
                )
        return bodies

    assert run(1) == run(1)
    assert run(1) != run(2)


# ---- update_token ----------------------------------------------------------------------------------------------


def drain(sim: Simulator, token: int, limit: int = 100, **params: Any) -> tuple[list[JSON], int]:
    """Ask with each new token while pages come back full, as the bridge does."""
    got: list[JSON] = []
    for _ in range(50):
        result = alarms(sim, update_token=token, limit_value=limit, **params)
        got += result["alarms"]
        token = result["update_token"]
        if len(result["alarms"]) < limit:
            return got, token
    raise AssertionError("the drain did not end")


def follow(sim: Simulator, steps: int, burst: int, limit: int = 100) -> list[JSON]:
    """Poll with tokens while the world moves (bursts included); return everything received."""
    clock = sim_clock(sim)
    token = alarms(sim)["update_token"]
    received: list[JSON] = []
    for step in range(steps):
        clock.now += 0.4
        sim.advance()
        if step % 7 == 3:
            sim.burst(burst)
        got, token = drain(sim, token, limit)
        received += got
    return received


def assert_nothing_lost(sim: Simulator, received: list[JSON], since_seq: int) -> None:
    latest = {alarm["id"]: alarm for alarm in received}
    changed = {c.record_id for c in sim.changes(since_seq) if c.project_id == 23}
    assert changed <= set(latest), "some changed record never arrived"
    for record_id in changed:
        assert latest[record_id] == sim.record(record_id).alarm


def test_sequence_tokens_deliver_every_change_once() -> None:
    sim = make_sim(seed=21, rate_per_second=20.0, mean_state_seconds=2.0)
    received = follow(sim, 30, burst=130)
    assert_nothing_lost(sim, received, 0)
    versions = [(a["id"], a.get("active")) for a in received]
    assert len(versions) == len(set(versions)), "sequence tokens never repeat a record version"
    assert any(a.get("active") is False for a in received)


def test_sequence_token_after_a_full_page_is_the_last_record_sequence() -> None:
    sim = make_sim()
    token = alarms(sim)["update_token"]
    sim.burst(250)
    first = alarms(sim, update_token=token, limit_value=100)
    assert len(first["alarms"]) == 100
    assert first["update_token"] == sim.record(first["alarms"][-1]["id"]).seq
    rest, final = drain(sim, first["update_token"])
    assert len(rest) == 150
    assert final == sim.current_token() == 250


def test_timestamp_tokens_lose_nothing_and_repeat_the_boundary_second() -> None:
    sim = make_sim(seed=22, token_mode=TIMESTAMP, rate_per_second=20.0, mean_state_seconds=2.0)
    received = follow(sim, 30, burst=60)  # fewer than a page per second: see the crowded-second test
    assert_nothing_lost(sim, received, 0)
    versions = [(a["id"], a.get("active")) for a in received]
    assert len(versions) > len(set(versions)), "records sharing the token second come back"


def test_timestamp_tokens_drain_more_than_a_page_spread_over_seconds() -> None:
    sim = make_sim(token_mode=TIMESTAMP, rate_per_second=0.0)
    token = alarms(sim)["update_token"]
    sim.advance(START + 10, new_records=250)
    got, final = drain(sim, token)
    assert {a["id"] for a in got} == {r.id for r in sim.records()}
    assert len(got) > 250
    assert final == int(START) + 10


def test_timestamp_token_is_a_unix_second() -> None:
    sim = make_sim(token_mode=TIMESTAMP)
    sim_clock(sim).now = START + 12.7
    assert alarms(sim)["update_token"] == int(START) + 12 == sim.current_token()


def test_timestamp_token_stalls_on_a_crowded_second_and_period_paging_gets_past_it() -> None:
    sim = make_sim(token_mode=TIMESTAMP)
    token = alarms(sim)["update_token"]
    sim.burst(150, START + 5)
    first = alarms(sim, update_token=token, limit_value=100)
    second = alarms(sim, update_token=first["update_token"], limit_value=100)
    assert first["update_token"] == second["update_token"] == int(START) + 5
    assert ids(first) == ids(second)
    pages = [alarms(sim, limit_value=100, page=n, filter={"period_from": int(START) + 5}) for n in (1, 2)]
    assert len({i for p in pages for i in ids(p)}) == 150


@pytest.mark.parametrize("mode", ["sequence", "timestamp"])
def test_page_is_ignored_with_a_token(mode: TokenKind) -> None:
    sim = make_sim(token_mode=mode)
    token = alarms(sim)["update_token"]
    sim.burst(30)
    with_page = alarms(sim, update_token=token, page=3, limit_value=10)
    assert with_page == alarms(sim, update_token=token, limit_value=10)
    assert with_page["current_page"] == 1
    assert with_page["total_pages"] == 3


@pytest.mark.parametrize("mode", ["sequence", "timestamp"])
def test_filters_apply_to_token_requests(mode: TokenKind) -> None:
    sim = make_sim(token_mode=mode, seed=9)
    token = alarms(sim)["update_token"]
    sim.burst(200)
    got, _ = drain(sim, token, filter={"trigger_groups": ["etr"]}, active_states_only=False)
    assert {a["id"] for a in got} == {
        r.id for r in sim.records() if r.project_id == 23 and r.alarm["trigger_group"] == "etr"
    }


# ---- faults ----------------------------------------------------------------------------------------------------


def post_raw(sim: Simulator, body: bytes = EXAMPLE_REQUEST) -> httpx.Response:
    with mock_client(sim) as client:
        return client.post(URL, content=body)


def test_faults_refuse_rates_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="http_5xx"):
        Faults(http_5xx=1.5)
    with pytest.raises(ValueError, match="must not be negative"):
        Faults(retry_after=-1)


def test_5xx_is_an_nginx_page() -> None:
    response = post_raw(make_sim(faults=Faults(http_5xx=1.0)))
    assert response.status_code == 503
    assert response.headers["content-type"] == "text/html"
    assert b"nginx" in response.content


def test_429_says_when_to_retry() -> None:
    response = post_raw(make_sim(faults=Faults(http_429=1.0, retry_after=0.25)))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "0.25"


def test_slow_reply_carries_its_delay_and_a_good_body() -> None:
    sim = make_sim(faults=Faults(slow=1.0, slow_seconds=1.5))
    reply = sim.handle("POST", "/ctrl_api/v1/json", {}, EXAMPLE_REQUEST)
    assert (reply.status, reply.delay) == (200, 1.5)
    assert msgspec.json.decode(reply.body)["reply"][0]["method"] == "TaskAlarms"


def test_malformed_replies_are_200_with_unreadable_json() -> None:
    sim = make_sim(faults=Faults(malformed=1.0))
    sim.burst(5)
    bodies = {post_raw(sim).content for _ in range(12)}
    assert len(bodies) == 3
    for body in bodies:
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(body)


def test_error_items_come_as_strings_or_objects() -> None:
    sim = make_sim(faults=Faults(error_item=1.0))
    errors = [call(sim, {"method": "TaskAlarms", "params": {"project_id": 23, "task_ids": "*"}})[0] for _ in range(20)]
    assert all("result" not in item for item in errors)
    assert {type(item["error"]) for item in errors} == {str, dict}
    assert "result" in call(sim, {"method": "ProjectsList"})[0]


def poll_until_good(sim: Simulator, token: int, limit: int = 40) -> JSON:
    body = msgspec.json.encode(
        {"user_id": 4, "methods": [{"method": "TaskAlarms", "params": {"project_id": 23, "task_ids": "*",
                                                                      "update_token": token, "limit_value": limit}}]}
    )  # fmt: skip
    for _ in range(60):
        response = post_raw(sim, body)
        if response.status_code == 200:
            with contextlib.suppress(msgspec.DecodeError):
                item = msgspec.json.decode(response.content)["reply"][0]
                if "result" in item:
                    result: JSON = item["result"]
                    return result
    raise AssertionError("no good reply in 60 tries")


@pytest.mark.parametrize("mode", ["sequence", "timestamp"])
def test_faulted_replies_consume_nothing(mode: TokenKind) -> None:
    faults = Faults(http_5xx=0.3, http_429=0.2, malformed=0.2, error_item=0.3, burst=0.3)
    faulty, clean = make_sim(seed=8, token_mode=mode, faults=faults), make_sim(seed=8, token_mode=mode)
    faulty.faults = Faults(burst=0.3)  # the world is drawn apart from request faults
    clean.faults = Faults(burst=0.3)
    tokens = [alarms(clean)["update_token"]] * 2
    for step in range(1, 15):
        for sim in (faulty, clean):
            sim_clock(sim).now = START + step
            sim.advance()
        faulty.faults = faults
        got = poll_until_good(faulty, tokens[0])
        expected = alarms(clean, update_token=tokens[1], limit_value=40)
        faulty.faults = Faults(burst=0.3)
        assert got == expected
        tokens = [got["update_token"], expected["update_token"]]


def test_repeat_refills_a_short_page_with_records_from_before_the_token() -> None:
    sim = make_sim(seed=2)
    sim.burst(20)
    token = alarms(sim)["update_token"]
    sim.burst(3, START + 1)
    clean = alarms(sim, update_token=token)
    sim.faults = Faults(repeat=1.0)
    repeated = alarms(sim, update_token=token)
    assert repeated["update_token"] == clean["update_token"]
    assert ids(repeated)[3:] == ids(clean)
    assert all(sim.record(i).seq <= token for i in ids(repeated)[:3])
    full = alarms(sim, update_token=token, limit_value=3)
    assert ids(full) == ids(clean)[:3]  # no room on a full page


def test_burst_fault_adds_101_to_250_records_at_once() -> None:
    sim = make_sim(faults=Faults(burst=1.0), rate_per_second=0.0)
    created = [c for c in sim.advance(START + 1) if c.transition == "created"]
    assert 101 <= len(created) <= 250
    assert {c.updated_at for c in created} == {int(START) + 1}


# ---- HMAC -------------------------------------------------------------------------------------------------------


def test_hmac_signed_requests_pass_and_others_get_401_with_a_reason() -> None:
    key = hmac_auth.decode_key("AGnO/VenzHB9xkLYZG1i70kQ9iyFBBvugGXSFyTQaB0=")
    sim = make_sim(hmac_keys={"4": key})
    now = datetime.fromtimestamp(START, UTC)
    good = hmac_auth.signed_headers("POST", "/ctrl_api/v1/json", EXAMPLE_REQUEST, "4", key, now)
    assert sim.handle("POST", "/ctrl_api/v1/json", good, EXAMPLE_REQUEST).status == 200
    stale = hmac_auth.signed_headers(
        "POST", "/ctrl_api/v1/json", EXAMPLE_REQUEST, "4", key, datetime.fromtimestamp(START - 120, UTC)
    )
    for headers, body, reason in [
        ({}, EXAMPLE_REQUEST, "missing Authorization"),
        (good, EXAMPLE_REQUEST + b" ", "content hash"),
        (stale, EXAMPLE_REQUEST, "away from the server clock"),
    ]:
        reply = sim.handle("POST", "/ctrl_api/v1/json", headers, body)
        assert reply.status == 401
        assert reason in msgspec.json.decode(reply.body)["reason"]


# ---- discovery methods -----------------------------------------------------------------------------------------


def test_projects_list_by_type_and_page() -> None:
    sim = make_sim(projects=5)
    sim.set_probe_alive(702, False)

    def listed(**params: Any) -> JSON:
        result: JSON = call(sim, {"method": "ProjectsList", "params": params})[0]["result"]
        return result

    assert [p["id"] for p in listed()["projects"]] == [23, 24, 25, 26, 27]
    assert [p["id"] for p in listed(type="own")["projects"]] == [23, 25, 27]
    assert [p["id"] for p in listed(type="shared")["projects"]] == [24, 26]
    page = listed(limit_value=2, page=3)
    assert (page["current_page"], page["total_pages"], page["limit_value"]) == (3, 3, 2)
    assert [p["id"] for p in page["projects"]] == [27]
    first = listed()["projects"][0]
    assert first == {
        "id": 23, "title": "Project 23", "founder": 4, "role": "owner", "live_apps_count": 1,
        "live_channels_count": 3, "live_streams_count": 9,
    }  # fmt: skip


def test_app_list_app_tasks_and_task_info() -> None:
    sim = make_sim()
    sim.set_probe_alive(703, False)
    app_list, app_tasks, task_info = call(
        sim,
        {"method": "AppList", "params": {"project_id": 23, "app_status": "active"}},
        {"method": "AppTasks", "params": {"project_id": 23, "app_ids": "*"}},
        {"method": "TaskInfo", "params": {"project_id": 23, "task_ids": [241555, 241558]}},
    )
    assert app_list["result"] == [{"app_id": 702, "name": "probe-702", "alive": True}]
    assert app_tasks["result"][0] == {
        "app_id": 702,
        "live_tasks": [241555, 241556, 241557],
        "sub_tasks": {"241555": [], "241556": [], "241557": []},
    }
    assert app_tasks["result"][1]["live_tasks"] == []
    starts = {t.task_id: t.start_f for t in sim.tasks()}
    assert [(i["task_id"], i["status"], i["start_f"]) for i in task_info["result"]] == [
        (241555, "running", starts[241555]),
        (241558, "stopped", starts[241558]),
    ]


# ---- over real HTTP --------------------------------------------------------------------------------------------


async def test_documented_example_over_real_http() -> None:
    sim = make_sim()
    sim.trigger(241555, "AudioTrackMissing")
    async with serve_simulator(sim) as url, httpx.AsyncClient() as client:
        assert url.startswith("http://127.0.0.1:")
        assert not url.startswith("http://127.0.0.1:0/")
        assert url.endswith("/ctrl_api/v1/json")
        response = await client.post(url, content=EXAMPLE_REQUEST, headers={"content-type": "application/json"})
    assert response.status_code == 200
    [item] = msgspec.json.decode(response.content, type=DocumentedReply).reply
    assert item.result.alarms[0].id == 13522793


async def test_http_honours_slow_replies_and_serves_faults() -> None:
    sim = make_sim(faults=Faults(slow=1.0, slow_seconds=0.3))
    async with serve_simulator(sim) as url, httpx.AsyncClient() as client:
        started = time.monotonic()
        slow = await client.post(url, content=EXAMPLE_REQUEST)
        assert time.monotonic() - started >= 0.3
        sim.faults = Faults(http_5xx=1.0)
        failed = await client.post(url, content=EXAMPLE_REQUEST)
    assert slow.status_code == 200
    assert failed.status_code == 503


async def test_http_verifies_hmac_on_the_request_uri() -> None:
    key = bytes(range(32))
    sim = Simulator(hmac_keys={"4": key})  # real clock: the signature's date must be now
    async with serve_simulator(sim) as url, httpx.AsyncClient() as client:
        headers = hmac_auth.signed_headers("POST", "/ctrl_api/v1/json", EXAMPLE_REQUEST, "4", key, datetime.now(UTC))
        signed = await client.post(url, content=EXAMPLE_REQUEST, headers=headers)
        unsigned = await client.post(url, content=EXAMPLE_REQUEST)
    assert signed.status_code == 200
    assert unsigned.status_code == 401
    assert unsigned.json()["reason"] == "missing Authorization header"


async def test_advance_loop_runs_while_serving_and_the_port_closes_after() -> None:
    sim = Simulator(rate_per_second=50.0)
    async with serve_simulator(sim, advance_every=0.05) as url:
        for _ in range(100):
            if len(sim.changes()) >= 5:
                break
            await asyncio.sleep(0.05)
    assert len(sim.changes()) >= 5
    settled = len(sim.changes())
    await asyncio.sleep(0.15)
    assert len(sim.changes()) == settled
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(url, content=EXAMPLE_REQUEST)


async def test_run_simulator_serves_until_cancelled() -> None:
    ready: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(run_simulator("127.0.0.1", 0, seed=3, advance_every=0.05, on_ready=ready.put_nowait))
    try:
        url = await asyncio.wait_for(ready.get(), timeout=10)
        async with httpx.AsyncClient() as client:
            response = await client.post(url, json={"user_id": 4, "methods": [{"method": "ProjectsList"}]})
        assert response.json()["reply"][0]["result"]["total_pages"] == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
    assert task.cancelled()
