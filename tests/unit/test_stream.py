"""Streaming generation: the sink_window cache policy, re-based positions, prompt switches
(recache, flush, cut) and the session the offline sampler runs."""

from __future__ import annotations

import pytest
import torch

from videomar.errors import ConfigError
from videomar.model.cache import CachePolicy
from videomar.model.config import model_config
from videomar.model.sampler import SampleSettings, generate
from videomar.model.session import StreamSession
from videomar.model.tokens import grid_positions, patchify
from videomar.model.videomar import VideoMAR

C, H, W = 4, 4, 4
SINK_WINDOW = CachePolicy("sink_window", sink=1, window=2)


@pytest.fixture(scope="module")
def model() -> VideoMAR:
    torch.manual_seed(0)
    m = VideoMAR(model_config("tiny", latent_channels=C, head={"sample_steps": 4, "x0_clip": 3.0})).eval()
    with torch.no_grad():  # random weights everywhere, so the head's samples depend on the backbone
        for p in m.parameters():
            p.normal_(0, 0.1)
    return m


def cond(batch=2, seed=0):
    return torch.randn(batch, C, 1, H, W, generator=torch.Generator().manual_seed(seed))


def text(model, *prompts):
    return model.tokenize(list(prompts or ("a 3 moving left", "a 5")))


def session(model, policy=SINK_WINDOW, seed=3, frames=8, **kw):
    settings = SampleSettings(frames, steps=3, cfg=kw.pop("cfg", 2.0), temperature=0.9, cache=policy, **kw)
    return StreamSession(model, cond(), text(model), settings, torch.Generator().manual_seed(seed))


def test_sink_window_equals_full_within_the_horizon(model):
    args = dict(frames=5, steps=3, generator=None)
    full = generate(model, cond(), text(model), **{**args, "generator": torch.Generator().manual_seed(1)})
    kept = generate(model, cond(), text(model), cache=CachePolicy("sink_window", sink=1, window=5),
                    **{**args, "generator": torch.Generator().manual_seed(1)})
    assert (full - kept).abs().max().item() <= 1e-5
    assert full[:, :, 1:].abs().max() > 0


def test_a_long_rollout_holds_bounded_memory_and_positions(model, monkeypatch):
    seen = []
    original = model.backbone
    monkeypatch.setattr(model, "backbone", lambda h, pos, *a, **k: seen.append(int(pos[:, 0].max()))
                        or original(h, pos, *a, **k))
    s = session(model, frames=12)
    sizes, held = [], []
    for _ in range(12):
        assert s.next(1).shape == (2, C, 1, H, W)
        sizes.append(s.cache.nbytes())
        held.append(len(s.frames))
    assert len(set(sizes)) == 1 and s.cache.keys[0].shape[2] == 3 * H * W  # one buffer of sink + window
    assert s.cache.retained_frames() == [0, 11, 12]  # the sink and the last two frames
    assert max(held) == 3 and max(seen) == 3  # positions stay within sink + window
    assert s.cache.positions()[:, 0].unique().tolist() == [0, 1, 2]


def test_a_stream_in_pieces_equals_one_call(model):
    whole = session(model).next(4)
    pieces = session(model)
    assert torch.equal(whole, torch.cat([pieces.next(1), pieces.next(3)], dim=2))


def fresh_prefill(model, frames, prompt_ctx, policy):
    """A new cache holding `frames` [B, F, N, c], written in one prefill under prompt_ctx."""
    cache = model.new_cache(policy)
    b, f, n, c = frames.shape
    h = model.embed_tokens(frames.reshape(b, f * n, c))
    rows = torch.cat([h, h])  # guided: conditional and null-text rows
    model.backbone(rows, grid_positions(0, f, (H, W), frames.device), prompt_ctx, cache, write=True)
    return cache


@pytest.mark.parametrize("chunk", [8, 2])
def test_recache_equals_a_fresh_prefill_with_the_new_prompt(model, monkeypatch, chunk):
    monkeypatch.setattr("videomar.model.session.RECACHE_CHUNK", chunk)  # 2: recached in two calls
    s = session(model)
    s.next(5)  # frames 0..5 made; the cache holds 0, 4, 5
    before = s.cache.get(0)[1].clone()
    s.switch(text(model, "a 3 moving up", "a 7"), "recache")
    held = s.cache.retained_frames()
    assert held == [0, 4, 5]
    assert torch.equal(s.frames[0], patchify(cond(), 1)[:, 0])  # the sink survives, unchanged
    ref = fresh_prefill(model, torch.stack([s.frames[f] for f in held], 1), s.ctx, SINK_WINDOW)
    for layer in range(model.config.depth):
        for got, want in zip(s.cache.get(layer), ref.get(layer)):
            assert (got - want).abs().max().item() <= 1e-5
    assert not torch.allclose(before, s.cache.get(0)[1])  # recomputed under the new prompt
    assert torch.isfinite(s.next(3)).all()


