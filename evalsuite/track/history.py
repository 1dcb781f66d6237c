"""A model's scores over runs: a table and a PNG line chart with stderr error bars."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import HistoryError, param
from evalsuite.files import replacing
from evalsuite.results import Run
from evalsuite.suite import SuiteSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class HistoryPoint:
    run_id: str
    label: str  # the run's UTC start, to the minute
    status: str
    comparable: bool  # every task asked the leaderboard's requests (run.leaderboard_comparable)
    average: float | None
    scores: dict[str, tuple[float, float | None] | None]  # column -> (value, stderr) as fractions
    precision: str = ""  # how the model ran (ModelInfo.loaded_as): `float32`, `4bit, computing in float32`

    def as_json(self) -> dict[str, Any]:
        """The point as `history --format json` prints it (fractions, as results.json holds them)."""
        return {
            "run_id": self.run_id, "started": self.label, "status": self.status, "comparable": self.comparable,
            "average": self.average, "precision": self.precision,
            "scores": {c: None if s is None else {"value": s[0], "stderr": s[1]} for c, s in self.scores.items()},
        }  # fmt: skip


def model_history(runs: list[Run], model: str, suite: SuiteSpec) -> list[HistoryPoint]:
    """Runs of `model`, oldest first: the runs in its results folder (`org__name`, `local__name`,
    `local__name__<8 hex>`: exactly that folder's model), else its id's. An id that names models at several
    locations (two local folders of one name) is refused, naming the folders to give instead."""
    mine = [r.results for r in runs if r.folder.parent.name == model]
    if not mine:
        # the model id, or the name of its results folder had its runs been read from elsewhere
        named = [r for r in runs if model in (r.results.model.id, r.results.model.id.replace("/", "__"),
                                               f"local__{r.results.model.id}")]  # fmt: skip
        locations = {r.results.model.location for r in named}
        if len(locations) > 1:
            folders = sorted({r.folder.parent.name for r in named})
            raise HistoryError(
                f"{model!r} names models at {len(locations)} locations; give one of their results folders instead: "
                f"{', '.join(folders)}"
            )
        mine = [r.results for r in named]
    if not mine:
        known = sorted({r.results.model.id for r in runs})
        raise HistoryError(f"no runs of {model!r}; models with runs: {', '.join(known) or 'none'}")
    points = []
    for run in sorted(mine, key=lambda r: r.created_at):
        scores: dict[str, tuple[float, float | None] | None] = {}
        for spec in suite.tasks:
            task = run.task(spec.key)
            scores[spec.column] = (task.value, task.stderr) if task else None
        points.append(
            HistoryPoint(
                run_id=run.run_id,
                label=run.created_at.strftime("%Y-%m-%d %H:%M"),
                status=run.status,
                comparable=run.leaderboard_comparable,
                average=run.h6_average,
                scores=scores,
                precision=run.model.loaded_as,
            )
        )
    return points


def plot_history(points: list[HistoryPoint], model: str, plot: Path) -> None:
    """Write the PNG `plot`: one line per task and the H6 average, stderr as error bars, runs on the x axis."""
    if plot.suffix.lower() != ".png":
        raise HistoryError(f"{param('plot')} {plot}: give a .png file name")
    if not plot.parent.is_dir():
        raise HistoryError(f"{param('plot')} {plot}: folder {plot.parent} does not exist")
    fig = history_figure(points, model)
    try:
        with replacing(plot) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def history_figure(points: list[HistoryPoint], model: str) -> Figure:
    """One line per task and the H6 average over complete runs, stderr as error bars, runs on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    xs = list(range(len(points)))
    complete = [p.status == "complete" for p in points]
    shown: list[float] = []
    # complete runs are joined by a line per task; a partial run (a subset of documents) is a hollow marker
    # of the task's colour, never joined to the others: its numbers are not the same measurement
    for column in points[0].scores:
        series = [(x, p.scores[column], full) for x, p, full in zip(xs, points, complete, strict=True)]
        line: Any = None  # the task's first drawn series: later ones take its colour
        for full in (True, False):
            at = [(x, s) for x, s, f in series if s is not None and f is full]
            if not at:
                continue
            values = [100 * s[0] for _, s in at]
            errors = [100 * (s[1] or 0.0) for _, s in at]
            shown += [v - e for v, e in zip(values, errors, strict=True)] + [
                v + e for v, e in zip(values, errors, strict=True)
            ]
            style: dict[str, Any] = {"color": line[0].get_color()} if line is not None else {}
            drawn = ax.errorbar([x for x, _ in at], values, yerr=errors, marker="o", capsize=3, linewidth=1.2,
                                linestyle="-" if full else "none", markerfacecolor=None if full else "none",
                                label=column if line is None else None, **style)  # fmt: skip
            line = line or drawn
    averages = [(x, 100 * p.average) for x, p in zip(xs, points, strict=True) if p.average is not None]
    if averages:
        ax.plot([a[0] for a in averages], [a[1] for a in averages], "k--", marker="s", linewidth=2, label="Average")
        shown += [a[1] for a in averages]
    labels = [
        p.label + ("\n(partial)" if p.status != "complete" else "\n(not comparable)" if not p.comparable else "")
        for p in points
    ]
    ax.set_xticks(xs, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("score (%)")
    # the axis fits the data (a 2-point move must be visible), with a margin, within 0-100
    low, high = (min(shown), max(shown)) if shown else (0.0, 100.0)
    margin = max(2.0, 0.1 * (high - low))
    ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    ax.set_title(f"{model}: H6 over runs")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig
