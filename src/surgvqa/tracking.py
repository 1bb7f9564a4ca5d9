"""MLflow helpers: one run per pipeline stage, params flattened, per-step metrics from the Trainer, and the way
back from an adapter to its run (the run's `adapter_sha256` tag).

The embedded default store is a SQLite file (`sqlite:///mlflow.db`), which the MLflow UI opens with
`mlflow ui --backend-store-uri sqlite:///mlflow.db` (bound to 127.0.0.1 by default).

Every run is started through `start_run`, which gives it the same tags in every stage (`run_tags`): its `kind`,
its stable `name`, `git_commit`, a `params_digest` of the params it ran with, the DVC stage and, under
`dvc exp run`, the DVC experiment's name; a description (`mlflow.note.content`); and a run name that tells
reruns apart. The experiment carries the model-training kind tag (`mlflow.experimentKind`) for the MLflow versions
and clients that read it; the UI of MLflow 3.17 ignores it and opens the view its sidebar switch last chose (the
Model training view directly: `#/experiments/<id>/runs?workflowType=machine_learning`).

A tracking server that is down or unreachable fails a stage within seconds (`check_server`): MLflow's own
default is 7 retries of up to 120 s each with backoff, minutes before an error. `tracking.request_timeout` and
`tracking.request_retries` bound every metadata request a run makes (params, metrics, tags); artifact uploads
(log_dir, log_file: an adapter of tens of MB to S3 over a slow link may rightly take longer) run with the limits
that held before the run, MLflow's defaults unless the user set MLFLOW_HTTP_REQUEST_TIMEOUT / _MAX_RETRIES.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from transformers import TrainerCallback

from surgvqa.errors import SurgvqaError
from surgvqa.names import APPROACHES
from surgvqa.params.tracking import URI_VARIABLE, TrackingParams

# The Trainer's log keys, renamed so every approach's runs share metric names in the MLflow UI.
_METRIC_NAMES = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}

# The `kind` tag of each stage's run: filter `tags.kind = 'evaluation'` in the UI.
KINDS = ("training", "evaluation", "comparison", "release")
NOTE_TAG = "mlflow.note.content"  # the description the MLflow UI shows for a run or an experiment
# The experiment kind tag, for the MLflow versions and clients that read it. MLflow 3.17's UI does not: its sidebar
# switch picks the view (remembered per browser); `?workflowType=machine_learning` links the Model training view.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
EXPERIMENT_NOTE = (
    "surgvqa: stage-wise LoRA fine-tuning of Qwen2-VL on Kvasir-VQA, three approaches (sequential, curriculum, "
    "baseline), evaluated strictly per clinical stage. One run per DVC stage; the tag `kind` says which "
    "(training, evaluation, comparison, release), and `git_commit`, `params_digest` and `dvc_experiment` tell "
    "reruns apart. Training runs carry `adapter_sha256`; evaluation runs link their training runs "
    "(`adapter_run.<name>`), and the `compare` run links the evaluation runs it compares (`compared_run.<approach>`)."
    " Filter `tags.kind = 'evaluation'`, select the runs and press Compare.")
# Set by DVC for every stage command it runs (dvc/stage/run.py) and, under `dvc exp run`, the experiment's
# name (dvc/repo/experiments/queue/base.py).
DVC_STAGE_VARIABLE, DVC_EXPERIMENT_VARIABLE = "DVC_STAGE", "DVC_EXP_NAME"
# MLflow reads these at every request (mlflow/environment_variables.py).
_TIMEOUT_VARIABLE, _RETRIES_VARIABLE = "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
_DIGEST_CHARS = 8
# The values of both variables before each open _http_limits block, outermost first.
_unbounded_values: list[dict[str, str | None]] = []


def _set_environment(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def _http_limits(timeout: int, retries: int):
    """Inside the block, each of MLflow's HTTP requests waits at most `timeout` seconds per try and is retried
    at most `retries` times (MLflow reads both variables at every request); the variables are restored after."""
    saved = {k: os.environ.get(k) for k in (_TIMEOUT_VARIABLE, _RETRIES_VARIABLE)}
    _unbounded_values.append(saved)
    _set_environment({_TIMEOUT_VARIABLE: str(timeout), _RETRIES_VARIABLE: str(retries)})
    try:
        yield
    finally:
        _unbounded_values.pop()
        _set_environment(saved)


@contextlib.contextmanager
def unbounded_requests():
    """Inside the block (an artifact upload, within a bounded run), MLflow's requests have the limits they had
    before any bounded block: MLflow's own defaults unless the user set the variables. Restored after."""
    saved = {k: os.environ.get(k) for k in (_TIMEOUT_VARIABLE, _RETRIES_VARIABLE)}
    _set_environment(_unbounded_values[0] if _unbounded_values else saved)
    try:
        yield
    finally:
        _set_environment(saved)


