"""``videomar submit | status | logs | stop | list | curriculum``: job specs on a Ray cluster,
through the Ray Jobs API."""

from __future__ import annotations

import sys
import time

from videomar.platform.commands import add_verbose

ADDRESS_HELP = (
    "the cluster's Jobs API, i.e. its dashboard URL such as http://127.0.0.1:8265 "
    "(default: RAY_API_SERVER_ADDRESS, RAY_ADDRESS, or the env file written by `videomar up`)"
)
TOKEN_HELP = (
    "file holding the Ray auth token, for clusters with token authentication (default: "
    "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token when RAY_AUTH_MODE=token)"
)
PATHS_NOTE = (
    "The spec runs on the cluster in a fresh working directory: paths in it should be absolute "
    "paths the cluster can see, or s3:// URIs."
)


def register(sub) -> None:
    p = _add(sub, "submit", "submit a job spec to a Ray cluster; prints the job id",
             f"Validate SPEC.yaml, then submit it through the Ray Jobs API with this package and the "
             f"spec in its runtime_env; on the cluster it runs `videomar run SPEC.yaml`. {PATHS_NOTE}")
    p.add_argument("spec", metavar="SPEC.yaml")
    p.add_argument("--wait", action="store_true", help="wait for the job to end; exit 0 only if it SUCCEEDED")
    p.add_argument("--follow", action="store_true", help="stream the job's log until it ends (implies --wait)")
    p.set_defaults(func=cmd_submit)

    p = _add(sub, "status", "show a job's status", "Print the job's status (PENDING, RUNNING, "
             "SUCCEEDED, FAILED or STOPPED) and the cluster's message about it.")
    p.add_argument("job_id", metavar="JOB_ID")
    p.set_defaults(func=cmd_status)

    p = _add(sub, "logs", "print a job's log", "Print everything the job has written so far.")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing as the job writes, until it ends")
    p.set_defaults(func=cmd_logs)

    p = _add(sub, "stop", "stop a running job", "Ask the cluster to stop the job (SIGTERM, then "
             "SIGKILL after a grace period).")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--wait", action="store_true", help="wait until the job has stopped")
    p.set_defaults(func=cmd_stop)

    p = _add(sub, "list", "list the jobs on a Ray cluster", "One line per job, oldest first: id, "
             "status, and the spec it ran.")
    p.set_defaults(func=cmd_list)

    p = _add(sub, "curriculum", "run train stages in order, each from the previous stage's export",
             "Validate every stage, then submit them one at a time: each stage starts only after the "
             "previous one SUCCEEDED, with its init_from.export set to that stage's export. A stage that "
             f"fails stops the chain and its reason is printed. {PATHS_NOTE}")
    p.add_argument("specs", nargs="+", metavar="SPEC.yaml", help="the stages, in order")
    p.set_defaults(func=cmd_curriculum)


def _add(sub, name: str, help_text: str, description: str):
    p = sub.add_parser(name, help=help_text, description=description)
    add_verbose(p)
    p.add_argument("--address", default=None, help=ADDRESS_HELP)
    p.add_argument("--token-file", default=None, metavar="FILE", help=TOKEN_HELP)
    return p


def _client(args):
    from videomar.platform.submission import JobsClient

    return JobsClient(args.address, args.token_file)


def _fail(err: Exception) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 1


def cmd_submit(args) -> int:
    from videomar.platform import console
    from videomar.platform.submission import SubmissionError, load_spec_text, watch

    spec, text = load_spec_text(args.spec)
    try:
        client = _client(args)
        job_id = client.submit(spec, text, _file_name(args.spec))
        print(job_id)
        print(f"submitted {args.spec} (kind: {spec.kind}) to {client.address}", file=sys.stderr)
        if not (args.wait or args.follow):
            return 0
        if args.follow:
            _stream(client, job_id)
            return _exit_status(client.wait(job_id))
        with console.session("submit", capture=False):
            return _exit_status(watch(client, job_id, f"{job_id} ({spec.kind})"))
    except SubmissionError as err:
        return _fail(err)


def cmd_status(args) -> int:
    from videomar.platform.submission import SubmissionError

    try:
        state = _client(args).state(args.job_id)
    except SubmissionError as err:
        return _fail(err)
    print(f"{state.job_id}: {state.status}")
    if state.message:
        print(state.message.rstrip())
    return 0


def cmd_logs(args) -> int:
    from videomar.platform.submission import SubmissionError

    try:
        client = _client(args)
        if args.follow:
            _stream(client, args.job_id)
        else:
            sys.stdout.write(client.logs(args.job_id))
    except SubmissionError as err:
        return _fail(err)
    return 0


def cmd_stop(args) -> int:
    from videomar.platform.submission import SubmissionError

    try:
        client = _client(args)
        was_running = client.stop(args.job_id)
        if not was_running:
            print(f"{args.job_id}: already ended ({client.state(args.job_id).status})")
            return 0
        print(f"{args.job_id}: stop requested")
        if args.wait:
            print(f"{args.job_id}: {client.wait(args.job_id).status}")
    except SubmissionError as err:
        return _fail(err)
    return 0


def cmd_list(args) -> int:
    from videomar.platform.submission import SubmissionError

    try:
        jobs = _client(args).list()
    except SubmissionError as err:
        return _fail(err)
    for job in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_time / 1000)) if job.start_time else "-"
        spec = job.metadata.get("videomar_spec") or job.entrypoint
        print(f"{job.job_id}  {job.status:<9}  {started}  {spec}")
    if not jobs:
        print("no jobs")
    return 0


def cmd_curriculum(args) -> int:
    from videomar.platform.curriculum import load_stages, run_curriculum
    from videomar.platform.submission import SubmissionError

    from videomar.platform import console

    stages = load_stages(args.specs)
    try:
        with console.session("curriculum", capture=False):
            result = run_curriculum(_client(args), stages, report=console.say)
    except SubmissionError as err:
        return _fail(err)
    if not result.ok:
        print(f"curriculum stopped: {result.failed}", file=sys.stderr)
        return 1
    print(f"curriculum complete: {len(result.stages)} stages; final export {stages[-1].export_uri}")
    return 0


def _stream(client, job_id: str) -> None:
    for chunk in client.follow(job_id):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def _exit_status(state) -> int:
    print(f"{state.job_id}: {state.status}", file=sys.stderr)
    if state.status != "SUCCEEDED":
        print(state.message.rstrip(), file=sys.stderr)
        return 1
    return 0


def _file_name(path: str) -> str:
    from pathlib import Path

    return Path(path).name