def test_flush_keeps_the_sink_and_the_last_frame(model):
    s = session(model)
    s.next(5)
    values = s.cache.get(1)[1].clone()  # slots hold frames 0, 4, 5
    s.switch(text(model, "a 9", "a 1"), "flush")
    assert s.cache.retained_frames() == [0, 5]
    assert s.cache.next_position == 2
    kept = s.cache.get(1)[1]
    assert torch.equal(kept[:, :, : H * W], values[:, :, : H * W])  # the sink's values, as computed
    assert torch.isfinite(s.next(2)).all()
    assert s.cache.retained_frames() == [0, 6, 7]


def after_cut(model, before: int, how: str):
    s = session(model)
    s.next(before)
    s.switch(text(model, "a 2 moving up", "a 4"), how)
    s.gen = torch.Generator().manual_seed(11)  # the same draws after the switch in every run
    return s, s.next(3)


def test_a_cut_isolates_the_scenes(model):
    s, one = after_cut(model, 2, "cut")
    assert s.cache.retained_frames()[0] == 0  # the sink survives the cut
    _, other = after_cut(model, 5, "cut")
    assert torch.equal(one, other)  # the new scene does not depend on the old scene's frames
    _, flushed_one = after_cut(model, 2, "flush")
    _, flushed_other = after_cut(model, 5, "flush")
    assert not torch.allclose(flushed_one, flushed_other)  # a flush carries the last frame over


@pytest.mark.parametrize("policy, kw, name", [
    (CachePolicy("sink_window", sink=1, window=0), {}, "window"),
    (CachePolicy("lru"), {}, "policy"),
    (CachePolicy("full", window=3), {}, "window"),
    (CachePolicy("sink_window", sink=1, window=2), {"mode": "recompute"}, "recompute"),
])
def test_bad_policies_name_the_field(model, policy, kw, name):
    with pytest.raises(ConfigError, match=name):
        session(model, policy, **kw)


def test_bad_switches_are_refused(model):
    s = session(model)
    with pytest.raises(ConfigError, match="switch"):
        s.switch(text(model), "rewind")
    s.close()
    with pytest.raises(ConfigError, match="closed"):
        s.next(1)


@pytest.mark.parametrize("compression", [1, 4])
def test_the_causal_vae_decodes_a_stream_chunk_by_chunk(compression):
    from videomar.model.vae import CausalVideoVAE, VAEConfig

    torch.manual_seed(0)
    vae = CausalVideoVAE(VAEConfig(latent_channels=C, base_channels=8, max_channels=16,
                                   temporal_compression=compression, spatial_compression=8)).eval()
    latents = torch.randn(1, C, 6, 2, 2)
    with torch.no_grad():
        whole = vae.decode(latents)  # [1, 3, 1 + 5 * compression, 16, 16]
    stream = vae.stream_decoder()
    parts = [stream.decode(latents[:, :, a:b]) for a, b in ((0, 1), (1, 3), (3, 4), (4, 6))]
    assert [p.shape[2] for p in parts] == [1, 2 * compression, compression, 2 * compression]
    assert (torch.cat(parts, dim=2) - whole).abs().max().item() <= 1e-5


def one_session(model, prompt, seed, cfg, policy=SINK_WINDOW):
    settings = SampleSettings(8, steps=3, cfg=cfg, temperature=0.9, cache=policy)
    return StreamSession(model, cond(1, seed), text(model, prompt), settings, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cfg,residual", [(1.0, False), (2.0, False), (2.0, True), (2.0, "hinted")])
def test_sessions_stepped_together_make_their_own_frames(model, cfg, residual):
    import dataclasses

    from videomar.model.batched import next_together

    if residual:  # each session's frames are changes from (and hints of) its own last frames
        weights = model.state_dict()
        hint = 3 if residual == "hinted" else 0
        torch.manual_seed(5)
        model = VideoMAR(dataclasses.replace(model.config, residual=True, residual_momentum=0.5, motion_hint=hint)).eval()
        model.load_state_dict(weights, strict=not hint)
    specs = [("a 3 moving left", 1, cfg), ("a much longer prompt about a 5 moving up", 2, cfg)]
    alone = [one_session(model, *spec) for spec in specs]
    together = [one_session(model, *spec) for spec in specs]
    for _ in range(4):  # past sink + window: the ring has turned
        mine = [s.next(1) for s in alone]
        for a, b in zip(mine, next_together(together)):
            assert (a - b).abs().max().item() <= 1e-5
    assert together[0].cache.retained_frames() == alone[0].cache.retained_frames() == [0, 3, 4]
    with pytest.raises(ValueError, match="cannot step together"):
        next_together([together[0], one_session(model, "a 1", 3, cfg, CachePolicy())])
