"""The main job end to end on embedded defaults: sample videos -> train the VAE -> precompute
latents -> the two-stage quickstart curriculum (2 workers, ZeRO-2) -> evaluate the last stage on
the held-out clips (quality.json, contact sheet) -> generate a video from a held-out first frame
with the KV-cached sampler.

Every step runs a real job spec from jobs/quickstart/ (copied into the work dir, where its
relative paths resolve), through the same code as `videomar run`, on an in-process Ray with
local-disk storage and a local MLflow store. `--small` shrinks the counts for CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from videomar.artifacts.export import load_export
from videomar.artifacts.storage import write_bytes_atomic
from videomar.data_pipelines.sample_data import write_sample_videos
from videomar.platform import console
from videomar.platform.cli import main as cli
from videomar.platform.evaluation import report
from videomar.platform.jobs import execute
from videomar.platform.jobs import merge, parse_spec
from videomar.ray_env import ensure_ray

JOBS_DIR = Path(__file__).resolve().parents[2] / "jobs" / "quickstart"
STAGES = ("vae.yaml", "precompute.yaml", "stage1.yaml", "stage2.yaml")
OTHER_SPECS = ("eval.yaml", "generate.yaml", "serve.yaml")
HELD_OUT_SEED = 10_000  # a seed the training videos never use
SAMPLE_FRAMES = 24  # pixel frames per sample video; covers the longest bucket with room for 2 clips


@dataclass(frozen=True)
class Plan:
    """What the quickstart runs; --small shrinks it for CI."""

    videos: int = 200
    generate_frames: int = 9  # pixel frames of the final video, the condition frame included
    generate_steps: int = 8
    temperature: float = 0.3  # as eval.yaml samples: see its comment
    # Per spec file: nested keys to override in the YAML before it is validated.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


FULL = Plan()
SMALL = Plan(
    videos=8,
    overrides={
        "vae.yaml": {"train": {"steps": 30}},
        "stage1.yaml": {"schedule": {"steps": 6, "warmup_steps": 2}, "checkpoint": {"every": 6}},
        "stage2.yaml": {"schedule": {"steps": 6, "warmup_steps": 2}, "checkpoint": {"every": 6}},
    },
)


class QuickstartError(RuntimeError):
    pass


def run_quickstart(workdir: str | Path, small: bool = False, out: Callable[[str], None] = print) -> dict[str, Path]:
    """Run every step in `workdir`; returns the paths of what it made. Raises QuickstartError."""
    plan = SMALL if small else FULL
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not JOBS_DIR.is_dir():
        raise QuickstartError(f"{JOBS_DIR} is missing: run the quickstart from a source checkout of videomar")
    progress = _Progress(total=len(STAGES) + 3)
    previous_cwd = os.getcwd()
    os.chdir(work)  # the specs' relative paths resolve against the work dir
    try:
        specs = _write_specs(work, plan)
        with progress.step("sample videos of moving handwritten digits, start an in-process Ray"):
            _sample_videos(work, plan)
            ensure_ray(num_cpus=max(4, os.cpu_count() or 1))
        for name in STAGES:
            spec = specs[name]
            with progress.step(f"{spec.kind}: {spec.name or name} ({name})"):
                status = execute(spec)
            if status != 0:
                raise QuickstartError(f"{name} ({spec.kind}) failed with exit status {status}")
        evaluation = specs["eval.yaml"]
        with progress.step(f"evaluate the last stage on up to {evaluation.options.videos} held-out clips (eval.yaml)"):
            quality = _evaluate(work, evaluation)
        with progress.step("generate a video from a held-out first frame (KV-cached sampler)"):
            outputs = _generate(work, plan)
    finally:
        os.chdir(previous_cwd)
    outputs["quality"] = work / QUALITY_JSON
    _summary(work, outputs, out, progress.elapsed())
    _print_quality(quality, out)
    return outputs


QUALITY_JSON = "quality.json"


def _evaluate(work: Path, spec) -> dict[str, Any]:
    """Run the eval spec and write its quality summary to <work>/quality.json."""
    import json

    if execute(spec) != 0:
        raise QuickstartError("eval.yaml failed")
    quality = report.quality_figures(report.read_eval_json(spec.export))
    if quality["contact_sheet"]:
        quality["contact_sheet"] = str(work / quality["contact_sheet"])  # the spec's paths are relative to work
    write_bytes_atomic(str(work / QUALITY_JSON), (json.dumps(quality, indent=2) + "\n").encode())
    return quality


QUALITY_PER_LINE = 3  # figures per console line: the whole summary in a few lines


def _print_quality(quality: dict[str, Any], out: Callable[[str], None]) -> None:
    out("")
    out(f"Quality on {quality['videos']:.0f} held-out clips (quality.json):")
    figures = [f"{key} {'n/a' if value is None else f'{value:.4g}' if isinstance(value, float) else value}"
               for key, value in quality.items() if key not in ("contact_sheet", "stage")]
    for start in range(0, len(figures), QUALITY_PER_LINE):
        out("  " + "".join(f"{f:34s}" for f in figures[start:start + QUALITY_PER_LINE]).rstrip())
    out(f"  stage {quality.get('stage')}; contact sheet {quality.get('contact_sheet')}")


def _write_specs(work: Path, plan: Plan) -> dict:
    """Copy the quickstart specs into the work dir (with --small overrides) and validate them."""
    specs = {}
    for name in STAGES + OTHER_SPECS:
        source = JOBS_DIR / name
        text = source.read_text()
        if name in plan.overrides:
            data = merge(yaml.safe_load(text), plan.overrides[name])
            text = f"# {source.name} from videomar's quickstart, with --small overrides\n" + yaml.safe_dump(data, sort_keys=False)
        (work / name).write_text(text)
        specs[name] = parse_spec(yaml.safe_load(text), str(work / name))
    return specs


def _sample_videos(work: Path, plan: Plan) -> None:
    write_sample_videos(work / "sample", plan.videos, seed=0, frames=SAMPLE_FRAMES)
    write_sample_videos(work / "heldout", 1, seed=HELD_OUT_SEED, frames=SAMPLE_FRAMES)


def _held_out_frame(work: Path, size: tuple[int, int]) -> Path:
    """The first frame of the held-out video, resized to the training resolution, as a PNG."""
    import decord
    from PIL import Image

    video = next((work / "heldout").rglob("*.mp4"))
    first = decord.VideoReader(str(video))[0].asnumpy()  # [H, W, 3] uint8
    path = work / "heldout" / "first_frame.png"
    Image.fromarray(first).resize((size[1], size[0]), Image.BILINEAR).save(path)
    return path


def _generate(work: Path, plan: Plan) -> dict[str, Path]:
    export_uri = str(work / "runs" / "quickstart-stage2" / "export")
    bucket = load_export(export_uri).config["bucket"]
    image = _held_out_frame(work, (bucket["height"], bucket["width"]))
    out = work / "generated" / "heldout.mp4"
    status = cli(["generate", "--export", export_uri, "--image", str(image), "--frames",
                  str(plan.generate_frames), "--steps", str(plan.generate_steps), "--temperature", str(plan.temperature),
                  "--prompt", "a handwritten digit moving", "--out", str(out)])
    if status != 0:
        raise QuickstartError(f"generation failed with exit status {status}")
    return {"mp4": out, "gif": out.with_suffix(".gif"), "png": out.with_suffix(".png"),
            "condition": image, "export": Path(export_uri)}


def _summary(work: Path, outputs: dict[str, Path], out: Callable[[str], None], seconds: float) -> None:
    db = work / "runs" / "mlflow.db"
    out("")
    out(f"quickstart finished in {seconds / 60:.1f} min. Everything is under {work}")
    out(f"  video:              {outputs['mp4']} (also {outputs['gif'].name}, contact sheet {outputs['png'].name})")
    out(f"  condition frame:    {outputs['condition']}")
    out(f"  checkpoints:        {work / 'runs'}/quickstart-stage*/ (Ray Train checkpoints)")
    out(f"  final export:       {outputs['export']}")
    out(f"  quality per stage:  {work / 'runs'}/quickstart-stage*/export/eval.json")
    out(f"  quality summary:    {outputs['quality']}")
    out(f"  MLflow runs:        experiment 'videomar-quickstart' in {db if db.exists() else work / 'runs'}")
    out("Next:")
    out(f"  mlflow ui --backend-store-uri sqlite:///{db} --host 127.0.0.1   # browse the runs")
    out(f"  cd {work} && videomar serve serve.yaml                           # HTTP endpoint on 127.0.0.1:8000")
    out(f"  cd {work} && videomar run eval.yaml                              # quality metrics of the last stage")


class _Progress:
    """The quickstart's numbered steps, each a phase of the console's view."""

    def __init__(self, total: int):
        self.total, self.index, self.start = total, 0, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @contextlib.contextmanager
    def step(self, title: str):
        self.index += 1
        with console.phase(f"[{self.index}/{self.total}] {title}") as row:
            yield row


def clean(work: Path) -> None:
    """Remove a previous quickstart's outputs (only used by --fresh)."""
    if work.exists():
        shutil.rmtree(work)
