"""Submit a cnn-tune sweep to a Ray cluster as a Ray job (what `ray job submit` does).

The experiment is validated here first (bad input exits 2 before anything is sent),
then the folder holding the experiment file travels with the job as its working
directory and the cluster runs `cnn-tune run` on the head node:

    ray dashboard cluster.yaml &      # forwards the job server to 127.0.0.1:8265
    python scripts/submit_sweep.py experiments/my.yaml --storage /mnt/shared/cnn-tune \\
        --set search.num_samples=64

The job keeps running if you disconnect; follow it with `ray job logs -f JOB_ID`.

Ray 2.60's token authentication: a job server that asks for a token gets the one in
~/.ray/auth_token (or RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH), the token cluster.yaml ships
to every node; RAY_AUTH_MODE, if set, is obeyed. A refusal exits 2 and says how to fix it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

JOB_SERVER = "http://127.0.0.1:8265"


def build_entrypoint(
    experiment: str, overrides: list[str], storage: str, name: str | None
) -> tuple[str, str | None]:
    """The command the cluster runs, and the local folder to ship as its working dir."""
    working_dir = None
    path = Path(experiment)
    if path.suffix in (".yaml", ".yml"):
        working_dir = str(path.resolve().parent)
        experiment = path.name  # relative to the shipped working dir
    command = ["cnn-tune", "run", experiment, "--storage", storage, "--address", "auto"]
    if name:
        command += ["--name", name]
    for override in overrides:
        command += ["--set", override]
    return shlex.join(command), working_dir


def job_client(address: str):
    """A client of the job server at `address`; sends the token if the server asks for one."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    from tuning.cluster import turn_token_auth_on

    try:
        return JobSubmissionClient(address)
    except AuthenticationError:
        if not turn_token_auth_on():
            raise
        return JobSubmissionClient(address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="built-in name or YAML path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--storage", required=True, help="shared path on the cluster")
    parser.add_argument("--name")
    parser.add_argument("--address", default=JOB_SERVER, help="Ray job server (dashboard) URL")
    parser.add_argument("--no-wait", action="store_true", help="print the job id and return")
    args = parser.parse_args(argv)

    from tuning.errors import ConfigError
    from tuning.experiment import load_experiment

    try:
        load_experiment(args.experiment, args.overrides)
    except ConfigError as error:
        print("submit_sweep: invalid input:", *error.messages, sep="\n  - ", file=sys.stderr)
        return 2
    entrypoint, working_dir = build_entrypoint(
        args.experiment, args.overrides, args.storage, args.name
    )

    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobStatus

    try:
        client = job_client(args.address)
    except AuthenticationError:
        from tuning.cluster import token_refusal_message

        server = f"the Ray job server at {args.address}"
        print(f"submit_sweep: {token_refusal_message('--address', server)}", file=sys.stderr)
        return 2
    runtime_env = {"working_dir": working_dir} if working_dir else None
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
    print(f"submitted {job_id}: {entrypoint}", flush=True)
    if args.no_wait:
        return 0
    while (status := client.get_job_status(job_id)) not in {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    }:
        time.sleep(10)
    print(client.get_job_logs(job_id))
    print(f"job {job_id}: {status}")
    return 0 if status == JobStatus.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
