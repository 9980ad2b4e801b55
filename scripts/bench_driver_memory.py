"""Where does the driver's memory go as a sweep grows? tracemalloc, by allocation site.

Runs the short digits trials of scripts/bench_scale.py (FIFO, random search, 1 epoch)
through `tuning.runner.run_sweep` in this process, snapshots the Python heap once
`--from` trials have ended and again at the sweep's end, and prints the growth per trial
and the allocation sites (grouped by the innermost `--depth` frames) that grew most.

    python scripts/bench_driver_memory.py --trials 288 --from 32

tracemalloc sees Python objects only (not the allocator's slack, not C++ memory), so its
growth is a lower bound of the VmHWM growth scripts/bench_scale.py reports.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from tuning.cluster import keep_private_ray_on_loopback

keep_private_ray_on_loopback()  # as the CLI does for a local Ray: before Ray is imported

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    import bench_scale
    from ray import tune

    from tuning.experiment import validate_experiment
    from tuning.runner import run_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=288)
    parser.add_argument("--from", dest="start", type=int, default=32, help="first snapshot")
    parser.add_argument("--depth", type=int, default=4, help="frames per allocation site")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args(argv)
    snapshots: dict[str, tracemalloc.Snapshot] = {}

    class Snapshots(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any):
            ended = sum(t.status == "TERMINATED" for t in trials)
            if ended == args.start and "first" not in snapshots:
                gc.collect()
                snapshots["first"] = tracemalloc.take_snapshot()

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            gc.collect()
            snapshots["last"] = tracemalloc.take_snapshot()

    tracemalloc.start(args.depth)
    raw = bench_scale.experiment(args.trials, 1)
    with tempfile.TemporaryDirectory() as storage:
        run_sweep(validate_experiment(raw), storage=storage, name="memory", callbacks=[Snapshots()])
    stats = snapshots["last"].compare_to(snapshots["first"], "traceback")
    per_trial = sum(s.size_diff for s in stats) / (args.trials - args.start)
    print(
        f"Python heap growth from {args.start} to {args.trials} ended trials: "
        f"{per_trial / 1024:.1f} KiB per trial ({per_trial * 1000 / 2**20:.0f} MiB per 1,000)"
    )
    for stat in stats[: args.top]:
        where = " <- ".join(
            f"{Path(frame.filename).name}:{frame.lineno}" for frame in reversed(stat.traceback)
        )
        print(f"{stat.size_diff / (args.trials - args.start) / 1024:8.1f} KiB/trial  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
