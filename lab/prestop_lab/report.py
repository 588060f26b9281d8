"""The rollout report: every strategy's rolling update in one picture (PNG and SVG).

One panel per strategy, all on one time axis (seconds from the rollout's start: the moment the
first new pod was started), so the strategies compare at a glance. In each panel one lane per
pod: ``old-1``, ``old-2``, … for the pods the rollout replaced, ``new-1``, … for the pods it
started. A lane shows the requests per second consumers sent to that pod (a 1 s rolling mean,
on one scale for every lane and panel) and its failed requests in red; an old pod's lane has a
mark for each moment of its termination (preStop start, take-out, take-out confirmed, drain
end, shutdown, port closed, SIGTERM, SIGKILL). The results table sits below the panels.

matplotlib is a lab-only dependency; the figure is drawn on the Agg canvas, without pyplot, so
no display and no global state are involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from prestop_lab.rollout import PodEvent, RolloutResult, RolloutSettings, error_kinds, heading

PNG_NAME, SVG_NAME = "rollout.png", "rollout.svg"
WIDTH_IN, DPI = 15.0, 100
BIN_S = 0.1  # histogram bin
# The rate is smoothed with a Hann window 2 s wide (about 1 s at half height): the lab's paced
# consumers make a plain 1 s rolling mean ripple by a tenth of the rate.
SMOOTH_BINS = 21
LANE_FILL = 0.78  # the share of a lane the busiest pod's traffic fills
# The layout, in inches: heading; per panel a title, its lanes and its time axis; the legend;
# the table. Fixed sizes keep every lane equally tall however many strategies are shown.
HEAD_IN, TITLE_IN, LANE_IN, AXIS_IN, GAP_IN = 0.8, 0.36, 0.42, 0.3, 0.2
XLABEL_IN, LEGEND_IN, TABLE_ROW_IN = 0.3, 0.95, 0.3
LEFT, RIGHT = 0.065, 0.855  # the panels' share of the width; the lane notes go to the right

OLD_COLOUR, NEW_COLOUR, FAILED_COLOUR = "#3b75af", "#3a9a4a", "#d62728"
TERMINATING, STARTING = "#ececec", "#e3f2e1"


@dataclass(frozen=True)
class Mark:
    label: str
    colour: str
    marker: str
    height: float  # where in the lane the mark's symbol sits, so coinciding marks stay apart


MARKS: dict[str, Mark] = {
    "prestop_start": Mark("preStop start", "#222222", ">", 0.92),
    "take_out": Mark("take-out written", "#9467bd", "v", 0.78),
    "confirmed": Mark("take-out confirmed", "#9467bd", "o", 0.64),
    "drain_end": Mark("drain end", "#e07b00", "s", 0.5),
    "shutdown": Mark("shutdown POST / signal", "#e07b00", "D", 0.36),
    "sigterm": Mark("SIGTERM", "#0f8a9c", "P", 0.22),
    "port_closed": Mark("port closed", "#7b4a2a", "X", 0.08),
    "sigkill": Mark("SIGKILL", "#000000", "*", 0.5),
    "ready": Mark("new pod ready", NEW_COLOUR, "^", 0.92),
}


def lanes(result: RolloutResult) -> list[tuple[str, str]]:
    """(pod name, instance) per lane, top to bottom: old pods, then new ones, then any other
    instance requests went to (``-``: a failed request the consumer could not route)."""
    named: dict[str, str] = {}
    for e in result.events:
        named.setdefault(e.pod, e.instance)
    for p in result.pods:
        if p.pod:
            named.setdefault(p.pod, p.instance)

    def order(pod: str) -> tuple[int, int]:
        kind, _, n = pod.partition("-")
        return (0 if kind == "old" else 1, int(n) if n.isdigit() else 0)

    out = [(pod, named[pod]) for pod in sorted(named, key=order)]
    known = set(named.values())
    extra = sorted({r.instance for r in result.records} - known)
    out += [("no pod" if i in ("-", "") else i, i) for i in extra]
    return out


def _rate(times: list[float], edges: np.ndarray) -> np.ndarray:
    """Requests per second at each bin's centre, smoothed, and zero outside the span from the
    first request to the last: traffic must never seem to go on after a pod's last request."""
    if not times:
        return np.zeros(len(edges) - 1)
    at = np.asarray(times, dtype=float)
    counts, _ = np.histogram(at, bins=edges)
    window = np.hanning(SMOOTH_BINS + 2)[1:-1]
    kernel = window / window.sum() / BIN_S
    smoothed: np.ndarray = np.convolve(counts.astype(float), kernel, mode="same")
    centres = (edges[:-1] + edges[1:]) / 2
    smoothed[(centres < at.min() - BIN_S / 2) | (centres > at.max() + BIN_S / 2)] = 0.0
    return smoothed


