"""The html outcome report: the outcome table and the study's figures (matplotlib, inline SVG), in
one self-contained file.

Up to ``SMALL_STUDY`` participants every participant is drawn and named; beyond that the figures
summarise (medians with interquartile bands, histograms, counts), so that they stay readable and the
page stays small at any size. Colours come from Okabe and Ito's palette, told apart with the common
colour-vision deficiencies; every panel has its axis labels and a legend, and every figure carries
a ``<title>`` and a ``<desc>`` for screen readers. Panels have fixed sizes in inches, so labels are
placed knowing how many points a data unit spans."""

from __future__ import annotations

import html
import io
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.errors import ConfigurationError
from fhir_admsc.report import SUBGROUPS, index_findings, mri_subgroups, rows, title
from fhir_admsc.study import Study

SMALL_STUDY = 30  # participants drawn one by one up to this many

BLUE, SKY, ORANGE, VERMILLION = "#0072B2", "#56B4E9", "#E69F00", "#D55E00"
GREEN, PURPLE, BLACK, GREY = "#009E73", "#CC79A7", "#000000", "#999999"
PARTICIPANT_COLOURS = [BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, BLACK]
PARTICIPANT_MARKERS = ["o", "s", "^", "D", "v"]
LEVEL_COLOURS = ["#c6dbef", "#4f8fc0", "#08306b"]  # EQ-5D levels: one hue, light to dark
LEVELS = ("no problems", "some problems", "extreme problems")
CHANGE = {  # percent change in pain: (label, colour); negative is better
    "responder": ("reduced by 50% or more", BLUE),
    "reduced": ("reduced by less than 50%", SKY),
    "worse": ("unchanged or worse", VERMILLION),
}
VISIT_AXIS = "visit (BL baseline, W week, M month)"
FONT = 9  # points
LABEL_FONT = 7


@dataclass(frozen=True)
class Figure:
    """One figure of the page: its caption, a text description for screen readers, the SVG."""

    caption: str
    description: str
    svg: str


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise ConfigurationError(
            "the html report needs matplotlib: pip install 'fhir-admsc[report]'"
        ) from None
    pyplot.rcParams.update(
        {
            "font.size": FONT,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.fontsize": LABEL_FONT + 0.5,
            "svg.hashsalt": "fhir-admsc",
            "svg.fonttype": "none",
        }
    )
    return pyplot


def _figure(plt, caption: str, description: str, figure) -> Figure:
    """The figure as inline SVG with its ``<title>`` and ``<desc>``; the figure is closed (pyplot
    keeps every figure it made until then)."""
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = out.getvalue()
    start = text.index("<svg")
    end = text.index(">", start)
    svg = (
        f'{text[start:end]} role="img"><title>{html.escape(caption)}</title>'
        f"<desc>{html.escape(description)}</desc>{text[end + 1 :]}"
    )
    return Figure(caption, description, svg)


def _panels(
    plt,
    columns: int,
    width: float,
    height: float,
    rows: int = 1,
    *,
    gap: float = 0.9,
    left: float = 0.9,
    right: float = 0.2,
    sharey: bool = False,
):
    """A grid of panels of ``width`` x ``height`` inches each, ``gap`` inches apart (room for a
    legend and the next panel's axis label), with fixed margins for titles and tick labels."""
    top, bottom, vgap = 0.45, 0.8, 1.0
    fig_w = left + columns * width + (columns - 1) * gap + right
    fig_h = top + rows * height + (rows - 1) * vgap + bottom
    figure, axes = plt.subplots(rows, columns, figsize=(fig_w, fig_h), squeeze=False, sharey=sharey)
    figure.subplots_adjust(
        left=left / fig_w,
        right=1 - right / fig_w,
        bottom=bottom / fig_h,
        top=1 - top / fig_h,
        wspace=gap / width,
        hspace=vgap / height,
    )
    return figure, [ax for row in axes for ax in row]


