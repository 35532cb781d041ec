"""The eval job's Ray Data workers on a real local Ray: a tiny export, real sample MP4s decoded
as the precompute decodes them, latents from the export's own VAE."""

from __future__ import annotations

import json

import pytest
import torch

from tests.support.tiny_export import write_tiny_export
from videomar.data_pipelines.clips import read_clip
from videomar.data_pipelines.sample_data import write_sample_videos
from videomar.platform.evaluation.clips import combine_quality
from videomar.platform.evaluation.workers import QualityWorker, clip_key, run_pool, sheet_clips
from videomar.platform.specs.base import ResourcesSection
from videomar.platform.specs.eval import EvalOptions
from videomar.artifacts.export import load_export

pytestmark = pytest.mark.timeout(180)
BUCKET = (9, 32, 32)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """(export URI, rows shaped like the latent dataset's: mean, logvar, caption, source, clip_index)."""
    root = tmp_path_factory.mktemp("eval-workers")
    export_uri = write_tiny_export(str(root / "stage" / "export"))
    vae = load_export(export_uri).vae
    manifest = write_sample_videos(root / "videos", 4, seed=3, frames=BUCKET[0])
    rows = []
    for line in manifest.read_text().splitlines():
        entry = json.loads(line)
        source = str(root / "videos" / entry["path"])
        with torch.no_grad():
            mean, logvar = vae.encode(torch.from_numpy(read_clip(source, 0, BUCKET))[None])
        rows.append({"mean": mean[0].numpy(), "logvar": logvar[0].numpy(), "caption": entry["caption"],
                     "source": source, "clip_index": 0})
    return export_uri, rows


def test_quality_worker_measures_every_clip_the_same_way_in_any_batching(ray_cluster, held_out):
    export_uri, rows = held_out
    dataset = ray_cluster.data.from_items(rows)
    picked = clip_key(rows[1]["source"], 0)
    results = {}
    for batch_size in (1, 3):
        options = EvalOptions(videos=4, loss_clips=4, steps=2, batch_size=batch_size)
        quality = run_pool(dataset, QualityWorker, (export_uri, options.model_dump(), BUCKET, [picked]), options,
                           ResourcesSection())
        results[batch_size] = combine_quality(quality, options.motion_cond_frames)
        # Frames come back for the clip picked for the contact sheet only: (generated, truth).
        [(key, frames)] = sheet_clips(quality)
        assert key == picked and frames.shape == (2, *BUCKET, 3) and frames.dtype == "uint8"
    metrics1, metrics3 = results[1], results[3]
    # Continuations are seeded per clip, so batching does not change them.
    for key in ("psnr", "ssim", "vae_psnr", "dynamics", "digit_consistency", "fvd", "psnr_2cond", "ssim_2cond"):
        assert metrics3[key] == pytest.approx(metrics1[key], rel=1e-4, abs=1e-5), key
    # An untrained model is far from the truth; the copy-last baseline and the VAE bound are not.
    assert metrics1["psnr"] < metrics1["psnr_copy_last"]
    assert metrics1["fvd"] > 0
    assert metrics1["digit_consistency_gt"] > 0
    # Two latent frames given: the baseline repeats the fifth pixel frame, so it differs from
    # the one-frame baseline.
    assert metrics1["psnr_copy_last_2cond"] != metrics1["psnr_copy_last"]
    assert metrics1["classifier_accuracy_gt"] >= 0.9


def test_an_eval_takes_the_first_clips_by_name_in_whatever_order_they_are_read(ray_cluster):
    """Two precomputes of the same videos write their shards in different orders: both evals
    must measure the same held-out clips."""
    from videomar.platform.evaluation.job import clip_names, only_clips

    rows = [{"source": f"/data/{v:02d}.mp4", "clip_index": c, "mean": [float(v), float(c)]}
            for v in range(6) for c in range(3)]
    picked = []
    for order in (rows, rows[::-1], rows[7:] + rows[:7]):
        dataset = ray_cluster.data.from_items(order, override_num_blocks=4)
        taken = only_clips(dataset, clip_names(dataset)[:5]).take_all()
        picked.append(sorted(clip_key(r["source"], r["clip_index"]) for r in taken))
        assert all(list(r["mean"]) == [float(r["source"][6:8]), float(r["clip_index"])] for r in taken)
    assert picked[0] == picked[1] == picked[2] == sorted(clip_key(r["source"], r["clip_index"]) for r in rows)[:5]
