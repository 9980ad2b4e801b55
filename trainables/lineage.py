"""PBT lineage: which trial took whose weights, at which epoch, with which new values.

Kept in each trial checkpoint beside the trainer's state (keys `run_id`, `lineage`) by
the Tune adapter, which knows the trial ids; the training loop knows nothing of it. A
checkpoint written under another run id and restored by a trial is a PBT exploit; every
checkpoint carries the exploits its run and the runs it cloned went through, so the
union over a population's final checkpoints is the population's whole history.
"""

from __future__ import annotations

from typing import Any

from trainables.config import TrainConfig
from trainables.dotted import flatten

RUN_ID_KEY, LINEAGE_KEY = "run_id", "lineage"


def after_restore(state: dict[str, Any], run_id: str, config: TrainConfig) -> list[dict[str, Any]]:
    """The lineage of run `run_id` (training `config`) once it restored `state`."""
    events = list(state.get(LINEAGE_KEY, []))
    donor = state.get(RUN_ID_KEY)
    if donor is not None and donor != run_id:
        events.append(exploit_record(run_id, donor, state, config))
    return merge_lineage(events)


def stamped(state: dict[str, Any], run_id: str, lineage: list[dict[str, Any]]) -> dict[str, Any]:
    """`state` with the run id and lineage a checkpoint carries."""
    return {**state, RUN_ID_KEY: run_id, LINEAGE_KEY: lineage}


def exploit_record(
    run_id: str, donor: str, state: dict[str, Any], config: TrainConfig
) -> dict[str, Any]:
    """What a PBT exploit did: who took whose weights, at which epoch, with which new values."""
    before = flatten(state["config"])
    after = flatten(config.model_dump(mode="json"))
    return {
        "trial_id": run_id,
        "donor": donor,
        "epoch": int(state["epoch"]),
        "new_values": {k: v for k, v in after.items() if before.get(k) != v},
    }


def merge_lineage(*event_lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Union of exploit events, each once, in (epoch, trial) order."""
    events = {(e["trial_id"], e["donor"], e["epoch"]): e for events in event_lists for e in events}
    return sorted(events.values(), key=lambda e: (e["epoch"], e["trial_id"]))
