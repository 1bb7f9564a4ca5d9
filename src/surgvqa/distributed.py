"""One stage in several processes (`torchrun`, `accelerate launch`): which process is the main one, how the others
follow its decisions, and how their shares of the work come back together.

accelerate's PartialState reads the launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and joins
the process group (gloo on CPU, NCCL on CUDA); the Trainer uses the same state, so training and this module agree on
who is who. Started plainly (`python -m ...`), a stage is one process and every function here returns at once
without importing accelerate or opening a process group.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """How many processes the launcher started for this stage (1 when started plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True when this process is one of several started by a launcher."""
    return world_size() > 1


def _state():
    from accelerate import PartialState

    # accelerate joins CPU processes into one group (gloo) only when told they run on the CPU; a machine without
    # CUDA has no other choice. The Trainer asks for the same (TrainingArguments.use_cpu) and shares this state.
    return PartialState(cpu=group_device_type() == "cpu")


def group_device_type() -> str:
    """The device type the processes' group was made for: cuda when the machine has it, else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def process_index() -> int:
    """This process's rank (0 for the main process, and when started plainly)."""
    return _state().process_index if launched() else 0


def local_index() -> int:
    """This process's rank on its own machine: the GPU it uses (0 when started plainly)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True in the process that writes outputs and logs to MLflow (the only one when started plainly)."""
    return process_index() == 0


def from_main(value):
    """The main process's `value`, in every process: for decisions only one process may take (which checkpoint
    to resume, after it cleared the others), so that no two processes act on different answers."""
    if not launched():
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def share(items: list) -> list:
    """This process's share of `items`: every world_size-th one, starting at its rank (shares differ in size by
    at most one; the whole list when started plainly)."""
    return items[process_index()::world_size()] if launched() else list(items)


def gather(values: list) -> list:
    """Every process's `values` list, concatenated in rank order, in every process."""
    if not launched():
        return list(values)
    from accelerate.utils import gather_object

    return gather_object(list(values))


def wait_for_everyone() -> None:
    """Block until every process reaches this point (no-op when started plainly)."""
    if launched():
        _state().wait_for_everyone()
