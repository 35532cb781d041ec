"""bench.gpu's Ray parts, on one local Ray that sees the machine's GPU: the precompute job (Ray
Data decode tasks, then the VAE encoder actor pool, which takes a GPU per actor when the cluster
has one) and a Ray Serve application whose sampler replica takes the GPU, answering one request.

Both run the job code users run (the quickstart precompute spec on sample videos; the serve spec
on a tiny random-weights export) through the test helpers that build their inputs.
"""

from __future__ import annotations

import time
from pathlib import Path

RAY_CPUS = 8


def start_ray():
    """A local Ray with RAY_CPUS CPU slots and every GPU torch sees; returns the ray module."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    return ray


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def on_gpu_if_any(gpus: float) -> bool:
    """On a machine where torch sees CUDA, the actors and replicas must have taken a GPU."""
    import torch

    return gpus >= 1 if torch.cuda.is_available() else True


def precompute_figures(workdir: Path) -> dict:
    """Sample videos -> the quickstart precompute spec -> shards and a manifest, timed end to end."""
    from tests.support.latents import FRAMES, SIZE, VIDEOS, precompute_spec, quickstart_vae
    from videomar.artifacts.manifest import load_manifest, manifest_uri
    from videomar.data_pipelines.sample_data import write_sample_videos
    from videomar.platform.jobs import execute
    from videomar.ray_env import gpus_per_worker

    start_ray()
    sources = write_sample_videos(workdir / "sample", VIDEOS, seed=0, frames=FRAMES, size=SIZE)
    vae = quickstart_vae(workdir / "vae")
    output = str(workdir / "latents")
    started = time.perf_counter()
    status = execute(precompute_spec(str(sources), vae, output))
    seconds = time.perf_counter() - started
    manifest = load_manifest(manifest_uri(output))
    clips = sum(b.clips for b in manifest.buckets)
    return {"exit_status": status, "videos": manifest.videos, "clips": clips, "errors": manifest.errors,
            "seconds": round(seconds, 2), "cluster_gpus": cluster_gpus(),
            "gpus_per_encoder_actor": gpus_per_worker("auto"),
            "ok": status == 0 and clips > 0 and on_gpu_if_any(gpus_per_worker("auto"))}


def serve_figures(workdir: Path, frames: int = 9, steps: int = 8, size: int = 32) -> dict:
    """A serve spec on a tiny export; one POST /v1/generate answered with an MP4."""
    import requests
    from ray import serve

    from tests.support.tiny_export import write_tiny_export
    from tests.support.videos import decode_mp4, png_b64
    from videomar.platform.jobs import parse_spec
    from videomar.platform.processes import free_port
    from videomar.platform.serving.app import start
    from videomar.ray_env import gpus_per_worker

    start_ray()
    export = write_tiny_export(str(workdir / "export"))
    spec = parse_spec({
        "kind": "serve", "export": export, "app_name": "bench-gpu",
        "http": {"host": "127.0.0.1", "port": free_port()},
        "deployment": {"max_batch_size": 1, "max_ongoing_requests": 4},
        "resources": {"gpus_per_worker": "auto"},
        "limits": {"max_frames": frames, "max_height": size, "max_width": size},
        "storage": {"root": str(workdir / "outputs")}, "auth": {"token_env": None},
    })
    try:
        started = time.perf_counter()
        url = start(spec)
        ready_s = time.perf_counter() - started
        payload = {"image": png_b64(size, size), "frames": frames, "steps": steps, "cfg": 3.0,
                   "prompt": "a digit moving", "seed": 0}
        started = time.perf_counter()
        answer = requests.post(f"{url}/v1/generate", json=payload, headers={"Accept": "video/mp4"}, timeout=300)
        latency = time.perf_counter() - started
        video = decode_mp4(answer.content) if answer.status_code == 200 else None
    finally:
        serve.shutdown()
    return {"status_code": answer.status_code, "deploy_s": round(ready_s, 2), "latency_s": round(latency, 3),
            "video_frames": None if video is None else int(video.shape[0]),
            "error": None if answer.status_code == 200 else answer.text[:300],
            "cluster_gpus": cluster_gpus(), "gpus_per_replica": gpus_per_worker("auto"),
            "ok": (answer.status_code == 200 and video is not None and video.shape[0] == frames
                   and on_gpu_if_any(gpus_per_worker("auto")))}


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
