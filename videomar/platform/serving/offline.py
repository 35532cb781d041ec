"""The ``generate`` job: videos for a manifest of inputs, made by a Ray Data actor pool.

The driver validates the whole manifest first (an error names the line and field) and checks
that the export is complete, then Ray Data spreads the inputs over actors that each load the
export once, sample a batch of inputs together, and write each MP4 atomically to the output
folder. Inputs whose video already exists are skipped unless ``overwrite`` is set, so a rerun
finishes what is missing. Every input ends up in ``results.json`` with its output or its error.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pydantic

from videomar.artifacts import storage
from videomar.artifacts.export import check_complete
from videomar.artifacts.media import mp4_bytes
from videomar.errors import ConfigError
from videomar.platform import console
from videomar.platform.serving.engine import Engine, Job
from videomar.platform.serving.requests import image_from_bytes
from videomar.platform.specs.generate import GenerateSpec, InputLine
from videomar.ray_env import gpus_per_worker

RESULTS_FILE = "results.json"


def read_inputs(spec: GenerateSpec) -> list[dict[str, Any]]:
    """The inputs as resolved rows (defaults applied, image URIs absolute); ConfigError names the
    line (or list entry) and field at fault."""
    if spec.items is not None:
        items = [(f"items.{i}", item, os.getcwd()) for i, item in enumerate(spec.items)]
    else:
        items = list(_manifest_lines(spec.inputs))
    rows, names = [], set()
    for where, item, base in items:
        name = item.name or f"{len(rows):06d}"
        if name in names:
            raise ConfigError(f"{where}: name: {name!r} is used by an earlier input")
        names.add(name)
        d = spec.defaults
        rows.append({
            "index": len(rows), "name": name, "image": storage.resolve(item.image, base),
            "prompt": item.prompt, "frames": item.frames or d.frames,
            "seed": item.seed if item.seed is not None else d.seed,
            "steps": item.steps or d.steps, "cfg": item.cfg if item.cfg is not None else d.cfg,
            "temperature": item.temperature if item.temperature is not None else d.temperature,
        })
    if not rows:
        raise ConfigError(f"inputs: {spec.inputs} has no inputs")  # items cannot be empty
    return rows


def _manifest_lines(uri: str):
    """(where, InputLine, folder the relative images are in) for each line of a manifest."""
    try:
        text = storage.read_bytes(uri).decode()
    except FileNotFoundError:
        raise ConfigError(f"inputs: {uri} does not exist") from None
    base = storage.folder_of(uri)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"inputs: {uri} line {number}"
        try:
            yield where, InputLine.model_validate(json.loads(line)), base
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}: not valid JSON: {err}") from None
        except pydantic.ValidationError as err:
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ConfigError(f"{where}: {fields}") from None


class GenerateActor:
    """A Ray Data actor: the export loaded once; each call samples a batch of inputs."""

    def __init__(self, export: str, output: str, overwrite: bool):
        self.engine = Engine.load(export)
        self.output, self.overwrite = output, overwrite

    def __call__(self, batch: dict) -> dict:
        rows = [json.loads(r) for r in batch["input"]]
        results: dict[int, dict] = {}
        jobs: dict[int, Job] = {}
        for row in rows:
            uri = storage.join(self.output, f"{row['name']}.mp4")
            results[row["index"]] = {"index": row["index"], "name": row["name"], "output": uri, "error": None,
                                     "skipped": False}
            if not self.overwrite and storage.exists(uri):
                results[row["index"]]["skipped"] = True
                continue
            try:
                jobs[row["index"]] = self._job(row)
            except (ValueError, OSError) as err:
                results[row["index"]].update(output=None, error=str(err))
        self._generate(jobs, results)
        ordered = [results[r["index"]] for r in rows]
        return {"result": [json.dumps(r) for r in ordered]}

    def _job(self, row: dict) -> Job:
        raw = storage.read_bytes(row["image"])
        image = image_from_bytes(raw, f"image {row['image']}", None, self.engine.spatial_multiple)
        return Job(image=image, prompt=row["prompt"], frames=row["frames"], steps=row["steps"],
                   cfg=row["cfg"], temperature=row["temperature"], seed=row["seed"])

    def _generate(self, jobs: dict[int, Job], results: dict[int, dict]) -> None:
        if not jobs:
            return
        try:
            videos = self.engine.run(list(jobs.values()))
        except (ValueError, RuntimeError) as err:  # a sampler refusal fails this batch, not the job
            for index in jobs:
                results[index].update(output=None, error=f"{type(err).__name__}: {err}")
            return
        for index, video in zip(jobs, videos):
            try:
                storage.write_bytes_atomic(results[index]["output"], mp4_bytes(video))
            except OSError as err:
                results[index].update(output=None, error=f"writing {results[index]['output']}: {err}")


def check_inputs(spec: GenerateSpec) -> list[dict[str, Any]]:
    """The generate job's preflight: a complete export and valid inputs; the resolved rows."""
    check_complete(storage.absolute(spec.export), "export")
    return read_inputs(spec)


def run_generate(spec: GenerateSpec, rows: list[dict[str, Any]]) -> int:
    """Run the job on the connected Ray cluster; 0 when every input has its video."""
    import ray.data
    from ray.data import ActorPoolStrategy

    r = spec.resources
    output = storage.absolute(spec.output)
    dataset = ray.data.from_items([{"input": json.dumps(r)} for r in rows]).map_batches(
        GenerateActor,
        fn_constructor_kwargs={"export": storage.absolute(spec.export), "output": output,
                               "overwrite": spec.overwrite},
        batch_size=spec.batch_size, compute=ActorPoolStrategy(size=r.workers),
        num_cpus=r.cpus_per_worker, num_gpus=gpus_per_worker(r.gpus_per_worker),
    )
    results = []
    with console.phase(f"generate {spec.name or 'videos'}", total=len(rows), unit="videos") as row:
        for item in dataset.iter_rows():
            results.append(json.loads(item["result"]))
            row.update(len(results), failed=sum(1 for r in results if r["error"]))
    results.sort(key=lambda r: r["index"])
    storage.write_bytes_atomic(storage.join(output, RESULTS_FILE), json.dumps(results, indent=1).encode())
    failed = [r for r in results if r["error"]]
    made = sum(1 for r in results if not r["error"] and not r["skipped"])
    skipped = sum(1 for r in results if r["skipped"])
    console.say(f"generate: {made} videos written, {skipped} already there, {len(failed)} failed -> {spec.output}")
    for r in failed:
        console.say(f"  {r['name']}: {r['error']}")
    return 1 if failed else 0
