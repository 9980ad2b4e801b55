"""The search-space syntax: the one place that knows how YAML spells a search domain.

Any leaf of the `train:` tree may be a one-key mapping naming a domain:

    lr:         {loguniform: [1.0e-4, 1.0e-1]}   # low <= x < high, log-uniform
    dropout:    {uniform: [0.0, 0.5]}
    width:      {quniform: [16, 64, 16]}          # rounded to a multiple of q
    depth:      {randint: [1, 4]}                 # integer, low <= x < high (Tune's rule)
    batch_size: {choice: [32, 64, 128]}           # sampled (random, hyperopt)
    batch_size: {grid: [32, 64, 128]}             # every value, crossed with other grids
    optimizer:  {choice: [{name: sgd, momentum: {uniform: [0.8, 0.99]}}, {name: adam}]}

A choice may hold mappings with domains of their own (conditional parameters).

`SearchSpace.parse(tree)` reads a tree once into what every consumer asks of it (the
experiment, the runner, the results, TensorBoard, the report); the functions below do
the reading.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from trainables.dotted import flatten, get_path
from tuning.errors import describe_validation_error

_RANGE_KINDS = {
    "uniform": 2,
    "loguniform": 2,
    "quniform": 3,
    "qloguniform": 3,
    "randint": 2,
    "lograndint": 2,
}
_LIST_KINDS = ("choice", "grid")
DOMAIN_KINDS = (*_RANGE_KINDS, *_LIST_KINDS)

Path = tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    """One search domain of the tree: `optimizer.lr: {loguniform: [1e-4, 1e-1]}`."""

    path: str  # dotted, e.g. optimizer.lr (a domain inside a choice shares its path)
    kind: str  # one of DOMAIN_KINDS
    args: Any


@dataclass(frozen=True)
class SearchSpace:
    """A `train:` tree parsed once: its domains, the parameters a sweep varies, its grid
    size and the representative configs that cover every option and range end."""

    tree: Any
    domains: tuple[Domain, ...]
    tuned_paths: tuple[str, ...]
    representatives: tuple[Any, ...]
    grid_size: int

    @classmethod
    def parse(cls, tree: Any) -> SearchSpace:
        return cls(
            tree=tree,
            domains=tuple(Domain(".".join(p), kind, args) for p, kind, args in iter_domains(tree)),
            tuned_paths=tuple(tuned_paths(tree)),
            representatives=tuple(representatives(tree)),
            grid_size=grid_size(tree),
        )

    def has(self, kinds: tuple[str, ...] = DOMAIN_KINDS) -> bool:
        """Whether any domain is of one of `kinds` (default: any domain at all)."""
        return any(domain.kind in kinds for domain in self.domains)

    def tuned_values(self, config: dict[str, Any]) -> dict[str, Any]:
        """The values a trial's `config` took at the tuned paths (see `tuned_values`)."""
        return tuned_values(config, list(self.tuned_paths))

    def largest(self, path: str, default: float) -> float:
        """The largest value `path` can take (e.g. epochs for ASHA's max_t)."""
        values = [get_path(c, path) for c in self.representatives]
        numbers = [v for v in values if isinstance(v, int | float)]
        return max(numbers) if numbers else default

    def param_space(self) -> Any:
        """Tune's param_space (imports Ray)."""
        return to_param_space(self.tree)


