"""The diffusion head's respaced sampling stays sound for a briefly trained, imperfect head: with
the predicted x0 clipped to the data's range, samples stay in that range and near their targets.
MAR's unclipped sampling stays available (x0_clip: null). A v-prediction head needs no clip: its
x0 is well-conditioned at every step, and at the noisiest step it is the condition's mean."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from videomar.errors import ConfigError
from videomar.model.config import LATENT_CLIP, HeadConfig, model_config
from videomar.model.diffloss import DiffusionHead

TOKEN, COND, RANGE = 4, 16, 1.0


def toy_pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditions z [n, COND] and a deterministic target in [-RANGE, RANGE] [n, TOKEN]."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, COND, generator=g)
    proj = torch.linspace(-1, 1, COND * TOKEN).view(COND, TOKEN)  # fixed across calls
    return z, RANGE * torch.tanh(z @ proj)


def train_head(prediction: str) -> DiffusionHead:
    """A small head trained for a few seconds: good enough to learn the target roughly, far from
    the near-perfect head that unclipped respaced epsilon sampling needs."""
    torch.manual_seed(0)
    head = DiffusionHead(TOKEN, COND, HeadConfig(width=64, depth=2, sample_steps=100, prediction=prediction))
    head.net.zero_init()
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(1)
    for step in range(400):
        z, target = toy_pairs(256, seed=100 + step)
        loss = head.loss(target, z, torch.ones(256, dtype=torch.bool), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


@pytest.fixture(scope="module")
def trained_head() -> DiffusionHead:
    return train_head("epsilon")


@pytest.fixture(scope="module")
def trained_v_head() -> DiffusionHead:
    return train_head("v")


def sample_with(head: DiffusionHead, x0_clip: float | None, z: torch.Tensor) -> torch.Tensor:
    head.cfg = dataclasses.replace(head.cfg, x0_clip=x0_clip)
    return head.sample(z, temperature=1.0, generator=torch.Generator().manual_seed(7))


def test_clipped_respaced_samples_stay_in_range_and_near_their_targets(trained_head):
    z, target = toy_pairs(512, seed=9)
    x = sample_with(trained_head, RANGE, z)
    assert x.abs().max() <= RANGE + 1e-6
    assert (x - target).abs().mean() < 0.1


def test_unclipped_sampling_is_available_and_leaves_x0_as_predicted(trained_head):
    z, target = toy_pairs(512, seed=9)
    clipped = sample_with(trained_head, RANGE, z)
    unclipped = sample_with(trained_head, None, z)
    # Same random stream, different rule: the unclipped chain leaves the data's range.
    assert unclipped.abs().max() > RANGE
    assert (unclipped - target).abs().mean() > (clipped - target).abs().mean()


def test_a_v_prediction_head_samples_near_its_targets_unclipped(trained_v_head):
    z, target = toy_pairs(512, seed=9)
    x = sample_with(trained_v_head, None, z)
    assert x.abs().max() < 1.5 * RANGE
    assert (x - target).abs().mean() < 0.1


def test_at_the_noisiest_step_v_predicts_the_conditions_mean_and_epsilon_cannot(trained_head, trained_v_head):
    z, target = toy_pairs(512, seed=9)
    errors = {}
    for name, head in (("epsilon", trained_head), ("v", trained_v_head)):
        diffusion, last = head.sample_diffusion, head.sample_diffusion.steps - 1
        x = torch.randn(512, TOKEN, generator=torch.Generator().manual_seed(3))  # pure noise
        with torch.no_grad():
            out = head.net(x, torch.full((512,), int(diffusion.timestep_map[last])), z)
        x0 = diffusion.predicted_x0(out.chunk(2, dim=-1)[0], x, torch.full((512,), last))
        errors[name] = (x0 - target).abs().mean().item()
    # Epsilon's x0 there is 1/sqrt(alpha_bar) ~ 2e4 times its epsilon error: far off the data.
    assert errors["v"] < 0.15 and errors["epsilon"] > 10 * RANGE


def test_prediction_is_a_validated_head_field():
    assert model_config("tiny").head.prediction == "epsilon"
    assert model_config("tiny", head={"prediction": "v"}).head.prediction == "v"
    with pytest.raises(ConfigError, match="model.head.prediction='x0' is unknown; expected one of epsilon, v"):
        model_config("tiny", head={"prediction": "x0"})


def test_x0_clip_is_a_validated_head_field():
    assert model_config("tiny", head={"x0_clip": 2.5}).head.x0_clip == 2.5
    assert model_config("tiny").frame_clip == LATENT_CLIP and model_config("tiny", latent_clip=3).frame_clip == 3
    with pytest.raises(ConfigError, match="model.latent_clip=0"):
        model_config("tiny", latent_clip=0)
    assert model_config("tiny", head={"x0_clip": None}).head.x0_clip is None
    with pytest.raises(ConfigError, match="model.head.x0_clip"):
        model_config("tiny", head={"x0_clip": 0})
    with pytest.raises(ConfigError, match="model.head.x0_clip"):
        model_config("tiny", head={"x0_clip": "wide"})


def test_a_stage_clips_x0_to_its_datasets_latent_range_unless_told_null(tmp_path):
    from videomar.artifacts.manifest import BucketManifest, DatasetManifest, write_manifest
    from videomar.platform.jobs import parse_spec
    from videomar.platform.training.config import dataset_info, plan_stage

    bucket = BucketManifest(frames=5, height=32, width=32, latent_shape=(4, 2, 4, 4), counts={"train": 8, "val": 2})
    write_manifest(str(tmp_path), DatasetManifest(
        schema_version=1, vae_id="v", latent_scale=0.5, vae_uri=None, buckets=[bucket],
        channel_mean=[0.0, 1.0, -2.0, 0.0], channel_std=[1.0, 1.0, 0.5, 2.0], errors=0))
    spec = {"kind": "train", "name": "clip", "storage": str(tmp_path / "runs"),
            "model": {"preset": "tiny", "overrides": {"latent_channels": 4}},
            "data": {"manifest": str(tmp_path / "manifest.json"), "bucket": {"frames": 5, "height": 32, "width": 32}},
            "optim": {"batch_size": 2}, "schedule": {"steps": 2, "warmup_steps": 0},
            "resources": {"workers": 1}, "samples": {"count": 0}}
    parsed = parse_spec(spec)
    plan = plan_stage(parsed, dataset_info(str(tmp_path / "manifest.json"), parsed))
    # widest channel: |0| + 4 x 2 = 8 unscaled, times the latent scale 0.5
    model = plan.spec.model.build()
    assert (model.head.x0_clip, model.latent_clip, model.frame_clip) == (4.0, 4.0, 4.0)
    spec["model"]["overrides"]["residual"] = True  # its targets are differences: twice the range
    parsed = parse_spec(spec)
    model = plan_stage(parsed, dataset_info(str(tmp_path / "manifest.json"), parsed)).spec.model.build()
    assert (model.head.x0_clip, model.latent_clip) == (8.0, 4.0)
    del spec["model"]["overrides"]["residual"]
    spec["model"]["overrides"]["head"] = {"x0_clip": None}
    parsed = parse_spec(spec)
    plan = plan_stage(parsed, dataset_info(str(tmp_path / "manifest.json"), parsed))
    assert plan.spec.model.build().head.x0_clip is None
