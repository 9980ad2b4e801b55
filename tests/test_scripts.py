"""The helper scripts: job submission's command line and its refusal of bad input; the GPU
bundle's file selection and size guard."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import tarfile
import zipfile
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_submit_entrypoint_ships_the_experiment_folder_and_runs_on_the_cluster(tmp_path):
    experiment = tmp_path / "my sweep.yaml"
    entrypoint, working_dir = load("submit_sweep").build_entrypoint(
        str(experiment), ["search.num_samples=64"], "/mnt/shared/runs", "lr-study"
    )
    assert working_dir == str(tmp_path)
    assert shlex.split(entrypoint) == [
        "cnn-tune",
        "run",
        "my sweep.yaml",
        "--storage",
        "/mnt/shared/runs",
        "--address",
        "auto",
        "--name",
        "lr-study",
        "--set",
        "search.num_samples=64",
    ]


def test_submit_entrypoint_for_a_builtin_ships_nothing():
    entrypoint, working_dir = load("submit_sweep").build_entrypoint("digits", [], "/shared", None)
    assert working_dir is None and entrypoint.startswith("cnn-tune run digits ")


def test_submit_refuses_bad_input_before_contacting_any_cluster(capsys):
    code = load("submit_sweep").main(
        [
            "digits",
            "--storage",
            "/shared",
            "--set",
            "train.optimizer.lr=-1",
            "--address",
            "http://192.0.2.1:8265",
        ]
    )
    assert code == 2
    assert "train.optimizer.lr" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name",
    ["bench_schedulers", "gpu_check", "bench_final", "chaos", "bench_scale"],
)
def test_benchmark_scripts_import_without_side_effects(name):
    assert callable(load(name).main)


@pytest.mark.parametrize(
    ("path", "dropped"),
    [
        ("ray/jars/ray_dist.jar", True),
        ("ray/dashboard/client/build/static/js/main.js", True),
        ("pyarrow/libarrow_flight.so.2600", True),
        ("pyarrow/_flight.cpython-312-x86_64-linux-gnu.so", True),
        ("pyarrow/libarrow_s3.so.2600", True),
        ("pyarrow/libarrow_python.so", True),
        ("pyarrow/libarrow_python.so.2600.1.0", True),
        ("pyarrow/include/arrow/api.h", True),
        ("pandas/tests/frame/test_api.py", True),
        ("ray/_raylet.so", False),
        ("ray/core/src/ray/raylet/raylet", False),
        ("ray/core/src/ray/gcs/gcs_server", False),
        ("ray/dashboard/dashboard.py", False),
        ("ray/_private/runtime_env/agent/main.py", False),
        ("ray/tune/__init__.py", False),
        ("pyarrow/libarrow_python.so.2600", False),
        ("pyarrow/libparquet.so.2600", False),
        ("pyarrow/libarrow_substrait.so.2600", False),
        ("pyarrow/_fs.cpython-312-x86_64-linux-gnu.so", False),
        ("pandas/core/frame.py", False),
    ],
)
def test_gpu_bundle_drops_only_what_a_one_node_tune_sweep_never_loads(path, dropped):
    assert (load("gpu_bundle").dropped_by(path) is not None) == dropped


def test_gpu_bundle_never_ships_the_machines_torch_or_numpy():
    bundle = load("gpu_bundle")
    names = {bundle.normalize(name) for name in bundle.PACKAGES}
    assert names.isdisjoint({"torch", "torchvision", "numpy", "scikit-learn", "tensorboard"})


def test_gpu_bundle_packages_are_all_pinned_in_the_lock_file():
    bundle = load("gpu_bundle")
    pins = bundle.read_pins((SCRIPTS.parent / "constraints.txt").read_text())
    assert pins["ray"] == "2.60.0" and set(pins) == set(bundle.PACKAGES)


def test_gpu_bundle_refuses_a_package_the_lock_file_does_not_pin():
    bundle = load("gpu_bundle")
    with pytest.raises(bundle.BundleError, match="hyperopt"):
        bundle.read_pins("PyYAML==6.0.3\nray==2.60.0\n", ("pyyaml", "hyperopt"))


def test_gpu_bundle_size_check_passes_at_the_limit_and_names_every_part_over_it():
    bundle = load("gpu_bundle")
    assert bundle.check_size({"site.tar.xz": 60 * 2**20, "MANIFEST.json": 4 * 2**20}) == 64 * 2**20
    with pytest.raises(bundle.BundleError) as error:
        bundle.check_size({"site.tar.xz": 70 * 2**20, "MANIFEST.json": 2048})
    assert "70.0 MiB, over the 64 MiB" in str(error.value)
    assert "site.tar.xz 70.0 MiB, MANIFEST.json 0.0 MiB" in str(error.value)


def test_gpu_bundle_unpacks_a_wheel_with_its_modes_and_without_dropped_files(tmp_path):
    bundle = load("gpu_bundle")
    wheel = tmp_path / "demo-1.0-cp312-cp312-manylinux2014_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        executable = zipfile.ZipInfo("ray/core/src/ray/raylet/raylet")
        executable.external_attr = 0o755 << 16
        archive.writestr(executable, b"\x7fELF")
        archive.writestr("ray/jars/ray_dist.jar", b"x" * 1000)
        archive.writestr("demo.data/purelib/demo/__init__.py", "VERSION = 1\n")
        archive.writestr("demo.data/scripts/demo-tool", "#!/bin/sh\n")
    selection = bundle.Selection()
    bundle.unpack(wheel, tmp_path / "site", selection)
    site = tmp_path / "site"
    files = sorted(str(path.relative_to(site)) for path in site.rglob("*") if path.is_file())
    assert files == ["demo/__init__.py", "ray/core/src/ray/raylet/raylet"]
    assert (tmp_path / "site/ray/core/src/ray/raylet/raylet").stat().st_mode & 0o777 == 0o755
    assert selection.dropped_bytes == {"ray/jars/*": 1000}
    assert selection.kept_bytes == len(b"\x7fELF") + len("VERSION = 1\n")


@pytest.mark.integration
def test_bench_scale_quick_runs_the_three_ways_and_cnn_tune_logs_a_handful_of_lines(tmp_path):
    code = load("bench_scale").main(["--quick", "--out", str(tmp_path)])

    report = json.loads((tmp_path / "scale.json").read_text())
    rows = {row["way"]: row for row in report["rows"]}
    assert code == 0 and set(rows) == {"pool", "bare-ray", "cnn-tune"}
    assert all(row["trials"] == 2 and row["wall_s"] > 0 for row in rows.values())
    ours = rows["cnn-tune"]
    # Beyond the progress output: the data, Ray starting, the test evaluation; a loaded
    # machine can add a few one-off lines from Ray's daemons to a run (the excerpt shows them).
    assert ours["log_lines"] <= 20, ours["log_excerpt"]
    assert "trials ended" in (tmp_path / "cnn-tune-2.log").read_text()
    assert ours["storage_bytes"] > 0 and ours["peak_rss_bytes"] > 0
    assert ours["report_s"] > 0 and ours["tensorboard_load_s"] > 0
    assert (tmp_path / "scale.png").stat().st_size > 10_000


def test_bench_scale_marginal_cost_is_per_extra_trial_between_consecutive_sizes():
    rows = [
        {"way": "cnn-tune", "trials": 64, "wall_s": 30.0},
        {"way": "cnn-tune", "trials": 16, "wall_s": 18.0},
        {"way": "pool", "trials": 16, "wall_s": 5.0},
    ]

    load("bench_scale").marginal_costs(rows)

    assert rows[0]["marginal_s_per_trial"] == pytest.approx(12.0 / 48)
    assert "marginal_s_per_trial" not in rows[1] and "marginal_s_per_trial" not in rows[2]


@pytest.mark.integration
def test_chaos_quick_kills_a_sweep_resumes_it_and_matches_the_uninterrupted_run(tmp_path):
    output = tmp_path / "chaos.json"
    code = load("chaos").main(["--quick", "--workdir", str(tmp_path), "--output", str(output)])

    report = json.loads(output.read_text())
    (run,) = report["scenarios"]["asha"]["runs"]
    assert code == 0 and run["identical"], run["differences"]
    assert run["evaluations"] == 1


def test_gpu_bundle_replaces_an_old_bundle_but_never_empties_another_folder(tmp_path):
    bundle = load("gpu_bundle")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "site.tar.xz").write_bytes(b"old")
    bundle.clear_previous_bundle(tmp_path / "old")
    assert list((tmp_path / "old").iterdir()) == []
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "README.md").write_text("keep me")
    (tmp_path / "repo" / "MANIFEST.json").write_text("{}")
    with pytest.raises(bundle.BundleError, match=r"README\.md"):
        bundle.clear_previous_bundle(tmp_path / "repo")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["MANIFEST.json", "README.md"]


def test_gpu_bundle_packs_the_same_files_into_the_same_bytes(tmp_path):
    bundle = load("gpu_bundle")
    for name, mtime in (("a", 1_000_000_000), ("b", 1_700_000_000)):
        script = tmp_path / name / "ray" / "core" / "raylet"
        script.parent.mkdir(parents=True)
        script.write_bytes(b"\x7fELF" * 100)
        script.chmod(0o755)
        os.utime(script, (mtime, mtime))
        bundle.pack(tmp_path / name, tmp_path / f"{name}.tar.xz")
    assert (tmp_path / "a.tar.xz").read_bytes() == (tmp_path / "b.tar.xz").read_bytes()
    with tarfile.open(tmp_path / "a.tar.xz") as tar:
        assert [(m.name, m.mode) for m in tar.getmembers()] == [("ray/core/raylet", 0o755)]


def test_bench_scale_keeps_the_median_run_of_repeats_with_every_wall_time():
    median_run = load("bench_scale").median_run
    runs = [{"wall_s": wall, "peak_rss_bytes": i} for i, wall in enumerate([30.0, 10.0, 20.0])]

    row = median_run(runs)

    assert (row["wall_s"], row["peak_rss_bytes"]) == (20.0, 2)
    assert row["wall_s_runs"] == [30.0, 10.0, 20.0]
    assert median_run(runs[:2])["wall_s"] == 10.0  # the lower middle of an even count
