"""``videomar up`` / ``videomar down``: a local Ray head, MLflow server and S3 server."""

from __future__ import annotations

import sys
from pathlib import Path

from videomar.platform.commands import add_verb
from videomar.platform.envfile import DEFAULT_STATE_DIR, ENV_FILE_NAME

STATE_DIR_HELP = f"where PIDs, logs, the env file and the MLflow store live (default: ./{DEFAULT_STATE_DIR})"


def register(sub) -> None:
    p = add_verb(sub, "up", cmd_up, "start a local Ray head, an MLflow server and optionally an S3 server")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=STATE_DIR_HELP)
    p.add_argument("--ray-port", type=int, default=6379, help="the Ray head's GCS port (default: 6379)")
    p.add_argument("--dashboard-port", type=int, default=8265, help="dashboard and Jobs API port (default: 8265)")
    p.add_argument("--mlflow-port", type=int, default=5000, help="MLflow server port (default: 5000)")
    p.add_argument("--s3", action="store_true", help="also start an S3 server on loopback")
    p.add_argument("--s3-port", type=int, default=9000, help="S3 server port (default: 9000)")
    p.add_argument("--bucket", default="videomar", help="bucket created on the S3 server (default: videomar)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the Ray head offers (default: all)")
    p.add_argument("--object-store-mb", type=int, default=None, help="Ray object store size (default: Ray's)")
    p.add_argument("--no-auth", action="store_true", help="run the Ray head without token authentication")

    p = add_verb(sub, "down", cmd_down, "stop what `videomar up` started")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=STATE_DIR_HELP)


def cmd_up(args) -> int:
    """Start, as background processes on 127.0.0.1: a Ray head (dashboard and Jobs API), an MLflow
    server (sqlite store in the state dir, one worker, job execution off) and, with --s3, an S3
    server (moto; objects are kept in memory until `videomar down`). Their PIDs are recorded,
    and their addresses written to STATE_DIR/env, from which submit, status, logs,
    stop, list, curriculum and run take their defaults. Ray token authentication is on unless
    --no-auth; the token is written to a file in the state dir, never printed. A port of 0
    means any free port."""
    from videomar.platform.local_cluster import UpSettings, up
    from videomar.platform.processes import ProcessError

    state_dir = Path(args.state_dir)
    settings = UpSettings(
        state_dir=state_dir,
        ray_port=args.ray_port,
        dashboard_port=args.dashboard_port,
        mlflow_port=args.mlflow_port,
        s3=args.s3,
        s3_port=args.s3_port,
        bucket=args.bucket,
        num_cpus=args.num_cpus,
        object_store_mb=args.object_store_mb,
        auth=not args.no_auth,
    )
    try:
        env = up(settings, report=print)
    except ProcessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    env_file = state_dir.resolve() / ENV_FILE_NAME
    print(f"addresses written to {env_file}; commands run from {Path.cwd()} read it"
          if state_dir.resolve() == Path(DEFAULT_STATE_DIR).resolve()
          else f"addresses written to {env_file}; export VIDEOMAR_ENV_FILE={env_file} so commands read it")
    print(f"  in a shell:  set -a; . {env_file}; set +a")
    print(f"  submit:      videomar submit SPEC.yaml   (Jobs API {env['RAY_API_SERVER_ADDRESS']})")
    print(f"  MLflow UI:   {env['MLFLOW_TRACKING_URI']}")
    print(f"  stop:        videomar down --state-dir {args.state_dir}")
    return 0


def cmd_down(args) -> int:
    """Stop exactly the processes `videomar up` recorded in the state dir (each with its process
    group; SIGTERM, then SIGKILL after a grace period) and remove the env file. Logs and the
    MLflow store stay."""
    from videomar.platform.local_cluster import down
    from videomar.platform.processes import ProcessError

    try:
        down(Path(args.state_dir), report=print)
    except ProcessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
