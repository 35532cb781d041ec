"""``videomar serve`` (the HTTP endpoint on Ray Serve) and ``videomar generate`` (one video on
this machine, no Serve needed)."""

from __future__ import annotations

import argparse

from videomar.errors import UserError
from videomar.platform.commands import add_verb

FRAMES_HELP = "pixel frames of the output video, the condition image included as frame 0"


class _Renamed(argparse.Action):
    """A flag an older videomar took: refused with the name of the one that replaces it."""

    def __call__(self, parser, namespace, values, option_string=None):
        raise UserError(f"{option_string} is now {self.default}")


def refuse_renamed(parser, old: str, new: str) -> None:
    parser.add_argument(old, action=_Renamed, default=new, nargs="?", help=argparse.SUPPRESS, dest="_renamed")


def register(sub) -> None:
    p = add_verb(sub, "serve", cmd_serve, "serve a stage export over HTTP on Ray Serve (127.0.0.1 unless configured)")
    p.add_argument("spec", nargs="?", metavar="SPEC.yaml", help="a kind: serve spec")
    p.add_argument("--export", metavar="URI", help="a complete stage export (instead of a spec)")
    refuse_renamed(p, "--checkpoint", "--export")
    p.add_argument("--host", help="bind address (default 127.0.0.1, or the spec's http.host)")
    p.add_argument("--port", type=int, help="port (default 8000, or the spec's http.port)")
    p.add_argument("--token-file", metavar="PATH", help="require this bearer token (file holding it)")

    p = add_verb(sub, "generate", cmd_generate, "generate one video from an image on this machine (writes MP4, GIF, PNG sheet)")
    p.add_argument("--export", required=True, metavar="URI", help="a complete stage export")
    refuse_renamed(p, "--checkpoint", "--export")
    p.add_argument("--image", required=True, metavar="PNG", help="the condition image (PNG or JPEG)")
    p.add_argument("--frames", required=True, type=int, metavar="N", help=FRAMES_HELP)
    p.add_argument("--out", required=True, metavar="OUT.mp4", help="the MP4 to write")
    from videomar.platform.specs.generate import GenerateDefaults

    default = {name: f.default for name, f in GenerateDefaults.model_fields.items()}
    p.add_argument("--prompt", default="", help="text prompt (default empty)")
    p.add_argument("--steps", type=int, help=f"spatial steps per latent frame (default {default['steps']})")
    p.add_argument("--cfg", type=float, help=f"guidance scale, 1 disables (default {default['cfg']})")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: progressive 0.95->0.90)")
    p.add_argument("--seed", type=int, help=f"random seed (default {default['seed']})")
    s = p.add_argument_group("streaming", "long videos made frame by frame: a bounded cache, prompt changes, cuts "
                             "(FRAME counts pixel frames, the image is frame 0)")
    s.add_argument("--sink", type=int, default=1, metavar="S",
                   help="first latent frames kept as the attention sink; they survive every switch (default 1)")
    s.add_argument("--window", type=int, metavar="W",
                   help="keep only the last W latent frames besides the sink: constant memory for any length "
                        "(default: keep every frame). Keep sink + window + 1 within the frames the model trained on")
    s.add_argument("--prompts", metavar="\"F:PROMPT;F:PROMPT\"",
                   help="prompt changes, e.g. \"0:a 3 moving left;60:a 3 moving up\" (frame 0 replaces --prompt)")
    s.add_argument("--switch", default="recache", choices=["recache", "flush", "cut"],
                   help="how a prompt change applies: recompute the kept frames under it (recache, default), "
                        "keep only the sink and the last frame (flush), or start a new scene (cut)")
    s.add_argument("--cut-at", type=int, action="append", default=[], metavar="F",
                   help="start a new scene at this frame: it sees only the sink (repeatable)")


