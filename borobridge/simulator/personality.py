"""The simulator's personality: how it reads what the Boro documentation leaves open.

Personalities (``Personality``): the readings the documentation leaves open, each selectable, all combinable.
The default is the first choice of each.

- ``token``, what ``update_token`` is. A token request returns the first page only (``page`` is ignored).
  ``"sequence"``: the number of the last change seen; a request returns the records changed after it, in change
  order; the new token is the highest sequence number on a full page, else the current one. Nothing is ever
  returned twice. ``"timestamp"``: a Unix second; a request returns the records with ``updated_at >= token``; the
  new token is the newest ``updated_at`` on a full page, else the server's current second. Records sharing the
  boundary second come back again, and a full page that all shares one second returns the same token (page with
  ``filter.period_from`` to get past it). ``"record_time"``: the new token is the ``updated_at`` of the last record
  listed on the page, full or not (listings without a token too); an empty page returns the token that was asked
  with (without one: the server's current second). ``"reply_time"``: the new token is always the server's clock
  second at the reply, so the records that did not fit on a full page are never offered to that token again.
- ``token_compare``, for the three time tokens: ``"inclusive"`` (``updated_at >= token``) or ``"exclusive"``
  (``updated_at > token``: with ``reply_time``, a record written later in the token's own second is lost to it).
- ``token_order`` and ``period_order``: ``"oldest_first"`` or ``"newest_first"``, for token replies and for
  listings without a token. The order picks the records as well as listing them: newest first, the page holds the
  newest ``limit_value`` matches (the older ones are left for page 2, or lost to the token). Ties in ``updated_at``
  go by ``id`` (sequence tokens: by change), reversed for newest first.
- ``clock_offset`` (seconds, ±3600): the server's clock is the host clock plus this. Every record time
  (``trigger_time``, ``updated_at``), token, period and task start is on the server's clock; ``advance(now)`` and
  the other ``now`` arguments are host times. HMAC signatures are checked against the host clock.
- ``probe_stops`` (probability per ``advance``) stops one running probe for ``stop_seconds``; it starts again by
  itself at the first ``advance`` past that time. Meanwhile ``task_ids: "*"`` (and ``AppList``, ``AppTasks``,
  ``TaskInfo``) see it stopped, but its records still change: its states clear on schedule and events keep firing
  on its tasks at the normal rate (no new states). Explicit task ids still reach them; ground truth has them all.
- ``moving_records`` (probability per TaskAlarms listing without a token): one still-active state of the project
  with ``updated_at`` in the requested period clears right before the answer is computed, so its ``updated_at``
  moves to now and the records behind it move up a page.

Probe stops and moving records draw from the world's generator (only when switched on, so the default world is
the one it always was).
"""

from __future__ import annotations

from typing import Literal

import msgspec

TokenKind = Literal["sequence", "timestamp", "record_time", "reply_time"]
TokenCompare = Literal["inclusive", "exclusive"]
ReplyOrder = Literal["oldest_first", "newest_first"]
TOKEN_KINDS: tuple[TokenKind, ...] = ("sequence", "timestamp", "record_time", "reply_time")
TOKEN_COMPARES: tuple[TokenCompare, ...] = ("inclusive", "exclusive")
REPLY_ORDERS: tuple[ReplyOrder, ...] = ("oldest_first", "newest_first")
MAX_CLOCK_OFFSET = 3600.0


class Personality(msgspec.Struct, frozen=True, kw_only=True):
    """One reading of what the Boro documentation leaves open; the module docstring explains each field.

    The default is the simulator as it always was: sequence tokens, oldest first, the host's clock, probes that
    stop only when told to, records that hold still while a period is paged.
    """

    token: TokenKind = "sequence"  # noqa: S105 - a cursor style, not a credential
    token_compare: TokenCompare = "inclusive"  # noqa: S105 - a comparison, not a credential
    token_order: ReplyOrder = "oldest_first"  # noqa: S105 - an order, not a credential
    period_order: ReplyOrder = "oldest_first"
    clock_offset: float = 0.0
    probe_stops: float = 0.0
    stop_seconds: float = 30.0
    moving_records: float = 0.0

    def __post_init__(self) -> None:
        for name, allowed in (
            ("token", TOKEN_KINDS),
            ("token_compare", TOKEN_COMPARES),
            ("token_order", REPLY_ORDERS),
            ("period_order", REPLY_ORDERS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Personality.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not -MAX_CLOCK_OFFSET <= self.clock_offset <= MAX_CLOCK_OFFSET:
            raise ValueError(
                f"Personality.clock_offset must be within ±{MAX_CLOCK_OFFSET:g} s, got {self.clock_offset}"
            )
        for name in ("probe_stops", "moving_records"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Personality.{name} must be a probability between 0 and 1, got {getattr(self, name)}")
        if self.stop_seconds <= 0:
            raise ValueError(f"Personality.stop_seconds must be greater than 0, got {self.stop_seconds}")

    @property
    def time_token(self) -> bool:
        """Whether the token is a Unix second (every kind but ``sequence``)."""
        return self.token != "sequence"  # noqa: S105 - a cursor style, not a credential

    @property
    def exclusive_tokens(self) -> bool:
        return self.token_compare == "exclusive"  # noqa: S105 - a comparison, not a credential

    @property
    def tokens_newest_first(self) -> bool:
        return self.token_order == "newest_first"  # noqa: S105 - an order, not a credential

    @property
    def periods_newest_first(self) -> bool:
        return self.period_order == "newest_first"


def chosen_personality(token_mode: TokenKind | None, personality: Personality | None) -> Personality:
    """``token_mode`` is a shortcut for ``Personality(token=...)``; giving both is a mistake unless they agree."""
    if token_mode is not None and token_mode not in TOKEN_KINDS:
        raise ValueError(f"token_mode must be one of {', '.join(TOKEN_KINDS)}, got {token_mode!r}")
    if personality is None:
        return Personality(token=token_mode or "sequence")
    if token_mode is not None and token_mode != personality.token:
        raise ValueError(f"token_mode {token_mode!r} contradicts personality.token {personality.token!r}")
    return personality
