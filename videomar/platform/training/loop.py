"""The per-worker train function that Ray Train runs on every rank.

Each rank starts reading its part of the bucket, builds the model (same seed, so the same initial
weights), loads ``init_from`` weights or resumes from Ray Train's latest checkpoint, wraps it in
DeepSpeed, and trains on its shuffled batches (data.py).
Each optimizer step: ``grad_accum`` micro-batches, a fresh latent sample per micro-batch, the
next-frame loss, clip + AdamW + schedule inside DeepSpeed, then the EMA. Every
``checkpoint.every`` steps and at the end every rank saves its DeepSpeed shard and all call
``ray.train.report``; rank 0 adds EMA and data position, and logs to MLflow.
"""

from __future__ import annotations

import os
import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from videomar.artifacts import checkpoint
from videomar.artifacts.checkpoint import TrainState
from videomar.model.videomar import build_model
from videomar.platform.tracking import StageLogger
from videomar.platform.training.config import StagePlan
from videomar.platform.training.core import after_step, stream_seed
from videomar.platform.training.data import RankStream, draw_latents, rank_data
from videomar.platform.training.ema import EMA, deepspeed_master, gathered, master_weights
from videomar.platform.training.engine import build_engine
from videomar.artifacts.text_shards import attach_text
from videomar.platform.training.samples import StageSampler



@dataclass
class WorkerEnv:
    rank: int
    world: int
    device: torch.device
    node_id: str


@dataclass
class Trainee:
    """What a rank trains: the model, its DeepSpeed engine and lr schedule, and the EMA."""

    model: torch.nn.Module
    engine: Any
    scheduler: Any
    ema: EMA
    grad_norm: float | None = None  # measured by the loop when DeepSpeed does not (ZeRO-0)


def train_func(config: dict[str, Any]) -> None:
    import ray
    import ray.train

    entered = time.time()
    plan: StagePlan = config["plan"]
    env = _worker_env()
    # Held clips start loading now, while the engine builds.
    data = RankStream(rank_data(config["data"], env.rank, env.world), env.rank, plan.spec.seed)
    # init_from's state dicts travel through the object store (a reference in the config).
    init = ray.get(config["init"]) if config.get("init") is not None else None
    trainee = build_trainee(plan, init, env.device)
    state, resumed = TrainState(), False
    latest = ray.train.get_checkpoint()
    if latest is not None:
        with latest.as_directory() as directory:
            state, ema_state = checkpoint.restore(trainee.engine, directory)
        trainee.ema.load_state_dict(ema_state)
        resumed = True
    logger = StageLogger(plan.tracking, config["run_id"]) if env.rank == 0 and config.get("run_id") else None
    # When this attempt's worker started and its engine was ready (wall clock: bench.train splits
    # a stage's start-up with them).
    start = {"startup_worker_at": entered, "startup_engine_at": time.time()}
    # Where a fresh stage starts from, as numbers MLflow keeps: init_from is visible in them.
    # (Every rank computes it: under ZeRO-3 reading the full weights is a collective.)
    if not resumed:
        start |= {"start_weights_checksum": checksum(_full_state(trainee.model)),
                  "start_ema_checksum": checksum(trainee.ema.shadow)}
    progress = config.get("progress") if env.rank == 0 else None
    _train(plan, env, trainee, state, resumed, logger, start, data, config.get("hooks", ()), progress)


def _worker_env() -> WorkerEnv:
    import ray
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    return WorkerEnv(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(),
                     ray.get_runtime_context().get_node_id())


def build_trainee(plan: StagePlan, init: dict | None, device: torch.device) -> Trainee:
    """Same seed on every rank, so every rank starts from the same weights; then init_from."""
    torch.manual_seed(plan.spec.seed)
    model = attach_text(build_model(plan.spec.model.build()), plan.dataset.manifest_uri, plan.dataset.text)
    if init is not None and "weights" in init:
        model.load_state_dict(init["weights"])
    model.to(device)
    ema = EMA.from_module(model, plan.spec.ema_rate)
    if init is not None and "ema" in init:
        ema.load_state_dict(init["ema"])
    engine, scheduler = build_engine(plan.spec, model, plan.lr, plan.precision)
    return Trainee(model, engine, scheduler, ema)


def _train(plan: StagePlan, env: WorkerEnv, t: Trainee, state: TrainState, resumed: bool, logger, start,
           data: RankStream, hooks=(), progress=None) -> None:
    """The steps of one attempt; ``progress`` (rank 0's console Reporter, or None) gets the step
    figures every few seconds and each checkpoint at once."""
    spec = plan.spec
    batches = Waited(data.batches(spec.optim.batch_size, state.epoch, state.batch_in_epoch))
    nodes = _all_nodes(env)
    sampler = _sampler(plan, env) if env.rank == 0 else None
    start_step = state.step  # where this attempt began: the resumed checkpoint's step, or 0
    if progress is not None:
        progress(state.step, spec.schedule.steps, now=True)
    while state.step < spec.schedule.steps:
        started = time.perf_counter()
        lr = t.scheduler.get_last_lr()[0]
        loss = train_step(plan, env, t, batches, state, sampler)
        metrics = {**_step_metrics(plan, env, t, loss, lr, time.perf_counter() - started),
                   "data_wait_s": batches.take_waited()}
        if logger is not None:
            if start:  # this attempt's first step
                start["first_step_at"] = time.time()
            logger.log_metrics({**metrics, **start}, state.step)
            start = {}
        last = state.step == spec.schedule.steps
        if sampler is not None and (last or (spec.samples.every and state.step % spec.samples.every == 0)):
            sampler.sample(t.ema, state.step, logger)
        saved = last or state.step % spec.checkpoint.every == 0
        if saved:
            _report(t, state, env, {**metrics, "step": state.step, "epoch": state.epoch, "nodes": nodes,
                                    "resumed": resumed, "start_step": start_step})
        if progress is not None:
            progress(state.step, spec.schedule.steps, now=saved, **{"loss": metrics["loss"], "lr": metrics["lr"],
                     "samples/s": metrics["samples_per_s"], **({"checkpoint": state.step} if saved else {})})
        after_step(hooks, env.rank, state.step, resumed)