def bounded_requests(tracking: TrackingParams):
    """A block in which MLflow's requests to a tracking server are bounded by the `tracking` params."""
    return _http_limits(tracking.request_timeout, tracking.request_retries)


def without_credentials(uri: str) -> str:
    """The URI with any user:password@ removed: errors and reports end up in CI logs and artifacts."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host))


def _is_server(uri: str) -> bool:
    return urlsplit(uri).scheme in ("http", "https")


def server_down_message(tracking: TrackingParams, cause: str) -> str:
    """What a stage says when its tracking server does not answer: the URI, where it came from, what to do."""
    uri = without_credentials(tracking.resolved_uri())
    source = URI_VARIABLE if os.environ.get(URI_VARIABLE) else "tracking.uri in params.yaml"
    return (f"the MLflow tracking server {uri} ({source}) did not answer within {tracking.request_timeout} s: "
            f"{cause}. Start it (e.g. `mlflow server --host 127.0.0.1 --port {urlsplit(uri).port or 5000} "
            "--backend-store-uri sqlite:///mlflow-server.db`) or correct the address; or log to a local store "
            f"for now with {URI_VARIABLE}=sqlite:///mlflow.db and copy the runs to the server later with the "
            "mlflow-export-import tools (github.com/mlflow/mlflow-export-import: `export-experiment`, then "
            "`import-experiment`). Nothing was logged")


def check_server(tracking: TrackingParams) -> None:
    """Fail fast, naming the URI and what to do, when the tracking store is a server that does not answer: one
    try of at most `tracking.request_timeout` seconds. Local stores (sqlite:, file paths) need no check."""
    uri = tracking.resolved_uri()
    if not _is_server(uri):
        return
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.tracking import MlflowClient

    with _http_limits(tracking.request_timeout, 0):
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except RestException as e:  # it answered, with an error of its own (credentials, permissions)
            raise SurgvqaError(f"the MLflow tracking server {without_credentials(uri)} refused the request: "
                               f"{e.message}. Check MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / "
                               "MLFLOW_TRACKING_TOKEN") from None
        except MlflowException as e:
            raise SurgvqaError(server_down_message(tracking, _cause(e.message))) from None


def _cause(message: str) -> str:
    """The useful end of MLflow's connection error (requests' and urllib3's exceptions, nested)."""
    message = re.sub(r"\s+", " ", message)
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", message)
    if found:
        return found.group(0).strip(" .")
    if re.search(r"timed out", message, re.IGNORECASE):
        return "the request timed out (connected, but no answer)" if "Read timed out" in message else "timed out"
    return message[:300]


def params_digest(params: dict) -> str:
    """A short sha256 of a stage's params sections ({"train": TrainParams(...), ...}), the same whatever the
    order: two runs with the same digest ran with the same params."""
    plain = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in params.items()}
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]


