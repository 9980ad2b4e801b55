"""The summary `cnn-tune run` and `resume` print: summary.json in a dozen lines.

Reads only summary.json's model (tuning.summary), so it imports neither Ray nor torch.
"""

from __future__ import annotations

from typing import Any

from tuning.summary import Summary
from tuning.values import short


def format_summary(summary: Summary | dict[str, Any]) -> str:
    """The closing lines the CLI prints."""
    if not isinstance(summary, Summary):
        summary = Summary.model_validate(summary)
    best, test, metric = summary.best, summary.test, summary.metric
    record = summary.record_of(best.trial_id)
    tuned = record.tuned if record is not None else {}
    lines = [
        f"Sweep {summary.experiment!r}: {summary.num_trials} trials, "
        f"{summary.num_stopped_early} stopped early by the scheduler, "
        f"{summary.num_early_stopped} by their own early stopping, "
        f"{summary.num_diverged} diverged, {summary.num_errored} errored, "
        f"{summary.wall_seconds:.0f} s",
    ]
    if summary.compute is not None:
        compute = summary.compute
        lines.append(
            f"Compute: {compute.epochs} epochs, {compute.fraction_of_fifo or 0:.0%} of the "
            f"{compute.fifo_epochs} a FIFO sweep of these trials would run"
        )
    lines.append(
        f"Best trial {best.trial_id}: {metric}={summary.best_value():.4f} at epoch "
        f"{best.best_epoch} of {best.epochs}"
    )
    lines += [f"  {key} = {short(value)}" for key, value in sorted(tuned.items())]
    if best.footprint:
        lines.append(f"  footprint: {footprint_text(best.footprint)}")
    lines += _tradeoff_lines(summary)
    if summary.lineage:
        lines.append(f"PBT exploits: {len(summary.lineage)} (see lineage in summary.json)")
    if summary.extensions:
        lines.append(
            f"Extended {summary.extensions} time(s) with more trials (extension-<k>/ rounds); "
            "the best is chosen among every round's trials"
        )
    if summary.warm_start is not None:
        used, dropped = len(summary.warm_start["used"]), len(summary.warm_start["dropped"])
        lines.append(
            f"Warm start: {used} earlier trial(s) seeded the searcher, {dropped} dropped "
            "(see warm_start in summary.json)"
        )
    lines.append(f"Diagnosis of the best trial: {best.diagnosis.verdict}")
    lines += [f"  because {reason}" for reason in best.diagnosis.reasons]
    lines += [f"  try: {remedy}" for remedy in best.diagnosis.remedies]
    if summary.reevaluation is not None:
        lines += _reevaluation_lines(summary.reevaluation, metric)
    lines.append(_final_line(summary))
    low, high = test.accuracy_ci95
    lines.append(
        f"Test (held out, evaluated once per final model): accuracy={test.accuracy:.4f} "
        f"(95% CI {low:.3f}-{high:.3f}) loss={test.loss:.4f} on {test.num_examples} examples"
    )
    if test.looks > 1:
        lines.append(
            f"  the test split has scored {test.looks} final models in this sweep's life (a "
            "new best after `resume --set`): each look makes its figures a little less unbiased"
        )
    if test.seed_spread is not None:
        spread = test.seed_spread
        lines.append(
            f"  over {spread.seeds} seeds: std {spread.std:.4f}, "
            f"min {spread.min:.4f}, max {spread.max:.4f}"
        )
    lines.append(_per_class_line(test.per_class_accuracy))
    return "\n".join(lines)


def _per_class_line(per_class: dict[str, float], most: int = 10) -> str:
    """Accuracy per class; with more than `most` classes, the `most` worst."""
    shown = sorted(per_class.items(), key=lambda item: item[1])[:most]
    if len(per_class) <= most:
        shown = list(per_class.items())
        title = "  per class:"
    else:
        title = f"  per class, the {most} worst of {len(per_class)} (all in summary.json):"
    return " ".join([title, *(f"{name} {accuracy:.3f}" for name, accuracy in shown)])


def _reevaluation_lines(section: dict[str, Any], metric: str) -> list[str]:
    lines = [
        f"Reevaluated the {len(section['candidates'])} best configurations with "
        f"{section['seeds']} more seeds each (mean {metric} of the new runs):"
    ]
    for candidate in section["candidates"]:
        std = candidate["std"]
        lines.append(
            f"  {candidate['trial_id']}: tuned {candidate['tuned']:.4f}, "
            f"mean {candidate['mean']:.4f}"
            + ("" if std is None else f" (std {std:.4f})")
            + ("  <- chosen" if candidate["trial_id"] == section["chosen"] else "")
        )
    return lines


def _final_line(summary: Summary) -> str:
    models, epochs = summary.final.models, summary.best.checkpoint_epoch
    if models:
        epochs = models[0].epochs
    if summary.final.protocol == "best_checkpoint":
        return f"Final model: the best trial's best kept checkpoint, from epoch {epochs}"
    seeds = ", ".join(str(model.seed) for model in models)
    return (
        f"Final model: the best config retrained on train+val for {epochs} epochs, seed(s) {seeds}"
    )


def footprint_text(footprint: dict[str, float]) -> str:
    """`12,345 params, 1.2 MFLOPs/image, 0.31 ms at batch 1, 4.2 ms at batch 256`."""
    parts = []
    if "params" in footprint:
        parts.append(f"{footprint['params']:,.0f} params")
    if "flops" in footprint:
        parts.append(f"{footprint['flops'] / 1e6:.3g} MFLOPs/image")
    if "latency_ms" in footprint:
        parts.append(f"{footprint['latency_ms']:.3g} ms at batch 1")
    if "latency_ms_batch" in footprint:
        batch = int(footprint.get("latency_batch_size", 0))
        parts.append(f"{footprint['latency_ms_batch']:.3g} ms at batch {batch}")
    return ", ".join(parts)


def _tradeoff_lines(summary: Summary, most: int = 10) -> list[str]:
    """The constraints and what they excluded, and the Pareto front as a small table."""
    lines = []
    if summary.constraints:
        bounds = ", ".join(f"{name} {bound}" for name, bound in summary.constraints.items())
        lines.append(
            f"Constraints {bounds}: {summary.num_ineligible} of {summary.num_trials} trials "
            "broke one and could not win (see trials[].broken_constraints)"
        )
    if not summary.objectives:
        return lines
    names = list(summary.objectives)
    front = summary.pareto_front
    over = ", ".join(f"{n} ({mode})" for n, mode in summary.objectives.items())
    lines.append(
        f"Pareto front over {over}: {len(front)} trial(s); the final test took "
        f"{summary.pareto_rule or 'the best trial'}"
    )
    lines.append("  " + " ".join(f"{h:>12}" for h in ["trial", *names]))
    for point in front[:most]:
        cells = [point.trial_id, *(f"{point.value(n):.4g}" for n in names)]
        mark = "  <- tested" if point.trial_id == summary.best.trial_id else ""
        lines.append("  " + " ".join(f"{c:>12}" for c in cells) + mark)
    if len(front) > most:
        lines.append(f"  ... {len(front) - most} more in summary.json (pareto_front)")
    return lines