class Waited:
    """An iterator of batches that adds up the time the loop waits for them (stalls show here)."""

    def __init__(self, batches):
        self.batches, self.waited = batches, 0.0

    def __next__(self):
        started = time.perf_counter()
        try:
            return next(self.batches)
        finally:
            self.waited += time.perf_counter() - started

    def take_waited(self) -> float:
        waited, self.waited = self.waited, 0.0
        return waited


def train_step(plan: StagePlan, env: WorkerEnv, t: Trainee, batches, state: TrainState, sampler=None) -> float:
    """One optimizer step as a stage runs it (the micro-batches, DeepSpeed's step, then the EMA);
    returns its loss. bench.gpu times this same function."""
    loss = _optimizer_step(plan, env, t, batches, state, sampler)
    t.ema.update(master_weights(t.model, deepspeed_master(t.engine.optimizer)))  # bf16: fp32 masters
    state.step += 1
    state.samples_seen += plan.spec.global_batch
    return loss


def _optimizer_step(plan: StagePlan, env: WorkerEnv, t: Trainee, batches, state: TrainState, sampler) -> float:
    """grad_accum micro-batches, each with a fresh latent sample; DeepSpeed steps at the boundary.
    Returns the loss averaged over micro-batches and ranks."""
    spec = plan.spec
    accum = spec.optim.grad_accum
    autocast = (torch.autocast(device_type=env.device.type, dtype=torch.bfloat16)
                if plan.precision == "bf16" else nullcontext())
    loss_sum = torch.zeros((), device=env.device)
    for micro in range(accum):
        epoch, index, batch = next(batches)
        gen = torch.Generator(device=env.device).manual_seed(
            stream_seed(spec.seed, env.rank, state.step * accum + micro, env.world))
        latents = draw_latents(batch, plan.dataset.latent_scale, env.device, gen)  # [B, C, T', H', W']
        text = t.model.tokenize(batch.captions).to(env.device)
        with autocast:
            loss = t.engine(latents, text, gen)
        t.engine.backward(loss)
        if micro == accum - 1 and spec.deepspeed.zero_stage == 0:
            # Without ZeRO, DeepSpeed keeps no grad norm; the grads are all-reduced by now.
            grads = [p.grad for p in t.model.parameters() if p.grad is not None]
            t.grad_norm = float(torch.nn.utils.get_total_norm(grads))
        t.engine.step()
        loss_sum += loss.detach().float()
        state.epoch, state.batch_in_epoch = epoch, index + 1
        if sampler is not None:
            sampler.keep_conditions(batch)
    return _mean_over_ranks(loss_sum / accum)


def _step_metrics(plan: StagePlan, env: WorkerEnv, t: Trainee, loss: float, lr: float, step_time: float) -> dict:
    batch = plan.spec.global_batch
    return {
        "loss": loss,
        "lr": lr,
        "grad_norm": _grad_norm(t),
        "samples_per_s": batch / step_time,
        "tokens_per_s": batch * _tokens_per_clip(plan) / step_time,
        "step_time_s": step_time,
        "peak_memory_bytes": _peak_memory(env.device),
        "optimizer_state_bytes": optimizer_state_bytes(t.engine.optimizer),
    }


def _report(t: Trainee, state: TrainState, env: WorkerEnv, metrics: dict) -> None:
    """Every rank saves its part and reports; Ray Train merges the parts in storage."""
    import shutil

    import ray.train

    local = checkpoint.save(t.engine, t.ema.state_dict(), state, env.rank)
    try:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(local),
                         checkpoint_dir_name=f"checkpoint_{state.step:08d}")
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _mean_over_ranks(value: torch.Tensor) -> float:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return float(value)


def _all_nodes(env: WorkerEnv) -> list[str]:
    """The node of every rank, in rank order (shows where Ray placed the workers)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [env.node_id]
    out: list[Any] = [None] * env.world
    dist.all_gather_object(out, env.node_id)
    return [str(n) for n in out]


def _tokens_per_clip(plan: StagePlan) -> int:
    _, t, h, w = plan.dataset.latent_shape
    p = plan.spec.model.build().patch_size
    return t * (h // p) * (w // p)


def _grad_norm(t: Trainee) -> float:
    """The global grad norm of the last optimizer step, before clipping."""
    norm = t.engine.get_global_grad_norm()
    return float(norm) if norm is not None else float(t.grad_norm or 0.0)


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of AdamW state this rank holds (moments and step counters; ZeRO: its partition only)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # ZeRO wraps the torch optimizer
    return int(sum(t.numel() * t.element_size() for st in inner.state.values()
                   for t in st.values() if torch.is_tensor(t)))


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _full_state(model) -> dict[str, torch.Tensor]:
    with gathered(model):
        return {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.named_parameters()}


def checksum(state: dict[str, torch.Tensor]) -> float:
    """A number that changes when any weight changes: equal checksums show equal starting weights."""
    return float(sum((v.detach().double() * (i + 1)).sum() for i, v in enumerate(state[k] for k in sorted(state))))


def _sampler(plan: StagePlan, env: WorkerEnv):
    if plan.spec.samples.count == 0:
        return None
    return StageSampler(plan, env.device, tmp_root=os.environ.get("TMPDIR"))
