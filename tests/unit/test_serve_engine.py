"""The serving engine without Serve: frame counts in pixel frames, one sampler call per shape,
per-request cfg, temperature and seed honoured inside a batch, images as latent frame 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.tiny_export import write_tiny_export
from videomar.platform.serving.engine import Engine, Job

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = Engine.load(write_tiny_export(str(tmp_path_factory.mktemp("export") / "stage")), device="cpu")
    with torch.no_grad():  # random weights everywhere, so samples depend on cfg, prompt and seed
        for p in e.model.parameters():
            p.normal_(0, 0.1)
    return e


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def job(seed=11, frames=9, cfg=3.0, temperature=None, prompt="a red ball", img=0, steps=4, size=32) -> Job:
    pixels = image(img) if size == 32 else np.zeros((size, size, 3), np.uint8)
    return Job(pixels, prompt, frames=frames, steps=steps, cfg=cfg, temperature=temperature, seed=seed)


@pytest.mark.parametrize("frames", [2, 4, 5, 6, 9, 10])
def test_videos_have_exactly_the_requested_pixel_frames(engine, frames):
    assert engine.run([job(frames=frames)])[0].shape == (frames, 32, 32, 3)
    # latent frames after the image: ceil((frames - 1) / 4) with the tiny export's 4x temporal VAE
    assert engine.latent_frames_to_generate(frames) == -(-(frames - 1) // 4)


def test_same_job_alone_twice_is_identical_and_seed_cfg_temperature_matter(engine):
    ref = engine.run([job()])[0]
    assert (engine.run([job()])[0] == ref).all()
    for other in (job(seed=12), job(cfg=1.0), job(temperature=0.3), job(prompt="a blue cube")):
        assert not (engine.run([other])[0] == ref).all()


def test_a_job_batched_with_others_gives_its_video_alone(engine):
    jobs = [job(seed=1, cfg=1.0, temperature=0.5, prompt="x", img=1), job(),
            job(seed=2, cfg=5.0, prompt="a much longer prompt than the others", img=2),
            job(seed=11, cfg=3.0, temperature=1.0, prompt="", img=3)]
    calls = []
    original = engine._run_group
    engine._run_group = lambda group: calls.append(len(group)) or original(group)
    try:
        batched = engine.run(jobs)
    finally:
        del engine._run_group
    assert calls == [4]  # one sampler call for the four same-shape jobs
    for j, video in zip(jobs, batched):
        alone = engine.run([j])[0]
        # equal up to float rounding of batched matrix products: at most one level of 255
        assert np.abs(alone.astype(int) - video.astype(int)).max() <= 1


def test_jobs_of_different_shapes_are_sampled_in_separate_calls(engine):
    calls = []
    original = engine._run_group
    engine._run_group = lambda group: calls.append(len(group)) or original(group)
    try:
        out = engine.run([job(frames=5), job(frames=9), job(frames=5, seed=3), job(steps=2), job(size=16)])
    finally:
        del engine._run_group
    assert sorted(calls) == [1, 1, 1, 2]
    assert [v.shape for v in out] == [(5, 32, 32, 3), (9, 32, 32, 3), (5, 32, 32, 3), (9, 32, 32, 3), (9, 16, 16, 3)]


def test_the_image_is_latent_frame_zero(engine):
    j = job(frames=5)
    cond = engine.condition([j.image])  # [1, C, 1, H', W'], scaled
    mean, _ = engine.vae.encode(torch.from_numpy(j.image).permute(2, 0, 1)[None, :, None].float() / 127.5 - 1)
    torch.testing.assert_close(cond, mean * engine.vae.scale)
    from videomar.artifacts.media import decode_latents, to_uint8_frames

    first = to_uint8_frames(decode_latents(engine.vae, cond)[0])[0]
    assert (engine.run([j])[0][0] == first).all()  # the video opens on the decoded condition image


def test_sampler_per_sample_arguments_are_checked_and_match_scalar_ones(engine):
    from videomar.errors import ConfigError
    from videomar.model.sampler import generate

    model = engine.model
    cond = torch.randn(2, 4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    text = model.tokenize(["a", "b"])
    gens = lambda: [torch.Generator().manual_seed(s) for s in (5, 6)]  # noqa: E731
    for kwargs, field in [({"cfg": [3.0]}, "cfg"), ({"cfg": [3.0, 0.5]}, "cfg=0.5"),
                          ({"temperature": [1.0, -1.0]}, "temperature=-1.0"),
                          ({"generator": [torch.Generator()]}, "generator")]:
        with pytest.raises(ConfigError, match=field):
            generate(model, cond, text, frames=1, steps=2, **kwargs)
    per_sample = generate(model, cond, text, frames=2, steps=2, cfg=[3.0, 3.0], temperature=[0.9, 0.9],
                          generator=gens())
    for row in range(2):
        alone = generate(model, cond[row:row + 1], model.tokenize([["a", "b"][row]]), frames=2, steps=2, cfg=3.0,
                         temperature=0.9, generator=gens()[row])
        torch.testing.assert_close(per_sample[row:row + 1], alone, atol=1e-3, rtol=1e-3)  # float rounding
