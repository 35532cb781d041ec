"""infra/: every manifest parses; the commands and spec paths they name exist; the image, Ray
and torch pins agree with pyproject.toml; secrets come from Secrets, never from plain values."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from videomar.platform.cli import build_parser
from videomar.errors import SpecError, UserError
from videomar.platform.jobs import load_spec

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MANIFESTS = sorted(INFRA.rglob("*.yaml"))
K8S_MANIFESTS = [p for p in MANIFESTS if "cluster-launcher" not in p.parts]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SECRET_NAMES = re.compile(r"(SECRET|TOKEN|PASSWORD|KEY_ID)", re.I)


def pin(requirement_name: str) -> str:
    """The ``==`` version pyproject.toml pins for a dependency (extras ignored)."""
    for req in PYPROJECT["project"]["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", req)
        if m and m.group(1).lower() == requirement_name:
            return m.group(3)
    raise AssertionError(f"pyproject.toml does not pin {requirement_name} with ==")


IMAGE = f"videomar:{PYPROJECT['project']['version']}"


def documents(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def walk(node, key=None):
    """Every (key, value) pair in a parsed YAML tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from walk(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def all_documents():
    return [(p, d) for p in MANIFESTS for d in documents(p)]


def videomar_commands(text: str) -> list[list[str]]:
    """``videomar ...`` command lines found in a string (entrypoints, container commands)."""
    found = []
    for line in re.split(r"[;&|\n]+", text):
        words = shlex.split(line)
        if len(words) >= 2 and words[0] == "videomar":
            found.append(words)
    return found


def strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def test_there_is_each_kind_of_manifest():
    kinds = {d.get("kind") for p, d in all_documents() if p in K8S_MANIFESTS}
    assert {"RayCluster", "RayJob", "RayService", "Deployment", "Service", "Secret", "Namespace"} <= kinds
    assert (INFRA / "cluster-launcher" / "aws.yaml").is_file()
    assert (INFRA / "Dockerfile").is_file()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(INFRA)))
def test_manifest_parses(path):
    docs = documents(path)
    assert docs, f"{path} holds no YAML document"
    if path in K8S_MANIFESTS:
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path}: not a Kubernetes object"
            assert doc["metadata"].get("namespace") == "videomar" or doc["kind"] == "Namespace"


def test_videomar_commands_and_spec_paths_exist():
    verbs = set(build_parser()._subparsers._group_actions[0].choices)
    named = []
    for path, doc in all_documents():
        for text in strings(doc):
            for words in videomar_commands(text):
                named.append((path, words))
    assert named, "no manifest runs a videomar command"
    for path, words in named:
        assert words[1] in verbs, f"{path}: `{' '.join(words)}`: no such videomar verb"
        if words[1] == "run":
            spec = words[2]
            assert spec.startswith("/jobs/"), f"{path}: {spec} is not in the image's /jobs"
            local = ROOT / "jobs" / spec.removeprefix("/jobs/")
            assert local.is_file(), f"{path}: {spec} has no jobs/{spec.removeprefix('/jobs/')} in the repository"
            load_spec(local)  # a spec that does not validate fails here, naming the field


def click_options(command) -> set[str]:
    return {opt for param in command.params for opt in param.opts}


def test_ray_and_mlflow_options_they_use_exist():
    from mlflow.cli import server as mlflow_server
    from ray.scripts.scripts import start as ray_start

    ray_options = click_options(ray_start)
    for path, doc in all_documents():
        for key, value in walk(doc):
            if key == "rayStartParams":
                for option in value:
                    assert f"--{option}" in ray_options, f"{path}: rayStartParams {option}: not a `ray start` option"
            if key == "command" and value[:2] == ["mlflow", "server"]:
                for arg in value[2:]:
                    option = arg.split("=")[0]
                    assert option in click_options(mlflow_server), f"{path}: `mlflow server {option}` does not exist"
    launcher = yaml.safe_load((INFRA / "cluster-launcher" / "aws.yaml").read_text())
    starts = launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
    for command in starts:
        for part in command.split(";"):
            words = shlex.split(part)
            if words[:2] == ["ray", "start"]:
                for word in words[2:]:
                    assert word.split("=")[0] in ray_options, f"aws.yaml: `ray start {word}`: no such option"


def test_every_paper_stage_has_a_rayjob_in_order():
    entrypoints = {
        d["spec"]["entrypoint"]: d["metadata"]["name"] for _, d in all_documents() if d.get("kind") == "RayJob"
    }
    for stage in sorted((ROOT / "jobs" / "paper").glob("stage*.yaml")):
        entry = f"videomar run /jobs/paper/{stage.name}"
        assert entry in entrypoints, f"no RayJob runs {stage.name}"
        assert entrypoints[entry] == load_spec(stage).name


