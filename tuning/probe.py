"""`cnn-tune probe`: an lr range test and a batch-size finder for one experiment, no Ray.

    cnn-tune probe digits --output probe-digits

1. The experiment is loaded and every tuned value fixed to the middle of its domain
   (tuning/probe_config.py); options and --output are checked. Bad input stops here.
2. The lr range test (trainables/lr_range.py) trains a few hundred steps at the fixed
   batch size, the lr growing exponentially, and marks the steepest descent, the lowest
   loss and the divergence.
3. The batch-size finder (trainables/batch_finder.py) looks for the largest batch that
   trains within the trial's memory: its share of the GPU (resources.gpu), or on the CPU,
   where a trial has no share, up to the train split's size or --max-batch-size.
4. probe.json (the series, the points, the suggestions) and probe.png go to --output,
   and the suggestions are printed as `--set` lines for `cnn-tune run`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.config import TrainConfig
from tuning.errors import ConfigError
from tuning.experiment import Experiment, load_experiment
from tuning.probe_config import FixedValue, fix_tuned_values, output_folder
from tuning.probe_suggest import SCALING_RULE, Suggestion, overrides_of, scale_lr_range

if TYPE_CHECKING:  # torch loads only once the input is valid
    import torch

    from trainables.batch_finder import BatchSearch
    from trainables.data import TuningData
    from trainables.lr_range import LRSweep, SweepPoints

JSON_FILE, PNG_FILE = "probe.json", "probe.png"
MIN_LR, MAX_LR = 1.0e-10, 10.0  # the lr a sweep may cover; 10 is the largest optimizer.lr
PROGRESS_EVERY_STEPS = 50


@dataclass(frozen=True)
class ProbeOptions:
    """The command line's knobs; see `cnn-tune probe --help`."""

    output: str | None = None
    steps: int = 300
    min_lr: float = 1.0e-7
    max_lr: float = 10.0
    max_batch_size: int | None = None
    scale_lr_with_batch: bool = False


@dataclass(frozen=True)
class _Device:
    """Where the probe trains, the trial's allocator cap there, and what bounds the batch."""

    device: torch.device
    share: float | None  # of one GPU; None on the CPU
    cap_bytes: int | None
    note: str


def option_errors(options: ProbeOptions) -> list[str]:
    """Every problem with the lr options at once: each names the value and the fix."""
    errors = []
    for flag, value in (("--min-lr", options.min_lr), ("--max-lr", options.max_lr)):
        if not (math.isfinite(value) and MIN_LR <= value <= MAX_LR):
            errors.append(
                f"{flag} {value:g} is outside {MIN_LR:g}..{MAX_LR:g} (10 is the largest "
                f"train.optimizer.lr a config takes); give a learning rate in that range"
            )
    if not errors and options.min_lr >= options.max_lr:
        errors.append(
            f"--min-lr {options.min_lr:g} is not below --max-lr {options.max_lr:g}; the sweep "
            "grows the lr from --min-lr to --max-lr: swap them or widen the range"
        )
    return errors


def run_probe(source: str, overrides: list[str], options: ProbeOptions) -> int:
    """Probe `source` with `overrides`; print the suggested `--set` lines; 0, or 1 when a
    probe found nothing to suggest (its files are still written)."""
    experiment = load_experiment(source, overrides)
    errors = option_errors(options)
    if errors:
        raise ConfigError(errors)
    config, fixed = fix_tuned_values(experiment.train)
    folder = output_folder(options.output, experiment.name)
    _print_fixed(experiment, config, fixed)
    # torch only once everything above is valid: bad input is refused without loading it.
    from trainables.data import load_splits

    data = load_splits(experiment.dataset).tuning
    where = _device_for(experiment.resources.gpu)
    print(f"device: {where.device}; {where.note}", flush=True)
    sweep, points, lr_range, lr_problem = _lr_range_test(config, data, where, options)
    limit = min(len(data.train), options.max_batch_size or len(data.train))
    search = _batch_search(config, data, where, limit)
    suggestion = _suggest(lr_range, search.largest, config.batch_size, options)
    result = {
        "experiment": experiment.name,
        "device": str(where.device),
        "config": config.model_dump(mode="json"),
        "fixed": {f"train.{f.path}": {"value": f.value, "domain": f.domain} for f in fixed},
        "lr_range_test": _sweep_json(sweep, points),
        "batch_size": _batch_json(search, limit, where, options.max_batch_size, len(data.train)),
        "suggested": _suggestion_json(suggestion, config.batch_size),
    }
    lines = suggestion.set_lines(batch_growth=config.batch_growth is not None)
    result["set_lines"] = lines
    _write(folder, result)
    _print_result(result, lines, source, overrides, lr_problem)
    print(f"wrote {folder / JSON_FILE} and {folder / PNG_FILE}")
    return 0 if suggestion.lr_range is not None and suggestion.batch_sizes else 1


