"""The entries of docs/troubleshooting.md, read for tests that check messages against them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).parents[2]
DOC: Final = ROOT / "docs" / "troubleshooting.md"
CODE: Final = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Entry:
    """One ``###`` entry: the message fragments its heading quotes, and its text."""

    fragments: list[str]
    text: str


def entries() -> list[Entry]:
    """Every ``###`` entry of the guide, in order."""
    found: list[Entry] = []
    for block in re.split(r"^(?=#{2,3} )", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE):
        if block.startswith("### "):
            heading = block.splitlines()[0]
            found.append(Entry(CODE.findall(heading), block))
    return found
