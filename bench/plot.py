"""``python -m bench.plot [RESULTS.json] [-o FILE.svg]``: app latency over time, as an SVG.

Draws the app timeline that the "blocked" scenario keeps for the first run of each
implementation (``extra["timeline"]`` in the JSON results): every app query's latency
against its scheduled time, relative to the moment the ``ALTER`` started waiting for its
lock, plain Django and pgmigrate on one log-scale chart. Standard library only: the SVG
elements are written by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "assets" / "stall-timeline.svg"

TITLE = "App query latency while migrate adds a column to a blocked table"
WIDTH, HEIGHT = 900, 500
#: The plot area: left, top, right, bottom edges.
LEFT, TOP, RIGHT, BOTTOM = 78, 100, 872, 406
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK = "#1f2328"
MUTED = "#57606a"
GRID = "#d8dee4"
BACKGROUND = "#ffffff"


@dataclass(frozen=True)
class Series:
    """How one implementation is drawn (Okabe-Ito colours, told apart without colour too:
    plain Django's points are squares, pgmigrate's circles)."""

    key: str
    label: str
    colour: str
    shape: str


PLAIN = Series("plain", "plain Django", "#d55e00", "square")
PGMIGRATE = Series("pgmigrate", "pgmigrate", "#0072b2", "circle")
#: Drawing order: pgmigrate last, on top, where both overlap before the ALTER waits.
SERIES = (PLAIN, PGMIGRATE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plot",
        description="Draw the blocked scenario's app timeline (plain Django, pgmigrate) as SVG.",
    )
    parser.add_argument(
        "results",
        nargs="?",
        type=Path,
        help="a results file of python -m bench with the blocked scenario "
        "(default: the newest such file in bench/results/)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"the SVG to write (default: {DEFAULT_OUTPUT.relative_to(ROOT)})",
    )
    return parser.parse_args(argv)


def blocked_scenario(document: dict[str, Any]) -> dict[str, Any] | None:
    """The "blocked" scenario of a results document, if it kept a timeline."""
    for scenario in document.get("scenarios", []):
        if scenario.get("name") == "blocked" and scenario.get("extra", {}).get("timeline"):
            return scenario
    return None


def newest_results() -> Path | None:
    """The newest results file in ``bench/results/`` with a "blocked" timeline."""
    for path in sorted(RESULTS_DIR.glob("*.json"), reverse=True):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if blocked_scenario(document) is not None:
            return path
    return None


# Scales and ticks.


@dataclass(frozen=True)
class LinearScale:
    low: float
    high: float
    start: float  # pixels
    end: float

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


@dataclass(frozen=True)
class LogScale:
    low: float  # a power of ten
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = math.log10(self.high) - math.log10(self.low)
        share = (math.log10(max(value, self.low)) - math.log10(self.low)) / span
        return self.start + share * (self.end - self.start)


def time_ticks(low: float, high: float) -> list[float]:
    """Round ticks between ``low`` and ``high`` (ms), about 6 to 12 of them."""
    span = high - low
    step = next(
        (s for s in (100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000) if span / s <= 12),
        10 ** math.ceil(math.log10(span)),
    )
    first = math.ceil(low / step) * step
    return [first + n * step for n in range(int((high - first) // step) + 1)]


def ms_label(value: float) -> str:
    """A latency or time in ms, short: 0.1, 1, 10, 1,000, 10,000."""
    if value < 1:
        return f"{value:g}"
    return f"{value:,.0f}"


def ms_text(value: float) -> str:
    """A duration in ms for prose: "6.6 ms", "5,005 ms"."""
    return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"


# SVG.


def attributes(**values: object) -> str:
    return "".join(
        f' {name.rstrip("_").replace("_", "-")}="{escape(str(value))}"'
        for name, value in values.items()
        if value is not None
    )


def element(name: str, text: str | None = None, **values: object) -> str:
    if text is None:
        return f"<{name}{attributes(**values)}/>"
    return f"<{name}{attributes(**values)}>{escape(text)}</{name}>"


def number(value: float) -> str:
    """A pixel coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def markers(points: Iterable[tuple[float, float]], series: Series) -> str:
    """One path drawing a small marker at each point (one path keeps the file small);
    points falling on the same half pixel are drawn once."""
    seen: set[tuple[int, int]] = set()
    parts = []
    for x, y in points:
        key = (round(x * 2), round(y * 2))
        if key in seen:
            continue
        seen.add(key)
        if series.shape == "square":
            parts.append(f"M{number(x - 2)} {number(y - 2)}h4v4h-4z")
        else:  # a circle of radius 2.2, as two arcs
            parts.append(
                f"M{number(x - 2.2)} {number(y)}a2.2 2.2 0 1 0 4.4 0a2.2 2.2 0 1 0 -4.4 0"
            )
    return element(
        "path",
        d="".join(parts),
        fill=series.colour,
        fill_opacity=0.75,
        stroke=series.colour,
        stroke_width=0.6,
    )


