"""The cluster launcher configs pass Ray's own schema and stay locked down.

Validation runs the offline half of `ray up` (Ray 2.60, `commands._bootstrap_config`):
`prepare_config` merges the provider's defaults, then `validate_config` checks the result
against `ray/autoscaler/ray-schema.json`. The other half (filling resources from the AWS
API, creating keys and groups) talks to the cloud and is never called here.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = {
    "aws": ROOT / "cluster.yaml",
    "onprem": ROOT / "scripts" / "cluster-onprem.yaml",
}
INSTALL_WITH_LOCK_FILE = "pip install -c ~/cnn-tune/constraints.txt -e ~/cnn-tune"
TOKEN_FILE = "~/.ray/auth_token"  # the cluster's token, made by `ray get-auth-token --generate`

Config = dict[str, Any]


def _load(kind: str) -> Config:
    return yaml.safe_load(CONFIG_FILES[kind].read_text(encoding="utf-8"))


def _validate_like_ray_up(config: Config) -> Config:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _head_start_command(config: Config) -> str:
    (command,) = [c for c in config["head_start_ray_commands"] if "ray start --head" in c]
    return command


def _worker_start_command(config: Config) -> str:
    (command,) = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    return command


def _with_unknown_top_level_key(config: Config) -> None:
    config["min_worker"] = 1  # a typo of a real key


def _with_max_workers_as_string(config: Config) -> None:
    config["max_workers"] = "8"


def _with_gpu_worker_without_resources(config: Config) -> None:
    del config["available_node_types"]["gpu_worker"]["resources"]


def _with_fractional_gpu_on_a_node(config: Config) -> None:
    config["available_node_types"]["gpu_worker"]["resources"] = {"CPU": 4, "GPU": 0.5}


def _with_unknown_security_group_key(config: Config) -> None:
    config["provider"]["security_group"] = {"GroupName": "cnn-tune", "Ingress": []}


def _with_worker_ips_as_string(config: Config) -> None:
    config["provider"]["worker_ips"] = "192.0.2.11"


def _with_unknown_auth_key(config: Config) -> None:
    config["auth"]["ssh_password"] = "secret"


BROKEN_VARIANTS: list[tuple[str, Callable[[Config], None]]] = [
    ("aws", _with_unknown_top_level_key),
    ("aws", _with_max_workers_as_string),
    ("aws", _with_gpu_worker_without_resources),
    ("aws", _with_fractional_gpu_on_a_node),
    ("aws", _with_unknown_security_group_key),
    ("onprem", _with_unknown_top_level_key),
    ("onprem", _with_worker_ips_as_string),
    ("onprem", _with_unknown_auth_key),
]


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_cluster_config_passes_rays_own_validation(kind: str) -> None:
    prepared = _validate_like_ray_up(_load(kind))

    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize(
    ("kind", "break_config"),
    BROKEN_VARIANTS,
    ids=[f"{kind}-{mutate.__name__.removeprefix('_with_')}" for kind, mutate in BROKEN_VARIANTS],
)
def test_cluster_config_broken_copy_fails_rays_validation(
    kind: str, break_config: Callable[[Config], None]
) -> None:
    config = _load(kind)
    break_config(config)

    with pytest.raises(jsonschema.ValidationError):
        _validate_like_ray_up(config)


def test_aws_cluster_config_uses_only_security_groups_you_created() -> None:
    """Ray never creates a group: one it creates always gets SSH from 0.0.0.0/0.

    Ray 2.60 adds `tcp 22 from 0.0.0.0/0` to every security group it creates, on top of
    any `provider.security_group.IpPermissions`, so SSH can be limited to a source range
    only by a group made beforehand and named in each node type's SecurityGroupIds.
    """
    config = _load("aws")

    assert "security_group" not in config["provider"]
    for name, node_type in config["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds"), name


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_cluster_config_keeps_the_dashboard_on_loopback(kind: str) -> None:
    config = _load(kind)
    start_commands = config["head_start_ray_commands"] + config["worker_start_ray_commands"]

    assert "--dashboard-host=127.0.0.1" in _head_start_command(config)
    assert not [c for c in start_commands if "0.0.0.0" in c or "--ray-client-server-port" in c]


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_cluster_config_workers_join_the_head_gcs(kind: str) -> None:
    config = _load(kind)

    assert "--port=6379" in _head_start_command(config)
    assert "--address=$RAY_HEAD_IP:6379" in _worker_start_command(config)


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_cluster_config_installs_this_checkout_with_its_lock_file(kind: str) -> None:
    config = _load(kind)

    assert config["file_mounts"]["~/cnn-tune"] == "."
    (install,) = [c for c in config["setup_commands"] if INSTALL_WITH_LOCK_FILE in c]
    # Whatever else it installs on the nodes (ray[default], boto3) is pinned there too.
    extra = shlex.split(install.split(INSTALL_WITH_LOCK_FILE, 1)[1].split("#", 1)[0])
    assert extra and {re.sub(r"\[.*\]", "", name) for name in extra} <= _locked_packages()


def _locked_packages() -> set[str]:
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    return {line.split("==")[0].lower() for line in lines if "==" in line}


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_cluster_config_file_mounts_exist_locally(kind: str) -> None:
    """`ray up` asserts every local mount exists; relative ones are read from the repo root.

    The token is the exception: each user makes it in their own home (docs/cluster.md).
    """
    local_paths = [p for p in _load(kind)["file_mounts"].values() if p != TOKEN_FILE]

    assert [path for path in local_paths if not (ROOT / path).expanduser().exists()] == []


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_cluster_config_ships_the_token_to_where_ray_reads_it(kind: str) -> None:
    """Every node gets the laptop's token at Ray 2.60's default path, readable by its owner."""
    from ray._private.authentication.authentication_token_setup import _get_default_token_path

    config = _load(kind)

    assert config["file_mounts"][TOKEN_FILE] == TOKEN_FILE
    assert Path(TOKEN_FILE).expanduser() == _get_default_token_path()
    assert f"chmod 600 {TOKEN_FILE}" in [c.split("#")[0].strip() for c in config["setup_commands"]]


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_cluster_config_runs_every_node_and_shell_with_token_auth(kind: str) -> None:
    """A worker (and `ray status` on a node) sends no token unless RAY_AUTH_MODE=token."""
    config = _load(kind)

    assert "RAY_AUTH_MODE=token ray start --head" in _head_start_command(config)
    assert "RAY_AUTH_MODE=token ray start --address" in _worker_start_command(config)
    assert any(
        "echo 'export RAY_AUTH_MODE=token' >> ~/.bashrc" in c for c in config["setup_commands"]
    )
