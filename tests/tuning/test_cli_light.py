"""The CLI answers before it imports the heavy stack: parsing, listing and validating
a config import neither torch, nor Ray, nor pyarrow.

Each check runs in a fresh interpreter, since this test process has imported them all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "ray", "pyarrow")
REPO = Path(__file__).resolve().parents[2]


def _heavy_modules_after(code: str) -> tuple[dict, subprocess.CompletedProcess]:
    """Run `code` (which sets `rc`) in a fresh interpreter.

    Returns:
        {"rc": rc, "heavy": the heavy modules it imported}, and the finished process.
    """
    heavy = f"sorted(m for m in {HEAVY!r} if m in sys.modules)"
    script = f"import json, sys\n{code}\nprint(json.dumps({{'rc': rc, 'heavy': {heavy}}}))"
    process = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1]), process


def test_cli_import_and_config_validation_import_no_heavy_module():
    result, _ = _heavy_modules_after(
        "import tuning.cli\n"
        "from tuning.experiment import load_experiment\n"
        "load_experiment('digits', ['train.epochs=3'])\n"
        "rc = 0"
    )
    assert result["heavy"] == []


@pytest.mark.parametrize(
    ("argv", "expected_rc"),
    [
        (["--help"], 0),
        (["list"], 0),
        (["run", "digits", "--set", "train.epoch=3"], 2),
        (["run", "digits", "--set", "train.optimizer.lr=-0.5"], 2),
        (["train", "digits", "--set", "dataset.name=imagenet"], 2),
    ],
    ids=["help", "list", "unknown-key", "bad-value", "train-bad-dataset"],
)
def test_cli_answers_without_importing_heavy_modules(argv, expected_rc):
    result, process = _heavy_modules_after(
        "from tuning.cli import main\n"
        "try:\n"
        f"    rc = main({argv!r})\n"
        "except SystemExit as exit:  # argparse's --help\n"
        "    rc = exit.code"
    )
    assert result == {"rc": expected_rc, "heavy": []}, process.stderr


def test_a_random_sweep_imports_no_searcher_or_sklearn_it_does_not_use():
    """The driver of a grid or random sweep and its trial processes leave out HyperOpt,
    Optuna and scikit-learn (with scipy.stats, over a second of start-up each); sweeps
    saved when the searchers lived in tuning.searchers still find them there."""
    optional = ("hyperopt", "optuna", "sklearn", "scipy")
    script = (
        "import json, sys\n"
        "import tuning.runner, trainables.tune_adapter\n"
        "from tuning.experiment import SearchSettings\n"
        "from tuning.searchers import build_searcher\n"
        "build_searcher(SearchSettings(algorithm='random'))\n"
        f"before = sorted(m for m in {optional!r} if m in sys.modules)\n"
        "import tuning.searchers as old\n"
        "moved = [old.ConditionalHyperOptSearch.__module__, old.EpochwiseOptunaSearch.__module__]\n"
        "print(json.dumps({'imported': before, 'moved': moved}))"
    )
    process = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout.strip().splitlines()[-1]) == {
        "imported": [],
        "moved": ["tuning.searchers_hyperopt", "tuning.searchers_optuna"],
    }
