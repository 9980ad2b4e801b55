"""Where a sweep's Ray comes from: a private one on this machine, or a cluster the user names.

Three rules, each a fix for a way Ray 2.60 left users waiting:

- **A local run owns its Ray.** Without an address cnn-tune starts a private Ray on
  127.0.0.1 (`ray.init(address="local")`), even when RAY_ADDRESS is set or
  `<ray temp dir>/ray_current_cluster` (written by the last `ray start`, and left behind
  when that cluster dies) names another cluster: plain `ray.init()` would join that one,
  or wait for a dead one for ever.
- **An address is checked before Ray is asked to join it**, within CONNECT_TIMEOUT_S:
  first a TCP connection to the head's GCS port, then one request to the GCS itself.
  Ray's own `ray.init(address=...)` retries a dead address for many minutes.
- **Token authentication.** `ray start --head` turns Ray's token authentication on when
  a token exists on the head (`ray.init()` creates one in ~/.ray/auth_token the first
  time it runs), while a driver or worker given an explicit address sends no token
  unless RAY_AUTH_MODE=token. When the cluster answers "token missing" and this machine
  has a token where Ray looks for one (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH,
  ~/.ray/auth_token), cnn-tune turns token mode on, as Ray itself does for
  `--address auto`; RAY_AUTH_MODE, when set, is obeyed as it is.

Ray is imported inside the functions: the CLI calls `keep_private_ray_on_loopback`
before Ray is imported, and validates input without importing it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tuning.errors import ConfigError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0  # the most a wrong or dead --address makes the user wait
_TCP_ATTEMPT_S = 3.0  # one TCP connection attempt; a head that is starting gets several
# A refused connection means nothing listens on that port (yet): a head that is starting
# opens it within seconds, so a refusal is believed after this long, not CONNECT_TIMEOUT_S.
_REFUSED_FOR_S = 5.0
_AUTH_MODE_ENV = "RAY_AUTH_MODE"  # Ray's switch: "token" or "disabled"
_TOKEN_ENV = "RAY_AUTH_TOKEN"
_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
# Ray 2.60 reads this once, when `ray` is imported: "0" makes a node's address 127.0.0.1
# (ray._private.services.get_node_ip_address), and Ray's gRPC servers bind to loopback
# when the node's address is loopback, to every interface otherwise. It also stops
# `ray start --address` (a worker node): only a single-machine Ray may have it.
_LOOPBACK_SWITCH_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class ClusterUnreachable(ConfigError):
    """The Ray cluster given as --address did not answer, or refused us (exit code 2)."""


@dataclass(frozen=True)
class _Deadline:
    """The end of one connection wait, in time.monotonic() seconds."""

    start: float
    end: float

    @classmethod
    def after(cls, seconds: float) -> _Deadline:
        now = time.monotonic()
        return cls(now, now + seconds)

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def waited(self) -> str:
        return f"{time.monotonic() - self.start:.0f} s"


@dataclass(frozen=True)
class Head:
    """The GCS address of a cluster's head, as a host and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def keep_private_ray_on_loopback() -> bool:
    """Make a Ray that this process starts listen on 127.0.0.1 only.

    Must run before `ray` is imported (Ray reads the switch at import). Only for a Ray
    that lives on this machine alone: a process that joins a multi-node cluster needs
    the machine's real address. Returns False when Ray was imported already, so the
    call came too late to have any effect.
    """
    os.environ.setdefault(_LOOPBACK_SWITCH_ENV, "0")
    return "ray" not in sys.modules