def legend_marker(x: float, y: float, series: Series) -> str:
    if series.shape == "square":
        return element("rect", x=x - 4, y=y - 4, width=8, height=8, fill=series.colour)
    return element("circle", cx=x, cy=y, r=4.5, fill=series.colour)


def text(x: float, y: float, content: str, *, size: float = 12, **values: object) -> str:
    values.setdefault("fill", INK)
    return element("text", content, x=number(x), y=number(y), font_size=size, **values)


def machine_line(meta: dict[str, Any]) -> str | None:
    machine = meta.get("machine")
    if not isinstance(machine, dict):
        return None
    parts = []
    if machine.get("cores"):
        platform = f" ({machine['platform']})" if machine.get("platform") else ""
        parts.append(f"{machine['cores']} cores{platform}")
    for key, name in (
        ("postgresql", "PostgreSQL"),
        ("python", "Python"),
        ("django", "Django"),
        ("psycopg", "psycopg"),
    ):
        if machine.get(key):
            parts.append(f"{name} {machine[key]}")
    return ", ".join(parts) or None


def median_stall(scenario: dict[str, Any], group: str) -> float | None:
    summary = scenario.get("summary", {}).get(group, {})
    return summary.get("app_worst_ms", {}).get("median")


def run_count(scenario: dict[str, Any], group: str) -> int:
    return sum(1 for run in scenario.get("runs", []) if run.get("group") == group)