def serve_spec_from_args(args):
    """The ServeSpec the arguments describe (SpecError names what is wrong)."""
    from videomar.errors import SpecError
    from videomar.platform.jobs import load_spec, parse_spec

    if bool(args.spec) == bool(args.export):
        raise SpecError("give either SPEC.yaml or --export URI")
    if args.spec:
        spec = load_spec(args.spec)
        if spec.kind != "serve":
            raise SpecError(f"{args.spec}: kind: {spec.kind!r}; videomar serve needs kind: serve")
        data = spec.model_dump()
    else:
        data = {"kind": "serve", "export": args.export}
    http = {**data.get("http", {}), **{k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}}
    auth = {**data.get("auth", {}), **({"token_file": args.token_file} if args.token_file else {})}
    return parse_spec({**data, "http": http, "auth": auth}, args.spec or "--export")


def cmd_serve(args) -> int:
    """Deploy the VideoMAR sampler on Ray Serve: POST /v1/generate, POST /v1/batches, GET
    /v1/batches/{id}, GET /v1/model, GET /healthz. Either a serve spec (kind: serve) or
    --export with the defaults. Connects to RAY_ADDRESS if set, else starts a local Ray. Blocks
    until Ctrl-C."""
    from videomar.platform import jobs

    # A bad spec, an unreadable token or an incomplete export fails in preflight, before Ray starts.
    return jobs.execute(serve_spec_from_args(args))


def cmd_generate(args) -> int:
    """Load a stage export, encode the image with its VAE as latent frame 0, sample the following
    frames with the KV-cached sampler, decode, and write OUT.mp4 plus OUT.gif and a contact
    sheet OUT.png beside it. The image is rejected (not resized) unless its width and height
    are multiples of the model's spatial multiple."""
    import pydantic

    from videomar.artifacts.media import write_outputs
    from videomar.platform import console
    from videomar.platform.serving.engine import Engine, Job
    from videomar.platform.serving.requests import image_from_bytes
    from videomar.platform.specs.generate import GenerateDefaults

    if not args.out.endswith(".mp4"):
        raise UserError(f"--out {args.out}: must end in .mp4")
    try:
        given = {k: getattr(args, k) for k in ("frames", "steps", "cfg", "temperature", "seed")}
        s = GenerateDefaults(**{k: v for k, v in given.items() if v is not None})
    except pydantic.ValidationError as err:
        e = err.errors()[0]
        raise UserError(f"--{e['loc'][0]}: {e['msg']}") from None
    try:
        with open(args.image, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise UserError(f"--image {args.image}: {err.strerror or err}") from None
    with console.session("generate"):
        with console.phase(f"generate {s.frames} frames ({s.steps} sampling steps each)"):
            engine = Engine.load(args.export)
            image = image_from_bytes(raw, f"--image {args.image}", None, engine.spatial_multiple)
            job = Job(image=image, prompt=args.prompt, frames=s.frames, steps=s.steps, cfg=s.cfg,
                      temperature=s.temperature, seed=s.seed)
            frames = _streamed(engine, job, args) if _streaming(args) else engine.run([job])[0]
        written = write_outputs(frames, args.out)  # OUT.mp4, OUT.gif, OUT.png
        console.say(f"wrote {written['mp4']} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}), "
                    f"{written['gif']}, {written['png']}")
    return 0


def _streaming(args) -> bool:
    return args.window is not None or bool(args.prompts) or bool(args.cut_at) or args.sink != 1


def _streamed(engine, job, args):
    """The video made frame by frame (platform/serving/stream.py), with progress on the console."""
    import numpy as np

    from videomar.platform import console

    from videomar.platform.serving.stream import StreamPlan, parse_prompts, stream_video, trained_horizon

    prompts = parse_prompts(args.prompts) if args.prompts else ()
    plan = StreamPlan(args.sink, args.window, prompts, tuple(args.cut_at), args.switch)
    plan.check(job.frames, lambda field: "--" + field.replace("_", "-"))
    horizon = trained_horizon(engine)
    if args.window is not None and horizon and args.sink + args.window + 1 > horizon:
        console.say(f"note: sink + window + 1 = {args.sink + args.window + 1} latent frames exceeds the "
                    f"{horizon} the model trained on")
    step = max(1, job.frames // 20)

    def progress(done: int, total: int) -> None:
        if done in (1, total) or done // step != (done - 1) // step:
            console.say(f"frames {done}/{total}")

    return np.concatenate(list(stream_video(engine, job, plan, progress)))
