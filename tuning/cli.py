"""The `cnn-tune` command: run, resume, train, list, tensorboard, report, export, predict.

Exit codes: 0 success, 2 bad input (message on stderr, nothing started), 1 failure.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainables.errors import DataError, WeightsError
from tuning.errors import ConfigError, SweepInterrupted

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
ADDRESS_HELP = (
    "Ray cluster to join: auto (the one `ray start` runs on this machine), HOST:PORT (the "
    "head's GCS port) or ray://HOST:10001; without it cnn-tune starts a private Ray. A "
    "cluster with token auth needs its token here (~/.ray/auth_token or RAY_AUTH_TOKEN)"
)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(args.handler(args) or EXIT_OK)
    except (ConfigError, DataError, WeightsError) as error:
        messages = getattr(error, "messages", [str(error)])
        print("cnn-tune: invalid input:", file=sys.stderr)
        for message in messages:
            print(f"  - {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cnn-tune: interrupted; resume with `cnn-tune resume DIR`", file=sys.stderr)
        return EXIT_FAILURE
    except SweepInterrupted as error:
        print(f"cnn-tune: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as error:  # the CLI boundary: report, don't dump a traceback
        if args.debug:
            raise
        print(f"cnn-tune: failed: {type(error).__name__}: {error}", file=sys.stderr)
        print("  (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnn-tune", description="Tune PyTorch image classifiers on Ray Tune."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a sweep")
    _add_experiment_args(run)
    run.add_argument("--name", help="folder name under --storage (default: EXPERIMENT-date-time)")
    run.add_argument(
        "--storage",
        default="runs",
        help="where sweeps are written: a path (default ./runs; shared on a cluster) or s3://, gs://",
    )
    run.add_argument("--address", help=ADDRESS_HELP)
    run.set_defaults(handler=_run)

    resume = commands.add_parser(
        "resume",
        help="finish an interrupted sweep, or give a finished one more trials or epochs",
    )
    resume.add_argument("directory", help="the sweep folder, <storage>/<name>")
    resume.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="search.num_samples=N|train.epochs=N",
        help="more trials for a finished sweep, or more epochs for its best trials (those "
        "that kept their checkpoints: checkpoint.keep_trials); they run as a round of their "
        "own in its folder, and the summary covers every round",
    )
    resume.add_argument("--address", help=ADDRESS_HELP)
    resume.set_defaults(handler=_resume)

    train = commands.add_parser("train", help="train one configuration, without Ray")
    _add_experiment_args(train)
    train.add_argument(
        "--sample-seed",
        type=_int_between(0, 2**32 - 1),
        default=0,
        help="seed that picks a point from tuned domains",
    )
    train.add_argument("--output", help="folder to write the final checkpoint to")
    train.set_defaults(handler=_train)

    listing = commands.add_parser("list", help="list the built-in experiments")
    listing.set_defaults(handler=_list)

    board = commands.add_parser("tensorboard", help="serve TensorBoard for a sweep folder")
    board.add_argument("directory")
    board.add_argument("--port", type=_int_between(1, 65_535), default=6006)
    board.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    board.set_defaults(handler=_tensorboard)

    report = commands.add_parser(
        "report", help="write an HTML report (and PNGs) for a sweep, finished or running"
    )
    report.add_argument(
        "directory", help="the sweep, <storage>/<name>: a folder or a URI (s3://, gs://)"
    )
    report.add_argument(
        "--output",
        help="local folder to write index.html into (default DIR/report, or ./NAME-report "
        "for a sweep in a bucket)",
    )
    report.set_defaults(handler=_report)

    export = commands.add_parser("export", help="write a sweep's best model to a folder")
    export.add_argument(
        "directory", help="the finished sweep, <storage>/<name>: a folder or a URI (s3://, gs://)"
    )
    export.add_argument(
        "--output",
        help="model folder to write (default DIR/model, or ./NAME-model for a sweep in a bucket)",
    )
    export.set_defaults(handler=_export)

    predict = commands.add_parser("predict", help="classify images with an exported model")
    predict.add_argument("model", help="the folder `cnn-tune export` wrote")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    predict.add_argument("--json", action="store_true", help="print the predictions as JSON")
    predict.set_defaults(handler=_predict)

    probe = commands.add_parser(
        "probe", help="lr range test and batch-size finder: suggested search ranges, no Ray"
    )
    _add_experiment_args(probe)
    probe.add_argument(
        "--output", help="folder for probe.json and probe.png (default ./probe-NAME)"
    )
    probe.add_argument(
        "--steps",
        type=_int_between(20, 10_000),
        default=300,
        help="optimizer steps of the lr range test (default 300)",
    )
    probe.add_argument(
        "--min-lr", type=float, default=1.0e-7, help="first lr of the sweep (default 1e-7)"
    )
    probe.add_argument(
        "--max-lr", type=float, default=10.0, help="last lr of the sweep, at most 10 (default 10)"
    )
    probe.add_argument(
        "--max-batch-size",
        type=_int_between(2, 65_536),
        help="largest batch size to try (default: the train split's size)",
    )
    probe.add_argument(
        "--scale-lr-with-batch",
        action="store_true",
        help="scale the suggested lr range linearly with the suggested batch sizes",
    )
    probe.set_defaults(handler=_probe)
    return parser


def _int_between(low: int, high: int):
    """An argparse type: a whole number from `low` to `high`, else a message saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    parse.__name__ = f"whole number {low}..{high}"
    return parse


