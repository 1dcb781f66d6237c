"""The leaderboard's six tasks as its harness named them: per suite task, the harness task, its shots and the
metrics the leaderboard kept. The one table that the archive's results files and details are read by (and the
details a run exports, publish/details.py, are written by): `harness|<task>|<shots>`, MMLU per subject."""

from __future__ import annotations

from dataclasses import dataclass

HARNESS = "harness"  # the suite part of every task name the leaderboard wrote: `harness|arc:challenge|25`
MMLU_SUBJECTS = 57


@dataclass(frozen=True)
class LeaderboardTask:
    key: str  # the suite's key
    task: str  # the harness task; MMLU: the prefix of its 57 subjects' tasks (`hendrycksTest-anatomy`)
    shots: int
    metric: str  # the metric the leaderboard showed, as its results files name it
    # the per-document metrics of its details that a run's samples give (the shown one among them; ARC and
    # HellaSwag kept `acc` beside `acc_norm`), in the order they are written
    details_metrics: tuple[str, ...]

    @property
    def prefix(self) -> str:
        """`harness|arc:challenge`; MMLU's, `harness|hendrycksTest-`, begins each subject's name."""
        return f"{HARNESS}|{self.task}"

    def name(self, subject: str | None = None) -> str:
        """The task's name in results and details files: `harness|arc:challenge|25`, MMLU's per subject
        (`harness|hendrycksTest-anatomy|5`)."""
        return f"{self.prefix}{subject or ''}|{self.shots}"

    def subject_of(self, name: str) -> str | None:
        """`harness|hendrycksTest-anatomy|5` -> `anatomy` (MMLU); None for a name that is not one of its subjects."""
        suffix = f"|{self.shots}"
        if self.key != "mmlu" or not (name.startswith(self.prefix) and name.endswith(suffix)):
            return None
        return name.removeprefix(self.prefix).removesuffix(suffix)


# suite key -> the task as the leaderboard ran it
LEADERBOARD_TASKS: dict[str, LeaderboardTask] = {
    t.key: t
    for t in (
        LeaderboardTask("arc", "arc:challenge", 25, "acc_norm", ("acc", "acc_norm")),
        LeaderboardTask("hellaswag", "hellaswag", 10, "acc_norm", ("acc", "acc_norm")),
        LeaderboardTask("mmlu", "hendrycksTest-", 5, "acc", ("acc",)),
        LeaderboardTask("truthfulqa", "truthfulqa:mc", 0, "mc2", ("mc2",)),
        LeaderboardTask("winogrande", "winogrande", 5, "acc", ("acc",)),
        LeaderboardTask("gsm8k", "gsm8k", 5, "acc", ("acc",)),
    )
}
