"""Training pieces that need no cluster: the spec schema, lr arithmetic, DeepSpeed config,
schedule, EMA, the export format, MLflow param redaction, step hooks and seeds."""

from __future__ import annotations

import glob
import json
import math
import signal
from pathlib import Path

import pytest
import torch

from videomar.errors import ConfigError
from videomar.errors import SpecError
from videomar.platform.jobs import load_spec, parse_spec
from videomar.artifacts import export
from videomar.platform.training.deepspeed_config import build_ds_config, resolve_precision
from videomar.platform.training.ema import EMA
from tests.support.faults import ExitAfter
from videomar.platform.training.core import SEED_STRIDE, after_step, ctrl_c_raises, stream_seed
from videomar.platform.training.schedule import lr_factor
from videomar.platform.tracking import REDACTED, flatten, redact

ROOT = Path(__file__).resolve().parents[2]


def train_dict(**changes) -> dict:
    base = {
        "kind": "train",
        "name": "unit",
        "model": {"preset": "tiny"},
        "data": {"manifest": "latents/manifest.json", "bucket": {"frames": 5, "height": 32, "width": 32}},
        "optim": {"batch_size": 4, "grad_accum": 2},
        "schedule": {"steps": 10, "warmup_steps": 2},
        "resources": {"workers": 2},
    }
    for key, value in changes.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    return base


def test_bad_specs_name_the_field():
    with pytest.raises(SpecError, match=r"optim\.lerning_rate: unknown key"):
        parse_spec(train_dict(optim={"lerning_rate": 1.0}))
    with pytest.raises(SpecError, match=r"optim\.base_lr: Input should be greater than 0"):
        parse_spec(train_dict(optim={"base_lr": -1e-4}))
    with pytest.raises(SpecError, match=r"deepspeed\.zero_stage"):
        parse_spec(train_dict(deepspeed={"zero_stage": 4}))
    with pytest.raises(SpecError, match=r"warmup_steps=20 exceeds schedule\.steps=10"):
        parse_spec(train_dict(schedule={"steps": 10, "warmup_steps": 20}))
    with pytest.raises(SpecError, match=r"model\.heads=5 does not divide"):
        parse_spec(train_dict(model={"preset": "tiny", "overrides": {"heads": 5}}))
    with pytest.raises(SpecError, match=r"init_from\.carry"):
        parse_spec(train_dict(init_from={"export": "x", "carry": []}))
    with pytest.raises(SpecError, match=r"name: 'a/b' must be a plain name"):
        parse_spec(train_dict(name="a/b"))


def test_every_job_spec_in_the_repository_validates():
    paths = sorted(glob.glob(str(ROOT / "jobs/quickstart/stage*.yaml")) + glob.glob(str(ROOT / "jobs/paper/stage*.yaml")))
    assert len(paths) >= 5
    specs = [load_spec(p) for p in paths]
    assert all(s.kind == "train" for s in specs)
    paper = [s for s in specs if "/paper/" in s.file]
    assert {s.model.preset for s in paper} == {"large"}
    frames = [s.data.bucket.frames for s in paper]
    heights = [s.data.bucket.height for s in paper]
    # short-to-long, then low-to-high resolution; every later stage starts from an export
    assert frames == sorted(frames) and heights == sorted(heights) and heights[-1] > heights[0]
    assert all(s.init_from is not None for s in paper[1:])


