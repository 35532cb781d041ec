"""The KV-cached autoregressive sampler: equivalence with recomputation, call counts, cache
growth, extrapolation, argument checks, determinism and video output."""

from __future__ import annotations

import decord
import numpy as np
import pytest
import torch

from videomar.errors import ConfigError
from videomar.model.cache import KVCache
from videomar.model.config import model_config
from videomar.artifacts.media import to_uint8_frames, write_mp4, write_outputs
from videomar.model.sampler import generate
from videomar.model.videomar import VideoMAR

C, H, W = 4, 4, 4


@pytest.fixture(scope="module")
def model() -> VideoMAR:
    torch.manual_seed(0)
    m = VideoMAR(model_config("tiny", latent_channels=C, head={"sample_steps": 10})).eval()
    with torch.no_grad():  # random weights everywhere, so the head's samples depend on the backbone
        for p in m.parameters():
            p.normal_(0, 0.1)
    return m


def with_config(model, **changes) -> VideoMAR:
    """The model's weights under a changed config; new layers (the hint's) get random weights."""
    import dataclasses

    torch.manual_seed(5)
    other = VideoMAR(dataclasses.replace(model.config, **changes)).eval()
    other.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        for p in (other.hint_proj.parameters() if other.hint_proj is not None else []):
            p.normal_(0, 0.1)
    return other


