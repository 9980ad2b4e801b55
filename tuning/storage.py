"""Where a sweep's results go, and whether every node of the cluster can write there.

On one machine any folder works. On a multi-node cluster every trial writes its
checkpoints and logs under the same storage path, so the path must be the same shared
filesystem on every node; a node-local folder would scatter results across machines.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tuning.errors import ConfigError


def check_storage_is_shared(experiment_dir: Path) -> None:
    """On a multi-node cluster, check that every node sees `experiment_dir`.

    The driver writes a marker file there and a tiny task pinned to each alive node looks
    for it: a node that cannot see it would write its trials' results elsewhere.
    """
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return
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
            "On a multi-node cluster give a path on storage mounted at the same place on "
            "every node (NFS, EFS, a shared volume)."
        )


@ray.remote(num_cpus=0)
def _sees(path: str) -> bool:
    return os.path.exists(path)
