"""The Boro simulator: a seeded stand-in for the Boro Control API, its webhooks and its HTTP server.

``Simulator`` is the server in memory (``server``), built from the world it plays (``world``), its trigger
catalogue (``catalogue``), its record store (``store``), request parsing (``parsing``), its reading of what the
Boro documentation leaves open (``personality``) and its misbehaviour (``faults``). ``http`` serves it over real
HTTP or an ``httpx.MockTransport``; ``webhooks`` rings a bridge for every record change.
"""

from borobridge.simulator.catalogue import LEVELS, TRIGGER_GROUPS, TRIGGER_NAMES
from borobridge.simulator.faults import Faults
from borobridge.simulator.http import (
    SimulatorApp,
    as_mock_transport_handler,
    describe,
    faults_from,
    personality_from,
    run_simulator,
    serve_simulator,
)
from borobridge.simulator.personality import (
    REPLY_ORDERS,
    TOKEN_COMPARES,
    TOKEN_KINDS,
    Personality,
    ReplyOrder,
    TokenCompare,
    TokenKind,
)
from borobridge.simulator.replies import SimReply
from borobridge.simulator.server import ENDPOINT_PATH, Simulator
from borobridge.simulator.store import Change, StoredRecord
from borobridge.simulator.webhooks import WebhookSender, sending_webhooks
from borobridge.simulator.world import SimProbe, SimProject, SimTask

__all__ = [
    "ENDPOINT_PATH",
    "LEVELS",
    "REPLY_ORDERS",
    "TOKEN_COMPARES",
    "TOKEN_KINDS",
    "TRIGGER_GROUPS",
    "TRIGGER_NAMES",
    "Change",
    "Faults",
    "Personality",
    "ReplyOrder",
    "SimProbe",
    "SimProject",
    "SimReply",
    "SimTask",
    "Simulator",
    "SimulatorApp",
    "StoredRecord",
    "TokenCompare",
    "TokenKind",
    "WebhookSender",
    "as_mock_transport_handler",
    "describe",
    "faults_from",
    "personality_from",
    "run_simulator",
    "sending_webhooks",
    "serve_simulator",
]
