"""`evalsuite contamination`: the contamination test model cards report beside their H6 numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from evalsuite.check_contamination import ContaminationRequest, run_contamination
from evalsuite.cli._app import app, one_line_errors
from evalsuite.console import format_contamination
from evalsuite.contamination import ORIGINAL_TASKS
from evalsuite.errors import SuiteConfigError
from evalsuite.evaluate import parse_batch_size


@app.command("contamination")
@one_line_errors
def contamination(
    model: Annotated[str, typer.Argument(help="The model to check (as `evalsuite run` takes it).", show_default=False)],
    reference: Annotated[
        str, typer.Option(help="The reference model that samples the neighbours (as MODEL).", show_default=False)
    ],
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Offline snapshot (<dataset>/<split>.jsonl, as for `run`). Default: the Hub datasets."),
    ] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated task keys.")] = ",".join(ORIGINAL_TASKS),
    items: Annotated[int, typer.Option(help="Items per task (the first N after the seeded shuffle).")] = 100,
    neighbours: Annotated[int, typer.Option(help="Neighbours sampled per item.")] = 100,
    prefix_ratio: Annotated[float, typer.Option(help="Share of an item's words its neighbours start from.")] = 0.4,
    threshold: Annotated[float, typer.Option(help="r(x) below this counts an item.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Item shuffle (random.seed) and neighbour sampling seed.")] = 0,
    batch_size: Annotated[
        str, typer.Option(help="Rows per forward pass when scoring neighbours: an int, or 'auto' (as many as fit).")
    ] = "32",
    shared_prefix: Annotated[
        bool, typer.Option(help="Forward each item's prefix once (off: the original's way, same numbers, slower).")
    ] = True,
    dtype: Annotated[str | None, typer.Option(help="float32 (CPU default), bfloat16 (CUDA default), float16.")] = None,
    device: Annotated[str | None, typer.Option(help="Torch device. Default: cuda if available.")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where <org>__<name>/contamination-<id>/ is written.")] = Path(
        "results"
    ),
) -> None:
    """Check MODEL for benchmark contamination (swj0419/detect-pretrain-code-contamination's test).

    Prints, per task, the share of items whose text the model finds likelier than all but a few of its
    neighbours, `result < 0.1, %: 0.06` as model cards quote it. A sign, not a proof.
    """
    request = ContaminationRequest(
        model=model,
        reference=reference,
        data_dir=data_dir,
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
        items=items,
        neighbours=neighbours,
        prefix_ratio=prefix_ratio,
        threshold=threshold,
        seed=seed,
        batch_size=_scoring_batch_size(batch_size),
        shared_prefix=shared_prefix,
        dtype=dtype,
        device=device,
        output_dir=output_dir,
    )
    outcome = run_contamination(request, progress=lambda message: typer.echo(message, err=True))
    typer.echo(format_contamination(outcome.results))
    typer.echo(f"results: {outcome.folder}")


def _scoring_batch_size(text: str) -> int | Literal["auto"]:
    """`run`'s --batch-size parsing, less lm-eval's `auto:N` (the check re-probes nothing)."""
    size = parse_batch_size(text)
    if isinstance(size, str) and size != "auto":
        raise SuiteConfigError(f"--batch-size {text!r}: give a positive int or 'auto'")
    return "auto" if size == "auto" else int(size)
