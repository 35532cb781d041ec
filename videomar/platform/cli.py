"""The ``videomar`` command line. Each verb lives in a module under videomar.platform.commands
that exposes ``register(subparsers)``; heavy imports happen inside the verb, not here, so
``videomar --help`` answers at once."""

from __future__ import annotations

import argparse
import importlib
import sys

from videomar.errors import UserError

USER_ERROR_STATUS = 2  # a bad spec, flag or input; 1 is a job that ran and failed

# One module per verb group; each adds its verbs to the parser.
COMMAND_MODULES = [
    "videomar.platform.commands.specs",
    "videomar.platform.commands.jobs",
    "videomar.platform.commands.cluster",
    "videomar.platform.commands.serve",
    "videomar.platform.commands.data",
    "videomar.platform.commands.quickstart",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videomar",
        description="Train and serve VideoMAR (autoregressive video generation with continuous "
        "tokens) on Ray: precompute latents, train curriculum stages, serve the sampler.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show Ray's, DeepSpeed's and MLflow's output "
                        "on the console instead of a live view and a log file (also VIDEOMAR_LOG_LEVEL=debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A UserError (anywhere below) is printed as one line, without a traceback; a
    job that failed has had its reason and log printed by the console, and exits 1."""
    from videomar.platform import console

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with console.enabled(verbose=args.verbose):
            return int(args.func(args) or 0)
    except console.JobFailed:
        return 1
    except UserError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return USER_ERROR_STATUS
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
