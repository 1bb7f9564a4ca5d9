"""MLflow helpers: one run per training stage, params flattened, per-step metrics from the Trainer, and the way
back from an adapter to its run (the run's `adapter_sha256` tag).

The embedded default store is a SQLite file (`sqlite:///mlflow.db`), which the MLflow UI opens with
`mlflow ui --backend-store-uri sqlite:///mlflow.db` (bound to 127.0.0.1 by default).
"""

from __future__ import annotations

import re
from pathlib import Path

from transformers import TrainerCallback

from surgvqa.names import APPROACHES
from surgvqa.params.tracking import TrackingParams

# The Trainer's log keys, renamed so every approach's runs share metric names in the MLflow UI.
_METRIC_NAMES = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}


def start_run(tracking: TrackingParams, run_name: str, tags: dict[str, str], resume_run_id: str | None = None):
    """Start (or, after an interruption, resume) the MLflow run of one training stage."""
    import mlflow

    mlflow.set_tracking_uri(tracking.resolved_uri())
    mlflow.set_experiment(tracking.experiment)
    if resume_run_id:
        return mlflow.start_run(run_id=resume_run_id)
    return mlflow.start_run(run_name=run_name, tags=tags)


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
    from mlflow.tracking import MlflowClient

    # These go into a filter string: only the shapes lineage records can hold.
    if not re.fullmatch(r"[0-9a-f]{64}", adapter_sha256) or lineage["approach"] not in APPROACHES:
        raise ValueError(f"not an adapter lineage: sha256 {adapter_sha256!r}, approach {lineage['approach']!r}")
    client = MlflowClient(tracking_uri=tracking.resolved_uri())
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return None
    stage = str(lineage["stage"] or "all")
    query = (f"tags.adapter_sha256 = '{adapter_sha256}' and tags.approach = '{lineage['approach']}' and "
             f"tags.stage = '{stage}' and attributes.status = 'FINISHED'")
    runs = client.search_runs([experiment.experiment_id], query, order_by=["attributes.start_time DESC"],
                              max_results=1)
    return runs[0].info.run_id if runs else None


def log_dir(path: Path, artifact_path: str) -> None:
    """Copy a directory (an adapter) into the active run's artifacts."""
    import mlflow

    mlflow.log_artifacts(str(path), artifact_path=artifact_path)


def log_file(path: Path, artifact_path: str) -> None:
    """Copy one file (a report, a chart) into the active run's artifacts."""
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=artifact_path)


class StepMetrics(TrainerCallback):
    """Sends the Trainer's per-step loss, learning rate and gradient norm to the active MLflow run."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            log_metrics({_METRIC_NAMES[k]: v for k, v in logs.items() if k in _METRIC_NAMES}, step=state.global_step)
