"""PSNR, SSIM, the copy-last baseline, the Fréchet distance and the video feature extractors,
checked on known inputs and against scikit-image / scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from videomar.platform.evaluation.features import (
    BuiltinExtractor,
    TorchScriptExtractor,
    extract_features,
    load_feature_extractor,
)
from videomar.platform.evaluation.frechet import feature_stats, frechet_distance, frechet_distance_features
from videomar.platform.evaluation.metrics import DATA_RANGE, PSNR_CAP_DB, copy_last, psnr, ssim

pytestmark = pytest.mark.timeout(60)


def smooth_video(seed: int, shape=(2, 3, 4, 24, 32)) -> torch.Tensor:
    """Random but spatially smooth content in [-1, 1] (SSIM on white noise says little)."""
    gen = torch.Generator().manual_seed(seed)
    b, c, t, h, w = shape
    coarse = torch.rand(b * t, c, h // 4, w // 4, generator=gen)
    fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (fine.view(b, t, c, h, w).permute(0, 2, 1, 3, 4) * 2 - 1).contiguous()


def noised(video: torch.Tensor, std: float, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (video + std * torch.randn(video.shape, generator=gen)).clamp(-1, 1)


def frame(video: torch.Tensor, b: int, t: int) -> np.ndarray:
    return video[b, :, t].permute(1, 2, 0).double().numpy()  # [H, W, C]


def test_psnr_and_ssim_agree_with_scikit_image():
    target = smooth_video(0)
    pred = noised(target, 0.2)
    ours_psnr, ours_ssim = psnr(pred, target), ssim(pred, target)
    assert ours_psnr.shape == ours_ssim.shape == (2, 4)
    for b in range(2):
        for t in range(4):
            x, y = frame(pred, b, t), frame(target, b, t)
            ref_psnr = peak_signal_noise_ratio(y, x, data_range=DATA_RANGE)
            ref_ssim = structural_similarity(
                x, y, data_range=DATA_RANGE, channel_axis=2, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False,
            )
            assert abs(float(ours_psnr[b, t]) - ref_psnr) < 1e-3
            assert abs(float(ours_ssim[b, t]) - ref_ssim) < 1e-3


def test_identical_videos_score_perfectly():
    video = smooth_video(2)
    assert torch.allclose(psnr(video, video), torch.full((2, 4), PSNR_CAP_DB))
    assert torch.allclose(ssim(video, video), torch.ones(2, 4), atol=1e-6)


def test_more_noise_scores_worse():
    video = smooth_video(3)
    psnrs = [psnr(noised(video, s), video).mean() for s in (0.05, 0.1, 0.3)]
    ssims = [ssim(noised(video, s), video).mean() for s in (0.05, 0.1, 0.3)]
    assert psnrs[0] > psnrs[1] > psnrs[2]
    assert 1 > ssims[0] > ssims[1] > ssims[2]


def test_shifted_copy_scores_worse_the_further_it_moves():
    video = smooth_video(4)
    scores = [ssim(torch.roll(video, shifts=s, dims=-1), video).mean() for s in (0, 1, 3)]
    assert scores[0] > scores[1] > scores[2]


def test_metrics_refuse_mismatched_or_tiny_frames():
    with pytest.raises(ValueError, match="differs from target shape"):
        psnr(torch.zeros(1, 3, 2, 16, 16), torch.zeros(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 2, 8, 8), torch.zeros(1, 3, 2, 8, 8))


def test_copy_last_repeats_the_final_context_frame():
    context = smooth_video(5, shape=(2, 3, 3, 16, 16))
    out = copy_last(context, 4)
    assert out.shape == (2, 3, 4, 16, 16)
    for t in range(4):
        assert torch.equal(out[:, :, t], context[:, :, -1])
    # A static video is predicted perfectly by the baseline.
    static = context[:, :, :1].expand(-1, -1, 5, -1, -1)
    assert torch.all(psnr(copy_last(static[:, :, :1], 4), static[:, :, 1:]) == PSNR_CAP_DB)


def scipy_frechet(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    cross = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross.real))


def test_frechet_distance_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(6, 6))
    x = rng.normal(size=(200, 6)) @ mix
    y = rng.normal(size=(150, 6)) @ mix * 1.3 + 0.5
    ours = frechet_distance_features(torch.from_numpy(x), torch.from_numpy(y))
    assert ours == pytest.approx(scipy_frechet(x, y), rel=1e-6, abs=1e-8)


def test_frechet_distance_is_zero_for_one_set_and_grows_with_offset():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(100, 5)))
    stats = feature_stats(x)
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-8)
    # Shifting every feature by d adds exactly |d|^2.
    assert frechet_distance_features(x, x + 2.0) == pytest.approx(5 * 4.0, rel=1e-9)
    assert frechet_distance_features(x, x * 1.5) > frechet_distance_features(x, x * 1.1) > 0


def test_builtin_extractor_is_deterministic_and_tells_videos_apart():
    videos = smooth_video(6, shape=(6, 3, 4, 32, 32))
    a, b = BuiltinExtractor(), BuiltinExtractor()
    fa = extract_features(a, videos, batch_size=4)
    assert fa.shape == (6, 64)
    assert torch.equal(fa, b(videos))
    assert not torch.allclose(fa[0], fa[1])
    # FVD: zero between a set and itself, larger the more the set is degraded.
    mild = frechet_distance_features(fa, extract_features(a, noised(videos, 0.1)))
    strong = frechet_distance_features(fa, extract_features(a, noised(videos, 0.5)))
    assert frechet_distance_features(fa, fa) == pytest.approx(0.0, abs=1e-8)
    assert strong > mild > 0


class MeanPool(torch.nn.Module):
    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4)) * scale


def test_torchscript_extractor_loads_a_saved_module(tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(MeanPool()), str(path))
    extractor = load_feature_extractor(str(path), size=16, call_kwargs={"scale": 2.0})
    assert isinstance(extractor, TorchScriptExtractor)
    videos = smooth_video(7, shape=(3, 3, 2, 32, 32))
    feats = extractor(videos)
    assert feats.shape == (3, 3)
    assert torch.allclose(feats, videos.mean(dim=(2, 3, 4)) * 2.0, atol=1e-2)


def test_torchscript_extractor_names_a_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        TorchScriptExtractor(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.pt: not a TorchScript file"):
        TorchScriptExtractor(str(junk))
