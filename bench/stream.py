"""Streaming generation: what the sink_window cache policy saves against keeping every frame,
and what it does to a trained model's long rollouts.

    python -m bench.stream [--export DIR] [--window 4] [--latent 32] [--clips 4] [--steps 64]

Parts, all in one process, single-threaded (the figures compare policies on the same thread):
  kv_bytes_ratio, kv_growth, speedup_long
      the tiny preset with random weights on --latent x --latent latent frames (1,024 tokens per
      frame at 32, bench.sampler's size: the backbone's attention dominates a spatial step; at
      24 the head's per-token cost, the same for both policies, held the ratio to 2.9), sink 1,
      window W, cfg 1, rolled out to 8 W frames. KV bytes are the cache's buffers; the speed is frames/s over the
      last W frames of the rollout (where it is 8x the window long), made with --steps spatial
      steps each (64, the sampler's default; the frames before take one step each, their content
      does not change the timing).
  max_abs_diff_within_horizon
      the same model, 2 W frames, sink_window with a window that keeps everything against full.
  digit_consistency_long_sink, digit_consistency_long_full  (with --export)
      the export's model continuing frame 0 of --clips held-out clips of its dataset for 10x the
      latent frames it trained on (steps 8, cfg 3, seed 0), sink 1 + window (trained frames - 2)
      against full; the fraction of (condition digit, generated frame) pairs in which the digit
      classifier still sees the condition's digit.
  ttff_fraction  (with --export)
      a 64-frame stream of the export made frame by frame (platform/serving/stream.py, in
      process, not over HTTP): time to the first frame out over the whole stream's time; and
      ttff_generated_fraction, the same to the first generated frame.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from videomar.model.cache import CachePolicy
from videomar.model.config import model_config
from videomar.model.sampler import SampleSettings, generate
from videomar.model.session import StreamSession
from videomar.model.videomar import VideoMAR

STEPS = 8


def random_model(channels: int) -> VideoMAR:
    torch.manual_seed(0)
    model = VideoMAR(model_config("tiny", latent_channels=channels)).eval()
    with torch.no_grad():  # random weights: the head's zero-init would make samples ignore the backbone
        for param in model.parameters():
            param.normal_(0, 0.05)
    return model


def rollout(model, cond, text, frames: int, policy: CachePolicy, timed_last: int, steps: int):
    """(cache bytes after each frame, seconds for the last ``timed_last`` frames). The frames
    before those take one spatial step each: what they hold does not change the timing."""
    settings = SampleSettings(frames, 1, cfg=1.0, temperature=0.9, cache=policy)
    session = StreamSession(model, cond, text, settings, torch.Generator().manual_seed(0))
    sizes, start = [], None
    for i in range(frames):
        if i == frames - timed_last:
            session.s = dataclasses.replace(settings, steps=steps)
            start = time.perf_counter()
        session.next(1)
        sizes.append(session.cache.nbytes())
    return sizes, time.perf_counter() - start


def policy_figures(args) -> dict:
    model = random_model(args.channels)
    cond = torch.randn(1, args.channels, 1, args.latent, args.latent, generator=torch.Generator().manual_seed(1))
    text = model.tokenize(["a handwritten 3 moving up and left"])
    w, long = args.window, 8 * args.window
    sink = CachePolicy("sink_window", sink=1, window=w)
    sizes_sink, sink_s = rollout(model, cond, text, long, sink, w, args.steps)
    print(f"sink_window: {long} frames, last {w} in {sink_s:.1f} s", flush=True)
    sizes_full, full_s = rollout(model, cond, text, long, CachePolicy(), w, args.steps)
    print(f"full: {long} frames, last {w} in {full_s:.1f} s", flush=True)
    both = dict(frames=2 * w, steps=STEPS, cfg=1.0, temperature=0.9)
    full = generate(model, cond, text, generator=torch.Generator().manual_seed(2), **both)
    kept = generate(model, cond, text, generator=torch.Generator().manual_seed(2),
                    cache=CachePolicy("sink_window", sink=1, window=2 * w), **both)
    return {
        "window": w, "sink": 1, "tokens_per_frame": args.latent**2, "long_frames": long, "timed_steps": args.steps,
        "kv_bytes_sink_long": sizes_sink[-1], "kv_bytes_full_long": sizes_full[-1],
        "kv_bytes_ratio": round(sizes_sink[-1] / sizes_full[-1], 4),
        "kv_growth": round(sizes_sink[-1] / sizes_sink[2 * w - 1], 4),
        "fps_sink_long": round(w / sink_s, 3), "fps_full_long": round(w / full_s, 3),
        "speedup_long": round(full_s / sink_s, 2),
        "max_abs_diff_within_horizon": float((full - kept).abs().max()),
    }


def held_out_conditions(export, clips: int):
    """Frame 0 of the first ``clips`` val clips of the dataset of ``export`` (an Export or an
    Engine: anything with its config): (scaled latents [B, C, 1, H', W'], captions)."""
    import glob
    import os

    import numpy as np
    import pyarrow.parquet as pq

    manifest = export.config["manifest"]
    bucket = export.config["bucket"]
    folder = os.path.join(os.path.dirname(manifest), "buckets", f"{bucket['frames']}x{bucket['height']}x{bucket['width']}")
    shape = export.config["latent"]["shape"]  # [C, T', H', W']
    means, captions, sources = [], [], set()
    for path in sorted(glob.glob(os.path.join(folder, "*.parquet"))):
        table = pq.read_table(path, columns=["split", "source", "caption", "mean"]).to_pylist()
        for row in table:
            if row["split"] == "val" and len(means) < clips and row["source"] not in sources:
                sources.add(row["source"])
                means.append(np.asarray(row["mean"], dtype=np.float32).reshape(shape)[:, :1])
                captions.append(row["caption"])
    latents = torch.from_numpy(np.stack(means)) * export.config["latent"]["scale"]
    return latents, captions


def digit_figures(args) -> dict:
    from videomar.artifacts.export import load_export
    from videomar.artifacts.media import decode_latents
    from videomar.platform.evaluation.consistency import subject_consistency
    from videomar.platform.evaluation.digits import digits_in_videos, load_digit_classifier

    export = load_export(args.export)
    trained = export.config["latent"]["shape"][1]
    cond, captions = held_out_conditions(export, args.clips)
    text = export.model.tokenize(captions)
    clf = load_digit_classifier()
    out = {"trained_latent_frames": trained, "long_latent_frames": 10 * trained, "clips": len(captions),
           "sink_window": [1, trained - 2]}
    for name, policy in (("sink", CachePolicy("sink_window", sink=1, window=trained - 2)), ("full", CachePolicy())):
        start = time.perf_counter()
        latents = generate(export.model, cond, text, frames=10 * trained - 1, steps=STEPS, cfg=3.0,
                           generator=torch.Generator().manual_seed(0), cache=policy)
        with torch.no_grad():
            present = digits_in_videos(clf, decode_latents(export.vae, latents))  # [B, T, 10]
        out[f"digit_consistency_long_{name}"] = round(subject_consistency(present, 1), 4)
        print(f"{name}: {10 * trained} frames x {len(captions)} clips in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def ttff_figures(args) -> dict:
    from videomar.artifacts.media import decode_latents, to_uint8_frames
    from videomar.platform.serving.engine import Engine, Job
    from videomar.platform.serving.stream import StreamPlan, stream_video

    engine = Engine.load(args.export, device="cpu")
    cond, caption = held_out_conditions(engine, 1)
    with torch.no_grad():
        image = to_uint8_frames(decode_latents(engine.vae, cond)[0])[0]  # [H, W, 3] uint8, as a client sends
    job = Job(image=image, prompt=caption[0], frames=args.stream_frames, steps=STEPS, cfg=3.0,
              temperature=None, seed=0)
    window = engine.config["latent"]["shape"][1] - 2
    start = time.perf_counter()
    times = [time.perf_counter() - start for _ in stream_video(engine, job, StreamPlan(1, window))]
    total = times[-1]
    return {"ttff_s": round(times[0], 3), "stream_64_s": round(total, 2),
            "ttff_fraction": round(times[0] / total, 4), "ttff_generated_fraction": round(times[1] / total, 4)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", help="a trained stage export with its dataset (the quickstart's)")
    p.add_argument("--window", type=int, default=4, help="window W of the policy parts (latent frames)")
    p.add_argument("--latent", type=int, default=32, help="latent height and width of the policy parts")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--steps", type=int, default=64, help="spatial steps of the timed frames (the sampler's default)")
    p.add_argument("--parts", default="policies,digits,ttff", help="which parts to run (digits, ttff need --export)")
    p.add_argument("--clips", type=int, default=4, help="held-out clips of the digit part")
    p.add_argument("--stream-frames", type=int, default=64, help="pixel frames of the ttff stream")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    parts = args.parts.split(",")
    result = policy_figures(args) if "policies" in parts else {}
    if args.export and "digits" in parts:
        result.update(digit_figures(args))
    if args.export and "ttff" in parts:
        result.update(ttff_figures(args))
    result["bench_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