def run_tags(kind: str, name: str, params: dict | None, description: str | None = None) -> dict[str, str]:
    """The tags every run of the pipeline carries, whichever stage logs it (start_run, and the release run of
    `surgvqa promote`): kind, stable name, git commit, params digest, DVC stage and experiment, a description."""
    from surgvqa.model.lineage import git_commit

    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}: one of {KINDS}")
    commit = git_commit()
    tags = {"kind": kind, "name": name, "git_commit": str(commit["sha"]),
            "git_dirty": str(commit["dirty"]).lower()}
    if params is not None:
        tags["params_digest"] = params_digest(params)
    if os.environ.get(DVC_STAGE_VARIABLE):
        tags["dvc_stage"] = os.environ[DVC_STAGE_VARIABLE]
    if os.environ.get(DVC_EXPERIMENT_VARIABLE):
        tags["dvc_experiment"] = os.environ[DVC_EXPERIMENT_VARIABLE]
    facts = [f"code at commit `{tags['git_commit'][:12]}`" + (" with uncommitted changes" if commit["dirty"] else "")]
    if "params_digest" in tags:
        facts.append(f"params digest `{tags['params_digest']}`")
    if "dvc_stage" in tags:
        facts.append(f"DVC stage `{tags['dvc_stage']}`")
    if "dvc_experiment" in tags:
        facts.append(f"DVC experiment `{tags['dvc_experiment']}` (`dvc exp show`)")
    tags[NOTE_TAG] = f"{description or f'{kind.capitalize()} run `{name}`.'}\n\n{'; '.join(facts)}."
    return tags


def display_name(tags: dict[str, str]) -> str:
    """A run name that tells reruns apart: the stable name, the DVC experiment and the params digest (or the
    commit when the stage gave no params)."""
    which = [tags[k] for k in ("dvc_experiment",) if k in tags]
    which.append(tags.get("params_digest") or f"commit {tags['git_commit'][:7]}")
    return f"{tags['name']} ({', '.join(which)})"


def describe_experiment(client, experiment_id: str) -> None:
    """Tag the experiment as model training (for the clients that read the tag) and give it its description."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment(experiment_id)
    for key, value in ((EXPERIMENT_KIND_TAG, EXPERIMENT_KIND), (NOTE_TAG, EXPERIMENT_NOTE)):
        if experiment.tags.get(key) == value:
            continue
        try:
            client.set_experiment_tag(experiment_id, key, value)
        except MlflowException:
            # Two stages (or two promotes) starting at once both insert the missing tag and the store refuses
            # the second insert (seen on a SQLite-backed server); the tag is then what it should be.
            if client.get_experiment(experiment_id).tags.get(key) != value:
                raise


def _training_description(name: str, tags: dict[str, str]) -> str:
    """What a training run is, from the training stage's own tags."""
    text = f"Training run `{name}`"
    if "approach" in tags:
        text += f": the {tags['approach']} approach's LoRA adapter for stage {tags.get('stage', 'all')}"
    if "base_model" in tags:
        text += f" on base `{tags['base_model']}`"
    if tags.get("parent_adapter", "none") != "none":
        text += f", continued from `{tags['parent_adapter']}` (training run {tags.get('parent_run_id')})"
    return text + ". The adapter is the `adapter` artifact; its weight hash is the tag `adapter_sha256`."


