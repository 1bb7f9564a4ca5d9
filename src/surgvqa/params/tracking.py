"""`tracking`: where MLflow runs go."""

from __future__ import annotations

import os
from dataclasses import dataclass

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

    def resolved_uri(self) -> str:
        """The store runs and models go to: SURGVQA_TRACKING_URI when set (a shared server in CI), else `uri`."""
        return os.environ.get(URI_VARIABLE) or self.uri
