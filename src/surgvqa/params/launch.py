"""`launch`: how dvc.yaml starts the stages that can run as several processes (training and evaluation)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from surgvqa.params.typed import ParamsError

# What may start those stages: `<command> -m surgvqa.<package>.<stage> ...` must mean "run that module" for each.
LAUNCHERS = {("python",), ("python3",), ("torchrun",), ("accelerate", "launch")}


@dataclass
class LaunchParams:
    """The command before `-m surgvqa...` in the training and evaluation stages: `python` (one process) or a launcher
    of several (`torchrun --standalone --nproc_per_node 4`, `accelerate launch --multi_gpu --num_processes 4`)."""

    # DVC writes the resolved command into dvc.lock: changing it reruns those stages, as it should, since the
    # process count changes each optimizer step's batch (processes x train.batch_size x train.grad_accum).
    command: str

    def __post_init__(self) -> None:
        words = shlex.split(self.command)
        if not any(tuple(words[: len(launcher)]) == launcher for launcher in LAUNCHERS):
            raise ParamsError(f"command: must start with one of {sorted(' '.join(k) for k in LAUNCHERS)} (a command "
                              f"that runs `-m MODULE`), got {self.command!r}")
        if "-m" in words or "--module" in words:
            raise ParamsError(f"command: leave out -m: dvc.yaml adds `-m surgvqa.<stage module>`, got {self.command!r}")
