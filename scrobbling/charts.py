"""Geometry of the charts on the Scrobbles page, drawn by the template as inline SVG.

Everything is in the SVG's own units (its viewBox). The browser stretches the picture to
its box (as wide as the page, a fixed height), and the axis labels are HTML placed in
percentages around it, so text is never distorted: no JavaScript and no chart library.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

WIDTH = 900
HEIGHT = 160  # the plot only: the axis labels are HTML around the SVG, which is stretched to its box
TOP = 0  # the busiest day's bar reaches the top
PLOT_HEIGHT = HEIGHT - TOP
BASELINE = HEIGHT
GAP_RATIO = 0.2  # of each day's slot, left empty between bars


@dataclass(frozen=True)
class Bar:
    day: date
    plays: int
    x: float
    y: float
    width: float
    height: float

    @property
    def label(self) -> str:
        return f"{day_label(self.day)}: {plays_label(self.plays)}"


@dataclass(frozen=True)
class Tick:
    x: float
    label: str

    @property
    def percent(self) -> float:
        """Where the label goes, across the chart's width."""
        return round(100 * self.x / WIDTH, 2)


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    ticks: list[Tick]
    max_plays: int
    total: int
    summary: str  # what a screen reader says about the whole chart
    width: int = WIDTH
    height: int = HEIGHT
    top: int = TOP
    baseline: int = BASELINE
    plot_height: int = PLOT_HEIGHT


def day_label(day: date) -> str:
    """Mon 23 Nov."""
    return f"{day:%a} {day.day} {day:%b}"


def plays_label(count: int) -> str:
    return f"{count} play" if count == 1 else f"{count} plays"


def daily_bars(days: list[tuple[date, int]]) -> BarChart:
    """One bar per day (oldest first), scaled so that the busiest day fills the plot; days
    without plays get a bar of height 0 (their tooltip still says so)."""
    slot = WIDTH / max(len(days), 1)
    max_plays = max((count for _, count in days), default=0)
    bars = []
    ticks = []
    for index, (day, count) in enumerate(days):
        x = index * slot
        height = round(PLOT_HEIGHT * count / max_plays, 2) if max_plays else 0.0
        bars.append(Bar(day=day, plays=count, x=round(x + slot * GAP_RATIO / 2, 2), y=round(BASELINE - height, 2),
                        width=round(slot * (1 - GAP_RATIO), 2), height=height))
        if day.day == 1:
            ticks.append(Tick(x=round(x, 2), label=f"{day:%b}"))
    total = sum(count for _, count in days)
    return BarChart(bars=bars, ticks=ticks, max_plays=max_plays, total=total, summary=_summary(days, total, max_plays))


def _summary(days: list[tuple[date, int]], total: int, max_plays: int) -> str:
    span = f"the last {len(days)} days"
    if not total:
        return f"Plays per day over {span}: none yet."
    busiest = next(day for day, count in days if count == max_plays)
    active = sum(1 for _, count in days if count)
    return (f"Plays per day over {span}: {plays_label(total)} on {active} day{'s' if active != 1 else ''}; "
            f"the most, {max_plays}, on {day_label(busiest)}.")


def with_shares(rows: list[dict]) -> list[dict]:
    """Top-list rows with `share`: plays as a percentage of the first (biggest) row's, for
    the bar drawn behind each row."""
    most = max((row["plays"] for row in rows), default=0)
    return [{**row, "share": round(100 * row["plays"] / most, 1) if most else 0} for row in rows]
