"""`tracking`: where MLflow runs go."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrackingParams:
    """The MLflow tracking URI (a local SQLite store by default; open it with `mlflow ui`) and experiment."""

    uri: str
    experiment: str