def _add_experiment_args(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "experiment",
        nargs="?",
        default="digits",
        help="built-in name or YAML path (default digits)",
    )
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key, e.g. --set train.optimizer.lr=0.01 --set search.num_samples=8",
    )


def _prepare_ray(address: str | None) -> None:
    """Before Ray is imported: a private Ray (no --address) listens on 127.0.0.1 only."""
    if address is None:
        from tuning.cluster import keep_private_ray_on_loopback

        keep_private_ray_on_loopback()


def _check_address(address: str | None) -> None:
    """A dead or refusing --address fails here (exit 2), before anything is written."""
    if address is not None:
        from tuning.cluster import check_address

        check_address(address)


def _run(args: argparse.Namespace) -> int:
    _prepare_ray(args.address)
    from tuning.experiment import load_experiment

    experiment = load_experiment(args.experiment, args.overrides)
    _check_address(args.address)
    # Only a valid experiment reaches the heavy stack: the runner imports torch and Ray.
    from tuning.runner import run_sweep
    from tuning.summary_text import format_summary

    outcome = run_sweep(experiment, storage=args.storage, name=args.name, address=args.address)
    print(format_summary(outcome.summary))
    _print_next_steps(outcome.location)
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    _prepare_ray(args.address)
    from tuning.resume import resume_sweep
    from tuning.summary_text import format_summary

    _check_address(args.address)
    outcome = resume_sweep(args.directory, address=args.address, changes=args.overrides)
    print(format_summary(outcome.summary))
    _print_next_steps(outcome.location)
    return EXIT_OK


def _print_next_steps(location: str) -> None:
    print(f"Results: {location}  (summary.json)")
    print(f"  report:      cnn-tune report {location}")
    print(f"  TensorBoard: cnn-tune tensorboard {location}")
    print(f"  best model:  cnn-tune export {location}")


def _train(args: argparse.Namespace) -> int:
    from tuning.single import train_one

    return train_one(args.experiment, args.overrides, args.sample_seed, args.output)


def _list(args: argparse.Namespace) -> int:
    from tuning.sources import builtin_descriptions

    for name, description in builtin_descriptions().items():
        print(f"{name:<16} {description}")
    return EXIT_OK


def _tensorboard(args: argparse.Namespace) -> int:
    directory = Path(args.directory).expanduser().resolve()
    if not directory.is_dir():
        raise ConfigError(f"tensorboard: {str(directory)!r} is not a folder; pass a sweep folder")
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(
        argv=[None, "--logdir", str(directory), "--host", args.host, "--port", str(args.port)]
    )
    url = board.launch()
    print(f"TensorBoard at {url} (Ctrl-C to stop)", flush=True)
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from tuning.report import write_report

    print(write_report(args.directory, args.output))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from tuning.export import export_best

    print(export_best(args.directory, args.output))
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    import json

    from tuning.export import predict

    predictions = predict(args.model, args.images)
    if args.json:
        print(json.dumps(predictions, indent=2))
        return EXIT_OK
    for p in predictions:
        print(f"{p['image']}\t{p['class']}\t{p['probability']:.4f}")
    return EXIT_OK


def _probe(args: argparse.Namespace) -> int:
    from tuning.probe import ProbeOptions, run_probe

    options = ProbeOptions(
        output=args.output,
        steps=args.steps,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        max_batch_size=args.max_batch_size,
        scale_lr_with_batch=args.scale_lr_with_batch,
    )
    return run_probe(args.experiment, args.overrides, options)


if __name__ == "__main__":
    sys.exit(main())
