"""Offline generation: the ``kind: generate`` job on Ray Data writing to a real S3 server, and
``videomar generate`` writing MP4 + GIF + contact sheet locally."""

from __future__ import annotations

import base64
import json
import os

import pytest
import yaml

from tests.support.tiny_export import write_tiny_export
from tests.support.videos import decode_mp4, png_b64
from videomar.artifacts import storage
from videomar.platform.cli import main as cli
from videomar.errors import SpecError
from videomar.platform.jobs import load_spec, parse_spec

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_tiny_export(str(tmp_path_factory.mktemp("export") / "stage"))


def put_image(uri: str, height: int = 32, width: int = 32, seed: int = 0) -> None:
    storage.write_bytes_atomic(uri, base64.b64decode(png_b64(height, width, seed)))


@pytest.mark.slow
def test_generate_job_writes_one_video_per_input_to_s3(s3_server, export, tmp_path):
    import ray

    root = s3_server.uri("generate-job")
    lines = []
    for i in range(4):
        put_image(f"{root}/images/{i}.png", seed=i)
        lines.append({"image": f"images/{i}.png", "prompt": f"digit {i}", "frames": 2 + i, "seed": i})
    lines[3]["name"] = "last"
    storage.write_bytes_atomic(f"{root}/images/broken.png", b"not an image at all")
    lines.append({"image": "images/broken.png", "name": "broken"})
    storage.write_bytes_atomic(f"{root}/inputs.jsonl", "\n".join(json.dumps(x) for x in lines).encode())
    spec_path = tmp_path / "generate.yaml"
    spec_path.write_text(yaml.safe_dump({
        "kind": "generate", "export": export, "inputs": f"{root}/inputs.jsonl", "output": f"{root}/videos",
        "defaults": {"steps": 4}, "resources": {"workers": 2}, "batch_size": 2,
    }))
    ray.shutdown()  # a fresh local Ray started after the S3 variables are set, so actors see them
    try:
        assert cli(["run", str(spec_path)]) == 1  # the broken input fails; the others are written
        names = ["000000.mp4", "000001.mp4", "000002.mp4", "last.mp4", "results.json"]
        assert [u.rsplit("/", 1)[1] for u in storage.list_dir(f"{root}/videos")] == names
        for i, name in enumerate(names[:4]):
            assert decode_mp4(storage.read_bytes(f"{root}/videos/{name}")).shape == (2 + i, 32, 32, 3)
        results = json.loads(storage.read_bytes(f"{root}/videos/results.json"))
        assert [r["error"] is None for r in results] == [True] * 4 + [False]
        assert "images/broken.png" in results[4]["error"] and results[4]["output"] is None

        assert cli(["run", str(spec_path)]) == 1  # a rerun skips the videos already written
        results = json.loads(storage.read_bytes(f"{root}/videos/results.json"))
        assert [r["skipped"] for r in results] == [True] * 4 + [False]
    finally:
        ray.shutdown()


def test_generate_spec_and_manifest_errors_name_the_field(tmp_path, export):
    with pytest.raises(SpecError, match="resources.workers"):
        parse_spec({"kind": "generate", "export": export, "inputs": "x", "output": "y", "resources": {"workers": 0}})
    with pytest.raises(SpecError, match="defaults.frames"):
        parse_spec({"kind": "generate", "export": export, "inputs": "x", "output": "y", "defaults": {"frames": 1}})
    from videomar.platform.serving.offline import read_inputs

    manifest = tmp_path / "inputs.jsonl"
    spec = parse_spec({"kind": "generate", "export": export, "inputs": str(manifest), "output": str(tmp_path)})
    for text, field in [('{"image": "a.png"}\n{"image": "b.png", "frames": 1}', "line 2: frames"),
                        ('{"prompt": "no image"}', "line 1: image"),
                        ('{"image": "a.png", "name": "../x"}', "line 1: name"),
                        ('{"image": "a.png", "name": "n"}\n{"image": "b.png", "name": "n"}', "line 2: name"),
                        ("not json", "line 1: not valid JSON")]:
        manifest.write_text(text)
        with pytest.raises(ValueError, match=field):
            read_inputs(spec)
    manifest.write_text('{"image": "a.png"}\n\n{"image": "/abs/b.png", "seed": 5}\n')
    rows = read_inputs(spec)
    assert [r["image"] for r in rows] == [str(tmp_path / "a.png"), "/abs/b.png"]
    assert [r["seed"] for r in rows] == [0, 5] and rows[1]["name"] == "000001"

    inline = {"kind": "generate", "export": export, "output": str(tmp_path),
              "items": [{"image": "x.png", "prompt": "p", "frames": 5}, {"image": "s3://b/y.png", "name": "y"}]}
    rows = read_inputs(parse_spec(inline))  # relative images of inline inputs: the working directory
    assert [r["image"] for r in rows] == [os.path.join(os.getcwd(), "x.png"), "s3://b/y.png"]
    assert [r["frames"] for r in rows] == [5, 9] and [r["name"] for r in rows] == ["000000", "y"]
    with pytest.raises(SpecError, match="items.1.seed"):
        parse_spec({**inline, "items": [{"image": "x.png"}, {"image": "y.png", "seed": -1}]})
    with pytest.raises(ValueError, match="items.1: name"):
        read_inputs(parse_spec({**inline, "items": [{"image": "x.png", "name": "a"}, {"image": "y.png", "name": "a"}]}))
    with pytest.raises(SpecError, match="exactly one of inputs"):
        parse_spec({**inline, "inputs": "m.jsonl"})
    with pytest.raises(SpecError, match="exactly one of inputs"):
        parse_spec({k: v for k, v in inline.items() if k != "items"})


def test_videomar_generate_writes_mp4_gif_and_contact_sheet(tmp_path, export, capsys):
    image = tmp_path / "cond.png"
    image.write_bytes(base64.b64decode(png_b64(32, 32)))
    out = tmp_path / "out" / "clip.mp4"
    args = ["generate", "--export", export, "--image", str(image), "--frames", "7", "--out", str(out),
            "--steps", "4", "--seed", "3", "--prompt", "a ball"]
    assert cli(args) == 0
    frames = decode_mp4(out.read_bytes())
    assert frames.shape == (7, 32, 32, 3)
    assert (tmp_path / "out" / "clip.gif").stat().st_size > 0 and (tmp_path / "out" / "clip.png").stat().st_size > 0
    again = tmp_path / "again.mp4"
    assert cli([*args[:-7], str(again), *args[-6:]]) == 0
    assert (decode_mp4(again.read_bytes()) == frames).all()  # same seed, same video

    bad = tmp_path / "bad.png"
    bad.write_bytes(base64.b64decode(png_b64(30, 30)))
    assert cli([*args[:4], str(bad), *args[5:]]) == 2  # a bad input: one line naming it
    assert "30x30" in capsys.readouterr().err
    assert cli([*args[:6], "0", *args[7:]]) == 2
    assert "--frames" in capsys.readouterr().err


def test_quickstart_specs_validate():
    assert load_spec("jobs/quickstart/serve.yaml").kind == "serve"
    assert load_spec("jobs/quickstart/generate.yaml").kind == "generate"
    with pytest.raises(SpecError, match="max_ongoing_requests"):
        parse_spec({"kind": "serve", "export": "x", "deployment": {"max_batch_size": 8, "max_ongoing_requests": 4}})
