"""`evalsuite contamination`: the contamination test model cards report beside their H6 numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalsuite.cli._app import app, one_line_errors, say
from evalsuite.contamination import ORIGINAL_TASKS
from evalsuite.settings import BatchSize, Dtype, Seeds


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
    seed: Annotated[
        str,
        typer.Option(
            help="Seeds as `evalsuite run` takes them, each 0 to 2^32-1: one int for all four, or "
            "random,numpy,torch,fewshot; the random seed shuffles the items, the torch seed samples the neighbours."
        ),
    ] = "0",
    batch_size: Annotated[
        str, typer.Option(help="Rows per forward pass when scoring neighbours: an int, or 'auto' (as many as fit).")
    ] = "32",
    shared_prefix: Annotated[
        bool, typer.Option(help="Forward each item's prefix once (off: the original's way, same numbers, slower).")
    ] = True,
    dtype: Annotated[str | None, typer.Option(help="float32 (CPU default), bfloat16 (CUDA default), float16.")] = None,
    device: Annotated[str | None, typer.Option(help="Torch device. Default: cuda if available.")] = None,
    model_args: Annotated[
        str | None,
        typer.Option(
            help="Both models' from_pretrained arguments, k=v,k2=v2 (e.g. trust_remote_code=True), as for `run`."
        ),
    ] = None,
    output_dir: Annotated[Path, typer.Option(help="Where <org>__<name>/contamination-<id>/ is written.")] = Path(
        "results"
    ),
) -> None:
    """Check MODEL for benchmark contamination (swj0419/detect-pretrain-code-contamination's test).

    Prints, per task, the share of items whose text the model finds likelier than all but a few of its
    neighbours, `result < 0.1, %: 0.06` as model cards quote it. A sign, not a proof.
    """
    from evalsuite.cli.interrupts import ignore_further, interrupted_line, stop_on_signals
    from evalsuite.cli.tables import format_contamination
    from evalsuite.run import ContaminationRequest, run_contamination

    request = ContaminationRequest(
        model=model,
        reference=reference,
        data_dir=data_dir,
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
        items=items,
        neighbours=neighbours,
        prefix_ratio=prefix_ratio,
        threshold=threshold,
        seeds=Seeds.parse(seed),
        batch_size=BatchSize.parse(batch_size, allow_reprobes=False),  # the check re-probes nothing
        shared_prefix=shared_prefix,
        dtype=Dtype.parse(dtype) if dtype is not None else None,
        device=device,
        model_args=model_args,
        output_dir=output_dir,
    )
    stopped: KeyboardInterrupt | None = None
    try:
        with stop_on_signals():  # Ctrl-C and SIGTERM alike
            outcome = run_contamination(request, progress=say)
    except KeyboardInterrupt as e:
        stopped = e
    if stopped is not None:
        ignore_further()
        typer.echo(interrupted_line(stopped), err=True)
        raise typer.Exit(130)
    typer.echo(format_contamination(outcome.results))
    typer.echo(f"results: {outcome.folder}")