def run(model, mode, frames=4, seed=3, cond=None, **kw):
    cond = torch.randn(2, C, 1, H, W, generator=torch.Generator().manual_seed(0)) if cond is None else cond
    text = model.tokenize(["a handwritten 3 moving up", "a 5"][: cond.shape[0]])
    kw.setdefault("steps", 4)
    return generate(model, cond, text, frames=frames, cfg=kw.pop("cfg", 3.0), mode=mode,
                    generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("hinted", [False, True])
def test_kv_cache_and_recompute_give_the_same_video(model, hinted):
    if hinted:  # masked tokens see the last frames' neighbourhoods: the same in both modes
        model = with_config(model, residual=True, residual_momentum=0.5, motion_hint=3)
    cached = run(model, "kv_cache")
    reference = run(model, "recompute")
    assert cached.shape == (2, C, 5, H, W)
    assert (cached - reference).abs().max().item() <= 1e-4
    assert cached[:, :, 1:].abs().max() > 0  # a real video, not zeros
    assert not torch.allclose(cached[0], cached[1])


@pytest.mark.parametrize("mode", ["kv_cache", "recompute"])
def test_a_hinted_frame_is_seen_in_sampling_as_in_training(model, monkeypatch, mode):
    """The backbone's output for a fully masked frame is the same in the sampler as in the
    training objective: both give its tokens the same hint of the two frames before it."""
    hinted = with_config(model, residual=True, residual_momentum=0.5, motion_hint=3, mask_ratio_min=1.0)
    latents = torch.randn(2, C, 3, H, W, generator=torch.Generator().manual_seed(4))
    text = hinted.tokenize(["a handwritten 3 moving up", "a 5"])
    with torch.no_grad():
        trained, _, mask = hinted._target_outputs(latents, text, target_frames=torch.tensor([2, 2]))
    assert mask.all()  # mask_ratio_min 1: every token of frame 2 masked
    seen = []
    monkeypatch.setattr(hinted.head, "sample", lambda z, *a: seen.append(z) or torch.zeros(z.shape[0], C))
    generate(hinted, latents[:, :, :2], text, frames=1, steps=1, cfg=1.0, mode=mode)
    torch.testing.assert_close(seen[0].view_as(trained), trained, atol=1e-5, rtol=1e-5)
    blind = with_config(model, residual=True, residual_momentum=0.5, mask_ratio_min=1.0)
    with torch.no_grad():
        unhinted, _, _ = blind._target_outputs(latents, text, target_frames=torch.tensor([2, 2]))
    assert not torch.allclose(unhinted, trained, atol=1e-3)  # the hint does change what it sees


def test_same_seed_same_video_other_seed_other_video(model):
    assert torch.equal(run(model, "kv_cache", seed=5), run(model, "kv_cache", seed=5))
    assert not torch.equal(run(model, "kv_cache", seed=5), run(model, "kv_cache", seed=6))


def test_backbone_calls_and_a_cache_allocated_once(model, monkeypatch):
    calls, lengths, sizes = [], [], []
    original = model.backbone

    def counting(h, pos, text, cache=None, write=False):
        calls.append(("write" if write else "step", h.shape[1]))
        out = original(h, pos, text, cache, write)
        if write:
            lengths.append(cache.length)
            sizes.append(cache.nbytes())
        return out

    monkeypatch.setattr(model, "backbone", counting)
    frames, steps, n = 4, 4, H * W
    run(model, "kv_cache", frames=frames, steps=steps)
    step_calls = [c for c in calls if c[0] == "step"]
    writes = [c for c in calls if c[0] == "write"]
    assert len(step_calls) == frames * steps
    assert all(tokens == n for _, tokens in step_calls)  # each step runs only the current frame
    assert len(writes) == 1 + frames  # prefill + one append per generated frame
    assert lengths == [n * (i + 1) for i in range(frames + 1)]
    # The buffer for the whole video is allocated at the first write, never reallocated per frame.
    assert len(set(sizes)) == 1 and sizes[0] > 0


def test_token_by_token_decides_one_token_per_step(model, monkeypatch):
    steps = []
    original = model.backbone
    monkeypatch.setattr(model, "backbone", lambda h, pos, text, cache=None, write=False: (
        steps.append(write) or original(h, pos, text, cache, write)))
    out = run(model, "token_by_token", frames=2)
    assert steps.count(False) == 2 * H * W
    assert torch.isfinite(out).all()


def test_extrapolates_to_longer_clips_and_larger_frames(model):
    # The model is used at 1 + 4 frames of 4x4 elsewhere; here twice the frames and twice H and W.
    cond = torch.randn(1, C, 1, 2 * H, 2 * W)
    out = run(model, "kv_cache", frames=9, cond=cond, cfg=1.5)
    assert out.shape == (1, C, 10, 2 * H, 2 * W)
    assert torch.isfinite(out).all()
    assert out[:, :, 2:].abs().max() <= 2.0  # generated latents after the first are clipped


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"frames": 0}, "frames"),
        ({"steps": 0}, "steps"),
        ({"cfg": 0.5}, "cfg"),
        ({"mode": "fast"}, "mode"),
        ({"temperature": 0.0}, "temperature"),
        ({"cond": torch.randn(2, C + 1, 1, H, W)}, "channels"),
        ({"cond": torch.randn(2, C, 0, H, W)}, "cond_latents"),
    ],
)
def test_bad_arguments_name_the_argument(model, kwargs, name):
    kwargs = dict(kwargs)
    mode = kwargs.pop("mode", "kv_cache")
    with pytest.raises(ConfigError, match=name):
        run(model, mode, **kwargs)


def test_cache_starts_empty():
    cache = KVCache(depth=2)
    assert cache.length == 0 and cache.nbytes() == 0 and cache.get(0) is None


def test_videos_are_written_as_mp4_gif_and_contact_sheet(tmp_path):
    pixels = torch.rand(3, 9, 32, 32) * 2 - 1
    frames = to_uint8_frames(pixels)
    assert frames.shape == (9, 32, 32, 3) and frames.dtype == np.uint8
    out = write_outputs(frames, tmp_path / "clip")
    assert len(decord.VideoReader(str(out["mp4"]))) == 9
    assert out["gif"].stat().st_size > 0 and out["png"].stat().st_size > 0
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_an_encoder_failure_names_the_file_and_carries_ffmpegs_own_message(tmp_path):
    """A video ffmpeg cannot encode (here zero pixels high) raises with the path, the exit status
    and what ffmpeg said (imageio's frame writer reported a broken pipe and nothing else), and
    leaves no file."""
    with pytest.raises(RuntimeError, match=r"clip\.mp4 \(2 frames of 32x0\): exit status \d+: .*32x0"):
        write_mp4(np.zeros((2, 0, 32, 3), dtype=np.uint8), tmp_path / "clip.mp4")
    assert not list(tmp_path.iterdir())


