"""The released model as an MLflow pyfunc: `mlflow.pyfunc.load_model("models:/<name>@champion")` answers.

A small PythonModel around the merged folder (models/merged, logged as the artifact `merged`), not
`mlflow.transformers.log_model`: that one pulls in torchvision unless its requirements are explicit, saves only
the adapter of a PEFT model, and leaves visual question answering out of pyfunc. It answers through
release/candidate.py, the code path the gate measured.

Input: a DataFrame with columns `image` (a path to an image file) and `question`; output: one answer per row.
In context mode the rows about one image pass their earlier stages' answers on, as in evaluation.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc

from surgvqa.errors import SurgvqaError

# What loading the model needs, pinned to the versions it was logged with (no inference: it would import torch
# and scan the environment, and it guesses).
REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "pillow", "numpy", "pandas", "scipy", "tqdm",
                "pyyaml", "mlflow", "huggingface-hub")


def requirements() -> list[str]:
    """pip requirements of the logged model, exactly pinned to public versions: a local build tag such as
    torch's `+cpu` is dropped, so a GPU host installs its own build of the same release."""
    from packaging.version import Version

    return [f"{name}=={Version(version(name)).public}" for name in REQUIREMENTS]


def signature():
    """Two string columns in, one string out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "image"), ColSpec("string", "question")]),
                          outputs=Schema([ColSpec("string", "answer")]))


def image_path(value) -> Path:
    """A request's image: an existing regular file (checked before it is opened)."""
    path = Path(str(value))
    if "\0" in str(value) or not path.is_file():
        raise SurgvqaError(f"image {str(value)[:200]!r} is not an existing image file")
    return path.resolve()


class MergedVQAModel(mlflow.pyfunc.PythonModel):
    """Answers questions about images with the merged candidate, on the device the environment offers
    (SURGVQA_DEVICE overrides `auto`)."""

    def load_context(self, context) -> None:
        from surgvqa.release.candidate import load_candidate

        self.candidate = load_candidate(Path(context.artifacts["merged"]), os.environ.get("SURGVQA_DEVICE", "auto"))

    def predict(self, context, model_input, params=None) -> list[str]:
        from surgvqa.infer.engine import Item
        from surgvqa.release.candidate import answer, stages_of

        missing = {"image", "question"} - set(model_input.columns)
        if missing:
            raise SurgvqaError(f"input lacks the column(s) {sorted(missing)}: pass `image` (a file path) and "
                               "`question`")
        questions = [str(q) for q in model_input["question"]]
        images = [image_path(v) for v in model_input["image"]]
        stages = stages_of(self.candidate, questions)
        items = [Item(str(img), img, q, stages[q]) for img, q in zip(images, questions)]
        return answer(self.candidate, items, desc="pyfunc")
