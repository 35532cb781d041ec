"""The verbs of the ``videomar`` command line, one module per group; each has ``register(sub)``."""


import argparse
import inspect


def add_verb(sub, name: str, func, summary: str):
    """One verb: its parser, the one-line ``summary`` in ``videomar --help``, and the function that
    runs it, whose docstring is the verb's ``--help`` description. Returns the parser."""
    parser = sub.add_parser(name, help=summary, description=inspect.getdoc(func))
    parser.set_defaults(func=func)
    add_verbose(parser)
    return parser


def add_verbose(parser) -> None:
    """``--verbose`` after the verb too (``videomar --verbose VERB`` is the same)."""
    parser.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                        help="Ray's, DeepSpeed's and MLflow's output on the console, not in a log file")
