"""Sampler speed: the KV-cached sampler against re-computing all previous frames every step and
against token-by-token prediction (one token per step, raster order, with the cache), on the
same model, inputs and seed in one process.

    python -m bench.sampler [--preset tiny] [--latent 32] [--frames 6] [--steps 64]

The default is the tiny preset on 32x32 latent frames (1024 tokens per frame), batch 1, without
guidance (cfg 1; guided sampling doubles every mode's work alike, and its equivalence is tested in
tests/unit/test_sampler.py): a size at which the backbone, not the per-token diffusion head, dominates
a spatial step. token_by_token needs 1024 steps per frame against 64, so the whole run takes
about 20 minutes on a 2-core CPU. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from videomar.model.config import model_config
from videomar.model.sampler import generate
from videomar.model.videomar import VideoMAR


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--latent", type=int, default=32, help="latent height and width (tokens per frame = latent**2)")
    p.add_argument("--channels", type=int, default=16, help="latent channels")
    p.add_argument("--frames", type=int, default=6, help="latent frames generated after one condition frame")
    p.add_argument("--steps", type=int, default=64, help="spatial steps per frame")
    p.add_argument("--cfg", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = VideoMAR(model_config(args.preset, latent_channels=args.channels)).eval()
    with torch.no_grad():  # random weights: the head's zero-init would make samples ignore the backbone
        for param in model.parameters():
            param.normal_(0, 0.05)
    cond = torch.randn(1, args.channels, 1, args.latent, args.latent, generator=torch.Generator().manual_seed(1))
    text = model.tokenize(["a handwritten 3 moving up and left"])

    def timed(mode: str):
        start = time.perf_counter()
        out = generate(model, cond, text, frames=args.frames, steps=args.steps, cfg=args.cfg, mode=mode,
                       generator=torch.Generator().manual_seed(args.seed))
        seconds = time.perf_counter() - start
        print(f"{mode}: {seconds:.1f} s", flush=True)
        return out, seconds

    cached, kv_s = timed("kv_cache")
    reference, re_s = timed("recompute")
    _, tbt_s = timed("token_by_token")
    result = {
        "preset": args.preset,
        "frames": args.frames,
        "spatial_steps": args.steps,
        "tokens_per_frame": args.latent**2,
        "kv_cache_s": round(kv_s, 2),
        "recompute_s": round(re_s, 2),
        "token_by_token_s": round(tbt_s, 2),
        "speedup_vs_recompute": round(re_s / kv_s, 2),
        "speedup_vs_token_by_token": round(tbt_s / kv_s, 2),
        "max_abs_diff": float((cached - reference).abs().max()),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
