"""The device each process of a stage uses: chosen from the environment, and under a launcher the GPU of the
process's local rank, whether params say `auto` or `cuda`."""

import pytest
import torch

from surgvqa.device import pick_device
from surgvqa.errors import SurgvqaError


def _launched(monkeypatch, local_rank: int) -> None:
    """This process as the one of local rank `local_rank` of two that torchrun started."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))


def test_started_plainly_the_device_is_the_one_asked_for(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto") == torch.device(expected)


def test_under_a_launcher_cuda_means_the_gpu_of_the_local_rank(monkeypatch):
    _launched(monkeypatch, 1)
    assert pick_device("cuda") == torch.device("cuda", 1)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("cpu") == torch.device("cpu")  # the CPU has no ranks to spread over


def test_under_a_launcher_another_ranks_gpu_is_refused_with_the_fix(monkeypatch):
    _launched(monkeypatch, 1)
    with pytest.raises(SurgvqaError, match=r"uses cuda:1: set model.device to cuda \(or auto\)"):
        pick_device("cuda:0")