def test_a_residual_model_targets_changes_and_sampling_adds_them_back(monkeypatch):
    """With model.residual the head learns each token's change from the previous frame, and the
    sampler adds the drawn change to the latest frame: a head that draws zeros copies it."""
    torch.manual_seed(0)
    latents = torch.randn(2, C, 1, H, W).repeat(1, 1, 3, 1, 1)  # a still video: no change to learn
    plain, residual = (VideoMAR(model_config("tiny", latent_channels=C, residual=r)).eval() for r in (False, True))
    residual.load_state_dict(plain.state_dict())
    text = plain.tokenize(["a 3", "a 5"])
    later = torch.tensor([2, 1])
    _, target, _ = residual._target_outputs(latents, text, target_frames=later)
    assert target.abs().max() == 0
    _, first, _ = residual._target_outputs(latents, text, target_frames=torch.tensor([0, 0]))
    assert torch.equal(first, plain._target_outputs(latents, text, target_frames=torch.tensor([0, 0]))[1])

    for m in (plain, residual):
        monkeypatch.setattr(m.head, "sample", lambda z, *a: torch.zeros(z.shape[0], C, dtype=z.dtype))
    cond = latents[:, :, :1].clamp(-1, 1)
    assert torch.equal(run(residual, "kv_cache", frames=3, cond=cond, cfg=1.0)[:, :, 1:], cond.expand(-1, -1, 3, -1, -1))
    assert run(plain, "kv_cache", frames=3, cond=cond, cfg=1.0)[:, :, 1:].abs().max() == 0


def test_residual_momentum_continues_the_last_change(monkeypatch):
    """With model.residual_momentum m a frame is a change from last + m (last - before): the
    target of a video that moves at a constant rate, m = 1, is zero, and a head that draws
    zeros continues the condition's motion, damped by m."""
    torch.manual_seed(0)
    step = torch.randn(2, C, 1, H, W) * 0.1
    moving = step * torch.arange(4.0).view(1, 1, 4, 1, 1)  # frame k = k * step
    model = VideoMAR(model_config("tiny", latent_channels=C, residual=True, residual_momentum=1.0)).eval()
    text = model.tokenize(["a 3", "a 5"])
    _, target, _ = model._target_outputs(moving, text, target_frames=torch.tensor([3, 2]))
    assert target.abs().max() < 1e-6
    _, second, _ = model._target_outputs(moving, text, target_frames=torch.tensor([1, 1]))  # one frame before: no motion known
    torch.testing.assert_close(second.abs().sum(), step.abs().sum())  # frame 1 - frame 0

    half = VideoMAR(model_config("tiny", latent_channels=C, residual=True, residual_momentum=0.5)).eval()
    monkeypatch.setattr(half.head, "sample", lambda z, *a: torch.zeros(z.shape[0], C, dtype=z.dtype))
    video = run(half, "kv_cache", frames=2, cond=moving[:, :, :2], cfg=1.0)
    expected2 = moving[:, :, 1] + 0.5 * step[:, :, 0]
    torch.testing.assert_close(video[:, :, 2], expected2)
    torch.testing.assert_close(video[:, :, 3], expected2 + 0.5 * (expected2 - moving[:, :, 1]))
    with pytest.raises(ConfigError, match="residual_momentum=0.5 needs model.residual"):
        model_config("tiny", residual_momentum=0.5)


def test_generated_frames_after_the_first_stay_within_the_models_latent_clip(model):
    import dataclasses

    narrow = VideoMAR(dataclasses.replace(model.config, latent_clip=0.05)).eval()
    narrow.load_state_dict(model.state_dict())
    video = run(narrow, "kv_cache", frames=3)
    assert video[:, :, 2:].abs().max() <= 0.05 < video[:, :, 1].abs().max()
