"""The domain's names in one leaf module: clinical stage ids, training approaches, evaluation modes, decodings.

Everything else (CLI choices, params types, data expectations, training, inference, evaluation) takes them from
here, so a name cannot drift between two copies. The `Literal` types are what params.yaml is checked against;
the tuples are the same values for iteration.
"""

from __future__ import annotations

from typing import Literal, get_args

StageId = Literal[1, 2, 3]
STAGE_IDS: tuple[int, ...] = get_args(StageId)
# The CXRTrek stage_name of each stage, as the converted data carries it.
STAGE_NAMES = {
    1: "Stage-1: Initial Assessment",
    2: "Stage-2: Findings Identification",
    3: "Stage-3: Clinical Context",
}

# The image-level splits of the CXRTrek data.
Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = get_args(Split)

# How adapters are trained: three specialists, one adapter continued stage by stage, or one on everything.
Approach = Literal["sequential", "curriculum", "baseline"]
APPROACHES: tuple[str, ...] = get_args(Approach)

# How the test split is answered: `context` passes each image's earlier-stage predictions on (CXRTrek's
# inference), `independent` answers every question alone. Every metric name starts with its mode.
EvalMode = Literal["context", "independent"]
EVAL_MODES: tuple[str, ...] = get_args(EvalMode)

# How a closed-set question is decoded: inside a prefix tree of its training answers, by scoring every
# candidate, or freely.
Decoding = Literal["constrained", "score", "free"]
DECODINGS: tuple[str, ...] = get_args(Decoding)
