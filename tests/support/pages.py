"""TaskAlarms replies for tests that play Boro by hand: the page a query asks for, cut from a listing."""

from __future__ import annotations

from collections.abc import Sequence

from borobridge.boro.models import Token
from borobridge.boro.queries import AlarmPage, AlarmQuery, DecodedRecord


def cut_page(
    query: AlarmQuery,
    listing: Sequence[DecodedRecord],
    *,
    limit: int,
    token: Token,
    total_pages: int | None = None,
) -> AlarmPage:
    """The page ``query`` asks for, cut from ``listing`` (Boro's order at that moment) in pages of ``limit``;
    ``total_pages`` as the listing gives it unless said."""
    counted = max(-(-len(listing) // limit), 1)
    return AlarmPage(
        query=query,
        records=list(listing[(query.page - 1) * limit : query.page * limit]),
        rejected=[],
        update_token=token,
        current_page=query.page,
        total_pages=counted if total_pages is None else total_pages,
        limit_value=limit,
    )
