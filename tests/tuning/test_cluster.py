"""Checking an --address before Ray joins it; where Ray looks for the last cluster.

These start no Ray: the checks run against ports with nothing, or something else, behind
them. Real clusters are in tests/integration/test_real_cluster.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuning.cluster import ClusterUnreachable, check_address, ray_address_file
from tuning.errors import ConfigError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port_that_is_not_ray() -> Iterator[int]:
    """A TCP port that accepts connections and closes them at once, as a wrong service might."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize(
    "address", ["garbage", "127.0.0.1:", ":6379", "127.0.0.1:99999", "ray://head", "head:port"]
)
def test_check_address_rejects_what_is_not_an_address(address: str) -> None:
    with pytest.raises(ClusterUnreachable) as error:
        check_address(address, timeout_s=1)

    assert repr(address) in str(error.value) and "HOST:PORT" in str(error.value)


def test_check_address_believes_a_refused_port_within_seconds_not_the_whole_timeout() -> None:
    address = f"127.0.0.1:{_free_port()}"
    start = time.monotonic()

    with pytest.raises(ClusterUnreachable) as error:
        check_address(address, timeout_s=30)

    assert time.monotonic() - start < 10
    message = str(error.value)
    assert f"--address {address}" in message and "Connection refused" in message
    assert "TCP connection attempt" in message and "token" in message


def test_check_address_fails_at_once_for_a_host_that_does_not_exist() -> None:
    start = time.monotonic()

    with pytest.raises(ClusterUnreachable, match=r"no-such-host\.invalid"):
        check_address("no-such-host.invalid:6379", timeout_s=30)

    assert time.monotonic() - start < 10


def test_check_address_says_when_the_port_answers_but_is_not_a_ray_gcs(
    port_that_is_not_ray: int,
) -> None:
    start = time.monotonic()

    with pytest.raises(ClusterUnreachable) as error:
        check_address(f"127.0.0.1:{port_that_is_not_ray}", timeout_s=3)

    assert time.monotonic() - start < 10
    assert "accepts TCP connections" in str(error.value) and "6379" in str(error.value)


def test_cluster_unreachable_is_bad_input_so_the_cli_exits_2() -> None:
    assert issubclass(ClusterUnreachable, ConfigError)


def test_ray_address_file_is_where_ray_start_records_its_cluster(monkeypatch, tmp_path) -> None:
    """Ray's default temp folder is $RAY_TMPDIR, else $TMPDIR, else /tmp; then `ray/`."""
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.delenv("TMPDIR", raising=False)
    assert ray_address_file() == Path("/tmp/ray/ray_current_cluster")

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert ray_address_file() == tmp_path / "ray" / "ray_current_cluster"


def test_the_loopback_switch_still_makes_ray_give_a_private_node_127_0_0_1():
    """tuning.cluster.keep_private_ray_on_loopback relies on Ray 2.60 reading
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import, in ray._private.services: this fails if a
    Ray upgrade changes that, before any sweep listens on the network."""
    code = (
        "from tuning.cluster import keep_private_ray_on_loopback\n"
        "assert keep_private_ray_on_loopback(), 'ray was imported first'\n"
        "from ray._private.services import get_node_ip_address\n"
        "print(get_node_ip_address())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "127.0.0.1"
