"""The html report as a reader sees it: rendered by headless Chromium (Debian's package), whose text
bounding boxes show that no two labels of a figure overprint and that every label lies inside its
figure, for the demo (each participant drawn) and a synthetic study of 2,000 participants (drawn as
summaries); the pages stay small; and the page through the views is the page through the reverse
mappings, every figure, at 300 and 2,000 participants."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli
from fhir_admsc.inputs import read_fhir
from fhir_admsc.mappings import study_from_fhir
from fhir_admsc.plots import render_html
from fhir_admsc.report import analyse, render_json
from fhir_admsc.views.engines import read_study
from tests.helpers import synthetic_export

# After the page has loaded: every <text> of every figure, as the four corners of its box on the
# page (rotation included), written into the page for --dump-dom to print.
MEASURE = """<script>
window.addEventListener("load", () => {
  const figures = [...document.querySelectorAll("figure > svg")].map((svg) => {
    const frame = svg.getBoundingClientRect();
    const labels = [...svg.querySelectorAll("text")].map((text) => {
      const box = text.getBBox();
      const m = text.getScreenCTM();
      const corners = [[box.x, box.y], [box.x + box.width, box.y],
                       [box.x + box.width, box.y + box.height], [box.x, box.y + box.height]];
      return {text: text.textContent,
              corners: corners.map(([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f])};
    });
    return {title: svg.querySelector("title").textContent,
            desc: svg.querySelector("desc").textContent,
            frame: [frame.left, frame.top, frame.right, frame.bottom], labels};
  });
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify(figures);
  document.body.appendChild(out);
});
</script>"""
TOLERANCE = 0.5  # px: boxes that share an edge do not overprint


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "these tests need Chromium: apt-get install chromium (.ci/run installs it)"
    return found


def rendered(page: Path, scratch: Path) -> list[dict[str, Any]]:
    """The figures of ``page`` as Chromium lays them out at a 1200 px wide window."""
    measured = scratch / f"{page.stem}-measured.html"
    measured.write_text(
        page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), "utf-8"
    )
    profile = scratch / "chromium-profile"
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # the suite may run as root
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1200,900",
            "--virtual-time-budget=5000",
            "--dump-dom",
            measured.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<pre id="measured">(.*?)</pre>', result.stdout, re.S)
    assert found, f"Chromium printed no measurements (exit {result.returncode}): {result.stderr}"
    return json.loads(found[1].replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def _projection(corners: list[list[float]], axis: tuple[float, float]) -> tuple[float, float]:
    dots = [x * axis[0] + y * axis[1] for x, y in corners]
    return min(dots), max(dots)


def overprint(a: list[list[float]], b: list[list[float]]) -> bool:
    """Whether two boxes (convex, any rotation) overlap by more than ``TOLERANCE``: they do unless
    some edge direction of either separates them (the separating axis theorem)."""
    for corners in (a, b):
        for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1], strict=True):
            length = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
            if length == 0:
                continue
            axis = (-(y2 - y1) / length, (x2 - x1) / length)
            low_a, high_a = _projection(a, axis)
            low_b, high_b = _projection(b, axis)
            if min(high_a, high_b) - max(low_a, low_b) <= TOLERANCE:
                return False
    return True


def problems(figures: list[dict[str, Any]]) -> list[str]:
    """Labels of one figure that overprint each other, or stand outside the figure."""
    found = []
    for figure in figures:
        labels = [label for label in figure["labels"] if label["text"].strip()]
        left, top, right, bottom = figure["frame"]
        for i, label in enumerate(labels):
            xs = [x for x, _ in label["corners"]]
            ys = [y for _, y in label["corners"]]
            if (
                min(xs) < left - 1
                or max(xs) > right + 1
                or min(ys) < top - 1
                or max(ys) > bottom + 1
            ):
                found.append(f"{figure['title']}: {label['text']!r} outside the figure")
            for other in labels[i + 1 :]:
                if overprint(label["corners"], other["corners"]):
                    found.append(f"{figure['title']}: {label['text']!r} over {other['text']!r}")
    return found


def test_overprinting_is_found() -> None:
    """The check itself: overlapping boxes, including rotated ones, are found; apart ones not."""
    box = [[0, 0], [40, 0], [40, 10], [0, 10]]
    assert overprint(box, [[30, 5], [70, 5], [70, 15], [30, 15]])
    assert not overprint(box, [[40, 0], [80, 0], [80, 10], [40, 10]])  # sharing an edge
    tilted = [[45, 0], [52, 7], [45, 14], [38, 7]]  # a diamond left of x=38 touches nothing
    assert overprint(box, tilted)
    assert not overprint(box, [[c[0] + 10, c[1]] for c in tilted])


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The outcome report (html and JSON) of the demo, and of synthetic studies of 300 and 2,000
    participants through the views (DuckDB) and through the reverse mappings, each study read
    once an engine as `report` reads it."""
    folder = tmp_path_factory.mktemp("pages")
    assert run("export", "--demo", "--format", "ndjson", "-o", str(folder / "demo")).exit_code == 0
    sources = {"demo": folder / "demo"}
    for size in (300, 2000):
        sources[str(size)] = synthetic_export(folder, size, seed=4)
    found = {}
    for name, source in sources.items():
        for engine in ("duckdb", "python") if name != "demo" else ("duckdb",):
            if engine == "python":
                study = study_from_fhir(read_fhir(source))
            else:
                study = read_study(engine, source)
            table = analyse(study)
            for suffix, text in (("html", render_html(table, study)), ("json", render_json(table))):
                found[f"{name}-{engine}.{suffix}"] = folder / f"{name}-{engine}.{suffix}"
                found[f"{name}-{engine}.{suffix}"].write_text(text, encoding="utf-8")
    return found


@pytest.mark.parametrize("size", ["300", "2000"])
def test_the_report_through_the_views_is_the_report_of_the_reverse_mappings(
    pages: dict[str, Path], size: str
) -> None:
    """Every figure: the JSON report (every count and who is counted) and the html page (every
    drawing), byte for byte."""
    for suffix in ("json", "html"):
        views = pages[f"{size}-duckdb.{suffix}"].read_bytes()
        mappings = pages[f"{size}-python.{suffix}"].read_bytes()
        assert views == mappings, suffix
    assert json.loads(pages[f"{size}-duckdb.json"].read_bytes())["participants"] == int(size)


@pytest.mark.parametrize("name", ["demo", "2000"])
def test_no_two_labels_of_a_figure_overprint(
    pages: dict[str, Path], name: str, tmp_path: Path
) -> None:
    figures = rendered(pages[f"{name}-duckdb.html"], tmp_path)
    assert len(figures) == 7
    assert all(figure["title"] and figure["desc"] for figure in figures)
    assert sum(len(figure["labels"]) for figure in figures) > 100
    assert problems(figures) == []


def test_small_studies_name_each_participant_and_large_ones_count(pages: dict[str, Path]) -> None:
    demo = pages["demo-duckdb.html"].read_text(encoding="utf-8")
    large = pages["2000-duckdb.html"].read_text(encoding="utf-8")
    assert all(f">P0{i}<" in demo for i in range(1, 10))
    assert "interquartile range" in large and "interquartile range" not in demo
    assert re.search(r"n=1,9\d\d<", large)  # participants counted under the baseline visit
    ids = (pages["2000-duckdb.html"].parent / "study2000" / "participants.csv").read_text().split()
    assert not [line for line in ids[1:] if f">{line.split(',')[0]}<" in large]  # none named


def test_the_pages_stay_small(pages: dict[str, Path]) -> None:
    sizes = {name: page.stat().st_size for name, page in pages.items()}
    assert sizes["2000-duckdb.html"] < 2_000_000, sizes
    assert sizes["demo-duckdb.html"] < 1_000_000, sizes
