"""The metric names a PromQL expression reads, to check them against what /metrics exposes."""

from __future__ import annotations

import re
from typing import Final

KEYWORDS: Final = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS_TOO: Final = KEYWORDS | {"bool", "offset", "inf", "nan"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLES = re.compile(r"\$\w+")
_NAMES = re.compile(r"(?<![\w.])([a-zA-Z_:][\w:]*+)(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects (function names, keywords, labels and Grafana variables left out)."""
    bare = _STRINGS.sub('""', expr)
    for pattern in (_MATCHERS, _RANGES, _LABEL_LISTS, _VARIABLES):
        bare = pattern.sub(" ", bare)
    return {name for name in _NAMES.findall(bare) if name.lower() not in KEYWORDS_TOO}
