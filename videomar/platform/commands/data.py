"""``videomar sample-data``: write sample videos of moving handwritten digits."""

from __future__ import annotations

from videomar.platform.commands import add_verb


def register(sub) -> None:
    from videomar.artifacts.media import DEFAULT_FPS
    from videomar.data_pipelines import sample_data as sd

    p = add_verb(sub, "sample-data", cmd_sample_data, "write sample MP4s of moving handwritten digits plus a manifest (path, caption)")
    p.add_argument("--output", required=True, metavar="DIR", help="directory to write videos/ and manifest.jsonl into")
    p.add_argument("--videos", type=int, default=16, metavar="N", help="number of videos (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--frames", type=int, default=sd.DEFAULT_FRAMES, help=f"frames per video (default {sd.DEFAULT_FRAMES})")
    p.add_argument("--size", type=int, default=sd.DEFAULT_SIZE, help=f"canvas side in pixels (default {sd.DEFAULT_SIZE})")
    p.add_argument("--fps", type=int, default=DEFAULT_FPS, help=f"frames per second (default {DEFAULT_FPS})")


def cmd_sample_data(args) -> int:
    """Write N MP4 videos of real handwritten digits (scikit-learn's load_digits) moving and bouncing
    on a black canvas, and a manifest.jsonl with each video's path and caption. The same seed
    gives the same videos."""
    import sys

    from videomar.data_pipelines.sample_data import write_sample_videos

    try:
        manifest = write_sample_videos(args.output, args.videos, seed=args.seed, frames=args.frames,
                                       size=args.size, fps=args.fps)
    except ValueError as err:
        print(f"sample-data: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.videos} videos and {manifest}")
    return 0
