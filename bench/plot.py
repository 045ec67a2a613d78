"""``python -m bench.plot [RESULTS.json] [-o FILE.svg]``: app latency over time, as an SVG.

Draws the app timelines that scenarios keep for the first run of each group
(``extra["timeline"]`` in the JSON results): every app query's latency against its
scheduled time, relative to the moment the ``ALTER`` started waiting for its lock. One
section per situation, one row per implementation, all rows on the same log scale:

- "blocked": a blocker pgmigrate ends; plain Django, pgmigrate;
- "aside": a blocker pgmigrate must not end (protected); plain Django and pgmigrate
  stepping out of the lock queue from the "aside" scenario, and the lock-timeout-and-retry
  approach of peer tools from the "retries" scenario (its ``PGMIGRATE_STEP_ASIDE = False``
  group). When "aside" is missing, "retries" gives all three rows.

Standard library only: the SVG elements are written by hand.
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
WIDTH = 900
#: The plot areas' left and right edges; each row's height, the strip above it for its
#: caption, and the gap below it.
LEFT, RIGHT = 78, 872
ROW_HEIGHT, CAPTION, ROW_GAP = 96, 18, 8
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK = "#1f2328"
MUTED = "#57606a"
GRID = "#d8dee4"
BACKGROUND = "#ffffff"

#: The group of the "retries" scenario without stepping aside (``bench.scenarios.retries``).
RETRIES_GROUP = "lock-timeout retries"
SECTIONS = ("blocked", "aside")


@dataclass(frozen=True)
class Series:
    """How one implementation is drawn (Okabe-Ito colours, told apart without colour too:
    plain Django's points are squares, pgmigrate's circles, lock-timeout retries' diamonds)."""

    label: str
    colour: str
    shape: str


PLAIN = Series("plain Django", "#d55e00", "square")
PGMIGRATE = Series("pgmigrate", "#0072b2", "circle")
RETRIES = Series("lock timeout + retries", "#cc79a7", "diamond")


@dataclass(frozen=True)
class Row:
    """One implementation's timeline: ``group`` of ``scenario`` (a results document's)."""

    series: Series
    scenario: dict[str, Any]
    group: str
    #: What it did, after "<label>: worst stall X ms; ".
    caption: str
    #: ms after the ALTER waited when the blocker ended (a dashed line), if known.
    ended: float | None

    @property
    def points(self) -> list[list[float]]:
        return self.scenario["extra"]["timeline"][self.group]

    @property
    def worst(self) -> float:
        """The app's worst stall in this run (from ``migrate``'s start to its exit), or the
        worst latency drawn."""
        run = _first_run(self.scenario, self.group)
        if run.get("app_worst_ms") is not None:
            return run["app_worst_ms"]
        return max(latency for _, latency in self.points)


@dataclass(frozen=True)
class Section:
    name: str
    heading: str
    rows: list[Row]
    #: Said under the heading, besides the medians.
    remark: str = ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plot",
        description="Draw the app timelines of the blocked, aside and retries scenarios as SVG.",
    )
    parser.add_argument(
        "results",
        nargs="?",
        type=Path,
        help="a results file of python -m bench with blocked, aside or retries "
        "(default: the newest such file in bench/results/)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"the SVG to write (default: {DEFAULT_OUTPUT.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--section",
        action="append",
        choices=SECTIONS,
        help="draw only this section (may be repeated); default: every one the file has",
    )
    return parser.parse_args(argv)


def scenario_with_timeline(document: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The scenario ``name`` of a results document, if it kept a timeline."""
    for scenario in document.get("scenarios", []):
        if scenario.get("name") == name and scenario.get("extra", {}).get("timeline"):
            return scenario
    return None


def blocked_scenario(document: dict[str, Any]) -> dict[str, Any] | None:
    """The "blocked" scenario of a results document, if it kept a timeline."""
    return scenario_with_timeline(document, "blocked")


def newest_results(names: Iterable[str] = SECTIONS) -> Path | None:
    """The newest results file in ``bench/results/`` with one of the sections ``names``."""
    wanted = tuple(names)
    for path in sorted(RESULTS_DIR.glob("*.json"), reverse=True):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if sections(document, wanted):
            return path
    return None


# What to draw.


def _events(scenario: dict[str, Any], group: str) -> dict[str, Any]:
    return scenario.get("extra", {}).get("timeline_events", {}).get(group) or {}


def _has(scenario: dict[str, Any] | None, group: str) -> bool:
    return bool(scenario and scenario.get("extra", {}).get("timeline", {}).get(group))


def _seconds(value: float) -> str:
    return f"{value / 1000:.1f} s"


def _first_run(scenario: dict[str, Any], group: str) -> dict[str, Any]:
    return next((run for run in scenario.get("runs", []) if run.get("group") == group), {})


def _plain_row(scenario: dict[str, Any], ended_key: str, caption: str) -> Row:
    """Plain Django's row: ``caption`` with "{}" for when the blocker ended (a dashed line)."""
    ended = _events(scenario, "plain").get(ended_key)
    when = f"{_seconds(ended)} (dashed)" if ended is not None else "the end"
    return Row(PLAIN, scenario, "plain", caption.format(when), ended)


def blocked_section(document: dict[str, Any]) -> Section | None:
    scenario = blocked_scenario(document)
    if scenario is None:
        return None
    rows = []
    if _has(scenario, "plain"):
        rows.append(
            _plain_row(
                scenario,
                "bench_ended_blockers_ms",
                "the ALTER and the app wait until the bench ends the blocker after {}",
            )
        )
    if _has(scenario, "pgmigrate"):
        gone = _events(scenario, "pgmigrate").get("gone_ms")
        after = f", {ms_text(gone)} after the ALTER waits" if gone is not None else ""
        rows.append(Row(PGMIGRATE, scenario, "pgmigrate", f"ends the blocker itself{after}", gone))
    heading = "A session idle in transaction blocks the ALTER; pgmigrate ends it"
    return Section("blocked", heading, rows) if rows else None


def aside_section(document: dict[str, Any]) -> Section | None:
    """plain Django and pgmigrate from "aside" (or "retries"), the lock-timeout retries of
    "retries"."""
    aside = scenario_with_timeline(document, "aside")
    retries = scenario_with_timeline(document, "retries")
    source = aside if _has(aside, "pgmigrate") else retries
    rows = []
    if source is not None and _has(source, "plain"):
        rows.append(
            _plain_row(
                source,
                "released_ms",
                "the ALTER queues for its lock, the app behind it, until the blocker ends at {}",
            )
        )
    if retries is not None and _has(retries, RETRIES_GROUP):
        attempts = _first_run(retries, RETRIES_GROUP).get("attempts")
        tries = f", {attempts} attempts" if attempts else ""
        rows.append(
            Row(
                RETRIES,
                retries,
                RETRIES_GROUP,
                f"what peer tools do: the ALTER queues up to the lock timeout, again{tries}",
                _events(retries, RETRIES_GROUP).get("released_ms"),
            )
        )
    if source is not None and _has(source, "pgmigrate"):
        events = _events(source, "pgmigrate")
        parts = []
        if events.get("stepped_ms") is not None:
            parts.append(f"steps out of the lock queue after {ms_text(events['stepped_ms'])}")
        else:
            parts.append("steps out of the lock queue")
        released, committed = events.get("released_ms"), events.get("committed_ms")
        if released is not None and committed is not None:
            parts.append(f"commits {ms_text(committed - released)} after the blocker ends")
        rows.append(
            Row(
                PGMIGRATE,
                source,
                "pgmigrate",
                ", ".join(parts),
                released,
            )
        )
    if not rows:
        return None
    heading = "A session pgmigrate must not end (protected) blocks the ALTER until it ends"
    remark = ""
    if aside is not None and retries is not None and source is aside and len(rows) == 3:
        remark = (
            "Protected session: the lock timeout + retries row comes from the scenario retries "
            "(0.1 s lock timeout), the others from aside"
        )
    elif source is retries and retries is not None:
        remark = (
            "Protected session: all rows from the scenario retries (0.1 s lock timeout; "
            "pgmigrate steps aside within it)"
        )
    return Section("aside", heading, rows, remark)


def sections(document: dict[str, Any], names: Iterable[str] = SECTIONS) -> list[Section]:
    """The sections of ``names`` that the document has data for, in that order."""
    makers = {"blocked": blocked_section, "aside": aside_section}
    found = [makers[name](document) for name in names]
    return [section for section in found if section is not None]


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
        elif series.shape == "diamond":
            parts.append(f"M{number(x)} {number(y - 2.6)}l2.6 2.6l-2.6 2.6l-2.6 -2.6z")
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
    if series.shape == "diamond":
        return element(
            "path", d=f"M{number(x)} {number(y - 5)}l5 5l-5 5l-5 -5z", fill=series.colour
        )
    return element("circle", cx=x, cy=y, r=4.5, fill=series.colour)


def text(x: float, y: float, content: str, *, size: float = 12, **values: object) -> str:
    values.setdefault("fill", INK)
    return element("text", content, x=number(x), y=number(y), font_size=size, **values)


def spans(x: float, y: float, parts: list[tuple[str, dict[str, object]]], size: float) -> str:
    """One line of text in several styles (``<tspan>``s)."""
    inner = "".join(element("tspan", content, **style) for content, style in parts)
    return f"<text{attributes(x=number(x), y=number(y), font_size=size, fill=INK)}>{inner}</text>"


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


def medians_line(section: Section) -> str | None:
    """The medians line, e.g. "Median app worst stall over 5 runs each: plain Django 5,005 ms,
    pgmigrate 6.1 ms"."""
    stalls = [
        f"{row.series.label} {ms_text(stall)}"
        for row in section.rows
        if (stall := median_stall(row.scenario, row.group)) is not None
    ]
    if not stalls:
        return None
    runs = {run_count(row.scenario, row.group) for row in section.rows}
    count = runs.pop() if len(runs) == 1 else 0
    heading = (
        f"Median app worst stall over {count} runs each"
        if count > 1
        else "App worst stall (1 run each)"
        if count
        else "Median app worst stall"
    )
    return f"{heading}: {', '.join(stalls)}"


def y_scale_bounds(rows: list[Row]) -> tuple[float, float]:
    """Powers of ten around every latency drawn (the same scale for every row)."""
    latencies = [latency for row in rows for _, latency in row.points]
    lowest, highest = min(latencies), max(latencies)
    y_low = 10 ** math.floor(math.log10(max(lowest, 0.01)))
    y_high = 10 ** math.ceil(math.log10(max(highest, y_low * 10)))
    return y_low, y_high


def draw_section(
    section: Section, top: float, y_bounds: tuple[float, float], clip_id: int
) -> tuple[list[str], float]:
    """The section's SVG elements from ``top`` down, and where the next one may start."""
    out: list[str] = []
    add = out.append
    add(text(LEFT - 56, top + 16, section.heading, size=15, font_weight=700))
    medians = medians_line(section)
    if medians:
        add(text(LEFT - 56, top + 34, medians, size=12, fill=MUTED))
    rows_top = top + 44
    every = [point for row in section.rows for point in row.points]
    t_low = min(t for t, _ in every)
    t_high = max(t for t, _ in every)
    x = LinearScale(t_low, t_high, LEFT, RIGHT)
    ticks = time_ticks(t_low, t_high)
    y_low, y_high = y_bounds
    decades = range(round(math.log10(y_low)), round(math.log10(y_high)) + 1)

    row_top = rows_top
    for n, row in enumerate(section.rows):
        panel_top = row_top + CAPTION
        bottom = panel_top + ROW_HEIGHT
        y = LogScale(y_low, y_high, bottom, panel_top)
        # Caption: marker, label, worst stall, what it did.
        add(legend_marker(LEFT + 5, row_top + 8, row.series))
        add(
            spans(
                LEFT + 15,
                row_top + 12,
                [
                    (f"{row.series.label}: ", {"font_weight": 700, "fill": row.series.colour}),
                    (f"worst stall {ms_text(row.worst)}; ", {"font_weight": 600}),
                    (row.caption, {"fill": MUTED}),
                ],
                12,
            )
        )
        # Grid, decade labels, frame.
        for decade in decades:
            value = 10.0**decade
            py = number(y(value))
            if y_low < value < y_high:
                add(element("line", x1=LEFT, x2=RIGHT, y1=py, y2=py, stroke=GRID, stroke_width=1))
            add(text(LEFT - 6, y(value) + 3.5, ms_label(value), size=10, text_anchor="end"))
        for tick in ticks:
            px = number(x(tick))
            add(element("line", x1=px, x2=px, y1=panel_top, y2=bottom, stroke=GRID))
        add(
            element(
                "rect",
                x=LEFT,
                y=number(panel_top),
                width=RIGHT - LEFT,
                height=ROW_HEIGHT,
                fill="none",
                stroke=MUTED,
                stroke_width=1,
            )
        )
        # Moments: the ALTER starts waiting (0), the blocker ends.
        for at, colour in ((0.0, INK), (row.ended, row.series.colour)):
            if at is None or not t_low <= at <= t_high:
                continue
            px = number(x(at))
            add(
                element(
                    "line",
                    x1=px,
                    x2=px,
                    y1=number(panel_top),
                    y2=number(bottom),
                    stroke=colour,
                    stroke_width=1.3,
                    stroke_dasharray="5 4",
                )
            )
        # The points, clipped to the panel.
        clip = f"row{clip_id}-{n}"
        add(
            f'<clipPath id="{clip}"><rect x="{LEFT}" y="{number(panel_top)}" '
            f'width="{RIGHT - LEFT}" height="{ROW_HEIGHT}"/></clipPath>'
        )
        add(f'<g clip-path="url(#{clip})">')
        add(markers(((x(t), y(latency)) for t, latency in row.points), row.series))
        add("</g>")
        row_top = bottom + ROW_GAP

    # The time axis, under the last row.
    bottom = row_top - ROW_GAP
    for tick in ticks:
        px = number(x(tick))
        add(element("line", x1=px, x2=px, y1=number(bottom), y2=number(bottom + 5), stroke=MUTED))
        add(
            text(
                x(tick),
                bottom + 18,
                ms_label(tick) if tick else "0",
                text_anchor="middle",
                fill=MUTED,
                size=11,
            )
        )
    add(
        text(
            (LEFT + RIGHT) / 2,
            bottom + 36,
            "app query scheduled at (ms after the ALTER starts waiting for its lock: the black "
            "dashed line)",
            size=12.5,
            text_anchor="middle",
        )
    )
    middle = (rows_top + bottom) / 2
    add(
        text(
            22,
            middle,
            "app query latency (ms, log scale)",
            size=12.5,
            text_anchor="middle",
            transform=f"rotate(-90 22 {number(middle)})",
        )
    )
    return out, bottom + 58


def render(document: dict[str, Any], names: Iterable[str] = SECTIONS) -> str:
    """The SVG chart of the timelines in a results document (sections ``names``)."""
    drawn = sections(document, names)
    if not drawn:
        raise ValueError("no blocked, aside or retries scenario with a timeline in these results")
    meta = document.get("meta", {})
    out: list[str] = []
    add = out.append
    add(text(LEFT - 56, 30, TITLE, size=19, font_weight=700))
    top = 42.0
    line = machine_line(meta)
    if line:
        add(text(LEFT - 56, 56, line, size=12, fill=MUTED))
        top = 66.0
    y_bounds = y_scale_bounds([row for section in drawn for row in section.rows])
    for number_, section in enumerate(drawn):
        elements, top = draw_section(section, top + 8, y_bounds, number_)
        out.extend(elements)

    period = next(
        (
            events["period_ms"]
            for section in drawn
            for row in section.rows
            if (events := _events(row.scenario, row.group)).get("period_ms")
        ),
        None,
    )
    traffic = f"one app query every {period:g} ms, open loop: " if period else ""
    notes = [
        f"First run of each; {traffic}latency counts from the scheduled time, including "
        "time queued behind the lock.",
        "Each row runs from 0.5 s before the ALTER waits to 0.5 s after migrate exits; the "
        "coloured dashed line: the blocker ends.",
        "Worst stall: of the whole run, from migrate's start to its exit.",
        *(section.remark + "." for section in drawn if section.remark),
    ]
    for n, note in enumerate(notes):
        add(text(LEFT - 56, top + n * 16, note, size=11.5, fill=MUTED))
    height = math.ceil(top + 16 * (len(notes) - 1) + 14)

    summary = " ".join(
        f"{section.heading}. {medians_line(section) or ''}".strip() for section in drawn
    )
    description = (
        "Scatter charts of app query latency against the query's scheduled time, relative to "
        "the moment the ALTER started waiting for its lock, one row per implementation. " + summary
    )
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="title desc" '
        f'font-family="{escape(FONT)}">'
    )
    return "\n".join(
        [
            head,
            element("title", TITLE, id="title"),
            element("desc", description, id="desc"),
            element("rect", width=WIDTH, height=height, fill=BACKGROUND),
            *out,
            "</svg>",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.section or SECTIONS
    path = args.results or newest_results(names)
    if path is None:
        print(
            "bench.plot: no results with a timeline (blocked, aside or retries) in "
            "bench/results/; run python -m bench --scenario blocked --scenario aside "
            "--scenario retries first",
            file=sys.stderr,
        )
        return 2
    try:
        svg = render(json.loads(path.read_text()), names)
    except (OSError, ValueError) as exc:
        print(f"bench.plot: {path}: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(svg)
    print(f"bench.plot: {path} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
