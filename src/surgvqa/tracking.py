"""MLflow helpers: one run per training stage, params flattened, per-step metrics from the Trainer.

The embedded default store is a SQLite file (`sqlite:///mlflow.db`), which the MLflow UI opens with
`mlflow ui --backend-store-uri sqlite:///mlflow.db` (bound to 127.0.0.1 by default).
"""

from __future__ import annotations

import math
from pathlib import Path

from transformers import TrainerCallback

from surgvqa.params import TrackingParams

# The Trainer's log keys, renamed so every approach's runs share metric names in the MLflow UI.
_METRIC_NAMES = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}


def start_run(tracking: TrackingParams, run_name: str, tags: dict[str, str], resume_run_id: str | None = None):
    """Start (or, after an interruption, resume) the MLflow run of one training stage."""
    import mlflow

    mlflow.set_tracking_uri(tracking.uri)
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


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log finite numeric metrics to the active run."""
    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if clean:
        mlflow.log_metrics(clean, step=step)


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
