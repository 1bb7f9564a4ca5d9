"""The MLflow UI as a person sees it, in headless Chromium: a real `mlflow server` on 127.0.0.1 over a store with
the three approaches' training and evaluation runs, the compare run and a registered model with `champion`
(tests/mlflow_ui_store.py logs them through the pipeline's own logging code, from a copy of the reports).
Screenshots go to the test's temporary folder; with SURGVQA_UPDATE_SCREENSHOTS=1 they replace the README's in
reports/ui/ (a test run leaves the work tree as it found it otherwise)."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

import pytest

from tests.browser import ARGS, browser_path
from tests.mlflow_ui_store import build, copy_reports
from tests.servers import running_mlflow_server

REPO = Path(__file__).resolve().parents[1]
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 over a fresh SQLite store with its own artifact root, filled by
    tests/mlflow_ui_store.build from a copy of the reports; yields (url, ids)."""
    reports = copy_reports(tmp_path_factory.mktemp("reports"))
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow_ui")) as url:
        yield url, build(url, reports)


@pytest.fixture(scope="module")
def browser():
    path = browser_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go: reports/ui/ when asked to update the README's, else a temporary folder."""
    if os.environ.get("SURGVQA_UPDATE_SCREENSHOTS") == "1":
        return REPO / "reports" / "ui"
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 2000, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    failed = []
    # A request the browser aborts itself (net::ERR_ABORTED: the page navigated away before it finished) is not
    # the server failing.
    page.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED" else failed.append((r.url, r.failure)))
    yield page
    context.close()
    assert not failed, f"requests failed: {failed}"


def _shot(page, shots: Path, name: str) -> None:
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"))
    assert (shots / f"{name}.png").stat().st_size > 0


def _column(page, col_id: str) -> dict[str, str]:
    """The text of each cell of one column of the runs table (its ag-grid col-id), by row index."""
    return dict(page.evaluate("""id => [...document.querySelectorAll(`[role=gridcell][col-id="${id}"]`)].map(
        c => [c.closest('[role=row]').getAttribute('row-index'), c.innerText.trim()])""", col_id))


