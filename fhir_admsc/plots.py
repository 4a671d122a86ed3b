"""The html outcome report: the outcome table and the study's figures (matplotlib, inline SVG), in
one self-contained file."""

from __future__ import annotations

import html
import io
from collections import defaultdict
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.errors import ConfigurationError
from fhir_admsc.report import rows, title
from fhir_admsc.study import Study

EQ5D = term.EQ5D_DIMENSIONS
LEVEL_COLOURS = ["#4c9f70", "#f2b134", "#d1495b"]  # no / some / extreme problems


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
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "fhir-admsc",
            "svg.fonttype": "none",
        }
    )
    return pyplot


def _svg(figure) -> str:
    """The figure as inline SVG; the figure is closed (pyplot keeps every figure it made until
    then: a report per process is fine, a server drawing many is not)."""
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(figure)
    text = out.getvalue()
    return text[text.index("<svg") :]


def _series(study: Study, measure: str) -> dict[str, list[tuple[int, float]]]:
    """participant -> [(visit position, value)] in schedule order."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for o in study.outcomes:
        if o.measure == measure:
            series[o.participant_id].append((term.VISIT_ORDER.index(o.visit), float(o.value)))
    return {pid: sorted(points) for pid, points in sorted(series.items())}


def _lines(
    plt,
    study: Study,
    measures: list[tuple[str, str]],
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> str:
    figure, axes = plt.subplots(
        1, len(measures), figsize=(5 * len(measures), 3.2), squeeze=False, sharey=True
    )
    used: set[int] = set()
    for ax, (measure, label) in zip(axes[0], measures, strict=True):
        for pid, points in _series(study, measure).items():
            xs, ys = zip(*points, strict=True)
            used.update(xs)
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=pid)
            ax.annotate(
                pid,
                (xs[-1], ys[-1]),
                textcoords="offset points",
                xytext=(4, 0),
                fontsize=7,
                va="center",
            )
        ax.set_title(label)
        ax.set_ylabel(ylabel)
        if ylim:
            ax.set_ylim(*ylim)
    for ax in axes[0]:
        ticks = sorted(used)
        ax.set_xticks(ticks, [term.VISIT_ORDER[i] for i in ticks], rotation=30)
    return _svg(figure)


def _tornado(plt, study: Study, baseline: str) -> str:
    """Percent change of average pain per participant at month 6 and month 12 (negative is
    better), the paper's tornado figure."""
    values = {
        (o.participant_id, o.visit): float(o.value)
        for o in study.outcomes
        if o.measure == term.NPRS_AVERAGE
    }
    pids = sorted({p for p, _ in values})
    figure, axes = plt.subplots(1, 2, figsize=(9, 0.35 * len(pids) + 1.2), sharey=True)
    for ax, visit in zip(axes, (term.MONTH6, term.MONTH12), strict=True):
        changes = []
        for pid in pids:
            before, after = values.get((pid, baseline)), values.get((pid, visit))
            changes.append(None if not before or after is None else 100 * (after - before) / before)
        shown = [c if c is not None else 0 for c in changes]
        colours = [
            "#4c9f70"
            if c is not None and c <= -50
            else "#8fb996"
            if c is not None and c < 0
            else "#d1495b"
            if c is not None and c > 0
            else "#bbbbbb"
            for c in changes
        ]
        ax.barh(pids, shown, color=colours)
        ax.axvline(-50, color="#555555", linewidth=0.8, linestyle="--")
        ax.axvline(0, color="#000000", linewidth=0.8)
        ax.set_xlim(-100, 100)
        ax.set_title(f"{visit}: % change in average pain")
        ax.invert_yaxis()
        for y, change in enumerate(changes):
            if change is None:
                ax.text(0, y, " not evaluable", va="center", fontsize=7, color="#777777")
    return _svg(figure)


def _eq5d(plt, study: Study) -> str:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    visits: set[str] = set()
    for o in study.outcomes:
        if o.measure in EQ5D:
            counts[(o.measure, o.visit)][int(o.value) - 1] += 1
            visits.add(o.visit)
    order = [v for v in term.VISIT_ORDER if v in visits]
    figure, axes = plt.subplots(1, len(EQ5D), figsize=(12, 2.8), sharey=True)
    for ax, measure in zip(axes, EQ5D, strict=True):
        bottom = [0.0] * len(order)
        for level in range(3):
            heights = []
            for visit in order:
                total = sum(counts[(measure, visit)]) or 1
                heights.append(100 * counts[(measure, visit)][level] / total)
            ax.bar(
                order,
                heights,
                bottom=bottom,
                color=LEVEL_COLOURS[level],
                label=("no problems", "some problems", "extreme problems")[level],
            )
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_title(term.OUTCOME_MEASURES[measure].concept.display.replace("EQ-5D-3L ", ""))
        ax.tick_params(axis="x", rotation=30)
    axes[0].set_ylabel("% of participants")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
    return _svg(figure)