def render(document: dict[str, Any]) -> str:
    """The SVG chart of the "blocked" timeline in a results document."""
    scenario = blocked_scenario(document)
    if scenario is None:
        raise ValueError("no blocked scenario with a timeline in these results")
    meta = document.get("meta", {})
    timeline: dict[str, list[list[float]]] = scenario["extra"]["timeline"]
    events: dict[str, dict[str, Any]] = scenario["extra"].get("timeline_events", {})
    shown = [series for series in SERIES if timeline.get(series.key)]

    every = [point for series in shown for point in timeline[series.key]]
    t_low = min(t for t, _ in every)
    t_high = max(t for t, _ in every)
    x = LinearScale(t_low, t_high, LEFT, RIGHT)
    lowest = min(latency for _, latency in every)
    highest = max(latency for _, latency in every)
    y_low = 10 ** math.floor(math.log10(max(lowest, 0.01)))
    y_high = 10 ** math.ceil(math.log10(max(highest, y_low * 10)))
    y = LogScale(y_low, y_high, BOTTOM, TOP)

    out: list[str] = []
    add = out.append

    # Grid and axes.
    decades = range(round(math.log10(y_low)), round(math.log10(y_high)) + 1)
    for decade in decades:
        value = 10.0**decade
        add(
            element(
                "line",
                x1=LEFT,
                x2=RIGHT,
                y1=number(y(value)),
                y2=number(y(value)),
                stroke=GRID,
                stroke_width=1,
            )
        )
        add(text(LEFT - 8, y(value) + 4, ms_label(value), text_anchor="end", fill=MUTED))
        if value < y_high:
            for minor in range(2, 10):
                tick = number(y(value * minor))
                add(
                    element(
                        "line",
                        x1=LEFT - 4,
                        x2=LEFT,
                        y1=tick,
                        y2=tick,
                        stroke=MUTED,
                        stroke_width=0.8,
                    )
                )
    for tick in time_ticks(t_low, t_high):
        px = number(x(tick))
        add(element("line", x1=px, x2=px, y1=TOP, y2=BOTTOM, stroke=GRID, stroke_width=1))
        add(element("line", x1=px, x2=px, y1=BOTTOM, y2=BOTTOM + 5, stroke=MUTED))
        add(
            text(
                x(tick),
                BOTTOM + 19,
                ms_label(tick) if tick else "0",
                text_anchor="middle",
                fill=MUTED,
            )
        )
    add(
        element(
            "rect",
            x=LEFT,
            y=TOP,
            width=RIGHT - LEFT,
            height=BOTTOM - TOP,
            fill="none",
            stroke=MUTED,
            stroke_width=1,
        )
    )
    add(
        text(
            (LEFT + RIGHT) / 2,
            BOTTOM + 43,
            "app query scheduled at (ms after the ALTER starts waiting for its lock)",
            size=13,
            text_anchor="middle",
        )
    )
    middle = (TOP + BOTTOM) / 2
    add(
        text(
            22,
            middle,
            "app query latency (ms, log scale)",
            size=13,
            text_anchor="middle",
            transform=f"rotate(-90 22 {number(middle)})",
        )
    )

    # Moments: the ALTER starts waiting; the bench ends plain Django's blocker.
    obstacles: list[Box] = []  # for the legend to keep clear of

    def moment(at: float, label: str, anchor: str, colour: str) -> None:
        px = number(x(at))
        obstacles.append(Box(x(at) - 3, TOP, 6, BOTTOM - TOP))
        add(
            element(
                "line",
                x1=px,
                x2=px,
                y1=TOP,
                y2=BOTTOM,
                stroke=colour,
                stroke_width=1.4,
                stroke_dasharray="5 4",
            )
        )
        dx = 5 if anchor == "start" else -5
        add(
            text(
                x(at) + dx,
                TOP + 15,
                label,
                size=12,
                text_anchor=anchor,
                fill=colour,
                font_weight=600,
            )
        )

    moment(0, "ALTER starts waiting", "start", INK)
    plain_events = events.get(PLAIN.key, {})
    ended = plain_events.get("bench_ended_blockers_ms")
    if ended is not None and PLAIN in shown:
        moment(ended, "bench ends the blocker (plain)", "end", PLAIN.colour)

    # The points, clipped to the plot area.
    add(
        f'<clipPath id="plot"><rect x="{LEFT}" y="{TOP}" width="{RIGHT - LEFT}" '
        f'height="{BOTTOM - TOP}"/></clipPath>'
    )
    add('<g clip-path="url(#plot)">')
    for series in shown:
        add(markers(((x(t), y(latency)) for t, latency in timeline[series.key]), series))
    add("</g>")

    # pgmigrate's worst query is a speck at this scale: point it out.
    if PGMIGRATE in shown:
        t, worst = max(timeline[PGMIGRATE.key], key=lambda point: point[1])
        label = f"pgmigrate's worst: {ms_text(worst)}"
        px, py = x(t), y(worst)
        add(
            element(
                "line",
                x1=number(px + 5),
                x2=number(px + 22),
                y1=number(py),
                y2=number(py),
                stroke=PGMIGRATE.colour,
                stroke_width=1.2,
            )
        )
        add(text(px + 26, py + 4, label, size=12, fill=PGMIGRATE.colour, font_weight=600))
        obstacles.append(Box(px, py - 9, 30 + text_width(label, 12), 18))

    # Legend: where it hides the fewest points.
    labels = [legend_label(series, events) for series in shown]
    width = max(text_width(label, 12.5) for label in labels) + 36
    height = 20 + 22 * len(shown)
    pixels = [(x(t), y(latency)) for series in shown for t, latency in timeline[series.key]]
    box = legend_box(width, height, pixels, obstacles)
    add(
        element(
            "rect",
            x=number(box.left),
            y=number(box.top),
            width=number(width),
            height=height,
            rx=4,
            fill=BACKGROUND,
            fill_opacity=0.92,
            stroke=GRID,
        )
    )
    for n, (series, label) in enumerate(zip(shown, labels, strict=True)):
        row = box.top + 24 + n * 22
        add(legend_marker(box.left + 14, row - 4, series))
        add(text(box.left + 26, row, label, size=12.5))

    # Title, subtitle, notes.
    add(text(LEFT - 56, 30, TITLE, size=19, font_weight=700))
    stalls = [
        f"{series.label} {ms_text(stall)}"
        for series in (PLAIN, PGMIGRATE)
        if (stall := median_stall(scenario, series.key)) is not None
    ]
    if stalls:
        runs = {run_count(scenario, series.key) for series in (PLAIN, PGMIGRATE)}
        count = runs.pop() if len(runs) == 1 else 0
        heading = (
            f"Median app worst stall over {count} runs each"
            if count > 1
            else "App worst stall (1 run each)"
            if count
            else "Median app worst stall"
        )
        add(
            text(
                LEFT - 56,
                54,
                f"{heading}: {', '.join(stalls)}",
                size=14,
                fill=INK,
            )
        )
    line = machine_line(meta)
    if line:
        add(text(LEFT - 56, 74, line, size=12, fill=MUTED))
    period = next((e["period_ms"] for e in events.values() if e.get("period_ms")), None)
    traffic = f"one app query every {period:g} ms, open loop: " if period else ""
    notes = [
        f"First run of each; {traffic}latency counts from the scheduled time, including "
        "time queued behind the lock.",
        "Each series runs from 0.5 s before the ALTER waits to 0.5 s after migrate exits.",
    ]
    for n, note in enumerate(notes):
        add(text(LEFT - 56, HEIGHT - 26 + n * 16, note, size=11.5, fill=MUTED))

    description = (
        "Scatter chart of app query latency against the query's scheduled time, relative to "
        "the moment the ALTER started waiting for its lock, for plain Django and pgmigrate. "
        + (f"Median app worst stall: {', '.join(stalls)}." if stalls else "")
    )
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="title desc" '
        f'font-family="{escape(FONT)}">'
    )
    return "\n".join(
        [
            head,
            element("title", TITLE, id="title"),
            element("desc", description, id="desc"),
            element("rect", width=WIDTH, height=HEIGHT, fill=BACKGROUND),
            *out,
            "</svg>",
            "",
        ]
    )


