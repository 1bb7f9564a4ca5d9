"""`dvc plots show` draws offline: the project's HTML template inlines vega, vega-lite and vega-embed (built by
scripts/plots_template.sh), so the page loads nothing from a CDN. Checked in headless Chromium on a scratch copy
of the pipeline (with the project's .dvc/config, which names the template) and the committed reports."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.browser import ARGS, browser_path
from tests.scratch import scratch_project, sh

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "scripts" / "dvc_plots_template.html"
PLOT_FILES = [*(f"reports/eval/{a}/{f}" for a in ("sequential", "curriculum", "baseline")
                for f in ("per_stage.csv", "accuracy.png")),
              "reports/charts/accuracy_by_stage.png", "reports/charts/forgetting.png"]


def test_the_template_loads_no_script_from_the_network():
    text = TEMPLATE.read_text(encoding="utf-8")
    assert "{plot_divs}" in text and "{scripts}" not in text  # DVC adds its CDN <script> tags at {scripts}
    assert "<script src" not in text and "cdn.jsdelivr" not in text
    for package in ("vega-5.20.2", "vega-lite-5.2.0", "vega-embed-6.18.2"):
        assert f"<script>/* {package} " in text


def test_dvc_is_configured_to_use_the_template():
    config = sh([sys.executable, "-m", "dvc", "config", "plots.html_template"], REPO).strip()
    assert (REPO / ".dvc" / config).resolve() == TEMPLATE, config


@pytest.mark.slow
def test_dvc_plots_show_draws_every_plot_offline(tmp_path):
    path = browser_path()
    project = scratch_project(tmp_path / "project", REPO)
    # The project's DVC config, whose plots.html_template (relative to .dvc/) names the copy's
    # scripts/dvc_plots_template.html: `dvc plots show` gets no --html-template, as a person runs it.
    shutil.copy(REPO / ".dvc" / "config", project / ".dvc" / "config")
    assert (project / "scripts" / TEMPLATE.name).read_bytes() == TEMPLATE.read_bytes()
    for name in PLOT_FILES:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, project / name)
    sh([sys.executable, "-m", "dvc", "plots", "show", "-o", "out"], project)
    page_file = project / "out" / "index.html"

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=ARGS)
        page = browser.new_page()
        remote, errors = [], []
        # Anything but the page's own files is recorded and refused: the page must draw without it.
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
                   else (remote.append(route.request.url), route.abort()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 1",
                               timeout=30_000)
        drawn = page.evaluate("""() => [...document.querySelectorAll('.vega-embed')].map(
            e => e.querySelector('canvas, svg') !== null)""")
        images = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
        page.screenshot(path=str(tmp_path / "plots.png"), full_page=True)
        browser.close()
    assert drawn and all(drawn), drawn  # the accuracy_per_stage plot, drawn by the inlined vega
    assert len(images) == 5 and all(width > 0 for _, width in images), images  # the PNG plots
    assert not remote and not errors, (remote, errors)
