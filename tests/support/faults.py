"""A fault for tests, injected as a training step hook: one rank exits hard after N optimizer
steps, on the first attempt only ("first" is the attempt that did not resume from a checkpoint,
so the restarted workers, which resume from the latest checkpoint, run to the end)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import cloudpickle

# The exit status of a faulted rank, distinct from Python's usual 1 so logs show where it came from.
FAULT_EXIT_STATUS = 17
# Ray Train's controller collects reported checkpoints when it polls the workers (every
# RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, default 2 s); a rank dying sooner after a report would lose
# that report, so the hook waits this many poll intervals before it exits.
_POLLS_BEFORE_EXIT = 3
_DEFAULT_POLL_S = 2.0


@dataclass(frozen=True)
class ExitAfter:
    """A step hook (videomar.platform.training.core.StepHook): rank ``rank`` exits after ``step``."""

    rank: int
    step: int

    def __call__(self, rank: int, step: int, resumed: bool) -> None:
        if not resumed and rank == self.rank and step == self.step:
            poll_s = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", _DEFAULT_POLL_S))
            time.sleep(_POLLS_BEFORE_EXIT * poll_s)
            print(f"videomar test fault: rank {rank} exits after step {step}", flush=True)
            os._exit(FAULT_EXIT_STATUS)


# Ray workers may not have the tests package on their path: ship this module with the hook.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