def is_domain(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in DOMAIN_KINDS


def iter_domains(tree: Any, path: Path = ()) -> Iterator[tuple[Path, str, Any]]:
    """Every domain in `tree`, as (path, kind, arguments), including those inside choices."""
    if is_domain(tree):
        kind, args = next(iter(tree.items()))
        yield path, kind, args
        if kind in _LIST_KINDS and isinstance(args, list):
            for option in args:
                yield from iter_domains(option, path)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from iter_domains(value, (*path, str(key)))


def syntax_errors(tree: Any, prefix: str) -> list[str]:
    """Malformed domains: wrong arity, non-numbers, empty choices, reversed bounds."""
    errors = [
        f"{_dotted(prefix, path)}: a search domain has exactly one key, got {sorted(node)}"
        for path, node in _iter_mappings(tree)
        if len(node) > 1 and any(k in DOMAIN_KINDS for k in node)
    ]
    for path, kind, args in iter_domains(tree):
        problem = _domain_problem(kind, args)
        if problem:
            errors.append(f"{_dotted(prefix, path)}: {{{kind}: {args!r}}} {problem}")
    return errors


def _domain_problem(kind: str, args: Any) -> str | None:
    if kind in _LIST_KINDS:
        if not isinstance(args, list) or not args:
            return f"needs a non-empty list of values, e.g. {{{kind}: [32, 64, 128]}}"
        if kind == "grid" and (repeated := _first_repeat(args)) is not None:
            return (
                f"lists {repeated!r} twice; each grid value is its own trial, so the repeat "
                "would train the same configuration again: drop it"
            )
        return None
    arity = _RANGE_KINDS[kind]
    shape = "[low, high]" if arity == 2 else "[low, high, q]"
    if not isinstance(args, list) or len(args) != arity:
        return f"needs a list {shape}"
    if not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        return f"needs numbers {shape}; write floats as 1.0e-4 or 0.0001"
    if not all(math.isfinite(a) for a in args):
        return f"needs finite numbers {shape}, not .inf or .nan"
    low, high = args[0], args[1]
    if not low < high:
        return "needs low < high"
    if kind.startswith(("log", "qlog")) and low <= 0:
        return "needs low > 0 on a log scale"
    if kind in ("randint", "lograndint") and not (isinstance(low, int) and isinstance(high, int)):
        return "needs integer bounds"
    if arity == 3 and args[2] <= 0:
        return "needs q > 0"
    return None


def _first_repeat(values: list[Any]) -> Any:
    """The first value that occurs twice in `values` (1 and 1.0 count as one), or None."""
    seen: list[Any] = []
    for value in values:
        if value in seen:
            return value
        seen.append(value)
    return None


# Names people reach for from other libraries, and the domain that does the job here.
_DOMAIN_ALIASES = {
    "categorical": "choice",
    "grid_search": "grid",
    "log_uniform": "loguniform",
    "logrange": "loguniform",
    "int": "randint",
    "integer": "randint",
    "qrandint": "quniform",
    "qlograndint": "qloguniform",
    "range": "randint",
}


def explain_not_a_domain(loc: str, item: dict[str, Any]) -> str | None:
    """A clearer line for a pydantic error caused by a misspelled or unknown search domain.

    `{normal: [0, 1]}` where a number belongs, `{choise: [...]}` where a mapping
    belongs, and a domain inside a list all reach pydantic as plain values; say that the
    user meant a domain, which domains exist, and which one is closest.
    """
    value = item.get("input")
    if item["type"] == "extra_forbidden":
        key = str(item["loc"][-1])
        close = _closest_domain(key)
        if close is None:
            return None
        return f"{loc}: unknown key {key!r}; did you mean the search domain {{{close}: [...]}}?"
    if item["type"] == "missing" or not (isinstance(value, dict) and len(value) == 1):
        return None
    kind = str(next(iter(value)))
    if kind in DOMAIN_KINDS:
        return (
            f"{loc}: {{{kind}: ...}} sits inside a list, where search domains do not work; "
            f"tune the whole list instead, e.g. {{choice: [[5, 10], [3, 8]]}}"
        )
    close = _closest_domain(kind)
    hint = f" (did you mean {close!r}?)" if close else ""
    return (
        f"{loc}: {{{kind}: {_short(value[next(iter(value))])}}} is not a search domain{hint}; "
        f"the domains are {', '.join(sorted(DOMAIN_KINDS))} (docs/search-space.md), "
        "or give one plain value"
    )


def _closest_domain(name: str) -> str | None:
    lowered = name.lower()
    if lowered in DOMAIN_KINDS:
        return lowered
    if lowered in _DOMAIN_ALIASES:
        return _DOMAIN_ALIASES[lowered]
    close = difflib.get_close_matches(lowered, DOMAIN_KINDS, n=1, cutoff=0.75)
    return close[0] if close else None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_param_space(tree: Any) -> Any:
    """The Tune param_space for `tree`: domains become `tune` sampling objects."""
    from ray import tune  # here, not at the top: validating a config needs no Ray

    if is_domain(tree):
        kind, args = next(iter(tree.items()))
        if kind == "grid":
            return tune.grid_search([to_param_space(a) for a in args])
        if kind == "choice":
            return tune.choice([to_param_space(a) for a in args])
        if kind in ("randint", "lograndint"):
            return getattr(tune, kind)(*args)
        if kind in ("quniform", "qloguniform") and all(isinstance(a, int) for a in args):
            integer_kind = "qrandint" if kind == "quniform" else "qlograndint"
            return getattr(tune, integer_kind)(*args)  # integer grid, e.g. widths 16..64
        return getattr(tune, kind)(*args)
    if isinstance(tree, dict):
        return {key: to_param_space(value) for key, value in tree.items()}
    return tree


def representatives(tree: Any) -> list[Any]:
    """Concrete trees covering every domain's extremes and every choice's options.

    Validating these catches any value a sampler could produce that the config model
    rejects (a bound of 0 for a learning rate, an unknown optimizer in a choice), before
    a single trial starts. The count grows with the sum, not the product, of options.
    """
    if is_domain(tree):
        kind, args = next(iter(tree.items()))
        if kind in _LIST_KINDS:
            return [rep for option in args for rep in representatives(option)]
        if kind in ("randint", "lograndint"):
            return [args[0], args[1] - 1]
        if len(args) == 3:
            q = args[2]
            return [round(args[0] / q) * q, round(args[1] / q) * q]
        return [args[0], args[1]]
    if isinstance(tree, dict):
        options = {key: representatives(value) for key, value in tree.items()}
        base = {key: reps[0] for key, reps in options.items()}
        variants = [base]
        for key, reps in options.items():
            variants += [{**base, key: rep} for rep in reps[1:]]
        return variants
    return [tree]


def validation_errors(tree: Any, model: type[BaseModel], prefix: str) -> list[str]:
    """Syntax errors, then every representative config's errors against `model`."""
    errors = syntax_errors(tree, prefix)
    if errors:
        return errors
    for candidate in representatives(tree):
        try:
            model.model_validate(candidate)
        except ValidationError as error:
            errors += describe_validation_error(
                error, model, prefix=prefix, explain=explain_not_a_domain
            )
    return list(dict.fromkeys(errors))


def tuned_paths(tree: Any) -> list[str]:
    """Dotted paths of the outermost domains: the parameters a sweep varies."""
    paths: list[str] = []
    for path, _, _ in iter_domains(tree):
        dotted = ".".join(path)
        if not any(dotted == p or dotted.startswith(p + ".") for p in paths):
            paths.append(dotted)
    return paths


def tuned_values(config: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """The values a trial's `config` took at the tuned `paths`, flattened to dotted keys.

    A conditional parameter appears only when its branch was chosen.
    """
    flat = flatten(config)
    return {
        key: value
        for key, value in flat.items()
        if any(key == p or key.startswith(p + ".") for p in paths)
    }


def has_domain(tree: Any, kinds: tuple[str, ...] = DOMAIN_KINDS) -> bool:
    return any(kind in kinds for _, kind, _ in iter_domains(tree))


def grid_size(tree: Any) -> int:
    """Number of grid points: the product of every grid's length (1 without grids)."""
    return math.prod(len(args) for _, kind, args in iter_domains(tree) if kind == "grid")


def _iter_mappings(tree: Any, path: Path = ()) -> Iterator[tuple[Path, dict]]:
    if isinstance(tree, dict):
        yield path, tree
        for key, value in tree.items():
            yield from _iter_mappings(value, (*path, str(key)))
    elif isinstance(tree, list):
        for item in tree:
            yield from _iter_mappings(item, path)


def _dotted(prefix: str, path: Path) -> str:
    return ".".join((prefix, *path)) if prefix else ".".join(path)


def sample_point(tree: Any, seed: int) -> Any:
    """One concrete tree drawn from `tree`'s domains (a grid takes its first value)."""
    import numpy as np

    rng = np.random.RandomState(seed)

    def resolve(node: Any) -> Any:
        if is_domain(node):
            kind, args = next(iter(node.items()))
            if kind == "grid":
                return resolve(args[0])
            if kind == "choice":
                return resolve(args[rng.randint(len(args))])
            return to_param_space(node).sample(random_state=rng)
        if isinstance(node, dict):
            return {key: resolve(value) for key, value in node.items()}
        return node

    return resolve(tree)
