"""Cut the sample snapshot shipped in evalsuite/sample_data/h6 from the full one (../shared/data/h6).

    python tools/make_sample_data.py ../shared/data/h6

Rows are copied byte for byte, in order: the first rows of each split (MMLU: the first test row of each
subject, and all of dev, whose first five rows per subject are the few-shot exemplars). HellaSwag's train
split is absent in the source, so it is absent here too, and runs use the documented few-shot fallback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "evalsuite" / "sample_data" / "h6"
EVAL_ROWS = 12  # HellaSwag's few-shot fallback needs 10 exemplars besides the scored row
POOL_ROWS = 50
SLICES = {  # file -> rows to keep (None: all)
    "arc_challenge/test.jsonl": EVAL_ROWS,
    "arc_challenge/train.jsonl": POOL_ROWS,
    "hellaswag/validation.jsonl": EVAL_ROWS,
    "mmlu/dev.jsonl": None,
    "truthful_qa/validation.jsonl": EVAL_ROWS,
    "winogrande/validation.jsonl": EVAL_ROWS,
    "winogrande/train.jsonl": POOL_ROWS,
    "gsm8k/test.jsonl": EVAL_ROWS,
    "gsm8k/train.jsonl": POOL_ROWS,
}


def main(source: Path) -> None:
    for name, keep in SLICES.items():
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)
        _write(name, lines if keep is None else lines[:keep])
    # MMLU test: the first row of every subject.
    seen: set[str] = set()
    mmlu_rows = []
    for line in (source / "mmlu/test.jsonl").read_text(encoding="utf-8").splitlines(keepends=True):
        subject = json.loads(line)["subject"]
        if subject not in seen:
            seen.add(subject)
            mmlu_rows.append(line)
    _write("mmlu/test.jsonl", mmlu_rows)


def _write(name: str, lines: list[str]) -> None:
    path = OUT / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
    print(f"{name}: {len(lines)} rows")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
