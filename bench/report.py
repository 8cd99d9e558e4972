"""Tables of repeated measurements: median, min, max, and ratios between medians checked against targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Better = Literal["lower", "higher"]


@dataclass(frozen=True)
class Series:
    """Repeated samples of one quantity, e.g. CPU microseconds per alarm of one pipeline."""

    name: str
    unit: str
    samples: Sequence[float]

    @property
    def median(self) -> float:
        """The median sample (the figure every comparison uses)."""
        return statistics.median(self.samples)


@dataclass(frozen=True)
class Check:
    """A figure compared with a target: ``value <= target`` when lower is better, ``>=`` otherwise."""

    name: str
    value: float
    target: float
    better: Better = "lower"
    unit: str = ""

    @property
    def met(self) -> bool:
        """Whether the figure reaches the target."""
        return self.value <= self.target if self.better == "lower" else self.value >= self.target


def ratio(numerator: Series, denominator: Series) -> float:
    """The ratio of two medians (0 when the denominator's median is 0)."""
    return numerator.median / denominator.median if denominator.median else 0.0


@dataclass
class Table:
    """One benchmark's result: its series, the ratio of each to a baseline, and the target checks."""

    title: str
    series: list[Series] = field(default_factory=list)
    baselines: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, series: Series, *, baseline: str | None = None) -> Series:
        """Add a series; with ``baseline``, its ratio to that series' median is shown."""
        self.series.append(series)
        if baseline is not None:
            self.baselines[series.name] = baseline
        return series

    def render(self) -> str:
        """The table as fixed-width text."""
        by_name = {series.name: series for series in self.series}
        width = max([len(series.name) for series in self.series] + [len("series")])
        lines = [f"== {self.title} ==", _header(width)]
        for series in self.series:
            baseline = by_name.get(self.baselines.get(series.name, ""))
            shown = f"{ratio(series, baseline):.3f} of {baseline.name}" if baseline else ""
            lines.append(_row(series, width, shown))
        lines += [_check_line(check) for check in self.checks]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def print(self) -> None:
        """Print the table to stdout, with a blank line after it."""
        print(self.render(), end="\n\n", flush=True)


def _header(width: int) -> str:
    return f"{'series':<{width}}  {'unit':<10} {'median':>12} {'min':>12} {'max':>12} {'n':>4}  ratio"


def _row(series: Series, width: int, shown_ratio: str) -> str:
    low, high = min(series.samples), max(series.samples)
    figures = f"{_fmt(series.median):>12} {_fmt(low):>12} {_fmt(high):>12}"
    return f"{series.name:<{width}}  {series.unit:<10} {figures} {len(series.samples):>4}  {shown_ratio}".rstrip()


def _check_line(check: Check) -> str:
    sign = "<=" if check.better == "lower" else ">="
    verdict = "met" if check.met else "MISSED"
    unit = f" {check.unit}" if check.unit else ""
    return f"target: {check.name}: {_fmt(check.value)}{unit} {sign} {_fmt(check.target)}{unit}: {verdict}"


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 1e7:
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return f"{value:.3e}"
