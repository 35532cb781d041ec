"""The eval job end to end on real components: a latent dataset made by the precompute pipeline,
a tiny stage export holding that dataset's VAE, a local Ray running the eval actor pools, and a
real ``mlflow server`` that receives the figures and the per-stage plot."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from videomar.model.config import model_config
from videomar.model.vae import load_vae
from videomar.model.videomar import build_model
from videomar.platform.evaluation.job import evaluate_export
from videomar.artifacts.export import IncompleteExportError, write_export
from videomar.platform.evaluation.report import EVAL_JSON, PLOT_NAME, SHEET_NAME, quality_figures
from videomar.platform.evaluation.sheet import SheetLayout
from videomar.platform.jobs import execute, parse_spec
from videomar.platform.tracking import TAG_ROLE, TAG_STAGE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
BUCKET = {"frames": 9, "height": 32, "width": 32}
STAGE = "tiny-stage"


@pytest.fixture(scope="module")
def latents(tmp_path_factory, ray_local):
    from tests.support.latents import build_latents

    return build_latents(tmp_path_factory.mktemp("eval-latents"))


def write_stage_export(uri: str, vae_dir: str) -> str:
    """A tiny, untrained stage export over the dataset's own VAE (seeded weights)."""
    torch.manual_seed(0)
    vae = load_vae(vae_dir)
    config = model_config("tiny", latent_channels=vae.latent_channels, head={"sample_steps": 4})
    shape = list(vae.latent_shape(BUCKET["frames"], BUCKET["height"], BUCKET["width"]))
    write_export(uri, build_model(config).state_dict(),
                 {"model": config.to_dict(), "preset": "tiny", "latent": {"scale": vae.scale, "shape": shape},
                  "bucket": BUCKET, "vae_id": vae.vae_id, "step": 0},
                 spec_yaml=f"kind: train\nname: {STAGE}\n", vae_uri=vae_dir)
    return uri


def test_eval_job_logs_its_figures_to_the_stages_mlflow_run(ray_cluster, latents, mlflow_server, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    export = write_stage_export(str(tmp_path / "runs" / STAGE / "export"), latents.vae)
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    exp_id = client.create_experiment("eval-e2e")
    stage_run = client.create_run(exp_id, tags={TAG_STAGE: STAGE, TAG_ROLE: "stage"}, run_name=STAGE).info.run_id

    spec = parse_spec({
        "kind": "eval", "export": export, "data": {"manifest": latents.manifest},
        "options": {"videos": 3, "loss_clips": 4, "steps": 2, "batch_size": 2, "sheet_videos": 2},
        "mlflow": {"tracking_uri": mlflow_server.uri, "experiment": "eval-e2e"},
    })
    assert execute(spec) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["run_id"] == stage_run and printed["stage"] == STAGE

    result = json.loads((Path(export) / EVAL_JSON).read_text())
    m = result["metrics"]
    assert result["bucket"] == [9, 32, 32] and set(result["val_loss_by_frame"]) == {"1", "2"}
    assert m["videos"] == 3 and m["loss_clips"] == 4 and m["source_videos"] == 2  # 2 held-out videos of 2 clips each
    for key in ("val_loss", "psnr", "psnr_copy_last", "ssim", "ssim_copy_last", "vae_psnr", "vae_ssim",
                "dynamics", "dynamics_gt", "fvd", "psnr_2cond", "psnr_copy_last_2cond", "ssim_2cond",
                "ssim_copy_last_2cond", "dynamics_2cond", "dynamics_gt_2cond"):
        assert m[key] is not None and math.isfinite(m[key]), key
    assert m["psnr"] < m["psnr_copy_last"]  # an untrained model loses to copying the last frame
    assert result["feature_extractor"].startswith("builtin")
    quality = quality_figures(result)
    assert quality["contact_sheet"] == str(Path(export) / SHEET_NAME)
    assert all(quality[k] is not None for k in ("psnr_2cond", "ssim_copy_last_2cond", "dynamics", "vae_psnr",
                                                "videos", "seconds"))
    sheet = Image.open(quality["contact_sheet"])
    layout = SheetLayout(rows=2, frames=9, cond=1, height=32, width=32)  # sheet_videos clips of the bucket
    assert (sheet.height, sheet.width) == layout.size

    logged = client.get_run(stage_run).data.metrics
    for key in ("val_loss", "val_loss_k1", "val_loss_k2", "psnr", "psnr_copy_last", "ssim", "vae_psnr", "fvd"):
        assert logged[f"eval/{key}"] == pytest.approx(m.get(key, result["val_loss_by_frame"].get(key[-1])))
    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(client.download_artifacts(stage_run, f"eval/{PLOT_NAME}", tmp))
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        logged_sheet = Path(client.download_artifacts(stage_run, f"eval/{SHEET_NAME}", tmp))
        assert logged_sheet.read_bytes() == Path(quality["contact_sheet"]).read_bytes()
        assert json.loads(Path(client.download_artifacts(stage_run, f"eval/{EVAL_JSON}", tmp)).read_text())["stage"] == STAGE


def test_eval_refuses_bad_inputs_naming_them(ray_cluster, latents, tmp_path):
    with pytest.raises(IncompleteExportError, match="nowhere"):
        evaluate_export(str(tmp_path / "nowhere"), latents.manifest)
    export = write_stage_export(str(tmp_path / "stage" / "export"), latents.vae)
    with pytest.raises(ValueError, match="no bucket 5x64x64"):
        evaluate_export(export, latents.manifest, (5, 64, 64))
