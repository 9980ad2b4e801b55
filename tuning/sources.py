"""Where an experiment comes from: a YAML file, or a built-in shipped in the package.

Built-in experiments live in `tuning/experiments/NAME.yaml`, so `cnn-tune run NAME`
works after install. Imports neither Ray nor torch.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from tuning.errors import ConfigError
from tuning.yaml_io import read_yaml_mapping

BUILTIN_DIR = resources.files("tuning") / "experiments"


def builtin_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml") for p in BUILTIN_DIR.iterdir() if p.name.endswith(".yaml")
    )


def builtin_descriptions() -> dict[str, str]:
    """Name -> description of each built-in experiment, read without validating."""
    return {
        name: str(read_yaml_mapping(Path(str(BUILTIN_DIR / f"{name}.yaml"))).get("description", ""))
        for name in builtin_names()
    }


def resolve_source(source: str) -> Path:
    """The YAML file `source` names: a file path, else a built-in experiment.

    A folder that happens to share a built-in's name (./digits) does not hide the built-in.
    """
    if not source.strip():
        raise ConfigError(
            "experiment '': give a built-in name (see `cnn-tune list`) or a YAML file path"
        )
    candidate = Path(source).expanduser()
    builtin = BUILTIN_DIR / f"{source}.yaml"
    if candidate.is_dir() and not builtin.is_file():
        raise ConfigError(_folder_is_not_an_experiment(candidate))
    if candidate.suffix in (".yaml", ".yml") or (candidate.exists() and not candidate.is_dir()):
        if not candidate.exists():
            raise ConfigError(
                f"experiment file {str(candidate)!r} does not exist; check the path, or give "
                f"a built-in name: {', '.join(builtin_names())}"
            )
        if not candidate.is_file():
            raise ConfigError(
                f"experiment file {str(candidate)!r} is not a regular file; pass a YAML file"
            )
        return candidate.resolve()
    if builtin.is_file():
        return Path(str(builtin))
    close = difflib.get_close_matches(source, builtin_names(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(
        f"experiment {source!r} is neither a YAML file nor a built-in experiment; {hint}"
        f"built-ins: {', '.join(builtin_names())} (see `cnn-tune list`)"
    )


def _folder_is_not_an_experiment(folder: Path) -> str:
    yamls = sorted(p.name for p in folder.glob("*.y*ml"))[:3]
    inside = f" (it holds {', '.join(yamls)})" if yamls else ""
    return (
        f"experiment {str(folder)!r} is a folder{inside}; EXPERIMENT is an experiment YAML "
        f"file or a built-in name ({', '.join(builtin_names())}). To resume a sweep folder, "
        "use `cnn-tune resume DIR`"
    )
