"""`cnn-tune train`: one configuration, the same loop as a trial, no Ray."""

from __future__ import annotations

import json
import sys

from trainables.config import TrainConfig
from tuning import space
from tuning.experiment import load_experiment


def train_one(source: str, overrides: list[str], sample_seed: int, output: str | None) -> int:
    """Train the experiment's train config once; tuned values are sampled with `sample_seed`."""
    experiment = load_experiment(source, overrides)
    point = space.sample_point(experiment.train, sample_seed)
    config = TrainConfig.model_validate(point)
    print("config:", json.dumps(config.model_dump(mode="json"), sort_keys=True), flush=True)
    # torch only once the config is valid: a bad --set is refused without loading it.
    import torch

    from trainables.checkpoint import save_checkpoint
    from trainables.data import load_splits
    from trainables.loop import fit

    splits = load_splits(experiment.dataset)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def show(metrics: dict[str, float]) -> None:
        print(
            f"epoch {metrics['epoch']:>3}  train_loss {metrics['train_loss']:.4f}  "
            f"train_acc {metrics['train_acc']:.4f}  val_loss {metrics['val_loss']:.4f}  "
            f"val_acc {metrics['val_acc']:.4f}  lr {metrics['lr']:.3g}",
            flush=True,
        )

    trainer = fit(config, splits.tuning, device=device, on_epoch_end=show)
    if output:
        from pathlib import Path

        directory = Path(output).expanduser().resolve()
        directory.mkdir(parents=True, exist_ok=True)
        path = save_checkpoint(trainer.state_dict(), directory)
        print(f"checkpoint: {path}", file=sys.stderr)
    return 0
