"""A fault hook for tests: one rank exits hard after N optimizer steps, on the first attempt.

Set ``VIDEOMAR_TRAIN_FAULT=RANK:STEP`` where the stage is started; the trainer hands it to the
workers. "First attempt" means the attempt that did not resume from a checkpoint, so the
restarted workers (which resume from the latest checkpoint) run to the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from videomar.errors import ConfigError

FAULT_ENV = "VIDEOMAR_TRAIN_FAULT"
# The exit status of a faulted rank, distinct from Python's usual 1 so logs show where it came from.
FAULT_EXIT_STATUS = 17
# Ray Train's controller collects reported checkpoints when it polls the workers (every
# RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, default 2 s); a rank dying sooner after a report would lose
# that report, so the hook waits this many poll intervals before it exits.
_POLLS_BEFORE_EXIT = 3
_DEFAULT_POLL_S = 2.0


@dataclass(frozen=True)
class Fault:
    rank: int
    step: int

    def maybe_fire(self, rank: int, step: int, resumed: bool) -> None:
        if not resumed and rank == self.rank and step == self.step:
            poll_s = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", _DEFAULT_POLL_S))
            time.sleep(_POLLS_BEFORE_EXIT * poll_s)
            print(f"videomar fault hook: rank {rank} exits after step {step}", flush=True)
            os._exit(FAULT_EXIT_STATUS)


def fault_from_env() -> Fault | None:
    value = os.environ.get(FAULT_ENV, "").strip()
    if not value:
        return None
    try:
        rank, step = (int(part) for part in value.split(":"))
    except ValueError:
        raise ConfigError(f"{FAULT_ENV}={value!r}: expected RANK:STEP, e.g. 1:3") from None
    if rank < 0 or step < 1:
        raise ConfigError(f"{FAULT_ENV}={value!r}: rank must be >= 0 and step >= 1")
    return Fault(rank, step)
