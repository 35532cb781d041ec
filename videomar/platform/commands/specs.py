"""``videomar validate`` and ``videomar run``: check specs, and run one on this machine."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="parse and check job specs; exit 1 naming the field at fault",
        description="Parse each SPEC.yaml into its kind's schema; print ok or the file and field at fault.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC.yaml")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "run",
        help="run a job spec on this machine (in-process Ray unless RAY_ADDRESS is set)",
        description="Run SPEC.yaml here: on the Ray cluster named by RAY_ADDRESS (as inside a submitted "
        "job, or after `videomar up`, whose env file supplies defaults for unset variables), else on "
        "an in-process local Ray. Exit status 0 when the job succeeded.",
    )
    p.add_argument("spec", metavar="SPEC.yaml")
    p.set_defaults(func=cmd_run)


def cmd_validate(args) -> int:
    from videomar.platform.specs import SpecError, load_spec

    bad = 0
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as err:
            print(f"invalid: {err}", file=sys.stderr)
            bad += 1
            continue
        print(f"ok: {path} (kind: {spec.kind})")
    return 1 if bad else 0


def cmd_run(args) -> int:
    from videomar.platform.envfile import apply_env_defaults
    from videomar.platform.ray_env import ensure_ray
    from videomar.platform.specs import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as err:
        print(f"invalid: {err}", file=sys.stderr)
        return 1
    # Before Ray is imported by ensure_ray: the auth settings are read when it connects.
    apply_env_defaults()
    ensure_ray(min_cpus=spec.min_cluster_cpus())
    try:
        return spec.run()
    except SpecError as err:  # checks that read storage run inside run(), e.g. a missing dataset
        print(f"invalid: {err}", file=sys.stderr)
        return 1