def test_lr_scales_with_global_batch_and_deepspeed_config_follows_the_spec():
    spec = parse_spec(train_dict(optim={"base_lr": 1e-4, "grad_clip": 2.0}, deepspeed={"zero_stage": 3}))
    assert spec.global_batch == 4 * 2 * 2
    assert math.isclose(spec.lr, 1e-4 * 16 / 256)
    ds = build_ds_config(spec, "fp32")
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["train_batch_size"] == 16 and ds["gradient_accumulation_steps"] == 2
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_clipping"] == 2.0
    assert ds["bf16"]["enabled"] is False
    assert build_ds_config(spec, "bf16")["bf16"]["enabled"] is True
    # DeepSpeed disables an outer autocast in its forward unless its torch_autocast section is on
    assert build_ds_config(spec, "bf16")["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert ds["torch_autocast"]["enabled"] is False
    assert resolve_precision("auto", cuda=True) == "bf16" and resolve_precision("auto", cuda=False) == "fp32"
    with pytest.raises(ValueError, match="bf16 needs GPU workers"):
        resolve_precision("bf16", cuda=False)
    assert parse_spec(train_dict()).deepspeed.zero_stage == 2


def test_schedule_warms_up_then_holds_or_decays():
    assert [lr_factor(s, 10, 4, "constant", 0.0) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = [lr_factor(s, 10, 2, "cosine", 0.1) for s in range(11)]
    assert cosine[:2] == [0.5, 1.0]
    assert all(a >= b for a, b in zip(cosine[2:], cosine[3:]))
    assert math.isclose(cosine[-1], 0.1)


def test_ema_is_an_fp32_moving_average_that_round_trips():
    net = torch.nn.Linear(3, 2)
    ema = EMA.from_module(net, rate=0.9)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)
    for name, p in net.named_parameters():
        expected = 0.9 * before[name] + 0.1 * p.detach()
        assert torch.allclose(ema.shadow[name], expected)
        assert ema.shadow[name].dtype == torch.float32
    other = EMA.from_module(torch.nn.Linear(3, 2), rate=0.9)
    other.load_state_dict(ema.state_dict())
    assert all(torch.equal(other.shadow[k], ema.shadow[k]) for k in ema.shadow)
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict({})


def test_export_is_refused_until_complete_and_round_trips(tmp_path):
    from videomar.model.config import model_config
    from videomar.model.vae import CausalVideoVAE, VAEConfig
    from videomar.model.videomar import build_model

    cfg = model_config("tiny")
    model = build_model(cfg)
    vae_dir = tmp_path / "vae"
    CausalVideoVAE(VAEConfig()).export(str(vae_dir))
    uri = str(tmp_path / "export")
    body = {"model": cfg.to_dict(), "latent": {"shape": [16, 2, 8, 8], "scale": 0.5}, "vae_id": "v"}
    export.write_export(uri, model.state_dict(), body, "kind: train\n", str(vae_dir))
    loaded = export.load_export(uri)
    assert not loaded.model.training and loaded.vae is not None
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v.float())
    assert json.loads((tmp_path / "export" / "config.json").read_text())["latent"]["scale"] == 0.5
    assert (tmp_path / "export" / "spec.yaml").read_text() == "kind: train\n"

    # A re-export removes the old marker first: a failure midway leaves an incomplete export.
    with pytest.raises(FileNotFoundError):
        export.write_export(uri, model.state_dict(), body, "", str(tmp_path / "no-vae"))
    with pytest.raises(export.IncompleteExportError, match=f"export {uri} is incomplete: no COMPLETE"):
        export.load_export(uri)
    with pytest.raises(ConfigError, match="init_from.uri: export .* does not exist"):
        export.check_complete(str(tmp_path / "nothing"), field="init_from.uri")


def test_params_are_flattened_and_secrets_redacted():
    params = flatten({
        "storage": "s3://bucket/runs",
        "mlflow": {"tracking_uri": "https://alice:hunter2@mlflow.example.com:5000/x"},
        "env": {"AWS_SECRET_ACCESS_KEY": "abc", "api_token": "t0k"},
        "optim": {"base_lr": 1e-4},
    })
    out = redact(params)
    assert out["storage"] == "s3://bucket/runs" and out["optim.base_lr"] == "0.0001"
    assert out["env.AWS_SECRET_ACCESS_KEY"] == REDACTED and out["env.api_token"] == REDACTED
    assert "hunter2" not in out["mlflow.tracking_uri"] and "alice" not in out["mlflow.tracking_uri"]
    assert out["mlflow.tracking_uri"] == f"https://{REDACTED}@mlflow.example.com:5000/x"


