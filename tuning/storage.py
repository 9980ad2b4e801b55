"""Where a sweep's results go, and whether every node of the cluster can write there.

A sweep lives at a *location*: an absolute local path, or a URI that pyarrow's
filesystems understand (s3://bucket/prefix/name, gs://..., file:///...), the same
storage Ray Tune writes to. On one machine any folder works. On a multi-node cluster
every trial writes its checkpoints and logs under the same location, so it must be a
bucket or a filesystem mounted at the same place on every node.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tuning.errors import ConfigError

_CHECKPOINT_PREFIX = "checkpoint_"  # Tune's checkpoint folders: checkpoint_000012


def is_remote(location: str) -> bool:
    return "://" in location


def sweep_location(storage: str, name: str) -> str:
    """The location of sweep `name` under `storage` (a path made absolute, or a URI)."""
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r}: use a plain folder name such as digits-lr-sweep")
    if is_remote(storage):
        return f"{storage.rstrip('/')}/{name}"
    return str(Path(storage).expanduser().resolve() / name)


def resolve_location(location: str) -> str:
    return (
        location.rstrip("/") if is_remote(location) else str(Path(location).expanduser().resolve())
    )


def _fs(location: str) -> tuple[pafs.FileSystem, str]:
    if not is_remote(location):
        return pafs.LocalFileSystem(), location
    try:
        return pafs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as error:
        raise ConfigError(
            f"{location!r}: cannot open it ({error}); use s3://, gs://, file:// "
            "or a path, with the credentials your cloud's SDK reads"
        ) from error


def write_text(location: str, name: str, text: str) -> None:
    write_bytes(location, name, text.encode("utf-8"))


def read_text(location: str, name: str) -> str | None:
    """The file's text, or None if it does not exist."""
    data = read_bytes(location, name)
    return None if data is None else data.decode("utf-8")


def write_bytes(location: str, name: str, data: bytes) -> None:
    """Write `<location>/<name>` (`name` may hold slashes), creating its folders."""
    fs, root = _fs(location)
    path = f"{root}/{name}"
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def read_bytes(location: str, name: str) -> bytes | None:
    """The file's content, or None if it does not exist."""
    fs, root = _fs(location)
    if fs.get_file_info(f"{root}/{name}").type != pafs.FileType.File:
        return None
    with fs.open_input_stream(f"{root}/{name}") as stream:
        return bytes(stream.read())


def list_files(location: str) -> dict[str, int]:
    """Every file under `location` (a path or URI): its name relative to it -> its bytes.

    Raises:
        ConfigError: `location` is not a folder.
    """
    fs, root = _fs(location)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise ConfigError(f"{location!r} is not a folder; pass a sweep, <storage>/<name>")
    return {
        info.path[len(root) :].lstrip("/"): info.size or 0
        for info in fs.get_file_info(pafs.FileSelector(root, recursive=True))
        if info.type == pafs.FileType.File
    }


def copy_files(location: str, names: Iterable[str], target: Path) -> None:
    """Copy `<location>/<name>` to `<target>/<name>` for each name, creating folders."""
    fs, root = _fs(location)
    for name in names:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(f"{root}/{name}") as stream:
            destination.write_bytes(stream.read())


def latest_checkpoints_only(names: Iterable[str]) -> list[str]:
    """`names` without the checkpoint files other than those of each trial's newest one.

    Tune names a trial's checkpoints `<trial>/checkpoint_000012/...`, numbered in order.
    """
    names = list(names)
    latest: dict[str, str] = {}  # trial folder -> its newest checkpoint folder
    for name in names:
        trial, checkpoint = _checkpoint_of(name)
        if checkpoint:
            latest[trial] = max(latest.get(trial, ""), checkpoint)
    kept = []
    for name in names:
        trial, checkpoint = _checkpoint_of(name)
        if checkpoint is None or latest[trial] == checkpoint:
            kept.append(name)
    return kept


def _checkpoint_of(name: str) -> tuple[str, str | None]:
    """(trial folder, checkpoint folder) of a file in a checkpoint, else (first part, None)."""
    parts = name.split("/")
    if len(parts) > 2 and parts[1].startswith(_CHECKPOINT_PREFIX):
        return parts[0], parts[1]
    return parts[0], None


def holds_anything(location: str) -> bool:
    fs, root = _fs(location)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return False
    return bool(fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)))


def check_storage_is_shared(location: str) -> None:
    """On a multi-node cluster, check that every node sees a local-path `location`.

    The driver writes a marker file there and a tiny task pinned to each alive node looks
    for it: a node that cannot see it would write its trials' results elsewhere. Bucket
    URIs are shared by nature.
    """
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1 or is_remote(location):
        return
    experiment_dir = Path(location)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    marker = experiment_dir / f".storage-check-{uuid.uuid4().hex}"
    marker.write_text("cnn-tune")
    try:
        seen = ray.get(
            [
                _sees.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                ).remote(str(marker))
                for node in nodes
            ]
        )
    finally:
        marker.unlink(missing_ok=True)
    blind = [node for node, ok in zip(nodes, seen, strict=True) if not ok]
    if blind:
        raise ConfigError(
            f"--storage {str(experiment_dir.parent)!r} is not shared: {len(blind)} of "
            f"{len(nodes)} Ray nodes cannot see it (node ids {', '.join(b[:8] for b in blind)}). "
            "On a multi-node cluster give a bucket (s3://..., gs://...) or a path on storage "
            "mounted at the same place on every node (NFS, EFS, a shared volume)."
        )


@ray.remote(num_cpus=0)
def _sees(path: str) -> bool:
    return os.path.exists(path)
