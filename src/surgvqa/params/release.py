"""`release`: which approach is released and how the released model answers."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.names import Approach, EvalMode


@dataclass
class ReleaseParams:
    """The released approach (chosen before looking at the test split, never from it) and the mode it answers
    in, which is also the mode the gate measures it in."""

    approach: Approach
    mode: EvalMode  # independent: each question alone; context: an image's earlier-stage answers passed on