def test_step_hooks_run_in_order_and_the_test_fault_fires_only_on_a_fresh_attempt():
    calls = []
    after_step([lambda *a: calls.append(("a", *a)), lambda *a: calls.append(("b", *a))], 1, 3, False)
    assert calls == [("a", 1, 3, False), ("b", 1, 3, False)]
    fault = ExitAfter(rank=1, step=3)
    fault(0, 3, False)  # other rank: nothing happens
    fault(1, 3, True)  # resumed attempt: nothing happens
    fault(1, 2, False)  # other step: nothing happens
    assert stream_seed(5, rank=1, index=2, world=4) == 5 + SEED_STRIDE * 9

def test_tracking_nests_stage_runs_under_one_curriculum_run_and_finds_them_again(tmp_path):
    from mlflow.tracking import MlflowClient

    from videomar.platform.tracking import (
        StageLogger, close_stage, log_stage_inputs, open_stage, resolve_target)

    target = resolve_target(None, "units", str(tmp_path / "work"))
    assert target.tracking_uri == "sqlite:////tmp/videomar-tests-mlflow.db"  # MLFLOW_TRACKING_URI (conftest)
    target = resolve_target(f"sqlite:///{tmp_path / 'm.db'}", "units", str(tmp_path / "work"))
    assert target.artifact_location == str((tmp_path / "work" / "mlartifacts" / "units").resolve())
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("kind: train\n")
    a = open_stage(target, "curr", "stage-a")
    log_stage_inputs(a, {"optim": {"base_lr": 0.1}, "aws": {"secret_key": "s3cr3t"}}, str(spec_file),
                     str(tmp_path / "latents" / "manifest.json"), "digest-of-the-vae")
    StageLogger(target, a.run_id).log_metrics({"loss": 1.5}, step=1)
    close_stage(a, None, ok=True)
    client = MlflowClient(target.tracking_uri)
    # The UI opens the experiment on its runs; the curriculum's run ends with its latest stage.
    assert client.get_experiment_by_name("units").tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_run(a.parent_id).info.status == "FINISHED"
    b = open_stage(target, "curr", "stage-b")
    assert client.get_run(b.parent_id).info.status == "RUNNING"  # re-opened by the next stage
    close_stage(b, None, ok=False)
    assert client.get_run(b.parent_id).info.status == "FAILED"
    again = open_stage(target, "curr", "stage-a")
    assert a.parent_id == b.parent_id == again.parent_id and again.run_id == a.run_id and again.resumed
    run = client.get_run(a.run_id)
    assert run.data.tags["mlflow.parentRunId"] == a.parent_id
    assert run.data.params == {"optim.base_lr": "0.1", "aws.secret_key": REDACTED}
    assert run.data.metrics == {"loss": 1.5}
    assert run.inputs.dataset_inputs[0].dataset.digest == "digest-of-the-vae"
    assert [f.path for f in client.list_artifacts(a.run_id)] == ["spec.yaml"]
    assert run.info.artifact_uri.startswith(str(tmp_path / "work" / "mlartifacts"))


def test_deepspeed_starts_without_building_its_shared_memory_op(tmp_path, monkeypatch):
    """A build of deepspeed_shm_comm killed half-way leaves a lock in torch_extensions that makes
    every later DeepSpeed start wait forever; training never uses the op, so it is not built."""
    from deepspeed.comm.torch import build_shm_op

    from videomar.platform.training.engine import skip_shm_comm_op

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    skip_shm_comm_op()
    assert build_shm_op() is None
    assert not list(tmp_path.iterdir())


def test_ctrl_c_keeps_raising_keyboardinterrupt_during_and_after_a_fit():
    """Ray Train's fit installs, through this hook, a SIGINT handler that blocks on its controller
    and is never removed; videomar keeps Python's handler (tests/e2e/test_interrupts.py Ctrl-Cs a
    real run)."""
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    assert callable(getattr(DataParallelTrainer, "_register_sigint_handler", None))  # the hook is still there

    class Trainer:
        def _register_sigint_handler(self, controller):
            signal.signal(signal.SIGINT, lambda *_: None)

        def fit(self):
            self._register_sigint_handler(None)
            return signal.getsignal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    trainer = Trainer()
    with ctrl_c_raises(trainer):
        during = trainer.fit()
    assert during is before and signal.getsignal(signal.SIGINT) is before
