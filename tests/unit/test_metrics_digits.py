"""The moving-digits classifier, subject consistency and dynamics, on frames rendered here from
scikit-learn's bundled digits (bright digits on a black canvas, as the sample videos are)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from videomar.platform.evaluation.consistency import dynamics, subject_consistency
from videomar.platform.evaluation.digits import DigitClassifier, digits_in_videos, load_digit_classifier

pytestmark = pytest.mark.timeout(60)

CANVAS = 48
SIZE = 20


@pytest.fixture(scope="module")
def classifier():
    return load_digit_classifier()  # the default cache: trained once per machine


@pytest.fixture(scope="module")
def bundled():
    d = load_digits()
    return torch.from_numpy(d.images).float() / 16.0, torch.from_numpy(d.target)


def first_of(bundled, digit: int, nth: int = 0) -> torch.Tensor:
    images, targets = bundled
    return images[(targets == digit).nonzero()[-1 - nth, 0]]


def render(sprites: list[list[torch.Tensor]], positions: list[list[tuple[int, int]]]) -> torch.Tensor:
    """One video [1, 3, T, CANVAS, CANVAS] in [-1, 1]: frame t shows sprites[t][i] at positions[t][i]."""
    frames = []
    for imgs, places in zip(sprites, positions):
        canvas = torch.zeros(CANVAS, CANVAS)
        for img, (y, x) in zip(imgs, places):
            up = F.interpolate(img[None, None], size=(SIZE, SIZE), mode="nearest")[0, 0]
            canvas[y : y + SIZE, x : x + SIZE] = torch.maximum(canvas[y : y + SIZE, x : x + SIZE], up)
        frames.append(canvas * 2 - 1)
    video = torch.stack(frames)  # [T, H, W]
    return video[None, None].expand(1, 3, -1, -1, -1).contiguous()


def moving(img: torch.Tensor, frames: int = 6, step: int = 4) -> torch.Tensor:
    return render([[img]] * frames, [[(4 + step * t // 2, 2 + step * t)] for t in range(frames)])


def one_hot(digits: list[int]) -> torch.Tensor:
    return F.one_hot(torch.tensor(digits), 10).bool()


def test_classifier_recognises_moving_digits(classifier, bundled):
    videos = torch.cat([moving(first_of(bundled, d)) for d in range(10)])
    present = digits_in_videos(classifier, videos)
    assert present.shape == (10, 6, 10)
    correct = (present == one_hot(list(range(10)))[:, None]).all(dim=2)  # [10, 6]: exactly that digit
    assert correct.float().mean() >= 0.9
    expected = float(present[:, 1:][torch.arange(10), :, torch.arange(10)].float().mean())
    assert subject_consistency(present, cond_frames=1, subjects=one_hot(list(range(10)))) == pytest.approx(expected)


def test_classifier_finds_every_digit_of_a_frame(classifier, bundled):
    two, seven = first_of(bundled, 2), first_of(bundled, 7)
    video = render([[two, seven]] * 3, [[(2, 2 + t), (24, 26 - t)] for t in range(3)])
    present = digits_in_videos(classifier, video)[0]
    assert (present == one_hot([2, 7]).any(dim=0)).all()
    assert subject_consistency(present[None], cond_frames=1) == 1.0


def test_classifier_is_cached_to_its_file(tmp_path, classifier):
    path = tmp_path / "clf.npz"
    classifier.save(path)
    stamp = path.stat().st_mtime_ns
    again = load_digit_classifier(path)
    assert path.stat().st_mtime_ns == stamp  # read, not retrained and rewritten
    for mine, theirs in zip(again.weights + again.biases, classifier.weights + classifier.biases, strict=True):
        assert torch.equal(mine, theirs)
    path.write_bytes(b"corrupt")
    assert DigitClassifier.load(path) is None


def test_consistency_is_perfect_when_the_digit_stays_and_drops_when_it_changes(classifier, bundled):
    three, eight = first_of(bundled, 3), first_of(bundled, 8)
    steady = digits_in_videos(classifier, moving(three))
    assert subject_consistency(steady, cond_frames=2) == 1.0
    pos = [[(4, 4 + 3 * t)] for t in range(6)]
    swapped = digits_in_videos(classifier, render([[three]] * 3 + [[eight]] * 3, pos))
    assert subject_consistency(swapped, cond_frames=2) == pytest.approx(0.25)
    blank = torch.full((1, 3, 6, CANVAS, CANVAS), -1.0)
    faded = digits_in_videos(classifier, torch.cat([moving(three)[:, :, :2], blank[:, :, :4]], dim=2))
    assert not faded[0, 2:].any()
    assert subject_consistency(faded, cond_frames=2) == 0.0
    # No recognisable conditioning digit: nothing to measure.
    assert torch.isnan(torch.tensor(subject_consistency(digits_in_videos(classifier, blank), cond_frames=1)))
    # Speckles are not digits.
    speckled = blank.clone()
    speckled[..., 10, 10] = 1.0
    assert not digits_in_videos(classifier, speckled).any()


def test_dynamics_is_zero_when_frozen_and_grows_with_speed(bundled):
    img = first_of(bundled, 5)
    frozen = render([[img]] * 5, [[(10, 10)]] * 5)
    assert dynamics(frozen) == 0.0
    slow, fast = dynamics(moving(img, step=1)), dynamics(moving(img, step=4))
    assert fast > slow > 0
    with pytest.raises(ValueError, match="at least 2 frames"):
        dynamics(frozen, start=4)


def test_sample_videos_single_digits_are_recognised_in_every_frame(classifier, tmp_path):
    """The real sample data (H.264 MP4s decoded and resized as the precompute does it)."""
    import json

    from videomar.data_pipelines.clips import read_clip
    from videomar.data_pipelines.sample_data import write_sample_videos

    manifest = write_sample_videos(tmp_path, 10, seed=0, frames=9)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    single = [r for r in rows if len(r["digits"]) == 1]
    assert single, "the seed gives single-digit videos"
    videos = torch.stack([torch.from_numpy(read_clip(str(tmp_path / r["path"]), 0, (9, 32, 32))) for r in single])
    present = digits_in_videos(classifier, videos)
    labels = one_hot([r["digits"][0]["label"] for r in single])
    assert (present == labels[:, None]).all()


def test_blurry_blobs_are_no_digit(classifier):
    """An undertrained model draws soft blobs; the classifier must not read them as digits."""
    yy, xx = torch.meshgrid(torch.arange(CANVAS).float(), torch.arange(CANVAS).float(), indexing="ij")
    frames = []
    for sy, sx in ((5, 4), (7, 3), (4, 6), (6, 6)):
        blob = torch.exp(-(((yy - 24) / sy) ** 2 + ((xx - 24) / sx) ** 2) / 2)  # [H, W] in [0, 1]
        frames.append(blob * 1.6 - 1)
    video = torch.stack(frames)[None, None].expand(1, 3, -1, -1, -1)
    assert not digits_in_videos(classifier, video).any()