@contextlib.contextmanager
def start_run(tracking: TrackingParams, run_name: str, tags: dict[str, str], resume_run_id: str | None = None, *,
              kind: str = "training", params: dict | None = None, description: str | None = None):
    """Start (or, after an interruption, resume) the MLflow run of one stage, as a `with` block yielding the
    active run. `run_name` is the stage's stable name (tag `name`); `tags` are the stage's own, added to
    run_tags(kind, run_name, params, description). The tracking server is checked first (SurgvqaError within
    seconds when it does not answer) and every request in the block is bounded by the `tracking` params, except
    the artifact uploads of log_dir and log_file (MLflow's limits: an upload may rightly take minutes)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    with bounded_requests(tracking):
        check_server(tracking)
        mlflow.set_tracking_uri(tracking.resolved_uri())
        experiment = mlflow.set_experiment(tracking.experiment)
        describe_experiment(MlflowClient(), experiment.experiment_id)
        if description is None and kind == "training":
            description = _training_description(run_name, tags)
        standard = run_tags(kind, run_name, params, description)
        if resume_run_id:
            with mlflow.start_run(run_id=resume_run_id) as run:
                mlflow.set_tags(standard | tags)  # who finished it; the run keeps its name
                yield run
        else:
            with mlflow.start_run(run_name=display_name(standard), tags=standard | tags) as run:
                yield run


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}: MLflow params are flat strings."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


def log_params(params: dict) -> None:
    """Log a nested dict of params, flattened, to the active run."""
    import mlflow

    mlflow.log_params(flatten(params))


def log_metrics(metrics: dict[str, float | None], step: int | None = None) -> None:
    """Log metrics to the active run, NaN and infinity included (a diverged loss must show, not vanish).

    None means "not defined" (an accuracy over no items) and has no MLflow value, so it is left out; anything
    else that is not a number is an error.
    """
    import mlflow

    wrong = {k: v for k, v in metrics.items()
             if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))}
    if wrong:
        raise TypeError(f"metrics must be numbers or None, got {wrong}")
    values = {k: float(v) for k, v in metrics.items() if v is not None}
    if values:
        mlflow.log_metrics(values, step=step)


def set_tags(tags: dict[str, str]) -> None:
    """Set tags on the active run."""
    import mlflow

    mlflow.set_tags(tags)


def find_adapter_run(tracking: TrackingParams, lineage: dict) -> str | None:
    """The id of the latest finished training run that wrote this adapter (its weight hash, approach and stage
    from its lineage), or None when the store has none (adapters pulled from a DVC remote with another store).

    The hash alone is not enough: two approaches can train identical weights (sequential and curriculum stage 1
    see the same rows at the same rate and seed)."""
    adapter_sha256 = lineage["adapter_sha256"]
    # These go into a filter string: only the shapes lineage records can hold.
    if not re.fullmatch(r"[0-9a-f]{64}", adapter_sha256) or lineage["approach"] not in APPROACHES:
        raise ValueError(f"not an adapter lineage: sha256 {adapter_sha256!r}, approach {lineage['approach']!r}")
    stage = str(lineage["stage"] or "all")
    run = _latest_run(tracking, f"tags.adapter_sha256 = '{adapter_sha256}' and tags.approach = "
                                f"'{lineage['approach']}' and tags.stage = '{stage}'")
    return run.info.run_id if run else None


def find_evaluation_run(tracking: TrackingParams, approach: str, report_sha256: str):
    """The latest finished evaluation run that wrote this report.json (its sha256), or None."""
    if not re.fullmatch(r"[0-9a-f]{64}", report_sha256) or approach not in APPROACHES:
        raise ValueError(f"not a report hash and approach: {report_sha256!r}, {approach!r}")
    return _latest_run(tracking, f"tags.kind = 'evaluation' and tags.approach = '{approach}' and "
                                 f"tags.report_sha256 = '{report_sha256}'")


def _latest_run(tracking: TrackingParams, query: str):
    """The latest finished run of the experiment matching `query`, or None (no such run or experiment)."""
    from mlflow.tracking import MlflowClient

    with bounded_requests(tracking):
        check_server(tracking)
        client = MlflowClient(tracking_uri=tracking.resolved_uri())
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            return None
        runs = client.search_runs([experiment.experiment_id], f"{query} and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def log_dir(path: Path, artifact_path: str) -> None:
    """Copy a directory (an adapter) into the active run's artifacts, with MLflow's request limits (not the run's
    bounded ones: tens of MB to S3 over a slow link may rightly take longer)."""
    import mlflow

    with unbounded_requests():
        mlflow.log_artifacts(str(path), artifact_path=artifact_path)


def log_file(path: Path, artifact_path: str | None) -> None:
    """Copy one file (a report, a chart) into the active run's artifacts (None: at the top level, where MLflow's
    Compare page finds the charts it shows side by side), with MLflow's request limits like log_dir."""
    import mlflow

    with unbounded_requests():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


class StepMetrics(TrainerCallback):
    """Sends the Trainer's per-step loss, learning rate and gradient norm to the active MLflow run."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:  # one run, logged by the main process only
            log_metrics({_METRIC_NAMES[k]: v for k, v in logs.items() if k in _METRIC_NAMES}, step=state.global_step)
