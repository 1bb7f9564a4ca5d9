"""MLflow model-registry helpers for promotion and rollback: versions found by their merged-model hash, aliases
read the way MLflow 3.17 returns them, and a promotion history MLflow does not keep.

Aliases are read with `get_model_version_by_alias` (`search_model_versions` returns empty aliases on 3.17,
mlflow #9783). MLflow keeps no alias history (mlflow #2169), so every promotion, refusal and rollback is a tag
`history.<nanoseconds>.<pid>` on the registered model holding a JSON event; the MLflow UI shows them under the
registered model's tags.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timezone

from surgvqa.errors import SurgvqaError

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_PREFIX = "history."


def client_for(uri: str):
    """An MlflowClient on the tracking (and registry) URI."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _already_exists(error) -> bool:
    return getattr(error, "error_code", None) == "RESOURCE_ALREADY_EXISTS"


def ensure_registered_model(client, name: str) -> None:
    """Create the registered model unless it exists (a concurrent promote may create it first: that is fine)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        client.create_registered_model(name, description="surgvqa: merged Qwen2-VL candidates for Kvasir-VQA; "
                                       "`surgvqa promote` moves champion only past the gate")
    except MlflowException as e:
        if not _already_exists(e):
            raise


def experiment_id(client, name: str) -> str:
    """The id of the experiment `name`, created unless it exists (a concurrent promote may create it first)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as e:
        if not _already_exists(e):
            raise
        return client.get_experiment_by_name(name).experiment_id


def version_of_candidate(client, name: str, merged_sha256: str):
    """The registered version of this merged model (by its hash tag), or None."""
    if not re.fullmatch(r"[0-9a-f]{64}", merged_sha256):
        raise ValueError(f"not a merged-model hash: {merged_sha256!r}")
    found = client.search_model_versions(f"name = '{name}' and tags.merged_sha256 = '{merged_sha256}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def alias_version(client, name: str, alias: str):
    """The version an alias points at, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def record_event(client, name: str, event: dict) -> dict:
    """Append a promotion-history event (a tag on the registered model); returns it with its time."""
    event = {**event, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    client.set_registered_model_tag(name, f"{HISTORY_PREFIX}{time.time_ns()}.{os.getpid()}",
                                    json.dumps(event, sort_keys=True))
    return event


def history(client, name: str) -> list[dict]:
    """Every recorded event, oldest first."""
    tags = client.get_registered_model(name).tags
    keys = sorted((k for k in tags if k.startswith(HISTORY_PREFIX)),
                  key=lambda k: tuple(int(p) for p in k[len(HISTORY_PREFIX):].split(".")))
    return [json.loads(tags[k]) for k in keys]


def move_champion(client, name: str, version: str, expected: str | None) -> tuple[bool, str | None]:
    """Point champion at `version` if it still points at `expected` (the version the caller decided against);
    (True, version) when moved, else (False, where it points now) and nothing changed. A version whose gate did
    not pass is refused, whoever asks.

    A check then an act, not atomic: MLflow has no compare-and-set on aliases (setting one is an upsert), so a
    concurrent write landing between the re-read and the write (two requests) still wins or loses by order. The
    window is the time between those two requests, milliseconds, not the seconds a comparison takes; callers
    re-read with `checked_champion` after."""
    tags = client.get_model_version(name, version).tags
    if tags.get("gate.passed") != "true":  # written with the version (one transaction); surgvqa never rewrites it
        raise SurgvqaError(f"{name} version {version} did not pass its gate (gate.passed = "
                           f"{tags.get('gate.passed')!r}): champion never points at such a version")
    current = alias_version(client, name, CHAMPION)
    current = str(current.version) if current is not None else None
    if current != expected:
        return False, current
    client.set_registered_model_alias(name, CHAMPION, version)
    return True, version


def checked_champion(client, name: str):
    """The champion version (or None), refused when its gate did not pass: only a change made outside surgvqa
    (the UI, another client) can cause that, and it must not be served silently."""
    champion = alias_version(client, name, CHAMPION)
    if champion is not None and champion.tags.get("gate.passed") != "true":
        raise SurgvqaError(f"{name}@{CHAMPION} points at v{champion.version}, whose gate.passed is "
                           f"{champion.tags.get('gate.passed')!r}: it was moved outside surgvqa; choose a passing "
                           "version with `surgvqa rollback --to VERSION`")
    return champion


def tag_value(text: str, limit: int = 4000) -> str:
    """A tag value within MLflow's length limit."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tag_key(text: str) -> str:
    """A tag key MLflow accepts (alphanumerics, `_ - . / :` and spaces): `strict accuracy, stage 1` loses its comma."""
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "", text)