def _print_fixed(experiment: Experiment, config: TrainConfig, fixed: list[FixedValue]) -> None:
    print(f"probe: experiment {experiment.name}, optimizer {config.optimizer.name}")
    if fixed:
        print(
            "tuned values fixed for the probe (override any with --set; the lr is swept, "
            "the batch size is where the search starts):"
        )
        for value in fixed:
            print(f"  {value.describe()}")


def _device_for(gpu: float | str) -> _Device:
    """The trial's device and memory cap, as resources.gpu gives a trial its share."""
    import torch

    from trainables.gpu import claim_gpu_share

    share = 1.0 if gpu == "auto" else float(gpu)
    if share > 0 and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
        try:
            cap = claim_gpu_share(device, share)
        except ValueError as error:
            raise ConfigError(f"resources.gpu={gpu}: {error}") from error
        auto = " (resources.gpu: auto packs trials per sweep; probed on a whole GPU)"
        note = f"memory share {share:g} of the GPU{auto if gpu == 'auto' else ''}"
        return _Device(device, share, cap, note)
    cpu = torch.device("cpu")
    if share > 0:
        note = (
            f"resources.gpu={gpu}, but torch cannot use CUDA here: probing on the CPU, "
            "where a trial has no memory share"
        )
    else:
        note = "the CPU has no per-trial memory share"
    return _Device(cpu, None, None, note)


def _lr_range_test(
    config: TrainConfig, data: TuningData, where: _Device, options: ProbeOptions
) -> tuple[LRSweep, SweepPoints, tuple[float, float] | None, str | None]:
    from trainables.lr_range import LRRangeSettings, lr_range_test, suggested_lr_range

    settings = LRRangeSettings(start_lr=options.min_lr, end_lr=options.max_lr, steps=options.steps)

    def progress(step: int, lr: float, smoothed: float) -> None:
        if step % PROGRESS_EVERY_STEPS == 0:
            print(
                f"lr range test: step {step}/{settings.steps}  lr {lr:.2e}  "
                f"smoothed loss {smoothed:.4g}",
                flush=True,
            )

    sweep = lr_range_test(config, data, where.device, settings, where.cap_bytes, progress)
    points = sweep.points()
    try:
        return sweep, points, suggested_lr_range(sweep.lrs, points), None
    except ValueError as error:
        fix = (
            f"the sweep stopped after {len(sweep.lrs)} of {settings.steps} steps at lr "
            f"{sweep.lrs[-1]:.2e}: lower --min-lr, or raise --steps"
        )
        return sweep, points, None, f"{error}; {fix}"


def _batch_search(config: TrainConfig, data: TuningData, where: _Device, limit: int) -> BatchSearch:
    from trainables.batch_finder import find_largest_batch

    def progress(batch_size: int, fits: bool) -> None:
        outcome = "fits" if fits else "out of memory"
        print(f"batch size {batch_size}: {outcome}", flush=True)

    return find_largest_batch(config, data, where.device, limit, where.cap_bytes, progress)


def _suggest(
    lr_range: tuple[float, float] | None,
    largest: int | None,
    probed_batch: int,
    options: ProbeOptions,
) -> Suggestion:
    from trainables.batch_finder import suggested_batch_sizes

    sizes = suggested_batch_sizes(largest) if largest is not None and largest >= 2 else None
    if not (options.scale_lr_with_batch and lr_range and sizes and sizes != [probed_batch]):
        return Suggestion(lr_range, sizes)
    return Suggestion(scale_lr_range(lr_range, probed_batch, sizes), sizes, lr_range)


