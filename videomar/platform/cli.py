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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A UserError (anywhere below) is printed as one line, without a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
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
