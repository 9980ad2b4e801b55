"""`cnn-tune report`: the HTML report of a sweep, finished or running.

    data.py         reads a sweep folder into a SweepView (trials, curves, summary)
    analysis.py     the arithmetic: scheduler rungs, parameter columns, importance, bands
    plots.py        static figures (matplotlib, Agg) rendered to PNG
    parallel.py     the parallel-coordinates figure
    interactive.py  the interactive charts (plotly fragments, plotly.js inlined once)
    html.py         the page's sections
    build.py        write_report: all of the above into index.html and its PNGs

Only `write_report` is public. The plotting libraries are imported when a report is
written, so `import tuning.report` costs nothing and a missing one is named clearly.
"""

from __future__ import annotations

from pathlib import Path

from tuning.errors import ConfigError

__all__ = ["write_report"]

_PLOTTING = {"matplotlib": "matplotlib", "plotly": "plotly"}


def write_report(directory: str | Path, output: str | Path | None = None) -> Path:
    """Write the report of the sweep at `directory`; return the path of index.html.

    See `tuning.report.build.write_report` for the arguments.
    """
    _check_plotting_libraries()
    from tuning.report.build import write_report as write

    return write(directory, output)


def _check_plotting_libraries() -> None:
    import importlib.util

    missing = [pip for module, pip in _PLOTTING.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(
            f"report: {' and '.join(missing)} not installed; the report draws with them. "
            f"Install the project with its dependencies (make install, or pip install "
            f"{' '.join(missing)})"
        )
