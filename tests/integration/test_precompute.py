"""The precompute job end to end on real sample videos with a local Ray: shards, manifest and
errors table on local disk and on a real S3 server, resumable re-runs, a killed run re-run, and the
training reader's checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.support.latents import FRAMES, build_latents, precompute_spec, quickstart_vae
from videomar.data_pipelines.errors import read_errors
from videomar.artifacts.manifest import load_manifest
from videomar.data_pipelines.precompute import run_precompute
from videomar.data_pipelines.sample_data import write_sample_videos
from videomar.artifacts.shards import read_keys, shard_uris

BUCKETS = ((5, 32, 32), (9, 32, 32))
CLIPS_PER_VIDEO = {(5, 32, 32): FRAMES // 5, (9, 32, 32): FRAMES // 9}  # non-overlapping clips of 24 frames
GOOD_VIDEOS = 3
# file name -> the error class its row in the errors table must have
CORRUPT = {
    "empty.mp4": "EmptyVideo",
    "random.mp4": "UndecodableVideo",
    "truncated.mp4": "UndecodableVideo",
    "notes.txt": "UndecodableVideo",
    "missing.mp4": "FileNotFoundError",
    "short.mp4": "VideoTooShort",
}


def corrupt_inputs(root: Path, good: Path) -> list[dict]:
    """Write one file of each corrupt kind next to the good videos; their manifest rows."""
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "random.mp4").write_bytes(os.urandom(20_000))
    data = good.read_bytes()
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (bad / "notes.txt").write_text("not a video, just some words\n" * 50)
    short = write_sample_videos(root / "short", 1, seed=1, frames=3)
    shutil.copy(short.parent / "videos" / "00000.mp4", bad / "short.mp4")
    return [{"path": str(bad / name), "caption": name} for name in CORRUPT]


@pytest.fixture(scope="module")
def dataset(ray_local, tmp_path_factory):
    """Good sample videos plus one corrupt input of each kind, precomputed once to a local folder."""
    root = tmp_path_factory.mktemp("precompute")
    sample = write_sample_videos(root / "sample", GOOD_VIDEOS, seed=0, frames=FRAMES)
    rows = [json.loads(line) for line in sample.read_text().splitlines()]
    rows += corrupt_inputs(root, sample.parent / rows[0]["path"])
    source = root / "sample" / "all.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    vae = quickstart_vae(root / "vae")
    spec = precompute_spec(str(source), vae, str(root / "latents"), max_error_fraction=0.7, source_outside_manifest=True)
    summary = run_precompute(spec.config())
    return spec, summary, root


@pytest.mark.timeout(180)
def test_local_run_encodes_every_good_clip_and_records_every_bad_input(dataset, ray_cluster):
    from videomar.data_pipelines.reader import read_bucket

    spec, summary, root = dataset
    expected = GOOD_VIDEOS * sum(CLIPS_PER_VIDEO.values())
    assert summary.exit_status == 0
    assert (summary.videos, summary.encoded, summary.skipped) == (GOOD_VIDEOS + len(CORRUPT), expected, 0)

    errors = {Path(e.path).name: e for e in read_errors(str(root / "latents"))}
    assert {name: e.error_class for name, e in errors.items()} == CORRUPT
    assert all(e.stage == "decode" and Path(e.path).name in e.message for e in errors.values())
    assert "0 bytes" in errors["empty.mp4"].message and "DECORDError" not in errors["missing.mp4"].message

    manifest = load_manifest(summary.manifest)
    assert manifest.errors == len(CORRUPT) and manifest.vae_uri == "../vae"
    assert len(manifest.channel_mean) == len(manifest.channel_std) == 16
    for bucket, per_video in CLIPS_PER_VIDEO.items():
        entry = manifest.bucket(bucket)
        c, t = entry.latent_shape[:2]
        assert (c, t, *entry.latent_shape[2:]) == (16, (bucket[0] - 1) // 4 + 1, 4, 4)
        assert entry.clips == GOOD_VIDEOS * per_video
        rows = read_bucket(summary.manifest, bucket, split="all").take_all()
        assert len(rows) == entry.clips and Counter(r["split"] for r in rows) == Counter(
            {k: v for k, v in entry.counts.items() if v})
        assert {r["mean"].shape for r in rows} == {tuple(entry.latent_shape)}
        assert {r["logvar"].dtype.name for r in rows} == {"float32"}
        assert all(r["caption"].startswith("a handwritten") for r in rows)
        assert sorted(r["clip_index"] for r in rows) == sorted(list(range(per_video)) * GOOD_VIDEOS)


@pytest.mark.timeout(120)
def test_rerun_encodes_nothing_and_exit_status_counts_errors(dataset, ray_cluster):
    spec, first, root = dataset
    before = {u: os.stat(u).st_mtime_ns for b in BUCKETS for u in shard_uris(str(root / "latents"), b)}
    strict = spec.model_copy(update={"max_error_fraction": 0.0})
    again = run_precompute(strict.config())
    assert (again.encoded, again.skipped, again.clips) == (0, first.encoded, first.clips)
    assert {u: os.stat(u).st_mtime_ns for b in BUCKETS for u in shard_uris(str(root / "latents"), b)} == before
    assert again.exit_status == 1  # 6 of 9 videos failed, more than max_error_fraction 0


@pytest.mark.timeout(120)
def test_reader_refuses_a_mismatched_shard_or_bucket(dataset, ray_cluster, tmp_path):
    from videomar.data_pipelines.reader import read_bucket

    _, _, root = dataset
    copy = tmp_path / "latents"
    shutil.copytree(root / "latents", copy)
    manifest_path = copy / "manifest.json"
    with pytest.raises(ValueError, match=r"no bucket 17x32x32 .* its buckets are: 5x32x32, 9x32x32"):
        read_bucket(str(manifest_path), (17, 32, 32))
    data = json.loads(manifest_path.read_text())
    data["vae_id"] = "0123456789abcdef"
    data["buckets"][0]["latent_shape"] = [8, 2, 4, 4]
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"VAE id \w+ \(manifest: 0123456789abcdef\).*latent shape \[16, 2, 4, 4\] "
                                         r"\(manifest: \[8, 2, 4, 4\]\)"):
        read_bucket(str(manifest_path), (5, 32, 32))


@pytest.mark.timeout(300)
def test_end_to_end_to_a_real_s3_server(ray_cluster, s3_server, tmp_path):
    from videomar.artifacts import storage
    from videomar.data_pipelines.reader import read_bucket

    latents = build_latents(tmp_path, output=s3_server.uri("latents"), videos=2)
    assert latents.manifest.startswith("s3://") and storage.exists(latents.manifest)
    manifest = load_manifest(latents.manifest)
    assert os.path.isabs(manifest.vae_uri)
    for bucket, per_video in CLIPS_PER_VIDEO.items():
        rows = read_bucket(latents.manifest, bucket, split="all").take_all()
        assert len(rows) == 2 * per_video == manifest.bucket(bucket).clips
        assert rows[0]["mean"].shape == tuple(manifest.bucket(bucket).latent_shape)
        assert all(u.startswith("s3://") for u in shard_uris(latents.output, bucket))


@pytest.mark.timeout(240)
def test_killed_run_rerun_has_every_clip_exactly_once(ray_cluster, tmp_path):
    videos = 6
    sample = write_sample_videos(tmp_path / "sample", videos, seed=2, frames=FRAMES)
    vae = quickstart_vae(tmp_path / "vae")
    output = tmp_path / "latents"
    data = yaml.safe_load((Path(__file__).parents[2] / "jobs/quickstart/precompute.yaml").read_text())
    data.update(source=str(sample), vae=vae, output=str(output), shard_clips=2,
                encode={"batch_size": 2, "decode_cpus": 0.5}, resources={"workers": 1, "cpus_per_worker": 0.5})
    spec_path = tmp_path / "precompute.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "videomar.platform.cli", "run", str(spec_path)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    written = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            written = [u for b in BUCKETS for u in shard_uris(str(output), b)]
            if len(written) >= 2:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    # Ray workers may outlive the killed driver by a moment; count shards once none appears.
    partial = settled_keys(output)
    expected = videos * sum(CLIPS_PER_VIDEO.values())
    assert 0 < len(partial) < expected and not (output / "manifest.json").exists()

    from videomar.platform.jobs import load_spec

    rerun = run_precompute(load_spec(spec_path).config())
    assert rerun.encoded == expected - len(partial) and rerun.skipped == len(partial)
    keys = []
    for bucket in BUCKETS:
        for uri in shard_uris(str(output), bucket):
            keys += read_keys([uri])
    assert len(keys) == len(set(keys)) == expected == rerun.clips


def settled_keys(output: Path, quiet_s: float = 3.0, limit_s: float = 30.0) -> list:
    """The clip keys in the shards once no new shard has appeared for quiet_s seconds."""
    deadline = time.monotonic() + limit_s
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        uris = sorted(u for b in BUCKETS for u in shard_uris(str(output), b))
        if uris != seen:
            seen, since = uris, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.2)
    return read_keys(seen)


def test_a_manifest_from_another_version_is_refused_naming_its_fields(tmp_path):
    from videomar.artifacts.manifest import BucketManifest, DatasetManifest, write_manifest

    uri = write_manifest(str(tmp_path), DatasetManifest(
        schema_version=1, vae_id="v", latent_scale=1.0, vae_uri=None, channel_mean=[0.0], channel_std=[1.0],
        errors=0, buckets=[BucketManifest(5, 32, 32, (16, 2, 4, 4), {"train": 1, "val": 0})]))
    assert load_manifest(uri).buckets[0].shape.key == "5x32x32"
    path = Path(uri)
    data = json.loads(path.read_text())
    data["text_embeddings"] = True
    del data["buckets"][0]["counts"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"manifest\.json: unknown field\(s\) text_embeddings for schema_version 1"):
        load_manifest(uri)
    del data["text_embeddings"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"missing field\(s\) buckets\[0\]\.counts"):
        load_manifest(uri)