def _legend(ax, **options: Any) -> None:
    """The panel's legend, outside its right edge."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, **options)


def _visit_tick(visit: str) -> str:
    """BL, W1, M6, ... (the axis label spells them out)."""
    if visit == term.BASELINE:
        return "BL"
    match = re.fullmatch(r"(week|month)(\d+)", visit)
    return f"{match[1][0].upper()}{match[2]}" if match else visit


def _values(study: Study, measure: str) -> dict[str, dict[str, float]]:
    """participant -> {visit: value} of one measure."""
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for o in study.outcomes:
        if o.measure == measure:
            found[o.participant_id][o.visit] = float(o.value)
    return dict(sorted(found.items()))


def _percent_change(values: dict[str, float], baseline: str, visit: str) -> float | None:
    before, after = values.get(baseline), values.get(visit)
    return None if not before or after is None else 100 * (after - before) / before


def _change_kind(change: float) -> str:
    return "responder" if change <= -50 else "reduced" if change < 0 else "worse"


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, median, high


def _spread(ys: list[float], gap: float, low: float, high: float) -> list[float]:
    """Positions for labels wanted at ``ys`` (ascending), at least ``gap`` apart, kept under
    ``high`` and as near to where they were wanted as that allows."""
    placed: list[float] = []
    for y in ys:
        placed.append(max(y, placed[-1] + gap) if placed else max(y, low))
    if placed and placed[-1] > high:
        placed[-1] = high
        for i in range(len(placed) - 2, -1, -1):
            placed[i] = min(placed[i], placed[i + 1] - gap)
    return placed


# -- measures over the visits ------------------------------------------------------------------


def _over_visits(
    plt, study: Study, measures: list[tuple[str, str]], unit: str, limits: tuple[float, float]
) -> tuple[Any, str]:
    """One panel a measure: each participant's line (small studies) or the median with its
    interquartile band (larger ones), over the visits."""
    series = {measure: _values(study, measure) for measure, _ in measures}
    visits = [
        v
        for v in term.VISIT_ORDER
        if any(v in per for values in series.values() for per in values.values())
    ]
    participants = max((len(values) for values in series.values()), default=0)
    small = participants <= SMALL_STUDY
    longest = max((len(pid) for values in series.values() for pid in values), default=0)
    step = max(0.55, (longest * LABEL_FONT * 0.62 + 16) / 72) if small else 0.55
    width = step * (len(visits) + (1.6 if small else 0.4))
    height = max(2.6, 0.15 * participants) if small else 2.6
    figure, axes = _panels(plt, len(measures), width, height, gap=1.7, sharey=True)
    notes = []
    for ax, (measure, label) in zip(axes, measures, strict=True):
        ax.set_ylim(*limits)
        ax.set_xlim(-0.4, len(visits) - 1 + (1.6 if small else 0.4))
        if small:
            _participant_lines(ax, series[measure], visits, height)
        else:
            notes.append(f"{label}: {_median_band(ax, series[measure], visits)}")
        ax.set_title(label)
        ax.set_ylabel(unit)
        ax.set_xlabel(VISIT_AXIS)
    if small:
        notes.append(f"one line per participant ({participants}), named at its last visit")
    return figure, "; ".join(notes)


def _participant_lines(
    ax, values: dict[str, dict[str, float]], visits: list[str], height: float
) -> None:
    low, high = ax.get_ylim()
    gap = (LABEL_FONT * 1.3 / 72) * (high - low) / height  # a label's height in data units
    ends: dict[int, list[tuple[float, str, str]]] = defaultdict(list)
    for i, (pid, per) in enumerate(values.items()):
        xs = [visits.index(v) for v in term.VISIT_ORDER if v in per]
        ys = [per[v] for v in term.VISIT_ORDER if v in per]
        colour = PARTICIPANT_COLOURS[i % len(PARTICIPANT_COLOURS)]
        marker = PARTICIPANT_MARKERS[i // len(PARTICIPANT_COLOURS) % len(PARTICIPANT_MARKERS)]
        ax.plot(xs, ys, marker=marker, markersize=3, linewidth=1.1, color=colour, label=pid)
        ends[xs[-1]].append((ys[-1], pid, colour))
    for x, labels in ends.items():
        labels.sort()
        placed = _spread([y for y, _, _ in labels], gap, low + gap / 2, high - gap / 2)
        for (y, pid, colour), at in zip(labels, placed, strict=True):
            ax.annotate(
                pid,
                (x, y),
                xytext=(x + 0.3, at),
                fontsize=LABEL_FONT,
                va="center",
                color=colour,
                arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.5},
            )
    ax.set_xticks(range(len(visits)), [_visit_tick(v) for v in visits])


def _median_band(ax, values: dict[str, dict[str, float]], visits: list[str]) -> str:
    """Median and interquartile range per visit, the count of participants under each visit."""
    xs, lows, medians, highs, counts = [], [], [], [], []
    for x, visit in enumerate(visits):
        at = [per[visit] for per in values.values() if visit in per]
        if at:
            low, median, high = _quartiles(at)
            xs.append(x)
            lows.append(low)
            medians.append(median)
            highs.append(high)
        counts.append(len(at))
    ax.fill_between(
        xs, lows, highs, color=SKY, alpha=0.35, linewidth=0, label="interquartile range"
    )
    ax.plot(xs, medians, marker="o", markersize=3.5, color=BLUE, linewidth=1.5, label="median")
    ax.set_xticks(
        range(len(visits)),
        [f"{_visit_tick(v)}\nn={n:,}" for v, n in zip(visits, counts, strict=True)],
    )
    _legend(ax)
    return ", ".join(
        f"{visits[x]} median {m:g} (IQR {lo:g} to {hi:g}, n={counts[x]})"
        for x, m, lo, hi in zip(xs, medians, lows, highs, strict=True)
    )


# -- change in pain ----------------------------------------------------------------------------


def _pain_change(plt, study: Study, baseline: str) -> tuple[Any, str]:
    """Percent change of average pain at month 6 and month 12 (negative is better): a bar per
    participant (the paper's tornado figure) or, for larger studies, a histogram."""
    values = _values(study, term.NPRS_AVERAGE)
    pids = [p.participant_id for p in study.participants]
    small = len(pids) <= SMALL_STUDY
    height = 0.28 * len(pids) + 0.3 if small else 2.6
    figure, axes = _panels(plt, 2, 3.8, height, gap=2.6, right=2.0, sharey=small)
    notes = []
    for ax, visit in zip(axes, (term.MONTH6, term.MONTH12), strict=True):
        changes = {pid: _percent_change(values.get(pid, {}), baseline, visit) for pid in pids}
        missing = sum(c is None for c in changes.values())
        kinds = Counter(_change_kind(c) for c in changes.values() if c is not None)
        if small:
            _change_bars(ax, changes)
        else:
            _change_histogram(ax, [c for c in changes.values() if c is not None])
        ax.axvline(-50, color="#555555", linewidth=0.8, linestyle="--", label="50% reduction")
        ax.set_title(f"{term.VISITS[visit].display} (not evaluable: {missing:,})")
        _legend(ax)
        notes.append(
            f"{visit}: "
            + ", ".join(f"{CHANGE[k][0]} {kinds[k]}" for k in CHANGE)
            + f", not evaluable {missing}"
        )
    return figure, "; ".join(notes)


def _change_bars(ax, changes: dict[str, float | None]) -> None:
    pids = list(changes)
    for kind, (label, colour) in CHANGE.items():
        at = [(y, c) for y, c in enumerate(changes.values()) if c is not None]
        chosen = [(y, c) for y, c in at if _change_kind(c) == kind]
        ax.barh(
            [y for y, _ in chosen],
            [max(-100, min(100, c)) for _, c in chosen],
            color=colour,
            label=label,
        )
    for y, change in enumerate(changes.values()):
        if change is None:
            ax.text(2, y, "not evaluable", va="center", fontsize=LABEL_FONT, color="#555555")
    ax.axvline(0, color=BLACK, linewidth=0.8)
    ax.set_xlim(-100, 100)
    ax.set_xlabel("% change in average pain")
    ax.set_ylim(len(pids) - 0.5, -0.5)
    ax.set_yticks(range(len(pids)), pids)
    ax.set_ylabel("participant")


def _change_histogram(ax, changes: list[float]) -> None:
    """Participants per 10% of change, stacked by kind (a bin may hold both sides of -50%)."""
    ax.hist(
        [[min(c, 100.0) for c in changes if _change_kind(c) == kind] for kind in CHANGE],
        bins=list(range(-100, 101, 10)),
        stacked=True,
        color=[colour for _, colour in CHANGE.values()],
        label=[label for label, _ in CHANGE.values()],
    )
    ax.axvline(0, color=BLACK, linewidth=0.8)
    ax.set_xlim(-110, 110)  # the -100 tick clear of the y axis's 0
    ax.set_xlabel("% change in average pain (above +100% counted at +100%)")
    ax.set_ylabel("participants")


# -- EQ-5D -------------------------------------------------------------------------------------


def _eq5d(plt, study: Study) -> tuple[Any, str]:
    """Share of participants at each EQ-5D-3L level, a panel a dimension."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for o in study.outcomes:
        if o.measure in term.EQ5D_DIMENSIONS:
            counts[(o.measure, o.visit)][int(o.value) - 1] += 1
    order = [v for v in term.VISIT_ORDER if any(visit == v for _, visit in counts)]
    figure, axes = _panels(plt, 1, max(3.0, 0.55 * len(order)), 1.3, len(term.EQ5D_DIMENSIONS))
    notes = []
    for ax, measure in zip(axes, term.EQ5D_DIMENSIONS, strict=True):
        bottom = [0.0] * len(order)
        for level in range(3):
            heights = [
                100 * counts[(measure, v)][level] / (sum(counts[(measure, v)]) or 1) for v in order
            ]
            ax.bar(
                range(len(order)),
                heights,
                bottom=bottom,
                color=LEVEL_COLOURS[level],
                label=LEVELS[level],
            )
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        name = term.OUTCOME_MEASURES[measure].concept.display.replace("EQ-5D-3L ", "")
        name = name[0].upper() + name[1:]
        ax.set_title(name)
        ax.set_xticks(range(len(order)), [_visit_tick(v) for v in order])
        ax.set_xlabel(VISIT_AXIS)
        ax.set_ylabel("% of participants")
        ax.set_ylim(0, 100)
        _legend(ax)
        if order:
            first, last = counts[(measure, order[0])], counts[(measure, order[-1])]
            notes.append(
                f"{name}: no problems {first[0]} of {sum(first)} at {order[0]}, "
                f"{last[0]} of {sum(last)} at {order[-1]}"
            )
    return figure, "; ".join(notes)


# -- MRI ---------------------------------------------------------------------------------------

FINDINGS = (
    (term.ANNULAR_FISSURE, "Annular fissure"),
    (term.PROTRUSION, "Protrusion"),
    (term.MODIC_TYPE, "Modic type"),
)
NOT_RECORDED = "not recorded"


def _protrusion(found: dict[str, Any]) -> float | None:
    """Protrusion in mm at the index disc; none is 0."""
    if term.PROTRUSION_MM in found:
        return float(found[term.PROTRUSION_MM])
    return 0.0 if found.get(term.PROTRUSION) == term.ABSENT else None


def _mri(plt, study: Study, baseline: str, followup: str) -> tuple[Any, str]:
    """Disc height and protrusion at the index disc before and after: per participant (small
    studies) or the distribution of the change."""
    before, after = index_findings(study, baseline), index_findings(study, followup)
    pids = [p.participant_id for p in study.participants]
    small = len(pids) <= SMALL_STUDY
    measures = [
        ("disc height (mm)", lambda f: f.get(term.DISC_HEIGHT_MM)),
        ("protrusion (mm)", _protrusion),
    ]
    height = 0.28 * len(pids) + 0.3 if small else 2.2
    figure, axes = _panels(plt, 2, 3.2, height, gap=2.1, right=1.9)
    notes = []
    for ax, (label, read) in zip(axes, measures, strict=True):
        pairs = {pid: (read(before.get(pid, {})), read(after.get(pid, {}))) for pid in pids}
        changes = [a - b for b, a in pairs.values() if b is not None and a is not None]
        if small:
            _dumbbells(ax, pairs, label, baseline, followup)
        else:
            _change_distribution(ax, changes, label, followup, baseline)
        median = f"median change {statistics.median(changes):g}" if changes else "no change known"
        notes.append(f"{label}: {median} over {len(changes)} participants")
    return figure, "; ".join(notes)


def _dumbbells(
    ax, pairs: dict[str, tuple[float | None, float | None]], label: str, first: str, second: str
) -> None:
    for y, (b, a) in enumerate(pairs.values()):
        if b is not None and a is not None:
            ax.plot([b, a], [y, y], color=GREY, linewidth=1)
    for x, (visit, colour, marker) in enumerate(((first, BLACK, "o"), (second, ORANGE, "D"))):
        at = [(y, pair[x]) for y, pair in enumerate(pairs.values()) if pair[x] is not None]
        ax.plot(
            [v for _, v in at], [y for y, _ in at], marker, color=colour, markersize=4, label=visit
        )
    ax.set_ylim(len(pairs) - 0.5, -0.5)
    ax.set_yticks(range(len(pairs)), list(pairs))
    ax.set_ylabel("participant")
    ax.set_xlabel(label)
    ax.set_title(label.split(" (")[0].capitalize())
    _legend(ax)


def _change_distribution(ax, changes: list[float], label: str, second: str, first: str) -> None:
    ax.hist(changes, bins=20, color=SKY, label=f"participants (n={len(changes):,})")
    ax.axvline(0, color=BLACK, linewidth=0.8, label="no change")
    if changes:
        ax.axvline(
            statistics.median(changes), color=BLUE, linestyle="--", linewidth=1, label="median"
        )
    ax.set_xlabel(f"change in {label}, {second} minus {first}")
    ax.set_ylabel("participants")
    ax.set_title(f"Change in {label.split(' (')[0]}")
    _legend(ax)


def _findings(plt, study: Study, baseline: str, followup: str) -> tuple[Any, str]:
    """How many participants went from each value of a finding to each: a panel a finding, a bar
    a change, its count beside it."""
    before, after = index_findings(study, baseline), index_findings(study, followup)
    moves = {
        finding: Counter(
            (
                str(before.get(pid, {}).get(finding, NOT_RECORDED)),
                str(after.get(pid, {}).get(finding, NOT_RECORDED)),
            )
            for pid in (p.participant_id for p in study.participants)
        )
        for finding, _ in FINDINGS
    }
    most = max(len(counts) for counts in moves.values())
    figure, axes = _panels(plt, 1, 3.4, 0.24 * most + 0.3, len(FINDINGS), left=2.0, right=1.9)
    notes = []
    for ax, (finding, label), colour in zip(axes, FINDINGS, (BLUE, ORANGE, GREEN), strict=True):
        shown = sorted(moves[finding].items(), key=lambda item: (-item[1], item[0]))
        for y, (_, n) in enumerate(shown):
            ax.barh(y, n, color=colour, label="participants" if y == 0 else None)
            ax.text(n, y, f" {n:,}", va="center", fontsize=LABEL_FONT)
        ax.set_yticks(range(len(shown)), [f"{b} → {a}" for (b, a), _ in shown])
        ax.set_ylim(len(shown) - 0.5, -0.5)
        ax.set_xlim(0, max(moves[finding].values(), default=1) * 1.2)
        ax.set_xlabel("participants")
        ax.set_ylabel(f"{baseline} → {followup}")
        ax.set_title(label)
        _legend(ax)
        notes.append(f"{label}: " + ", ".join(f"{b} to {a} {n}" for (b, a), n in shown))
    return figure, "; ".join(notes)


# -- subgroup ----------------------------------------------------------------------------------


def _subgroup(plt, study: Study, baseline: str, followup: str) -> tuple[Any, str]:
    """Modic type 2 without annular fissure at baseline against all others: the change in average
    pain (each participant, or box plots for larger groups) and the share who improved."""
    values = _values(study, term.NPRS_AVERAGE)
    groups = mri_subgroups(study, baseline)
    changes = {
        name: [
            c
            for pid in members
            if (c := _percent_change(values.get(pid, {}), baseline, followup)) is not None
        ]
        for name, members in groups.items()
    }
    figure, axes = _panels(plt, 2, 3.4, 2.6, gap=2.6, right=2.0)
    ticks = [f"{SUBGROUPS[name]}\n(n={len(groups[name]):,})" for name in groups]
    _change_by_group(axes[0], list(changes.values()))
    ax = axes[0]
    ax.axhline(-50, color="#555555", linewidth=0.8, linestyle="--", label="50% reduction")
    ax.axhline(0, color=BLACK, linewidth=0.6)
    ax.set_xticks(range(len(ticks)), ticks)
    ax.set_xlim(-0.6, len(ticks) - 0.4)
    ax.set_xlabel(f"MRI at {baseline}")
    ax.set_ylabel(f"% change in average pain, {followup}")
    ax.set_title("Change in average pain")
    _legend(ax)
    shares = _responder_bars(axes[1], changes, ticks, baseline)
    description = "; ".join(
        f"{SUBGROUPS[name]}: {len(groups[name])} participants, {share}"
        for name, share in zip(groups, shares, strict=True)
    )
    return figure, description


def _change_by_group(ax, groups: list[list[float]]) -> None:
    """Each participant's change (spread sideways so that equal values stay apart), or a box plot
    for groups larger than ``SMALL_STUDY``."""
    kinds = set()
    for x, found in enumerate(groups):
        if len(found) > SMALL_STUDY:
            ax.boxplot(
                [found],
                positions=[x],
                widths=0.5,
                showfliers=False,
                medianprops={"color": BLUE, "linewidth": 1.5},
            )
            kinds.add("box")
        elif found:
            offsets = [((i * 7) % 11 - 5) / 25 for i in range(len(found))]
            ax.plot([x + o for o in offsets], found, "o", color=BLUE, markersize=3.5)
            kinds.add("dots")
    if "dots" in kinds:
        ax.plot([], [], "o", color=BLUE, markersize=3.5, label="participant")
    if "box" in kinds:
        ax.plot([], [], color=BLUE, linewidth=1.5, label="median (box: quartiles)")


def _responder_bars(
    ax, changes: dict[str, list[float]], ticks: list[str], baseline: str
) -> list[str]:
    shares = []
    for k, (label, test, colour) in enumerate(
        (
            ("pain reduced", lambda c: c < 0, SKY),
            ("reduced by 50% or more", lambda c: c <= -50, BLUE),
        )
    ):
        xs, heights = [], []
        for x, found in enumerate(changes.values()):
            n = sum(test(c) for c in found)
            xs.append(x + (k - 0.5) * 0.38)
            heights.append(100 * n / len(found) if found else 0)
            ax.text(
                xs[-1],
                heights[-1],
                f"{n:,}/{len(found):,}",
                ha="center",
                va="bottom",
                fontsize=LABEL_FONT,
            )
            if k == 1:
                shares.append(f"{label} {n} of {len(found)} evaluable")
        ax.bar(xs, heights, width=0.36, color=colour, label=label)
    ax.set_xticks(range(len(ticks)), ticks)
    ax.set_ylim(0, 115)
    ax.set_xlabel(f"MRI at {baseline}")
    ax.set_ylabel("% of evaluable participants")
    ax.set_title("Participants whose average pain fell")
    _legend(ax)
    return shares


def figures(table: dict[str, Any], study: Study) -> list[Figure]:
    """The report's figures, in page order."""
    plt = _pyplot()
    baseline, followup = table["baseline"], table["followup"]
    pain = [
        (term.NPRS_AVERAGE, "Average pain (0-10)"),
        (term.NPRS_WORST, "Most severe pain (0-10)"),
    ]
    drawn = [
        ("Pain over the visits", _over_visits(plt, study, pain, "NPRS (0-10)", (0, 10))),
        (
            "Change in average pain from baseline (dashed: 50% reduction)",
            _pain_change(plt, study, baseline),
        ),
        (
            "Disability (Oswestry Disability Index) over the visits",
            _over_visits(plt, study, [(term.ODI, "ODI (%)")], "ODI (%)", (0, 100)),
        ),
        ("EQ-5D-3L levels per visit", _eq5d(plt, study)),
        (
            f"MRI at the index disc, {baseline} and {followup}",
            _mri(plt, study, baseline, followup),
        ),
        (
            f"Findings at the index disc, {baseline} → {followup}",
            _findings(plt, study, baseline, followup),
        ),
        (
            f"Modic type 2 without annular fissure at {baseline}, against all others",
            _subgroup(plt, study, baseline, followup),
        ),
    ]
    return [_figure(plt, caption, description, figure) for caption, (figure, description) in drawn]


def render_html(table: dict[str, Any], study: Study) -> str:
    """One self-contained html page: the outcome table and every figure inline."""
    body_rows = []
    section = None
    for current, label, value in rows(table):
        if current != section:
            body_rows.append(
                f'<tr class="section"><th colspan="2">{html.escape(current)}</th></tr>'
            )
            section = current
        body_rows.append(f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>")
    outcomes = table["outcomes"]
    headline = (
        f"Average pain fell in {outcomes['pain_reduced']['n']} of "
        f"{outcomes['pain_reduced']['evaluable']} participants, by half or more in "
        f"{outcomes['pain_50pct_responder']['n']}; {outcomes['pain_worsened']['n']} were "
        f"worse; {table['safety']['serious']} serious adverse events."
    )
    figures_html = "\n".join(
        f"<figure>{f.svg}<figcaption>{html.escape(f.caption)}</figcaption></figure>"
        for f in figures(table, study)
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Study outcomes: {html.escape(study.info.study_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.5em; margin-bottom: 0.2em; }}
p.study {{ color: #555; margin-top: 0; }}
p.headline {{ font-size: 1.15em; background: #eef6f0; padding: 0.6em 0.9em; border-radius: 4px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ padding: 0.25em 0.8em; text-align: left; }}
tr.section th {{ padding-top: 0.9em; border-bottom: 1px solid #ccc; }}
td:last-child {{ font-variant-numeric: tabular-nums; white-space: nowrap; }}
figure {{ margin: 1.5em 0; }}
figcaption {{ color: #555; font-size: 0.95em; }}
svg {{ max-width: 100%; height: auto; }}
</style>
</head>
<body>
<h1>Study outcomes: {html.escape(study.info.study_id)}</h1>
<p class="study">{html.escape(study.info.title)}</p>
<p class="headline">{html.escape(headline)}</p>
<p>{html.escape(title(table))}</p>
<table>
{chr(10).join(body_rows)}
</table>
{figures_html}
</body>
</html>
"""
