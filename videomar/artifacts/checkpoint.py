"""What a training checkpoint holds, beyond DeepSpeed's per-rank shards.

A Ray Train checkpoint directory of a stage:

    deepspeed/<TAG>/...     DeepSpeed's files: every rank writes its own ZeRO shard
    deepspeed/latest        DeepSpeed's pointer to TAG
    ema.safetensors         the EMA weights (rank 0; every rank holds the same copy)
    train_state.json        step, data position and counters (rank 0)

Every rank writes into its own local directory and reports it; Ray Train merges them into one
directory in storage, so rank 0's files and every rank's shard end up side by side.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from videomar.artifacts import storage
from videomar.errors import ConfigError

# The training engine keeps VideoMAR under this attribute of its loss module, so DeepSpeed's state
# dict keys carry the prefix; readers of a checkpoint strip it.
MODEL_ATTR = "model"
MODEL_PREFIX = f"{MODEL_ATTR}."
DS_DIR = "deepspeed"
DS_TAG = "state"
EMA_FILE = "ema.safetensors"
STATE_FILE = "train_state.json"
# torch reads it at every torch.load: set, it makes even DeepSpeed's weights_only=False loads safe.
FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


@dataclass
class TrainState:
    """Progress of a stage: optimizer steps done and where the data stream stands."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this rank's shard consumed in ``epoch``
    samples_seen: int = 0  # clips seen by all ranks together

    @classmethod
    def from_json(cls, text: str) -> "TrainState":
        return cls(**json.loads(text))


def save(engine, ema_state: dict[str, torch.Tensor], state: TrainState, rank: int) -> str:
    """Write this rank's part of a checkpoint into a fresh local directory and return it."""
    out = tempfile.mkdtemp(prefix=f"videomar-ckpt-{state.step:08d}-r{rank}-")
    # Every rank must call this: DeepSpeed synchronises inside and each rank writes its shard.
    engine.save_checkpoint(str(Path(out, DS_DIR)), tag=DS_TAG)
    if rank == 0:
        save_file({k: v.contiguous() for k, v in ema_state.items()}, str(Path(out, EMA_FILE)))
        Path(out, STATE_FILE).write_text(json.dumps(asdict(state)))
    return out


def restore(engine, directory: str) -> tuple[TrainState, dict[str, torch.Tensor]]:
    """Load engine (weights, optimizer, lr schedule) from a checkpoint; return progress and EMA."""
    with weights_only_loads():
        path, _ = engine.load_checkpoint(str(Path(directory, DS_DIR)), tag=DS_TAG,
                                         load_optimizer_states=True, load_lr_scheduler_states=True)
    if path is None:
        raise FileNotFoundError(f"{directory}: no DeepSpeed state under {DS_DIR}/{DS_TAG}")
    state = TrainState.from_json(Path(directory, STATE_FILE).read_text())
    return state, load_file(str(Path(directory, EMA_FILE)))


def is_checkpoint(uri: str) -> bool:
    return storage.exists(storage.join(uri, STATE_FILE))


def checkpoint_weights(uri: str, carry: list[str], field: str = "init_from.checkpoint") -> dict[str, dict[str, torch.Tensor]]:
    """Weights and/or EMA of a checkpoint directory (local or s3://), as CPU fp32 state dicts."""
    if not is_checkpoint(uri):
        raise ConfigError(f"{field}: {uri} is not a checkpoint directory (no {STATE_FILE})")
    out: dict[str, dict[str, torch.Tensor]] = {}
    with tempfile.TemporaryDirectory(prefix="videomar-init-") as local:
        if storage.is_s3(uri):
            storage.copy_tree(uri, local)
            root = local
        else:
            root = uri
        if "ema" in carry:
            out["ema"] = load_file(str(Path(root, EMA_FILE)))
        if "weights" in carry:
            try:
                out["weights"] = _consolidated_weights(Path(root, DS_DIR))
            except pickle.UnpicklingError as err:
                raise ConfigError(f"{field}: {uri} holds more than tensors and plain data; refused unloaded "
                                  f"({str(err).splitlines()[-1][:200]})") from None
    return out


def _consolidated_weights(ds_dir: Path) -> dict[str, torch.Tensor]:
    """Full fp32 weights from DeepSpeed's files, whatever the ZeRO stage that wrote them."""
    zero_files = list(Path(ds_dir, DS_TAG).glob("*optim_states.pt"))
    with weights_only_loads():
        if zero_files:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            state = get_fp32_state_dict_from_zero_checkpoint(str(ds_dir), tag=DS_TAG)
        else:
            state = torch.load(Path(ds_dir, DS_TAG, "mp_rank_00_model_states.pt"), map_location="cpu",
                               weights_only=True)["module"]
    return {k.removeprefix(MODEL_PREFIX): v.detach().float() for k, v in state.items()}


def deepspeed_globals() -> list:
    """The classes DeepSpeed pickles into its checkpoint files: plain state, no code on load."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextmanager
def weights_only_loads():
    """Every torch.load inside, DeepSpeed's own included (they pass weights_only=False), unpickles
    tensors, plain containers and DeepSpeed's state classes only: a checkpoint file naming any
    other global is refused (pickle.UnpicklingError) before any of its code could run."""
    previous = os.environ.get(FORCE_WEIGHTS_ONLY)
    os.environ[FORCE_WEIGHTS_ONLY] = "1"
    try:
        with torch.serialization.safe_globals(deepspeed_globals()):
            yield
    finally:
        if previous is None:
            os.environ.pop(FORCE_WEIGHTS_ONLY, None)
        else:
            os.environ[FORCE_WEIGHTS_ONLY] = previous