def _close_assistant(page) -> None:
    """The MLflow Assistant panel opens by itself and hides half the page."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


def test_the_compare_run_links_the_evaluation_runs_it_compares(server):
    from mlflow.tracking import MlflowClient

    url, ids = server
    client = MlflowClient(tracking_uri=url)
    tags = client.get_run(ids["compare"]).data.tags
    assert {a: tags[f"compared_run.{a}"] for a in ids["evaluation"]} == ids["evaluation"]
    for approach, run_id in ids["evaluation"].items():
        assert f"[evaluate-{approach}](#/experiments/{ids['experiment']}/runs/{run_id})" in tags["mlflow.note.content"]
    evaluation = client.get_run(ids["evaluation"]["curriculum"]).data.tags
    assert evaluation["adapter_run.curriculum_2"] == ids["training"]["curriculum_2"]  # and each its training runs
    assert evaluation["kind"] == "evaluation" and evaluation["git_commit"] and evaluation["params_digest"]
    # The charts sit at the top of the artifacts, where the Compare page looks for common artifacts.
    assert "accuracy.png" in {a.path for a in client.list_artifacts(ids["evaluation"]["sequential"])}
    assert "accuracy_by_stage.png" in {a.path for a in client.list_artifacts(ids["compare"])}
    assert client.get_experiment(ids["experiment"]).tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_experiment_page_lists_the_runs_with_their_metrics_and_lineage_tags(server, page, shots):
    url, ids = server
    # MLflow 3.17 picks the view from its sidebar switch (remembered per browser), not from the experiment's
    # mlflow.experimentKind tag: the README links the Model training view with this parameter.
    page.goto(f"{url}/#/experiments/{ids['experiment']}/runs?workflowType=machine_learning")
    page.get_by_text("evaluate-sequential (", exact=False).first.wait_for()
    _close_assistant(page)
    columns = ["context_strict_overall", "kind", "git_commit", "params_digest", "adapter_run.sequential_1"]
    for name in columns:
        page.get_by_role("button", name="Columns", exact=True).click()
        page.locator("span.du-bois-light-tree-title").get_by_text(name, exact=True).click()
        page.keyboard.press("Escape")
    headers = page.locator("[role=columnheader]").all_inner_texts()
    assert set(columns) <= set(headers), headers
    text = page.inner_text("body")
    assert f"{len(ids['training']) + len(ids['evaluation']) + 2} matching runs" in text
    # Each run's row: its name, and in the added columns its kind tag and its primary metric.
    names, kinds, strict = (_column(page, c) for c in ("attributes.`Run Name`", "tags.`kind`",
                                                        "metrics.`context_strict_overall`"))
    # The name cell starts with the run's colour swatch ("#2272b4\nsequential-stage_1 (b5834e5f)").
    rows = {names[i].splitlines()[-1].split(" (")[0]: (kinds.get(i), strict.get(i)) for i in names}
    expected = {**{run: "training" for run in ("sequential-stage_1", "sequential-stage_2", "sequential-stage_3",
                                                "curriculum-stage_1", "curriculum-stage_2", "curriculum-stage_3",
                                                "baseline")},
                **{f"evaluate-{a}": "evaluation" for a in ids["evaluation"]}, "compare": "comparison",
                ids["release_name"]: "release"}
    assert {run: kind for run, (kind, _) in rows.items()} == expected, rows
    for approach, metrics in ids["metrics"].items():  # as the evaluation runs logged them, rounded for display
        shown = rows[f"evaluate-{approach}"][1]
        assert float(shown) == pytest.approx(metrics["context_strict_overall"], abs=5e-4), (approach, shown)
    assert ids["training"]["sequential_1"][:8] in text  # the lineage tag's value: the training run's id
    assert "surgvqa: stage-wise LoRA fine-tuning" in text  # the experiment's description
    _shot(page, shots, "experiment_runs")


def test_the_compare_view_of_the_evaluation_runs_renders(server, page, shots):
    url, ids = server
    runs = urllib.parse.quote(json.dumps(list(ids["evaluation"].values())))
    page.goto(f"{url}/#/compare-runs?runs={runs}&experiments={urllib.parse.quote(json.dumps([ids['experiment']]))}")
    page.get_by_text("Comparing 3 Runs from 1 Experiment").wait_for()
    page.get_by_text("evaluate.decoding").first.wait_for()  # the params table, filled once the runs load
    _close_assistant(page)
    text = page.inner_text("body")
    for approach in ids["evaluation"]:
        assert f"evaluate-{approach} (" in text
    assert "evaluate.decoding" in text and "\nMetrics\n" in text
    # The chart every evaluation run has at the top of its artifacts: the page shows it side by side.
    assert "accuracy.png" in text and "No common artifacts to display" not in text
    page.get_by_text("accuracy.png", exact=True).first.scroll_into_view_if_needed()
    _shot(page, shots, "compare_runs")


def test_the_compare_run_description_links_to_an_evaluation_run(server, page):
    url, ids = server
    page.goto(f"{url}/#/experiments/{ids['experiment']}/runs/{ids['compare']}?workflowType=machine_learning")
    link = page.get_by_role("link", name="evaluate-curriculum", exact=True)
    href = link.get_attribute("href")
    assert href.endswith(f"#/experiments/{ids['experiment']}/runs/{ids['evaluation']['curriculum']}"), href
    page.goto(urllib.parse.urljoin(page.url, href))  # MLflow opens description links in a new tab
    page.get_by_text("Evaluation of the curriculum approach on the test split").wait_for()  # its description


def test_the_registered_model_page_shows_the_aliases(server, page, shots):
    url, ids = server
    page.goto(f"{url}/#/models/{ids['model']}")
    page.get_by_text("@\u00a0champion").first.wait_for()  # MLflow writes "@ champion" with a no-break space
    _close_assistant(page)
    text = page.inner_text("body").replace("\u00a0", " ")
    assert "@ challenger" in text and f"Version {ids['version']}" in text, text
    _shot(page, shots, "registered_model")
