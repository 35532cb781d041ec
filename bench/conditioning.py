"""Benchmark: real conditioning by local path. A precompute of --videos clips whose captions repeat
(drawn from --distinct captions, as real datasets' do) with a decoder-only LLM text encoder: each
distinct caption is encoded once, and a re-run encodes none. The LLM is randomly initialised from a
transformers config (no download) at --width x --layers, big enough that encoding costs time.
Then each pretrained diffusers video VAE class (tiny, random) encodes and decodes a clip through
videomar's loader.

    python -m bench.conditioning [--videos 48] [--distinct 6] [--width 512] [--layers 4]

The last line printed is one JSON object: captions, distinct_captions, text_encoder_calls
(captions the precompute run encoded), rerun_text_encoder_calls, text_seconds_dedup and
text_seconds_naive (the same encoder on the distinct captions, and on every caption, in
batches of 8; the fastest of 5 rounds, timed in turn),
dedup_speedup, and vaes: per class, the latent shape of a 9x32x32 clip and round_trip (decoded
shape equals the clip's, and re-encoding the export gives the same latents).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
REPEATS = 5
WORDS = ["a", "handwritten", "digit", "moving", "up", "down", "left", "right", "and", "slowly", "quickly"]


def build_llm(directory: Path, width: int, layers: int) -> Path:
    import torch
    import transformers

    from tests.support.pretrained import WORDS as CAPTION_WORDS

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS + CAPTION_WORDS))]
    directory.mkdir(parents=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizer(str(directory / "vocab.txt")).save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.Qwen2Config(vocab_size=len(vocab), hidden_size=width, intermediate_size=4 * width,
                                      num_hidden_layers=layers, num_attention_heads=max(1, width // 64),
                                      num_key_value_heads=1, pad_token_id=0)
    transformers.Qwen2ForCausalLM(config).save_pretrained(directory)
    return directory


def captions_for(videos: int, distinct: int) -> list[str]:
    pool = [" ".join(["a handwritten", str(i % 10), "moving", WORDS[4 + i % 4], "and", WORDS[4 + (i + 1) % 4]] +
                     ["slowly"] * (8 + i)) for i in range(distinct)]
    return [pool[i % distinct] for i in range(videos)]


def write_source(root: Path, videos: int, distinct: int) -> Path:
    """Sample videos with their captions replaced by ``distinct`` repeating ones."""
    from videomar.data_pipelines.sample_data import write_sample_videos

    manifest = write_sample_videos(root / "sample", videos, seed=0, frames=5, size=32)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row, caption in zip(rows, captions_for(videos, distinct)):
        row["caption"] = caption
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return manifest


def precompute(source: Path, vae: str, output: Path, llm: Path):
    from videomar.data_pipelines.precompute import PrecomputeConfig, run_precompute
    from videomar.data_pipelines.stages import ClipParams
    from videomar.data_pipelines.text import TextConfig

    cfg = PrecomputeConfig(source=str(source), vae=vae, output=str(output), clips=ClipParams(buckets=((5, 32, 32),)),
                           encode_workers=1, encode_cpus=0.5, decode_cpus=0.5,
                           text=TextConfig(path=str(llm), max_length=64, batch_size=8, gpus=0))
    return run_precompute(cfg, log=lambda line: None)


def encode_seconds(llm: Path, dedup: list[str], naive: list[str], batch: int = 8) -> tuple[float, float]:
    """Seconds to encode ``dedup`` and ``naive`` captions in batches: the fastest of REPEATS
    rounds, the two timed in turn in each round (a shared machine's noise hits both alike)."""
    from videomar.model.text import HFTextEncoder

    encoder = HFTextEncoder(llm, max_len=64)
    encoder.encode(dedup[:1])  # warm-up
    best = [float("inf"), float("inf")]
    for _ in range(REPEATS):
        for i, captions in enumerate((dedup, naive)):
            started = time.perf_counter()
            for j in range(0, len(captions), batch):
                encoder.encode(captions[j: j + batch])
            best[i] = min(best[i], time.perf_counter() - started)
    return best[0], best[1]


def vae_round_trips(root: Path) -> dict:
    import torch

    from tests.support.pretrained import VAE_CONFIGS, diffusers_vae
    from videomar.model.vae import load_vae

    out = {}
    pixels = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    for name in sorted(VAE_CONFIGS):
        vae = load_vae(diffusers_vae(name, root / name))
        with torch.no_grad():
            mean, _ = vae.encode(pixels)
            decoded = vae.decode(mean)
            vae.export(str(root / f"{name}-export"))
            again, _ = load_vae(root / f"{name}-export").encode(pixels)
        out[name] = {"latent_shape": list(mean.shape[1:]), "round_trip": decoded.shape == pixels.shape
                     and bool(torch.allclose(again, mean))}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--distinct", type=int, default=6)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    args = p.parse_args(argv)
    import ray

    from tests.support.latents import quickstart_vae

    with tempfile.TemporaryDirectory(prefix="videomar-bench-cond-") as tmp:
        root = Path(tmp)
        llm = build_llm(root / "llm", args.width, args.layers)
        source = write_source(root, args.videos, args.distinct)
        vae = quickstart_vae(root / "vae")
        captions = captions_for(args.videos, args.distinct)
        dedup, naive = encode_seconds(llm, sorted(set(captions)), captions)  # before Ray runs beside it
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            first = precompute(source, vae, root / "latents", llm)
            rerun = precompute(source, vae, root / "latents", llm)
        finally:
            ray.shutdown()
        result = {
            "captions": len(captions), "distinct_captions": first.text.distinct,
            "text_encoder_calls": first.text.encoded, "rerun_text_encoder_calls": rerun.text.encoded,
            "text_seconds_dedup": round(dedup, 4), "text_seconds_naive": round(naive, 4),
            "dedup_speedup": round(naive / dedup, 2), "vaes": vae_round_trips(root),
        }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