def connect(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Start a private local Ray (`address` None) or join the cluster at `address`.

    A Ray this process already runs (a test's, a notebook's) is kept as it is.

    Raises:
        ClusterUnreachable: `address` names no reachable Ray cluster, or its token
            authentication refused us; raised within about `timeout_s` seconds.
    """
    import ray

    if ray.is_initialized():
        return
    if address is None:
        _start_private_ray()
        return
    target = check_address(address, timeout_s)
    ray.init(address=target, logging_level=logging.WARNING)
    resources = ray.cluster_resources()
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    logger.info(
        "Joined the Ray cluster at %s: %d node(s), %g CPU(s), %g GPU(s)",
        target,
        alive,
        resources.get("CPU", 0),
        resources.get("GPU", 0),
    )


def check_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """Check that a Ray cluster answers at `address` and accepts us; return what to join.

    `address` is `auto`, `HOST:PORT` (the head's GCS port, 6379 unless `ray start --head
    --port` said otherwise) or `ray://HOST:PORT` (Ray Client). Turns token
    authentication on when the cluster asks for it and a token is at hand.

    Raises:
        ClusterUnreachable: within about `timeout_s` seconds, naming the address, what
            was tried and how to fix it.
    """
    deadline = _Deadline.after(timeout_s)
    head, source = _resolve(address)
    _wait_for_tcp(head, source, deadline)
    if address.startswith("ray://"):
        return address  # Ray Client speaks its own protocol; the port answered, enough
    _check_gcs_accepts_us(head, address, deadline)
    return str(head)


def ray_address_file() -> Path:
    """The file in which `ray start` records its cluster, and `ray.init()` looks."""
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def _start_private_ray() -> None:
    import ray

    others = _clusters_named_elsewhere()
    if others:
        logger.info(
            "Starting a private Ray on this machine; not joining %s (pass --address auto "
            "or --address HOST:PORT to run on a cluster)",
            " or ".join(others),
        )
    else:
        logger.info("Starting a private Ray on this machine")
    # "local" starts a new Ray whatever RAY_ADDRESS or ray_current_cluster say.
    ray.init(
        address="local",
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
    )


def _clusters_named_elsewhere() -> list[str]:
    """Clusters a plain `ray.init()` would have joined: RAY_ADDRESS, ray_current_cluster."""
    named = []
    if os.environ.get("RAY_ADDRESS"):
        named.append(f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}")
    address_file = ray_address_file()
    try:
        recorded = address_file.read_text().strip()
    except OSError:
        recorded = ""
    if recorded:
        named.append(f"the cluster at {recorded} named by {address_file}")
    return named


def _resolve(address: str) -> tuple[Head, str]:
    """The head to reach for `address`, and where that came from (for messages)."""
    if address == "auto":
        return _resolve_auto()
    host_port = address.removeprefix("ray://")
    host, sep, port = host_port.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterUnreachable(
            f"--address {address!r} is not an address; give auto, HOST:PORT (the head's "
            "GCS port, 6379 by default, as `ray start --head` printed it) or ray://HOST:10001"
        )
    return Head(host, int(port)), f"--address {address}"


def _resolve_auto() -> tuple[Head, str]:
    """What `ray.init(address="auto")` would join, and where Ray found it.

    Ray 2.60 takes RAY_ADDRESS; else the one GCS process running on this machine, if
    there is exactly one; else the address `ray start` recorded in ray_current_cluster.
    """
    from ray._private.services import canonicalize_bootstrap_address_or_die

    try:
        found = canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError as error:
        raise ClusterUnreachable(
            f"--address auto found no Ray cluster on this machine ({error}). Start one with "
            "`ray start --head`, or give the head's HOST:PORT"
        ) from None
    host, _, port = found.rpartition(":")
    return Head(host.strip("[]"), int(port)), f"--address auto (found {found} {_origin(port)})"


def _origin(port: str) -> str:
    if os.environ.get("RAY_ADDRESS"):
        return f"in RAY_ADDRESS={os.environ['RAY_ADDRESS']}"
    try:
        recorded = ray_address_file().read_text().strip()
    except OSError:
        recorded = ""
    if recorded.rpartition(":")[2] == port:
        return f"in {ray_address_file()}, written by the last `ray start`"
    return "as the Ray GCS process running on this machine"


def _wait_for_tcp(head: Head, source: str, deadline: _Deadline) -> None:
    """Retry a TCP connection to the head until `deadline`: it may be starting up.

    A port that refuses connections is given _REFUSED_FOR_S; one that does not answer at
    all (a firewall that drops, a host that is down) the whole wait.
    """
    refusals_believed = _Deadline.after(min(_REFUSED_FOR_S, deadline.left()))
    attempts = 0
    while True:
        attempts += 1
        budget = min(_TCP_ATTEMPT_S, max(0.1, deadline.left()))
        try:
            with socket.create_connection((head.host, head.port), timeout=budget):
                return
        except socket.gaierror as error:  # a typo in the host name: waiting will not help
            what = f"{head.host!r}: {error}"
            raise ClusterUnreachable(_unreachable(source, head, what)) from None
        except OSError as error:
            last_error = str(error) or type(error).__name__
            refused = isinstance(error, ConnectionRefusedError)
        if deadline.left() <= 0 or (refused and refusals_believed.left() <= 0):
            what = f"{attempts} TCP connection attempt(s) in {deadline.waited()}: {last_error}"
            raise ClusterUnreachable(_unreachable(source, head, what))
        time.sleep(min(1.0, deadline.left()))


def _check_gcs_accepts_us(head: Head, address: str, deadline: _Deadline) -> None:
    """One request to the GCS; on "token missing", turn token mode on if a token is here."""
    from ray.exceptions import AuthenticationError

    error = _ask_gcs(head, deadline)
    if isinstance(error, AuthenticationError) and turn_token_auth_on():
        logger.info(
            "The cluster at %s uses token authentication; sending the token from %s",
            head,
            _token_source(),
        )
        error = _ask_gcs(head, deadline)
    if error is None:
        return
    if isinstance(error, AuthenticationError):
        raise ClusterUnreachable(_refused(head, address))
    answer = (
        f"no Ray GCS answered within {deadline.waited()}"
        if isinstance(error, TimeoutError)
        else f"what answered is not a Ray GCS ({type(error).__name__}: {_first_line(error)})"
    )
    raise ClusterUnreachable(
        f"--address {address}: {head} accepts TCP connections, but {answer}. Give the port "
        "`ray start --head` printed (its --port, 6379 by default), not the dashboard's "
        "(8265) or Ray Client's (10001, which needs ray://)"
    )


def _ask_gcs(head: Head, deadline: _Deadline) -> BaseException | None:
    """Ray's GCS client, in a thread we can stop waiting for; the error, or None if it answered.

    Ray's client waits about 40 s for a port that accepts connections but does not
    speak Ray's protocol; the thread is a daemon and ends by itself.
    """
    from ray._raylet import GcsClient  # type: ignore[attr-defined]  # Ray's own, untyped

    outcome: list[BaseException | None] = []

    def ask() -> None:
        try:
            GcsClient(address=str(head))
            outcome.append(None)
        except BaseException as error:  # reported to the caller, whatever it is
            outcome.append(error)

    thread = threading.Thread(target=ask, name="cnn-tune-gcs-probe", daemon=True)
    thread.start()
    thread.join(max(1.0, deadline.left()))
    return outcome[0] if outcome else TimeoutError("no answer")


def turn_token_auth_on() -> bool:
    """Ray's own step for `--address auto`: token mode, if RAY_AUTH_MODE is unset and a
    token exists where Ray looks. True if token mode was turned on here.

    Called when a server answered "token missing": the token goes only to a cluster that
    asks for one, and an explicit RAY_AUTH_MODE is never overridden.
    """
    from ray._private.authentication import authentication_token_setup as setup

    if os.environ.get(_AUTH_MODE_ENV) is not None:
        return False  # the user chose; a retry would send the same thing
    # Ray would also log "Token authentication is enabled for this Ray cluster", which
    # reads as if cnn-tune had started one; the caller says what happened instead.
    ray_logger = logging.getLogger(setup.__name__)
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR)
    try:
        return setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        ray_logger.setLevel(level)


def _token_source() -> str:
    """Where Ray takes the token from, in Ray's order of precedence."""
    if os.environ.get(_TOKEN_ENV):
        return f"the {_TOKEN_ENV} environment variable"
    if os.environ.get(_TOKEN_PATH_ENV):
        return f"{os.environ[_TOKEN_PATH_ENV]} ({_TOKEN_PATH_ENV})"
    from ray._private.authentication.authentication_token_setup import _get_default_token_path

    return str(_get_default_token_path())


def _has_token() -> bool:
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

    return bool(AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True))


def _refused(head: Head, address: str) -> str:
    return (
        token_refusal_message(f"--address {address}", f"the Ray cluster at {head}")
        + f"; a worker joins it with `RAY_AUTH_MODE=token ray start --address {head}`"
    )


def token_refusal_message(flag: str, server: str) -> str:
    """Why `server`, which requires Ray's token authentication, refused us; how to fix it."""
    mode = os.environ.get(_AUTH_MODE_ENV)
    if mode is not None and mode.lower() != "token":
        sent = f"no token ({_AUTH_MODE_ENV}={mode} is set here)"
        fix = f"unset {_AUTH_MODE_ENV}, or set it to token, and "
    elif _has_token():
        sent = f"the token from {_token_source()}, which it rejected"
        fix = ""
    else:
        sent = f"no token: none in {_TOKEN_ENV}, {_TOKEN_PATH_ENV} or {_token_source()}"
        fix = ""
    return (
        f"{flag}: {server} requires token authentication (Ray 2.60's default for "
        f"`ray start --head`) and cnn-tune sent {sent}. To fix, {fix}give this machine the "
        "head's token: run `ray get-auth-token` on the head and save its output as "
        f"~/.ray/auth_token here (or export {_TOKEN_ENV}=<token>, or {_TOKEN_PATH_ENV}=<file>)"
    )


def _unreachable(source: str, head: Head, what: str) -> str:
    return (
        f"{source}: no Ray cluster answered at {head} ({what}). Check that the head runs "
        f"(`ray status --address {head}` on it), that the port is the one `ray start --head` "
        "printed (its --port, 6379 by default), and that no firewall blocks it; if the "
        f"cluster uses token authentication (Ray 2.60's default), this machine also needs "
        f"its token (`ray get-auth-token` on the head, saved as ~/.ray/auth_token here)"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
