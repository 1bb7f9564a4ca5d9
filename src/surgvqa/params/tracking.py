"""`tracking`: where MLflow runs go."""

from __future__ import annotations

import os
from dataclasses import dataclass

from surgvqa.params.typed import ParamsError

# CI passes a tracking server's address through this variable (its credentials through MLflow's own
# MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / MLFLOW_TRACKING_TOKEN, which MLflow reads itself).
# Not MLFLOW_TRACKING_URI: mlflow.set_tracking_uri() writes that one, so it cannot tell a user's choice from
# an earlier call in the same process.
URI_VARIABLE = "SURGVQA_TRACKING_URI"


@dataclass
class TrackingParams:
    """The MLflow tracking URI (a local SQLite store by default; open it with `mlflow ui`) and experiment."""

    uri: str  # SURGVQA_TRACKING_URI, when set, overrides it (resolved_uri)
    experiment: str
    request_timeout: int  # seconds one HTTP request to a tracking server may take (MLflow's default is 120)
    request_retries: int  # retries of a failed request during a run (MLflow's default, 7, backs off for minutes)

    def __post_init__(self) -> None:
        if self.request_timeout < 1:
            raise ParamsError(f"request_timeout: must be a whole number of seconds >= 1, got {self.request_timeout}")
        if not 0 <= self.request_retries <= 10:
            raise ParamsError(f"request_retries: must be 0 to 10 (MLflow's limit), got {self.request_retries}")

    def resolved_uri(self) -> str:
        """The store runs and models go to: SURGVQA_TRACKING_URI when set (a shared server in CI), else `uri`."""
        return os.environ.get(URI_VARIABLE) or self.uri