def _panel_in(result: RolloutResult) -> float:
    return TITLE_IN + len(lanes(result)) * LANE_IN + AXIS_IN + GAP_IN


def _table_in(results: Sequence[RolloutResult]) -> float:
    return TABLE_ROW_IN * (len(results) + 1) + 0.3


def height_in(results: Sequence[RolloutResult]) -> float:
    panels = sum(_panel_in(r) for r in results)
    return round(HEAD_IN + panels + XLABEL_IN + LEGEND_IN + _table_in(results), 2)


def size_px(results: Sequence[RolloutResult]) -> tuple[int, int]:
    """The PNG's width and height in pixels."""
    return round(WIDTH_IN * DPI), round(height_in(results) * DPI)


def panel_bands(results: Sequence[RolloutResult]) -> list[tuple[float, float]]:
    """Each panel's lanes as (top, bottom) in inches from the figure's top."""
    bands = []
    top = HEAD_IN
    for r in results:
        lanes_top = top + TITLE_IN
        bands.append((lanes_top, lanes_top + len(lanes(r)) * LANE_IN))
        top += _panel_in(r)
    return bands


def draw(results: Sequence[RolloutResult], settings: RolloutSettings) -> Figure:
    if not results:
        raise ValueError("the report needs at least one rollout result")
    total = height_in(results)
    fig = Figure(figsize=(WIDTH_IN, total), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)

    def y(inches_from_top: float) -> float:
        return 1 - inches_from_top / total

    fig.text(
        LEFT,
        y(0.3),
        "Rolling update, one panel per preStop strategy",
        fontsize=15,
        fontweight="bold",
        va="baseline",
    )
    fig.text(LEFT, y(0.58), heading(settings), fontsize=9.5, color="#444444", va="baseline")

    start, end = _time_range(results)
    edges = np.arange(start, end + BIN_S, BIN_S)
    centres = (edges[:-1] + edges[1:]) / 2
    peak = (
        max(
            (
                float(
                    _rate(
                        [r.start - res.started_at for r in res.records if r.instance == i], edges
                    ).max()
                )
                for res in results
                for _, i in lanes(res)
            ),
            default=1.0,
        )
        or 1.0
    )

    axes: list[Axes] = []
    for result, (top, bottom) in zip(results, panel_bands(results), strict=True):
        ax = fig.add_axes(
            (LEFT, y(bottom), RIGHT - LEFT, (bottom - top) / total),
            sharex=axes[0] if axes else None,
        )
        axes.append(ax)
        _panel(ax, result, edges, centres, peak)
    axes[-1].set_xlim(start, end)
    last_bottom = panel_bands(results)[-1][1]
    fig.text(
        (LEFT + RIGHT) / 2,
        y(last_bottom + AXIS_IN + XLABEL_IN * 0.6),
        "seconds from the rollout's start (t = 0: the first new pod started)",
        ha="center",
        fontsize=10,
    )
    legend_top = last_bottom + AXIS_IN + XLABEL_IN + 0.05
    _legend(fig, y(legend_top), peak)
    table_top = legend_top + LEGEND_IN
    _table(fig.add_axes((LEFT, 0.0, RIGHT - LEFT, y(table_top))), results)
    return fig


