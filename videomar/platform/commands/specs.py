"""``videomar validate`` and ``videomar run``: check specs, and run one on this machine."""

from __future__ import annotations

from videomar.errors import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="parse and check job specs; exit 2 naming the field at fault",
        description="Parse each SPEC.yaml into its kind's schema; print ok or the file and field at fault. "
        "With --deep, also run each job's preflight: the checks that read storage (datasets, exports, "
        "inputs) without starting Ray.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC.yaml")
    p.add_argument("--deep", action="store_true", help="also check the storage each spec names (no Ray)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "run",
        help="run a job spec on this machine (in-process Ray unless RAY_ADDRESS is set)",
        description="Run SPEC.yaml here: first its preflight (storage and inputs, before any Ray), then "
        "on the Ray cluster named by RAY_ADDRESS (as inside a submitted job, or after `videomar up`, "
        "whose env file supplies defaults for unset variables), else on an in-process local Ray. "
        "Exit status 0 when the job succeeded, 1 when it failed, 2 for a bad spec or input.",
    )
    p.add_argument("spec", metavar="SPEC.yaml")
    p.set_defaults(func=cmd_run)


def cmd_validate(args) -> int:
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
    from videomar.platform import jobs

    return jobs.execute(jobs.load_spec(args.spec))
