"""Where a sweep's results go, and whether every node of the cluster can write there.

A sweep lives at a *location*: an absolute local path, or a URI that pyarrow's
filesystems understand (s3://bucket/prefix/name, gs://..., file:///...), the same
storage Ray Tune writes to. On one machine any folder works. On a multi-node cluster
every trial writes its checkpoints and logs under the same location, so it must be a
bucket or a filesystem mounted at the same place on every node.

pyarrow and Ray are imported inside the functions that use them, so that naming and
checking a location (what preflight does before a sweep) stays light.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tuning.errors import ConfigError
from tuning.layout import CHECKPOINT_PREFIX

if TYPE_CHECKING:
    import pyarrow.fs as pafs


def is_remote(location: str) -> bool:
    return "://" in location


_SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=@-]*")
MAX_SWEEP_NAME = 128  # characters; one path component on every filesystem and bucket

# Schemes whose filesystem pyarrow (and so Ray Tune) can write to.
STORAGE_SCHEMES = ("s3", "gs", "gcs", "file", "hdfs", "viewfs", "abfs", "abfss")


def sweep_name_problem(name: str) -> str | None:
    """Why `name` cannot be a sweep's folder under --storage, or None if it can."""
    if not name.strip():
        return "is empty"
    if "/" in name or "\\" in name:
        return "holds a path separator; the sweep folder goes directly under --storage"
    if ".." in name:
        return "holds '..', which would leave --storage"
    if name.startswith("."):
        return "starts with '.', a hidden folder"
    if len(name) > MAX_SWEEP_NAME:
        return f"is {len(name)} characters long, more than {MAX_SWEEP_NAME}"
    if not _SWEEP_NAME.fullmatch(name):
        if not _SWEEP_NAME.fullmatch(name[0]):
            return f"starts with {name[0]!r}; start it with a letter or digit"
        bad = next(c for c in name if not _SWEEP_NAME.fullmatch("a" + c))
        return f"holds {bad!r}, which paths and bucket URIs do not take safely"
    return None


def check_sweep_name(name: str) -> None:
    """Raise ConfigError naming --name if `name` is not a plain folder name."""
    problem = sweep_name_problem(name)
    if problem is not None:
        raise ConfigError(
            f"--name {name!r} {problem}; use a plain folder name of letters, digits and "
            "- _ . + = @ (not first), e.g. --name digits-lr-sweep"
        )


def sweep_location(storage: str, name: str) -> str:
    """The location of sweep `name` under `storage` (a path made absolute, or a URI)."""
    check_sweep_name(name)
    if is_remote(storage):
        return f"{storage.rstrip('/')}/{name}"
    return str(Path(storage).expanduser().resolve() / name)


def resolve_location(location: str) -> str:
    return (
        location.rstrip("/") if is_remote(location) else str(Path(location).expanduser().resolve())
    )


def _fs(location: str) -> tuple[pafs.FileSystem, str]:
    import pyarrow as pa
    import pyarrow.fs as pafs

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
    """Write `<location>/<name>` (`name` may hold slashes), creating its folders.

    A crash leaves the file as it was or complete, never cut short: a local file is
    written beside it and renamed into place (atomic on POSIX); a bucket's object
    appears only once its upload completes.
    """
    fs, root = _fs(location)
    path = f"{root}/{name}"
    folder, base = path.rsplit("/", 1)
    fs.create_dir(folder, recursive=True)
    written = path if is_remote(location) else f"{folder}/.{base}.partial"
    with fs.open_output_stream(written) as stream:
        stream.write(data)
    if written != path:
        fs.move(written, path)


def read_bytes(location: str, name: str) -> bytes | None:
    """The file's content, or None if it does not exist."""
    from pyarrow.fs import FileType

    fs, root = _fs(location)
    if fs.get_file_info(f"{root}/{name}").type != FileType.File:
        return None
    with fs.open_input_stream(f"{root}/{name}") as stream:
        return bytes(stream.read())


def list_files(location: str) -> dict[str, int]:
    """Every file under `location` (a path or URI): its name relative to it -> its bytes.

    Raises:
        ConfigError: `location` is not a folder.
    """
    from pyarrow.fs import FileSelector, FileType

    fs, root = _fs(location)
    if fs.get_file_info(root).type != FileType.Directory:
        raise ConfigError(f"{location!r} is not a folder; pass a sweep, <storage>/<name>")
    return {
        info.path[len(root) :].lstrip("/"): info.size or 0
        for info in fs.get_file_info(FileSelector(root, recursive=True))
        if info.type == FileType.File
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
    if len(parts) > 2 and parts[1].startswith(CHECKPOINT_PREFIX):
        return parts[0], parts[1]
    return parts[0], None


def top_level_files(location: str) -> list[str]:
    """The names of the files directly in `location` (none if it is not a folder)."""
    from pyarrow.fs import FileSelector, FileType

    fs, root = _fs(location)
    return [
        info.base_name
        for info in fs.get_file_info(FileSelector(root, allow_not_found=True))
        if info.type == FileType.File
    ]


def clear_except(location: str, keep: set[str]) -> None:
    """Delete everything directly under `location` but the files named in `keep`."""
    from pyarrow.fs import FileSelector, FileType

    fs, root = _fs(location)
    for info in fs.get_file_info(FileSelector(root, allow_not_found=True)):
        if info.base_name in keep:
            continue
        if info.type == FileType.Directory:
            fs.delete_dir(info.path)
        else:
            fs.delete_file(info.path)


def holds_anything(location: str) -> bool:
    from pyarrow.fs import FileSelector, FileType

    fs, root = _fs(location)
    if fs.get_file_info(root).type != FileType.Directory:
        return False
    return bool(fs.get_file_info(FileSelector(root, allow_not_found=True)))


def check_storage_is_shared(location: str) -> None:
    """On a multi-node cluster, check that every node sees a local-path `location`.

    The driver writes a marker file there and a tiny task pinned to each alive node looks
    for it: a node that cannot see it would write its trials' results elsewhere. Bucket
    URIs are shared by nature.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1 or is_remote(location):
        return

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:  # defined here: shipped to each node by value
        return os.path.exists(path)

    experiment_dir = Path(location)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    marker = experiment_dir / f".storage-check-{uuid.uuid4().hex}"
    marker.write_text("cnn-tune")
    try:
        seen = ray.get(
            [
                sees.options(
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
