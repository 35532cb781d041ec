"""The training core the stage trainer and the VAE trainer share: Ray Train's worker group (its
ranks and resources, the collective timeout, failures survived, checkpoints kept in storage), the
seed of every random stream, and the per-step hooks that tests use to inject faults (the training
loops only call them; they know no fault)."""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from videomar.artifacts import storage
from videomar.model.rng import SEED_STRIDE
from videomar.platform import console
from videomar.platform.specs.train import TrainResources
from videomar.ray_env import gpus_per_worker

# The longest a rank waits in all_reduce/barrier for the others: a rank that dies leaves the
# others blocked in a collective, and torch's default 30 minutes would hold the worker group (and
# the retry) that long.
COLLECTIVE_TIMEOUT_S = 120

# Called by every rank after each optimizer step as hook(rank, step, resumed); must pickle.
StepHook = Callable[[int, int, bool], None]


def stream_seed(seed: int, rank: int, index: int = 0, world: int = 1) -> int:
    """The seed of stream ``index`` of ``rank`` (of ``world`` ranks) in a run seeded ``seed``."""
    return seed + SEED_STRIDE * (rank + world * index)


def after_step(hooks: Sequence[StepHook], rank: int, step: int, resumed: bool) -> None:
    for hook in hooks:
        hook(rank, step, resumed)


@dataclass(frozen=True)
class RunPlace:
    """Where and how Ray Train keeps a run: ``<storage>/<name>`` holds its checkpoints."""

    name: str
    storage: str  # absolute local path or s3:// URI
    keep: int = 1  # checkpoints kept
    max_failures: int = 0  # worker-group restarts survived (-1: unlimited)
    s3_workers: bool = False  # the workers read or write S3 (they get this process's S3 settings)


def fit(loop: Callable[[dict], None], config: dict[str, Any], resources: TrainResources, place: RunPlace,
        title: str, steps: int):
    """Run ``loop(config)`` on ``resources.workers`` Ray Train ranks (DDP/DeepSpeed process group:
    NCCL on GPUs, gloo on CPUs); returns Ray Train's Result. The console shows a row ``title``
    counting ``steps``, fed by rank 0 through ``config["progress"]`` (a console Reporter, or None)."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    gpus = gpus_per_worker(resources.gpus_per_worker)
    per_worker = {"CPU": resources.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
    with console.phase(title, total=steps, unit="step") as row, console.watched(row) as progress:
        trainer = TorchTrainer(
            loop,
            train_loop_config={**config, "progress": progress},
            scaling_config=ScalingConfig(num_workers=resources.workers, use_gpu=gpus > 0,
                                         resources_per_worker=per_worker, placement_strategy=resources.placement),
            run_config=run_config(place),
            torch_config=TorchConfig(timeout_s=COLLECTIVE_TIMEOUT_S),
        )
        with ctrl_c_raises(trainer):
            return trainer.fit()


@contextlib.contextmanager
def ctrl_c_raises(trainer):
    """Ctrl-C during ``trainer.fit()`` raises KeyboardInterrupt, as everywhere else in videomar.
    Ray Train's fit installs its own SIGINT handler and never restores it: the handler blocks on an
    abort call to the controller (over a minute on a busy machine, while the worker group starts),
    then fit raises a training error (exit 1, not 130), and every later Ctrl-C in the process goes
    to a controller that is gone. Without it, the interrupt ends this driver, and with it the
    controller and workers it owns (videomar's in-process Ray is shut down by the console)."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main else None
    trainer._register_sigint_handler = lambda controller: None  # Ray 2.60's hook (private)
    try:
        yield
    finally:
        if main and before is not None:
            signal.signal(signal.SIGINT, before)


def run_config(place: RunPlace):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    fs, path = storage.filesystem(place.storage)
    env = storage.s3_env() if place.s3_workers else {}
    return RunConfig(
        name=place.name,
        storage_path=path,
        storage_filesystem=fs if storage.is_s3(place.storage) else None,
        failure_config=FailureConfig(max_failures=place.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=place.keep),
        worker_runtime_env={"env_vars": env} if env else None,
    )