def _time_range(results: Sequence[RolloutResult]) -> tuple[float, float]:
    starts = [min(r.start for r in res.records) - res.started_at for res in results if res.records]
    ends = [max(r.end for r in res.records) - res.started_at for res in results if res.records]
    ends += [e.t for res in results for e in res.events]
    start = max(-3.0, min(starts, default=0.0))  # a little of the steady state before
    return np.floor(start), np.ceil(max(ends, default=1.0)) + 0.5


def _panel(
    ax: Axes, result: RolloutResult, edges: np.ndarray, centres: np.ndarray, peak: float
) -> None:
    rows = lanes(result)
    count = len(rows)
    ax.set_facecolor("white")
    ax.set_ylim(0, count)
    ax.set_yticks([count - i - 0.5 for i in range(count)], [pod for pod, _ in rows])
    ax.tick_params(axis="y", length=0, labelsize=10)
    ax.tick_params(axis="x", labelsize=9, labelcolor="#555555", length=3)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    failed = f"{result.errors} failed" if result.errors else "0 failed"
    ax.set_title(
        f"{result.strategy}:  {result.requests} requests, {failed}, rollout "
        f"{result.rollout_s:.1f} s",
        loc="left",
        fontsize=12,
        fontweight="bold",
        color=FAILED_COLOUR if result.errors else "#222222",
        pad=5,
    )
    by_pod = {p.instance: p for p in result.pods}
    label_at = blended_transform_factory(ax.transAxes, ax.transData)
    for i, (pod, instance) in enumerate(rows):
        base = count - i - 1
        ax.axhline(base, color="#cccccc", linewidth=0.6)
        _spans(ax, [e for e in result.events if e.instance == instance], base)
        mine = [r for r in result.records if r.instance == instance]
        ok = _rate([r.start - result.started_at for r in mine if r.outcome == "ok"], edges)
        bad_times = [r.start - result.started_at for r in mine if r.outcome != "ok"]
        colour = OLD_COLOUR if pod.startswith("old") else NEW_COLOUR
        top = base + LANE_FILL * ok / peak
        ax.fill_between(centres, base, top, color=colour, alpha=0.45, linewidth=0)
        # No line where the pod took nothing: it would read as traffic along the lane's floor.
        ax.plot(centres, np.where(ok > 0, top, np.nan), color=colour, linewidth=1.1)
        if bad_times:
            bad = _rate(bad_times, edges)
            ax.fill_between(
                centres,
                base,
                base + np.minimum(LANE_FILL, LANE_FILL * bad / peak),
                color=FAILED_COLOUR,
                alpha=0.6,
                linewidth=0,
            )
            ax.plot(bad_times, [base + 0.04] * len(bad_times), "|", color=FAILED_COLOUR, ms=9)
        for e in result.events:
            if e.instance == instance and e.kind in MARKS:
                _mark(ax, e, base)
        note = _lane_note(by_pod.get(instance), len(bad_times))
        if note:
            ax.text(
                1.01,
                base + 0.5,
                note,
                transform=label_at,
                va="center",
                fontsize=8.5,
                color=FAILED_COLOUR if bad_times else "#333333",
            )


def _spans(ax: Axes, events: list[PodEvent], base: float) -> None:
    at = {e.kind: e.t for e in events}
    began = at.get("prestop_start", at.get("sigterm"))
    gone = at.get("port_closed", at.get("sigkill"))
    if began is not None:
        ax.axvspan(
            began,
            gone if gone is not None else began,
            base / ax.get_ylim()[1],
            (base + 1) / ax.get_ylim()[1],
            color=TERMINATING,
            linewidth=0,
        )
    if "started" in at and "ready" in at:
        ax.axvspan(
            at["started"],
            at["ready"],
            base / ax.get_ylim()[1],
            (base + 1) / ax.get_ylim()[1],
            color=STARTING,
            linewidth=0,
        )