def _mri(plt, study: Study, baseline: str, followup: str) -> str:
    disc = {p.participant_id: p.disc_level for p in study.participants}
    reports = {r.report_id: (r.participant_id, r.visit) for r in study.imaging_reports}
    found: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for f in study.imaging_findings:
        pid, visit = reports.get(f.report_id, (None, None))
        if pid is not None and f.disc_level == disc[pid] and visit in (baseline, followup):
            found[(pid, visit)][f.finding] = f.value
    pids = sorted(disc)
    figure, axes = plt.subplots(
        1,
        3,
        figsize=(13, 0.35 * len(pids) + 1.4),
        sharey=True,
        gridspec_kw={"width_ratios": [1, 1, 1.8]},
    )
    panels = [(term.DISC_HEIGHT_MM, "Disc height (mm)"), (term.PROTRUSION_MM, "Protrusion (mm)")]
    for ax, (finding, label) in zip(axes[:2], panels, strict=True):
        for y, pid in enumerate(pids):
            before = found[(pid, baseline)].get(finding)
            after = found[(pid, followup)].get(finding)
            if finding == term.PROTRUSION_MM:
                before = (
                    before
                    if before is not None
                    else (
                        0.0 if found[(pid, baseline)].get(term.PROTRUSION) == term.ABSENT else None
                    )
                )
                after = (
                    after
                    if after is not None
                    else (
                        0.0 if found[(pid, followup)].get(term.PROTRUSION) == term.ABSENT else None
                    )
                )
            if before is not None and after is not None:
                ax.plot([before, after], [y, y], color="#999999", linewidth=1)
            if before is not None:
                ax.plot(before, y, "o", color="#555555", markersize=5)
            if after is not None:
                ax.plot(after, y, "o", color="#2e86ab", markersize=5)
        ax.set_title(label)
    ax = axes[2]
    for y, pid in enumerate(pids):
        for x, finding in enumerate((term.ANNULAR_FISSURE, term.PROTRUSION, term.MODIC_TYPE)):
            before = found[(pid, baseline)].get(finding, "?")
            after = found[(pid, followup)].get(finding, "?")
            ax.text(
                x,
                y,
                f"{before} → {after}",
                ha="center",
                va="center",
                fontsize=6.5,
                color="#2e7d32" if before == term.PRESENT and after == term.ABSENT else "#333333",
            )
    ax.set_xlim(-0.6, 2.6)
    ax.set_xticks([0, 1, 2], ["annular fissure", "protrusion", "Modic type"])
    ax.set_title("Findings at the index disc")
    ax.set_yticks(range(len(pids)), pids)
    ax.invert_yaxis()
    return _svg(figure)


def render_html(table: dict[str, Any], study: Study) -> str:
    """One self-contained html page: the outcome table and every figure inline."""
    plt = _pyplot()
    baseline, followup = table["baseline"], table["followup"]
    figures = [
        (
            "Pain over the visits, per participant",
            _lines(
                plt,
                study,
                [
                    (term.NPRS_AVERAGE, "Average pain (0-10)"),
                    (term.NPRS_WORST, "Most severe pain (0-10)"),
                ],
                "NPRS",
                (0, 10),
            ),
        ),
        (
            "Change in average pain per participant (dashed: 50% reduction)",
            _tornado(plt, study, baseline),
        ),
        (
            "Disability (Oswestry Disability Index) over the visits",
            _lines(plt, study, [(term.ODI, "ODI (%)")], "ODI %", (0, 100)),
        ),
        ("EQ-5D-3L levels per visit", _eq5d(plt, study)),
        (
            f"MRI at the index disc: {baseline} (grey) and {followup} (blue); findings as "
            f"{baseline} → {followup}, healed in green",
            _mri(plt, study, baseline, followup),
        ),
    ]
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
        f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, svg in figures
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