def _sweep_json(sweep: LRSweep, points: SweepPoints) -> dict[str, Any]:
    curve = sweep.curve

    def point(index: int | None) -> dict[str, Any] | None:
        """A step, its lr, and its smoothed loss (the running average's, past the curve)."""
        if index is None:
            return None
        loss = curve[index] if index < len(curve) else sweep.smoothed[index]
        return {"step": index, "lr": sweep.lrs[index], "smoothed_loss": _json_number(loss)}

    settings = sweep.settings
    return {
        "batch_size": sweep.batch_size,
        "start_lr": settings.start_lr,
        "end_lr": settings.end_lr,
        "steps_planned": settings.steps,
        "steps_run": len(sweep.lrs),
        "smoothing": settings.smoothing,
        "divergence_factor": settings.divergence_factor,
        "points": {
            "steepest": point(points.steepest),
            "minimum": point(points.minimum),
            "divergence": point(points.divergence),
        },
        "lr": sweep.lrs,
        "loss": [_json_number(v) for v in sweep.losses],
        "smoothed_loss": [_json_number(v) for v in sweep.smoothed],
        "curve": [_json_number(v) for v in curve],
    }


def _batch_json(
    search: BatchSearch, limit: int, where: _Device, max_batch_size: int | None, train_examples: int
) -> dict[str, Any]:
    bound = (
        f"--max-batch-size {limit}"
        if max_batch_size is not None and max_batch_size < train_examples
        else f"the train split's {train_examples} examples"
    )
    memory = (
        f"the trial's share, {where.share:g} of the GPU ({(where.cap_bytes or 0) / 2**30:.1f} "
        "GiB allocator cap)"
        if where.share is not None
        else "the host's memory: the CPU has no per-trial share"
    )
    largest = search.largest
    limited_by = (
        f"reached the search limit, {bound}"
        if largest is not None and largest >= limit
        else f"out of memory above it, in {memory}"
    )
    return {
        "memory_share": where.share,
        "memory_cap_bytes": where.cap_bytes,
        "limit": limit,
        "limited_by": limited_by,
        "tried": [{"batch_size": b, "fits": fits} for b, fits in search.tried.items()],
        "largest": largest,
    }


def _suggestion_json(suggestion: Suggestion, probed_batch: int) -> dict[str, Any]:
    return {
        "lr_range": list(suggestion.lr_range) if suggestion.lr_range else None,
        "batch_sizes": suggestion.batch_sizes,
        "lr_scaled_with_batch": suggestion.lr_scaled_from is not None,
        "lr_range_unscaled": list(suggestion.lr_scaled_from or suggestion.lr_range or []) or None,
        "probed_batch_size": probed_batch,
        "scaling_rule": SCALING_RULE,
    }


def _json_number(value: float) -> float | None:
    """NaN and infinity are not JSON: a diverged loss is written as null."""
    return value if math.isfinite(value) else None


def _write(folder: Path, result: dict[str, Any]) -> None:
    from tuning.probe_plot import probe_png

    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (folder / PNG_FILE).write_bytes(probe_png(result))


def _print_result(
    result: dict[str, Any],
    lines: list[str],
    source: str,
    overrides: list[str],
    lr_problem: str | None,
) -> None:
    sweep, batch, suggested = result["lr_range_test"], result["batch_size"], result["suggested"]
    print(
        f"lr range test: {sweep['steps_run']} of {sweep['steps_planned']} steps at batch size "
        f"{sweep['batch_size']}, lr {sweep['start_lr']:.1e} to {sweep['end_lr']:.1e}"
    )
    names = {"steepest": "steepest descent", "minimum": "lowest loss", "divergence": "divergence"}
    for key, name in names.items():
        point = sweep["points"][key]
        shown = "none" if point is None else f"lr {point['lr']:.2e}  (step {point['step']})"
        print(f"  {name:<17} {shown}")
    print(f"largest batch size that fits: {batch['largest']}  ({batch['limited_by']})")
    if lr_problem:
        print(f"no lr range to suggest: {lr_problem}")
    if batch["largest"] is None:
        print("no batch size fits, not even 2; use a smaller model or a larger resources.gpu")
    if suggested["lr_scaled_with_batch"]:
        low, high = suggested["lr_range_unscaled"]
        print(
            f"lr scaled with the batch size ({SCALING_RULE}): [{low:.1e}, {high:.1e}] at batch "
            f"{suggested['probed_batch_size']} -> the range below, across the suggested sizes"
        )
    elif suggested["batch_sizes"] and suggested["batch_sizes"] != [sweep["batch_size"]]:
        print(
            f"the lr range is measured at batch size {sweep['batch_size']}; "
            f"--scale-lr-with-batch scales it to the suggested sizes ({SCALING_RULE})"
        )
    print("suggested search ranges:")
    for line in lines:
        print(f"  {line}")
    try:
        load_experiment(source, [*overrides, *overrides_of(lines)])
    except ConfigError as error:
        print(f"note: these lines do not validate with {source} as is: {error.messages[0]}")
