"""A seeded, deterministic stand-in for the Boro Control API: pure logic, no sockets.

The simulator owns a small world (projects, probes, tasks) whose tasks raise alarm records over time, and answers
``POST /ctrl_api/v1/json`` the way ``boro-api.md`` describes it. Tests treat it as ground truth: ``changes()``
lists every record change ever made, ``records()`` the current state of every record.

Fixed choices where the Boro documentation is silent:

- ``updated_at`` is kept in whole Unix seconds, like ``trigger_time``; it is never sent, the API does not return it.
- ``limit_value`` above 100 is clamped to 100 (the reply says 100); below 1 is an error item.
- ``period_from`` and ``period_to`` are both inclusive. An empty ``trigger_groups`` / ``trigger_names`` list means
  "no filter". Task ids that are not in the project select nothing. ``total_pages`` is 0 for an empty answer.
- Events carry no ``active`` key; states do. A per-task state trigger is never active twice at once.
- ``user_id`` other than the simulator's gets an error item for every call; bad envelopes get HTTP 400.

Personalities (``Personality``, ``personality.py``) and faults (``Faults``, ``faults.py``) are described where
they are defined.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from borobridge.boro import hmac_auth
from borobridge.simulator.catalogue import CATALOGUE, EXTRA_INFO, LEVELS, TRIGGER_NAMES, Trigger, triggers_for
from borobridge.simulator.faults import (
    BURST_SIZE,
    NGINX_503,
    Faults,
    FaultyItemError,
    ItemFaults,
    mangle,
    roll_item_faults,
    roll_request_faults,
)
from borobridge.simulator.parsing import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    AlarmQuery,
    BadRequestError,
    Call,
    ParamError,
    choice_param,
    id_selector,
    int_param,
    parse_envelope,
    parse_filter,
    required_int,
    token_param,
)
from borobridge.simulator.personality import Personality, TokenKind, chosen_personality
from borobridge.simulator.replies import SimReply, json_reply, page_count
from borobridge.simulator.store import Alarm, AlarmStore, Change, Entry, StoredRecord, by_time_then_id
from borobridge.simulator.world import JSON, SimProbe, SimProject, SimTask

ENDPOINT_PATH = "/ctrl_api/v1/json"
MAX_CATCH_UP_SECONDS = 300.0


class Simulator:
    """A Boro server in memory. Not thread-safe; drive it from one thread or one event loop.

    Time: every change happens at a Unix time that never goes backwards and never precedes a time already
    observed by ``handle`` (the simulator's clock at a request), so no record can slip behind a token.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        projects: int = 2,
        probes_per_project: int = 2,
        tasks_per_probe: int = 3,
        token_mode: TokenKind | None = None,
        personality: Personality | None = None,
        faults: Faults = Faults(),  # noqa: B008 - frozen, immutable default
        hmac_keys: Mapping[str, bytes] | None = None,
        clock: Callable[[], float] = time.time,
        first_record_id: int = 13522793,
        user_id: int = 4,
        rate_per_second: float = 5.0,
        mean_state_seconds: float = 20.0,
        first_project_id: int = 23,
        first_app_id: int = 702,
        first_task_id: int = 241555,
        first_profile_id: int = 390,
        retain_seconds: float | None = None,
    ) -> None:
        self.personality = chosen_personality(token_mode, personality)
        if rate_per_second < 0 or mean_state_seconds <= 0:
            raise ValueError("rate_per_second must be >= 0 and mean_state_seconds > 0")
        self.seed = seed
        self.user_id = user_id
        self.faults = faults
        self.rate_per_second = rate_per_second
        self.mean_state_seconds = mean_state_seconds
        self.retain_seconds = retain_seconds
        self._hmac_keys = dict(hmac_keys) if hmac_keys is not None else None
        self.clock = clock
        self._world_rng = random.Random(f"boro-world-{seed}")
        self._fault_rng = random.Random(f"boro-faults-{seed}")
        self._watchers: list[Callable[[Change], None]] = []
        self._store = AlarmStore(self._notify)
        self._next_record_id = first_record_id
        self._pending_clears: list[tuple[float, int]] = []
        self._active_keys: set[tuple[int, str]] = set()
        self._restarts: dict[int, float] = {}  # probes stopped by ``Personality.probe_stops``: when they restart
        self._recording: list[SimTask] | None = None  # _recording_tasks() until a probe stops or starts
        self._time = self._server_time()
        self._last_advance = self._time
        self._next_arrival = self._time + self._arrival_gap()
        self._build_world(
            projects,
            probes_per_project,
            tasks_per_probe,
            (first_project_id, first_app_id, first_task_id, first_profile_id),
        )

    # ---- world ---------------------------------------------------------------------------------------------

    def _build_world(self, projects: int, probes: int, tasks: int, first_ids: tuple[int, int, int, int]) -> None:
        project_id, app_id, task_id, profile_id = first_ids
        self._projects: dict[int, SimProject] = {}
        self._probes: dict[int, SimProbe] = {}
        self._tasks: dict[int, SimTask] = {}
        self._alive: dict[int, bool] = {}
        self._probes_of: dict[int, list[SimProbe]] = {}  # each project's own: a call reads these, not the world
        self._tasks_of: dict[int, list[SimTask]] = {}
        for p in range(projects):
            own = p % 2 == 0
            founder, role = (self.user_id, "owner") if own else (self.user_id + 100 + p, "operator")
            self._projects[project_id + p] = SimProject(project_id + p, f"Project {project_id + p}", founder, role)
            project_probes = self._probes_of[project_id + p] = []
            project_tasks = self._tasks_of[project_id + p] = []
            for _ in range(probes):
                probe = self._probes[app_id] = SimProbe(app_id, project_id + p, f"probe-{app_id}")
                project_probes.append(probe)
                self._alive[app_id] = True
                for _ in range(tasks):
                    task = self._tasks[task_id] = self._new_task(task_id, app_id, project_id + p, profile_id + p)
                    project_tasks.append(task)
                    task_id += 1
                app_id += 1

    def _new_task(self, task_id: int, app_id: int, project_id: int, profile_id: int) -> SimTask:
        channel = task_id % 1000
        if task_id % 2:
            uri = f"https://cdn.example.net/live/ch{channel}/index.m3u8"
        else:
            uri = f"udp://239.1.{channel // 250}.{channel % 250 + 1}:1234"
        started = self._time - self._world_rng.uniform(3_600.0, 30 * 86_400.0)
        return SimTask(task_id, app_id, project_id, profile_id, f"Channel {channel}", uri, started)

    def projects(self) -> list[SimProject]:
        return list(self._projects.values())

    def probes(self, project_id: int | None = None) -> list[SimProbe]:
        if project_id is None:
            return list(self._probes.values())
        return list(self._probes_of.get(project_id, ()))

    def tasks(self, project_id: int | None = None) -> list[SimTask]:
        if project_id is None:
            return list(self._tasks.values())
        return list(self._tasks_of.get(project_id, ()))

    def probe_alive(self, app_id: int) -> bool:
        return self._alive[app_id]

    def set_probe_alive(self, app_id: int, alive: bool) -> None:
        """Start or stop a probe: a stopped probe's tasks raise nothing new and leave ``task_ids: "*"``.

        This overrides a stop of ``Personality.probe_stops``: the probe no longer restarts by itself.
        """
        if app_id not in self._probes:
            raise KeyError(f"no probe {app_id}")
        self._alive[app_id] = alive
        self._restarts.pop(app_id, None)
        self._recording = None

    def _live_tasks(self, project_id: int | None = None) -> list[SimTask]:
        return [t for t in self.tasks(project_id) if self._alive[t.app_id]]

    def _recording_tasks(self) -> list[SimTask]:
        """Tasks whose records still change: those of running probes and of probes stopped for a while."""
        if self._recording is None:
            self._recording = [t for t in self.tasks() if self._alive[t.app_id] or t.app_id in self._restarts]
        return self._recording

    def watch(self, watcher: Callable[[Change], None]) -> None:
        """Call ``watcher`` with every record change from now on, as it is made (webhooks are sent from this)."""
        self._watchers.append(watcher)

    def _notify(self, change: Change) -> None:
        for watcher in self._watchers:
            watcher(change)

    # ---- ground truth --------------------------------------------------------------------------------------

    def changes(self, after_seq: int = 0) -> list[Change]:
        """Every record change so far (after ``after_seq``), in the order they happened.

        With ``retain_seconds`` set, ``advance`` forgets changes (and records no longer active) older than that.
        """
        return list(self._store.changes(after_seq))

    def records(self) -> list[StoredRecord]:
        """The current state of every record, by (``updated_at``, ``id``)."""
        return [self._snapshot(entry) for entry in sorted(self._store.entries(), key=by_time_then_id)]

    def record(self, record_id: int) -> StoredRecord:
        return self._snapshot(self._store.get(record_id))

    def current_token(self) -> int:
        """The token a request without ``update_token`` would get now (``record_time``: for an empty page)."""
        if self.personality.time_token:
            return int(self._time)
        return self._store.seq

    def server_time(self) -> float:
        """The server's clock now: the host clock plus ``Personality.clock_offset``."""
        return self._server_time()

    def _server_time(self, host_time: float | None = None) -> float:
        return (self.clock() if host_time is None else host_time) + self.personality.clock_offset

    @staticmethod
    def _snapshot(entry: Entry) -> StoredRecord:
        alarm: JSON = msgspec.json.decode(msgspec.json.encode(entry.alarm))
        return StoredRecord(entry.seq, entry.updated_at, alarm)

    # ---- time and record generation ------------------------------------------------------------------------

    def advance(self, now: float | None = None, *, new_records: int | None = None) -> list[Change]:
        """Move the world to ``now`` (host clock, default: the clock) and return the changes made.

        New records arrive at ``rate_per_second`` (a seeded Poisson process; after a long idle gap only the last
        ``MAX_CATCH_UP_SECONDS`` are simulated), or exactly ``new_records`` spread evenly up to ``now``. Due
        states are cleared on the way; ``Faults.burst`` may add 101..250 records at ``now``;
        ``Personality.probe_stops`` may stop one probe for ``stop_seconds`` from the start of the step.
        """
        start_seq = self._store.seq
        target = max(self._server_time(now), self._time)
        arrivals = self._poisson_arrivals(target) if new_records is None else self._spread_arrivals(target, new_records)
        if self._world_rng.random() < self.faults.burst:
            arrivals += [target] * self._world_rng.randint(*BURST_SIZE)
        if self.personality.probe_stops > 0:
            self._maybe_stop_a_probe(self._time)
        for at in arrivals:
            self._restart_due(at)
            self._clear_due(at)
            self._create_random(at)
        self._restart_due(target)
        self._clear_due(target)
        self._last_advance = self._time = target
        if self.retain_seconds is not None:
            self._store.forget_before(int(target - self.retain_seconds))
        return self._store.changes(start_seq)

    def burst(self, n: int, now: float | None = None) -> list[Change]:
        """Create ``n`` records at the same instant ``now`` (default: the clock), after clearing due states."""
        start_seq = self._store.seq
        at = max(self._server_time(now), self._time)
        self._clear_due(at)
        for _ in range(n):
            self._create_random(at)
        self._time = at
        return self._store.changes(start_seq)

    def trigger(self, task_id: int, name: str, *, now: float | None = None, level: str | None = None) -> StoredRecord:
        """Raise trigger ``name`` on one task now: a scripted record for scenario tests."""
        trigger = next((t for t in CATALOGUE if t.name == name), None)
        if trigger is None:
            raise KeyError(f"unknown trigger {name!r}; known: {', '.join(TRIGGER_NAMES)}")
        if level is not None and level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        at = self._at(self._server_time(now))
        entry = self._create(self._tasks[task_id], trigger, at, level=level, clear_later=False)
        return self._snapshot(entry)

    def clear(self, record_id: int, *, now: float | None = None) -> StoredRecord:
        """Clear an active state now (a state raised by ``trigger`` stays active until this is called)."""
        entry = self._store.get(record_id)
        if entry.alarm.active is not True:
            raise ValueError(f"record {record_id} is not an active state")
        self._clear(entry, self._at(self._server_time(now)))
        return self._snapshot(entry)

    def _at(self, when: float) -> float:
        """``when``, moved forward if needed so that time never runs backwards."""
        self._time = max(when, self._time)
        return self._time

    def _arrival_gap(self) -> float:
        if self.rate_per_second == 0:
            return math.inf
        return self._world_rng.expovariate(self.rate_per_second)

    def _poisson_arrivals(self, target: float) -> list[float]:
        self._next_arrival = max(self._next_arrival, target - MAX_CATCH_UP_SECONDS, self._time)
        arrivals = []
        while self._next_arrival <= target:
            arrivals.append(self._next_arrival)
            self._next_arrival += self._arrival_gap()
        return arrivals

    def _spread_arrivals(self, target: float, count: int) -> list[float]:
        start = max(self._last_advance, self._time)
        step = (target - start) / count if count else 0.0
        self._next_arrival = max(self._next_arrival, target)
        return [start + step * (i + 1) for i in range(count)]

    def _maybe_stop_a_probe(self, at: float) -> None:
        """``Personality.probe_stops``: one running probe, drawn from the world's generator, stops for a while."""
        if self._world_rng.random() >= self.personality.probe_stops:
            return
        running = [app_id for app_id, alive in self._alive.items() if alive]
        if running:
            app_id = self._world_rng.choice(running)
            self._alive[app_id] = False
            self._recording = None
            self._restarts[app_id] = at + self.personality.stop_seconds

    def _restart_due(self, at: float) -> None:
        for app_id, restart in list(self._restarts.items()):
            if restart <= at:
                self._alive[app_id] = True
                del self._restarts[app_id]
                self._recording = None

    def _create_random(self, at: float) -> None:
        tasks = self._recording_tasks()
        if not tasks:
            return
        task = self._world_rng.choice(tasks)
        self._create(task, self._pick_trigger(task), self._at(at))

    def _pick_trigger(self, task: SimTask) -> Trigger:
        triggers = triggers_for(task.transport)
        if not self._alive[task.app_id]:  # a probe stopped for a while: its tasks see events, no new states
            triggers = tuple(t for t in triggers if t.type == "event")
        weights = [t.weight for t in triggers]
        for _ in range(5):
            trigger = self._world_rng.choices(triggers, weights)[0]
            if trigger.type == "event" or (task.task_id, trigger.name) not in self._active_keys:
                return trigger
        events = [t for t in triggers if t.type == "event"]
        return self._world_rng.choices(events, [t.weight for t in events])[0]

    def _create(
        self, task: SimTask, trigger: Trigger, at: float, *, level: str | None = None, clear_later: bool = True
    ) -> Entry:
        rng = self._world_rng
        info = trigger.details(rng)
        info["time"] = round(at - self._event_lag() - task.start_f, 7)
        if rng.random() < 0.15:
            info.update(rng.choice(EXTRA_INFO))
        alarm = Alarm(
            id=self._next_record_id,
            project_id=task.project_id,
            app_id=task.app_id,
            task_id=task.task_id,
            profile_id=task.profile_id,
            trigger_time=int(at),
            active=True if trigger.type == "state" else msgspec.UNSET,
            level=level or rng.choice(trigger.levels),
            trigger_group=trigger.group,
            type=trigger.type,
            name=trigger.name,
            info=info,
        )
        self._next_record_id += 1
        self._store.add(alarm, int(at))
        if trigger.type == "state":
            self._active_keys.add((task.task_id, trigger.name))
            if clear_later:
                due = at + rng.expovariate(1.0 / self.mean_state_seconds)
                heapq.heappush(self._pending_clears, (due, alarm.id))
        return self._store.get(alarm.id)

    def _event_lag(self) -> float:
        """How long after the real event the server created the record; now and then a probe was cut off."""
        if self._world_rng.random() < 0.02:
            return self._world_rng.uniform(30.0, 600.0)
        return self._world_rng.uniform(0.0, 1.5)

    def _clear_due(self, until: float) -> None:
        while self._pending_clears and self._pending_clears[0][0] <= until:
            due, record_id = heapq.heappop(self._pending_clears)
            entry = self._store.get(record_id)
            if entry.alarm.active is True:
                self._clear(entry, self._at(due))

    def _clear(self, entry: Entry, at: float) -> None:
        alarm = entry.alarm
        start_f = self._tasks[alarm.task_id].start_f
        end = round(at - self._world_rng.uniform(0.0, 1.0) - start_f, 7)
        alarm.info["time_end"] = max(end, float(alarm.info.get("time", end)))
        alarm.active = False
        self._active_keys.discard((alarm.task_id, alarm.name))
        self._store.touch(entry, int(at))

    # ---- the endpoint --------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> SimReply:
        """Answer one HTTP request. ``path`` is the request URI (path and query) as sent."""
        self._at(self._server_time())
        refusal = self._route_refusal(method, path) or self._auth_refusal(method, path, headers, body)
        if refusal is not None:
            return refusal
        faults = roll_request_faults(self._fault_rng, self.faults)
        if faults.http_5xx:
            return SimReply(503, {"content-type": "text/html", "server": "nginx"}, NGINX_503)
        if faults.http_429:
            retry = format(self.faults.retry_after, "g")
            return json_reply(429, {"error": "too many requests"}, {"retry-after": retry})
        try:
            user_id, calls = parse_envelope(body)
        except BadRequestError as error:
            return json_reply(400, {"error": str(error)})
        reply = json_reply(200, {"reply": [self._answer(call, user_id) for call in calls]})
        if faults.malformed:
            reply = SimReply(200, reply.headers, mangle(reply.body, self._fault_rng))
        delay = self.faults.slow_seconds if faults.slow else 0.0
        return SimReply(reply.status, reply.headers, reply.body, delay)

    def _route_refusal(self, method: str, path: str) -> SimReply | None:
        if path.split("?", 1)[0] != ENDPOINT_PATH:
            return json_reply(404, {"error": f"no such endpoint {path.split('?', 1)[0]}"})
        if method.upper() != "POST":
            return json_reply(405, {"error": "only POST is allowed"}, {"allow": "POST"})
        return None

    def _auth_refusal(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> SimReply | None:
        if self._hmac_keys is None:
            return None
        moment = datetime.fromtimestamp(self.clock(), UTC)
        reason = hmac_auth.verify(method, path, headers, body, keys=self._hmac_keys, now=moment)
        if reason is None:
            return None
        return json_reply(401, {"error": "HMAC signature refused", "reason": reason})

    def _answer(self, call: Call, user_id: int) -> JSON:
        item: JSON = {"method": call.method}
        if call.has_id:
            item["id"] = call.call_id
        try:
            item["result"] = self._dispatch(call, user_id)
        except ParamError as error:
            item["error"] = str(error)
        except FaultyItemError as fault:
            item["error"] = fault.payload
        return item

    def _dispatch(self, call: Call, user_id: int) -> Any:
        if call.method == "TaskAlarms":
            item_faults = roll_item_faults(self._fault_rng, self.faults)
            return self._checked(call, user_id, lambda params: self._task_alarms(params, item_faults))
        handlers: dict[str, Callable[[JSON], Any]] = {
            "ProjectsList": self._projects_list,
            "AppList": self._app_list,
            "AppTasks": self._app_tasks,
            "TaskInfo": self._task_info,
        }
        return self._checked(call, user_id, handlers.get(call.method))

    def _checked(self, call: Call, user_id: int, handler: Callable[[JSON], Any] | None) -> Any:
        if handler is None:
            raise ParamError(f"unknown method {call.method!r}")
        if user_id != self.user_id:
            raise ParamError(f"access denied for user_id {user_id}")
        return handler(call.params)

    # ---- TaskAlarms ----------------------------------------------------------------------------------------

    def _task_alarms(self, params: JSON, faults: ItemFaults) -> JSON:
        query = self._alarm_query(params)
        if faults.error is not None:
            raise FaultyItemError(faults.error)
        if query.token is None:
            return self._alarm_page(query)
        if not self.personality.time_token:
            return self._alarms_after_sequence(query, query.token, faults.repeat)
        return self._alarms_from_second(query, query.token, faults.repeat)

    def _alarm_query(self, params: JSON) -> AlarmQuery:
        project_id = self._project_param(params)
        choice_param(params, "kind", ("alarm",), "alarm")
        active_only = params.get("active_states_only", False)
        if not isinstance(active_only, bool):
            raise ParamError("active_states_only must be a boolean")
        limit = min(int_param(params, "limit_value", DEFAULT_LIMIT, minimum=1) or DEFAULT_LIMIT, MAX_LIMIT)
        page = int_param(params, "page", 1, minimum=1) or 1
        return AlarmQuery(
            project_id,
            self._task_selection(params, project_id),
            active_only,
            limit,
            page,
            token_param(params),
            parse_filter(params.get("filter")),
            params.get("update_token", 0),
        )

    def _project_param(self, params: JSON) -> int:
        project_id = required_int(params, "project_id")
        if project_id not in self._projects:
            raise ParamError(f"project {project_id} not found")
        return project_id

    def _task_selection(self, params: JSON, project_id: int) -> frozenset[int]:
        key = "task_ids" if "task_ids" in params else "task_id"
        if key not in params:
            raise ParamError("task_ids is required")
        every = (t.task_id for t in self._live_tasks(project_id))
        return id_selector(params[key], key, every)

    def _alarm_page(self, query: AlarmQuery) -> JSON:
        if self.personality.moving_records > 0:
            self._maybe_move_a_record(query)
        newest_first = self.personality.periods_newest_first
        entries = self._store.entries(query.project_id)
        matching = sorted(filter(query.matches, entries), key=by_time_then_id, reverse=newest_first)
        start = (query.page - 1) * query.limit
        chunk = matching[start : start + query.limit]
        record_time = self.personality.token == "record_time"  # noqa: S105 - a cursor style, not a credential
        token = chunk[-1].updated_at if record_time and chunk else self.current_token()
        return self._alarm_result(chunk, query, query.page, len(matching), token)

    def _maybe_move_a_record(self, query: AlarmQuery) -> None:
        """``Personality.moving_records``: one active state of the project in the period clears right now."""
        if self._world_rng.random() >= self.personality.moving_records:
            return
        candidates = sorted(
            (
                entry
                for entry in self._store.entries(query.project_id)
                if query.in_project_and_period(entry) and entry.alarm.active is True
            ),
            key=by_time_then_id,
        )
        if candidates:
            self._clear(self._world_rng.choice(candidates), self._time)

    def _alarms_after_sequence(self, query: AlarmQuery, token: float, repeat: bool) -> JSON:
        boundary = max(math.floor(token), 0)
        matching = [e for e in self._store.changed_from(boundary, query.project_id) if query.matches(e)]
        if self.personality.tokens_newest_first:
            matching.reverse()
        chunk = matching[: query.limit]
        full = len(chunk) == query.limit
        next_token = max(entry.seq for entry in chunk) if full else self._store.seq
        return self._alarm_result(
            self._with_repeats(chunk, query, boundary, repeat), query, 1, len(matching), next_token
        )

    def _alarms_from_second(self, query: AlarmQuery, token: float, repeat: bool) -> JSON:
        first_second = math.floor(token) + 1 if self.personality.exclusive_tokens else math.ceil(token)
        boundary = self._store.index_of_second(first_second)
        changed = [e for e in self._store.changed_from(boundary, query.project_id) if query.matches(e)]
        matching = sorted(changed, key=by_time_then_id, reverse=self.personality.tokens_newest_first)
        chunk = matching[: query.limit]
        next_token = self._time_token(chunk, len(chunk) == query.limit, query.raw_token)
        return self._alarm_result(
            self._with_repeats(chunk, query, boundary, repeat), query, 1, len(matching), next_token
        )

    def _time_token(self, chunk: list[Entry], full: bool, asked: float | int) -> float | int:
        """The next time token: what each reading of ``Personality.token`` hands out after this page."""
        kind = self.personality.token
        if kind == "record_time":
            return chunk[-1].updated_at if chunk else asked
        if kind == "timestamp" and full:
            return max(entry.updated_at for entry in chunk)
        return int(self._time)

    def _with_repeats(self, chunk: list[Entry], query: AlarmQuery, boundary: int, repeat: bool) -> list[Entry]:
        """``Faults.repeat``: fill a short page's spare room with records already served before the token."""
        room = min(3, query.limit - len(chunk))
        if not repeat or room <= 0:
            return chunk
        return self._store.unchanged_before(boundary, query.matches, room) + chunk

    @staticmethod
    def _alarm_result(chunk: list[Entry], query: AlarmQuery, page: int, total: int, token: float) -> JSON:
        return {
            "alarms": [msgspec.Raw(msgspec.json.encode(entry.alarm)) for entry in chunk],  # as of this call
            "current_page": page,
            "limit_value": query.limit,
            "total_pages": page_count(total, query.limit),
            "update_token": token,
        }

    # ---- discovery methods ---------------------------------------------------------------------------------

    def _projects_list(self, params: JSON) -> JSON:
        kind = choice_param(params, "type", ("own", "shared", "all"), "all")
        limit = min(int_param(params, "limit_value", DEFAULT_LIMIT, minimum=1) or DEFAULT_LIMIT, MAX_LIMIT)
        page = int_param(params, "page", 1, minimum=1) or 1
        chosen = [p for p in self._projects.values() if kind == "all" or (p.founder == self.user_id) == (kind == "own")]
        return {
            "projects": [self._project_view(p) for p in chosen[(page - 1) * limit : page * limit]],
            "current_page": page,
            "total_pages": page_count(len(chosen), limit),
            "limit_value": limit,
        }

    def _project_view(self, project: SimProject) -> JSON:
        live_probes = [p for p in self.probes(project.id) if self._alive[p.app_id]]
        live_tasks = self._live_tasks(project.id)
        return {
            "id": project.id,
            "title": project.title,
            "founder": project.founder,
            "role": project.role,
            "live_apps_count": len(live_probes),
            "live_channels_count": len(live_tasks),
            "live_streams_count": 3 * len(live_tasks),
        }

    def _app_list(self, params: JSON) -> list[JSON]:
        project_id = self._project_param(params)
        status = choice_param(params, "app_status", ("active", "stopped", "all"), "all")
        return [
            {"app_id": p.app_id, "name": p.name, "alive": self._alive[p.app_id]}
            for p in self.probes(project_id)
            if status == "all" or self._alive[p.app_id] == (status == "active")
        ]

    def _app_tasks(self, params: JSON) -> list[JSON]:
        project_id = self._project_param(params)
        app_ids = id_selector(params.get("app_ids", "*"), "app_ids", (p.app_id for p in self.probes(project_id)))
        replies = []
        for probe in self.probes(project_id):
            if probe.app_id in app_ids:
                live = [t.task_id for t in self._live_tasks(project_id) if t.app_id == probe.app_id]
                replies.append({"app_id": probe.app_id, "live_tasks": live, "sub_tasks": {str(t): [] for t in live}})
        return replies

    def _task_info(self, params: JSON) -> list[JSON]:
        project_id = self._project_param(params)
        every = (t.task_id for t in self.tasks(project_id))
        wanted = id_selector(params.get("task_ids", "*"), "task_ids", every)
        return [
            {
                "task_id": t.task_id,
                "app_id": t.app_id,
                "uri": t.uri,
                "name": t.name,
                "status": "running" if self._alive[t.app_id] else "stopped",
                "start": int(t.start_f),
                "start_f": t.start_f,
            }
            for t in self.tasks(project_id)
            if t.task_id in wanted
        ]
