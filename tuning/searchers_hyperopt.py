"""HyperOpt's TPE for cnn-tune's spaces: every branch of a conditional choice gets its
own labels, and earlier sweeps' trials (search.warm_start) count as already run.

Imported only when a hyperopt sweep starts (tuning.searchers.build_searcher): hyperopt
brings scipy.stats with it, most of a second of start-up every other sweep does without.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hyperopt import hp
from ray.tune.search.hyperopt import HyperOptSearch
from ray.tune.search.sample import Categorical

from tuning.warm_start import KnownPoint


class ConditionalHyperOptSearch(HyperOptSearch):
    """HyperOptSearch that gives every branch of a conditional choice its own labels.

    Ray's converter labels a parameter inside a choice's branch by its path alone, so
    two optimizers that both have an `lr` become two hyperopt parameters named
    "optimizer/lr", which hyperopt rejects (DuplicateLabel). Here a branch's parameters
    are labelled "optimizer/<branch index>/lr"; everything else is Ray's conversion.
    """

    def __init__(self, *, known: Sequence[KnownPoint] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._known = list(known)

    @staticmethod
    def convert_search_space(spec: dict, prefix: str = "") -> dict:
        return _hyperopt_space(spec, prefix)

    def _setup_hyperopt(self) -> None:
        """Ray's setup, then each known point (search.warm_start) as a finished trial."""
        super()._setup_hyperopt()
        import hyperopt

        domain = self.domain
        assert domain is not None, "Ray's setup builds the domain"
        labels = list(domain.params)
        for point in self._known:
            (tid,) = self._hpopt_trials.new_trial_ids(1)
            misc = {
                "tid": tid,
                "cmd": domain.cmd,
                "workdir": domain.workdir,
                # Every label, empty where the point's branch leaves it out, as hyperopt's own.
                "idxs": {label: [tid] if label in point.hyperopt else [] for label in labels},
                "vals": {
                    label: [point.hyperopt[label]] if label in point.hyperopt else []
                    for label in labels
                },
            }
            result = {"loss": self.metric_op * point.value, "status": hyperopt.STATUS_OK}
            (doc,) = self._hpopt_trials.new_trial_docs([tid], [None], [result], [misc])
            doc["state"] = hyperopt.JOB_STATE_DONE
            self._hpopt_trials.insert_trial_docs([doc])
        self._hpopt_trials.refresh()


def _hyperopt_space(spec: dict[str, Any], prefix: str) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, value in spec.items():
        label = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Categorical) and any(isinstance(c, dict) for c in value.categories):
            branches = [
                _hyperopt_space(c, f"{label}/{i}") if isinstance(c, dict) else c
                for i, c in enumerate(value.categories)
            ]
            converted[key] = hp.choice(label, branches)
        elif isinstance(value, dict):
            converted[key] = _hyperopt_space(value, label)
        else:  # a plain domain or a constant: Ray's own conversion
            converted[key] = HyperOptSearch.convert_search_space({key: value}, prefix).get(
                key, value
            )
    return converted