def _mark(ax: Axes, event: PodEvent, base: float) -> None:
    m = MARKS[event.kind]
    ax.vlines(event.t, base + 0.02, base + 0.98, colors=m.colour, linewidth=1.0, alpha=0.8)
    ax.plot(
        [event.t],
        [base + m.height],
        marker=m.marker,
        color=m.colour,
        ms=7.5,
        markeredgecolor="white",
        markeredgewidth=0.6,
        linestyle="none",
    )


def _lane_note(pod: object, failed: int) -> str:
    parts = []
    drain = getattr(pod, "drain_s", None)
    bound = getattr(pod, "bound_s", None)
    if pod is not None and bound is not None:
        parts.append(f"drain {'-' if drain is None else f'{drain:.1f}'} s / bound {bound:.1f} s")
    if failed:
        parts.append(f"{failed} failed")
    return "\n".join(parts)


def _legend(fig: Figure, top: float, peak: float) -> None:
    handles: list[Patch | Line2D] = [
        Patch(color=OLD_COLOUR, alpha=0.5, label="old pod's requests/s"),
        Patch(color=NEW_COLOUR, alpha=0.5, label="new pod's requests/s"),
        Patch(color=FAILED_COLOUR, alpha=0.7, label="failed requests (| each)"),
        Patch(color=TERMINATING, label="terminating"),
        Patch(color=STARTING, label="starting"),
    ]
    handles += [
        Line2D(
            [],
            [],
            marker=m.marker,
            color=m.colour,
            linestyle="-",
            linewidth=1.0,
            ms=7.5,
            markeredgecolor="white",
            label=m.label,
        )
        for m in MARKS.values()
    ]
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(LEFT - 0.01, top),
        ncol=7,
        fontsize=9,
        frameon=False,
        title=f"a full lane is {peak / LANE_FILL:.0f} requests/s (smoothed over about 1 s)",
        title_fontsize=9,
        alignment="left",
    )


def _table(ax: Axes, results: Sequence[RolloutResult]) -> None:
    ax.axis("off")
    header = [
        "strategy",
        "requests",
        "failed",
        "drain / bound per pod (s)",
        "worst drain/bound",
        "rollout",
    ]
    rows = []
    for r in results:
        pods = ", ".join(
            f"{'-' if p.drain_s is None else f'{p.drain_s:.1f}'}/{p.bound_s:.1f}" for p in r.pods
        )
        kinds = error_kinds(r.errors_by_kind)
        rows.append(
            [
                r.strategy,
                f"{r.requests} req",
                f"{r.errors} req" + (f" ({kinds})" if kinds else ""),
                pods or "-",
                "-" if r.worst_ratio is None else f"{r.worst_ratio:.2f}",
                f"{r.rollout_s:.1f} s",
            ]
        )
    table = ax.table(
        cellText=rows,
        colLabels=header,
        loc="upper left",
        cellLoc="left",
        colLoc="left",
        colWidths=[0.14, 0.09, 0.26, 0.28, 0.14, 0.09],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1.0, 1.45)
    for (row, col), cell in table.get_celld().items():
        cell.set_edgecolor("#cccccc")
        if row == 0:
            cell.set_facecolor("#f0f0f0")
            cell.get_text().set_fontweight("bold")
        elif col == 2 and results[row - 1].errors:
            cell.get_text().set_color(FAILED_COLOUR)


def write_report(
    results: Sequence[RolloutResult], settings: RolloutSettings, out: Path
) -> list[Path]:
    """Draw the report into ``out`` (next to rollout.json); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    fig = draw(results, settings)
    png, svg = out / PNG_NAME, out / SVG_NAME
    fig.savefig(png, format="png", dpi=DPI, facecolor="white")
    # Text as text (searchable, smaller), and no date: the same results give the same file.
    with rc_context({"svg.fonttype": "none"}):
        fig.savefig(svg, format="svg", facecolor="white", metadata={"Date": None})
    return [png, svg]