def text_width(content: str, size: float) -> float:
    """About how wide ``content`` is in a sans-serif font (a little wide, to be safe)."""
    return len(content) * size * 0.53


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    width: float
    height: float

    def covers(self, px: float, py: float, margin: float = 0) -> bool:
        return (
            self.left - margin <= px <= self.left + self.width + margin
            and self.top - margin <= py <= self.top + self.height + margin
        )

    def overlaps(self, other: Box) -> bool:
        return (
            self.left < other.left + other.width
            and other.left < self.left + self.width
            and self.top < other.top + other.height
            and other.top < self.top + self.height
        )


def legend_box(
    width: float, height: float, pixels: list[tuple[float, float]], obstacles: list[Box]
) -> Box:
    """The place in the plot area for a legend of this size that covers the fewest points and
    no obstacle, below the labels of the moments; of equals, the one nearest the middle of
    the lower half, where the legend usually sits."""
    candidates = []
    for left in range(LEFT + 12, int(RIGHT - width - 12) + 1, 8):
        for top in range(TOP + 28, int(BOTTOM - height - 8) + 1, 6):
            box = Box(left, top, width, height)
            hidden = sum(1 for px, py in pixels if box.covers(px, py, margin=4))
            blocked = any(box.overlaps(obstacle) for obstacle in obstacles)
            centre = (left + width / 2 - (LEFT + RIGHT) / 2, top + height / 2 - BOTTOM * 0.8)
            candidates.append((blocked, hidden, math.hypot(*centre), box))
    if not candidates:
        return Box(LEFT + 12, TOP + 28, width, height)
    return min(candidates, key=lambda candidate: candidate[:3])[3]


def legend_label(series: Series, events: dict[str, Any]) -> str:
    """The legend's words for ``series``: what ended the blocker, and when."""
    gone = events.get(series.key, {}).get("gone_ms")
    if series is PLAIN:
        ended = events.get(series.key, {}).get("bench_ended_blockers_ms")
        after = f" after {ended / 1000:.1f} s" if ended is not None else ""
        return f"plain Django: the app waits until the bench ends the blocker{after}"
    after = f" {ms_text(gone)} after the ALTER waits" if gone is not None else ""
    return f"pgmigrate: ends the blocker itself,{after}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = args.results or newest_results()
    if path is None:
        print(
            "bench.plot: no results with a blocked timeline in bench/results/; run "
            "python -m bench --scenario blocked first",
            file=sys.stderr,
        )
        return 2
    try:
        svg = render(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        print(f"bench.plot: {path}: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(svg)
    print(f"bench.plot: {path} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
