"""Credentials that never show themselves in a log, a repr or a printed configuration.

:class:`Secret` holds a configured credential; the functions keep the ``user:password@`` of a URL out of what
is printed (:func:`masked_url`, :func:`scrubbed`) and out of identities (:func:`without_userinfo`).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

MASK: Final = "**********"


class Secret:
    """Holds a credential; ``reveal()`` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def without_userinfo(netloc: str) -> str:
    """``host[:port]`` of a URL's network location, without ``user:password@``."""
    return netloc.rpartition("@")[2]


def masked_url(url: str) -> str:
    """The URL to print: its ``user:password@`` replaced by the mask, the rest as written."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=f"{MASK}@{without_userinfo(parts.netloc)}"))


def scrubbed(text: str, url: str) -> str:
    """``text`` (a message that may quote ``url``, e.g. a library's error) with the URL's credentials masked."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    for credential in (userinfo, parts.password, unquote(parts.password or "")):
        if credential:
            text = text.replace(credential, MASK)
    return text
