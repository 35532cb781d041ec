"""``videomar quickstart``: the main job end to end on embedded defaults."""

from __future__ import annotations

from videomar.platform.commands import add_verb

def register(sub) -> None:
    p = add_verb(sub, "quickstart", cmd_quickstart, "run the main job end to end on this machine: sample videos -> VAE -> latents -> "
                 "two training stages -> a generated video")
    p.add_argument("--workdir", default="quickstart", metavar="DIR", help="where everything is written (default ./quickstart)")
    p.add_argument("--small", action="store_true", help="fewer videos and steps (for CI); still every step")
    p.add_argument("--fresh", action="store_true", help="delete DIR first instead of resuming what is there")


def cmd_quickstart(args) -> int:
    """Sample videos of moving digits, train the VAE, precompute Parquet latents with Ray Data, train
    the two-stage quickstart curriculum on Ray Train + DeepSpeed (2 workers, ZeRO-2, MLflow
    tracking), then generate a video from a held-out first frame with the KV-cached sampler.
    Uses an in-process Ray, local disk and a local MLflow store."""
    from pathlib import Path

    from videomar.platform.quickstart import QuickstartError, clean, run_quickstart

    from videomar.platform import console

    work = Path(args.workdir).resolve()
    if args.fresh:
        clean(work)
    with console.session("quickstart", work):
        try:
            run_quickstart(work, small=args.small, out=console.say)
        except QuickstartError as err:
            console.failed(f"quickstart: {err}")
            return 1
    return 0
