"""VideoMAR model: causality, RoPE, presets, validation, and that the tiny preset learns."""

from __future__ import annotations

import pytest
import torch

from videomar.errors import ConfigError
from videomar.model.attention import block_causal_mask
from videomar.model.config import PRESETS, model_config
from videomar.model.rope import Rope3D, apply_rope
from videomar.model.text import HFTextEncoder, tokenize_bytes
from videomar.model.tokens import grid_positions, patchify, unpatchify
from videomar.model.videomar import VideoMAR, count_parameters

C = 4


def tiny(**overrides) -> VideoMAR:
    torch.manual_seed(0)
    return VideoMAR(model_config("tiny", latent_channels=C, **overrides))


def randomize(model: VideoMAR) -> VideoMAR:
    """Random weights everywhere (the head starts zero-initialised and would ignore its input)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("overrides", [{}, {"residual": True, "residual_momentum": 0.5, "motion_hint": 3}])
def test_future_frames_get_zero_gradient_and_change_nothing(overrides):
    model = randomize(tiny(**overrides)).train()
    latents = torch.randn(2, C, 5, 4, 4, requires_grad=True)
    text = model.tokenize(["a 3 moving up", "a 7"])
    k = torch.tensor([1, 2])

    loss = model.training_loss(latents, text, torch.Generator().manual_seed(0), target_frames=k)
    loss.backward()
    grad = latents.grad
    for i, ki in enumerate(k.tolist()):
        assert grad[i, :, ki + 1:].abs().max().item() == 0.0  # exactly zero: no path from the future
        assert grad[i, :, : ki + 1].abs().max().item() > 0.0

    changed = latents.detach().clone()
    changed[0, :, 2:] = torch.randn_like(changed[0, :, 2:]) * 5
    changed[1, :, 3:] = 7.0
    again = model.training_loss(changed, text, torch.Generator().manual_seed(0), target_frames=k)
    assert again.item() == loss.item()


def test_the_motion_hint_sees_each_tokens_neighbourhood_of_the_last_frame_and_change():
    model = randomize(tiny(motion_hint=3)).eval()
    last, before = torch.randn(2, 1, 16, C).unbind(0)  # [B=1, N=16 (a 4x4 grid), C]
    hint = model.frame_hint(last, before, torch.tensor([2]), (4, 4))
    assert hint.shape == (1, 16, model.config.width)
    moved = last.clone()
    moved[0, 0] += 1.0  # the top-left token of the last frame
    changed = (model.frame_hint(moved, before, torch.tensor([2]), (4, 4)) - hint).abs().amax(-1)[0]
    assert set(torch.nonzero(changed > 0).flatten().tolist()) == {0, 1, 4, 5}  # its 3x3 neighbours
    # One frame known: no change is seen; the frame before does not matter.
    one = model.frame_hint(last, before, torch.tensor([1]), (4, 4))
    torch.testing.assert_close(one, model.frame_hint(last, torch.randn_like(before), torch.tensor([1]), (4, 4)))
    assert tiny().frame_hint(last, before, torch.tensor([2]), (4, 4)) is None
    with pytest.raises(ConfigError, match="model.motion_hint=2"):
        tiny(motion_hint=2)


def test_backbone_outputs_up_to_frame_k_ignore_later_frames():
    model = randomize(tiny()).eval()
    x = torch.randn(1, 4 * 16, model.config.width)  # 4 frames of a 4x4 grid, embedded
    pos = grid_positions(0, 4, (4, 4))
    ctx = model.encode_text(model.tokenize(["a 1"]))
    z = model.backbone(x, pos, ctx)
    x2 = x.clone()
    x2[:, 2 * 16:] = torch.randn_like(x2[:, 2 * 16:])  # frames 2 and 3 change
    z2 = model.backbone(x2, pos, ctx)
    assert torch.equal(z[:, : 2 * 16], z2[:, : 2 * 16])
    assert not torch.allclose(z[:, 2 * 16:], z2[:, 2 * 16:])


def test_block_causal_mask_is_bidirectional_within_a_frame():
    frames = torch.tensor([0, 0, 1, 1])
    mask = block_causal_mask(frames, past=2)
    assert mask.shape == (4, 6)
    assert mask[:, :2].all()  # cached tokens are visible to all
    assert mask[0, 3] and not mask[0, 4]  # frame 0 sees frame 0, not frame 1
    assert mask[2, 2:].all()  # frame 1 sees frames 0 and 1
    assert block_causal_mask(torch.tensor([3, 3, 3]), past=5) is None


def test_rope_scores_depend_only_on_relative_offsets():
    rope = Rope3D((8, 4, 4))
    torch.manual_seed(0)
    q = torch.randn(1, 2, 12, 16)
    k = torch.randn(1, 2, 12, 16)
    pos = torch.stack([torch.randint(0, 6, (12,)), torch.randint(0, 8, (12,)), torch.randint(0, 8, (12,))], dim=1)

    def scores(p):
        cos, sin = rope(p)
        return apply_rope(q, cos, sin, rope.slices) @ apply_rope(k, cos, sin, rope.slices).transpose(-1, -2)

    base = scores(pos)
    shifted = scores(pos + torch.tensor([5, 3, 11]))
    assert torch.allclose(base, shifted, atol=1e-4)
    moved = pos.clone()
    moved[0] += torch.tensor([1, 0, 0])  # one token's relative offsets change
    assert not torch.allclose(base, scores(moved), atol=1e-3)


def test_patchify_round_trip_is_frame_major():
    x = torch.randn(2, 3, 4, 6, 8)
    tokens = patchify(x, 2)
    assert tokens.shape == (2, 4, 12, 12)  # N = 3*4 tokens of 3*2*2 channels
    assert torch.equal(unpatchify(tokens, 2, (3, 4)), x)
    assert torch.equal(tokens[0, 1, 0], x[0, :, 1, 0:2, 0:2].reshape(-1))


def test_tiny_preset_overfits_one_clip():
    model = tiny(text_drop_prob=0.0).train()
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(1, C, 3, 4, 4, generator=g).clamp(-2, 2).expand(8, -1, -1, -1, -1)
    text = model.tokenize(["a handwritten 3 moving up"] * 8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(300):
        loss = model.training_loss(clip, text, generator=g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert first / last >= 5.0, (first, last)


def test_images_train_as_one_frame_clips():
    model = tiny().train()
    images = torch.randn(3, C, 1, 4, 4)
    loss = model.training_loss(images, model.tokenize(["a", "b", "c"]))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.z_proj.weight.grad is not None
    per_sample = model.loss_per_sample(images, model.tokenize(["a", "b", "c"]), target_frames=torch.zeros(3, dtype=torch.long))
    assert per_sample.shape == (3,)


def test_presets_and_the_paper_size():
    assert set(PRESETS) >= {"tiny", "small", "base", "large"}
    assert 0.5e6 <= count_parameters(model_config("tiny")) <= 2e6
    large = model_config("large")
    assert (large.width, large.depth, large.heads, large.head_dim) == (1536, 36, 24, 64)
    assert 1.2e9 <= count_parameters(large) <= 1.6e9


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: model_config("tiny", heads=5), "model.heads"),
        (lambda: model_config("nope"), "model.preset"),
        (lambda: model_config("tiny", widht=64), "model.widht"),
        (lambda: model_config("tiny", head={"depth": 0}), "model.head.depth"),
        (lambda: model_config("tiny", rope_split=[10, 4, 4]), "model.rope_split"),
        (lambda: model_config("tiny", depth="four"), "model.depth"),
    ],
)
def test_bad_configs_name_the_field(build, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build()


def test_bad_latent_shapes_name_the_problem():
    model = tiny(patch_size=2)
    with pytest.raises(ConfigError, match="model.patch_size=2"):
        model.training_loss(torch.randn(1, C, 2, 5, 4), model.tokenize(["a"]))
    with pytest.raises(ConfigError, match="model.latent_channels"):
        model.training_loss(torch.randn(1, C + 1, 2, 4, 4), model.tokenize(["a"]))


def test_bytes_tokenizer_pads_with_a_mask():
    batch = tokenize_bytes(["ab", "héllo"], max_len=4)
    assert batch.tokens.shape == (2, 4)
    assert batch.mask.tolist() == [[True, True, True, False], [True, True, True, True]]


def test_classifier_free_guidance_drops_text_to_the_null_embedding():
    model = tiny(text_drop_prob=0.5)
    text = model.tokenize(["a long caption here", "another"])
    ctx = model.encode_text(text, drop=torch.tensor([True, False]))
    assert ctx.mask[0].tolist() == [True] + [False] * (text.mask.shape[1] - 1)
    assert torch.equal(ctx.embeddings[0, 0], model.null_text[0])
    assert torch.equal(ctx.mask[1], text.mask[1])


def test_hf_text_encoder_loads_from_a_local_directory(tmp_path):
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "handwritten", "digit", "moving", "up"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
    transformers.BertModel(config).save_pretrained(tmp_path)

    encoder = HFTextEncoder(tmp_path, max_len=16)
    batch = encoder.encode(["a handwritten digit", "moving up"])
    assert batch.embeddings.shape[0] == 2 and batch.embeddings.shape[-1] == 32
    model = tiny(text_encoder="precomputed", text_dim=32)
    loss = model.training_loss(torch.randn(2, C, 2, 4, 4), batch)
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="does not exist"):
        HFTextEncoder(tmp_path / "missing")
