"""``videomar validate`` and ``videomar run``: check specs, and run one on this machine."""

from __future__ import annotations

from videomar.errors import UserError
from videomar.platform.commands import add_verb


def register(sub) -> None:
    p = add_verb(sub, "validate", cmd_validate, "parse and check job specs; exit 2 naming the field at fault")
    p.add_argument("specs", nargs="+", metavar="SPEC.yaml")
    p.add_argument("--deep", action="store_true", help="also check the storage each spec names (no Ray)")

    p = add_verb(sub, "run", cmd_run, "run a job spec on this machine (in-process Ray unless RAY_ADDRESS is set)")
    p.add_argument("spec", metavar="SPEC.yaml")


def cmd_validate(args) -> int:
    """Parse each SPEC.yaml into its kind's schema; print ok or the file and field at fault. With
    --deep, also run each job's preflight: the checks that read storage (datasets, exports,
    inputs) without starting Ray."""
    from videomar.platform import jobs

    bad: list[UserError] = []
    for path in args.specs:
        try:
            spec = jobs.load_spec(path)
            if args.deep:
                jobs.preflight(spec)
        except UserError as err:
            bad.append(err)
            continue
        print(f"ok: {path} (kind: {spec.kind}{', preflight passed' if args.deep else ''})")
    if len(bad) > 1:  # the last one is raised, and printed by the CLI; name the others first
        for err in bad[:-1]:
            print(f"error: {err}")
    if bad:
        raise bad[-1]
    return 0


def cmd_run(args) -> int:
    """Run SPEC.yaml here: first its preflight (storage and inputs, before any Ray), then on the Ray
    cluster named by RAY_ADDRESS (as inside a submitted job, or after `videomar up`, whose env
    file supplies defaults for unset variables), else on an in-process local Ray. Exit status 0
    when the job succeeded, 1 when it failed, 2 for a bad spec or input."""
    from videomar.platform import jobs

    return jobs.execute(jobs.load_spec(args.spec))