def test_images_and_versions_agree_with_pyproject():
    images = [(p, v) for p, d in all_documents() for k, v in walk(d) if k == "image"]
    assert images
    for path, image in images:
        assert image == IMAGE, f"{path}: image {image!r}, expected {IMAGE!r} (pyproject version)"
    ray_versions = [(p, v) for p, d in all_documents() for k, v in walk(d) if k == "rayVersion"]
    assert ray_versions
    for path, version in ray_versions:
        assert version == pin("ray"), f"{path}: rayVersion {version} but pyproject pins ray=={pin('ray')}"


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", (INFRA / "Dockerfile").read_text(), re.M))


def test_dockerfile_pins_agree_with_pyproject_and_constraints():
    args = dockerfile_args()
    assert args["TORCH_VERSION"] == pin("torch")
    constraints = (ROOT / "constraints.txt").read_text()
    assert f"torch=={args['TORCH_VERSION']}" in constraints.split()
    assert "cuda" in args["CUDA_IMAGE"], "the image must build on a CUDA base"
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, args["PYTHON_VERSION"].split("."))) >= tuple(map(int, minimum.split(".")))
    text = (INFRA / "Dockerfile").read_text()
    # Every other dependency is installed from pyproject.toml under the same constraints.
    assert re.search(r"pip install -c constraints\.txt \"\.\[", text)
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"Dockerfile copies {item}, which is not in the repository"
    assert "COPY jobs /jobs" in text, "RayJob entrypoints read specs from /jobs"


def test_token_auth_is_on_everywhere():
    for path, doc in all_documents():
        if doc.get("kind") == "RayCluster":
            assert doc["spec"]["authOptions"]["mode"] == "token", path
        if doc.get("kind") == "RayService":
            assert doc["spec"]["rayClusterConfig"]["authOptions"]["mode"] == "token", path
    launcher = (INFRA / "cluster-launcher" / "aws.yaml").read_text()
    assert "RAY_AUTH_MODE=token" in launcher
    assert "--dashboard-host=127.0.0.1" in launcher


def test_secrets_come_from_secrets_that_exist():
    declared = {
        d["metadata"]["name"]: set((d.get("stringData") or {}) | (d.get("data") or {}))
        for _, d in all_documents()
        if d.get("kind") == "Secret"
    }
    for path, doc in all_documents():
        if doc.get("kind") == "Secret":
            assert not any(v for v in doc["stringData"].values()), f"{path}: a committed secret holds a value"
            continue
        for key, value in walk(doc):
            if key == "secretKeyRef":
                assert value["key"] in declared.get(value["name"], set()), f"{path}: {value} is not declared"
            if key == "secretRef":
                assert value["name"] in declared, f"{path}: secret {value['name']} is not declared"
            if key == "env":
                for var in value:
                    if SECRET_NAMES.search(var["name"]) and var["name"] != "RAY_AUTH_MODE":
                        assert "valueFrom" in var, f"{path}: {var['name']} is set as a plain value"


def test_mlflow_server_is_small_and_matches_the_specs():
    deployment = next(d for p, d in all_documents() if d.get("kind") == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["mlflow", "server"] and "--workers=1" in command
    assert {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"} in container["env"]
    service = next(d for p, d in all_documents() if d.get("kind") == "Service")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    port = service["spec"]["ports"][0]["port"]
    for stage in (ROOT / "jobs" / "paper").glob("stage*.yaml"):
        uri = load_spec(stage).mlflow.tracking_uri
        assert uri in (None, f"http://{host}:{port}"), f"{stage.name}: mlflow.tracking_uri {uri} is not the deployed server"


def test_rayservice_import_path_and_spec_exist():
    import importlib

    service = next(d for p, d in all_documents() if d.get("kind") == "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    for application in config["applications"]:
        module, attr = application["import_path"].split(":")
        assert callable(getattr(importlib.import_module(module), attr))
        spec_path = application["args"]["spec"]
        local = ROOT / "jobs" / spec_path.removeprefix("/jobs/")
        assert local.is_file(), f"RayService names {spec_path}, not in jobs/"
        assert load_spec(local).kind == "serve"


def test_the_rayservice_builder_makes_an_application_from_a_serve_spec(tmp_path, monkeypatch):
    from ray.serve.deployment import Application

    from tests.support.tiny_export import write_tiny_export
    from videomar.platform.rayservice import app

    # The paper spec's export lives in S3; the same spec pointed at a local export.
    data = yaml.safe_load((ROOT / "jobs" / "paper" / "serve.yaml").read_text())
    data["export"] = write_tiny_export(str(tmp_path / "export"))
    spec = tmp_path / "serve.yaml"
    spec.write_text(yaml.safe_dump(data))
    # It binds 0.0.0.0: without its token (the videomar-api-token secret) it is refused.
    monkeypatch.delenv("VIDEOMAR_API_TOKEN", raising=False)
    with pytest.raises(UserError, match="http.host: '0.0.0.0' is not a loopback address and no token"):
        app({"spec": str(spec)})
    monkeypatch.setenv("VIDEOMAR_API_TOKEN", "from-the-secret")
    assert isinstance(app({"spec": str(spec)}), Application)
    with pytest.raises(SpecError, match="needs a 'serve' spec, got 'train'"):
        app({"spec": str(ROOT / "jobs" / "paper" / "stage1_images_256.yaml")})
