"""cnn-tune's experiments: config, search space, runner, CLI, results and report.

This file must import nothing: `cnn-tune --help`, `list` and the rejection of a bad
config answer in a fraction of a second because importing `tuning.cli` loads neither
torch nor Ray (tests/tuning/test_cli_light.py), and every submodule import runs this
file first.
"""
