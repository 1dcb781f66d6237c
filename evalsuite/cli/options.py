"""The options of a run, shared by `run` and `sweep` (and `prompts`, `contamination` where they apply): each
option's type and help once, and the request a command line asks for (`run_request`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evalsuite.errors import SuiteConfigError
from evalsuite.settings import BatchSize, Dtype, Precision, Seeds
from evalsuite.suite import parse_protocol

if TYPE_CHECKING:
    from evalsuite.run import RunRequest


TasksOpt = Annotated[
    str | None, typer.Option(help="Comma-separated task keys (see `evalsuite tasks`); default: all six.")
]
LimitOpt = Annotated[
    int | None,
    typer.Option(
        help="Only the first N documents of each task (of each subject for MMLU), Hub order; the run is partial."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Offline snapshot laid out as <dataset>/<split>.jsonl (see `evalsuite data verify`). "
        "Default: the Hub datasets, as lm-eval loads them."
    ),
]
ProtocolOpt = Annotated[
    str,
    typer.Option(
        help="What the model is asked. leaderboard-v1: the Open LLM Leaderboard's own requests (its few-shot "
        "draws, its GSM8K stops and answer check); lm-eval: lm-eval 0.4's task definitions."
    ),
]

BatchSizeOpt = Annotated[
    str,
    typer.Option(
        help="Rows per forward pass: N, auto or auto:N; for GSM8K, requests decoding at once. auto: the "
        "shared-prefix backend starts at 64 rows and halves on out-of-memory, and sizes GSM8K's from the free "
        "memory; lm-eval-hf lets lm-eval probe (auto:N, lm-eval-hf only: again N times). Recorded."
    ),
]

DtypeOpt = Annotated[
    str | None,
    typer.Option(help="Model dtype (float32, bfloat16, float16, auto). Default: float32 on CPU, bfloat16 on CUDA."),
]

DeviceOpt = Annotated[
    str | None,
    typer.Option(
        help="Torch device (cpu, cuda, cuda:N). Default: cuda if available. CUDA on a machine without it is "
        "refused before anything loads."
    ),
]

OutputDirOpt = Annotated[Path, typer.Option(help="Where <org>__<name>/<run-id>/ is written.")]

SeedOpt = Annotated[
    str,
    typer.Option(
        help="lm-eval's seeds, each 0 to 2^32-1: one int for all four, or random,numpy,torch,fewshot. The "
        "few-shot seed picks exemplars only under --protocol lm-eval."
    ),
]

LogSamplesOpt = Annotated[
    bool, typer.Option(help="Also write every scored sample (lm_eval/samples_<lm-eval task>.jsonl).")
]

ModelArgsOpt = Annotated[
    str | None,
    typer.Option(
        help="The model's arguments, k=v,k2=v2 (e.g. trust_remote_code=True): for the built-in backends "
        "HFLM's arguments, from_pretrained's keywords and a local model's config.json attributes. Others, and "
        "keys with an option of their own, are refused before the model loads."
    ),
]

AddBosTokenOpt = Annotated[
    bool, typer.Option(help="Prepend BOS. Off by default: the leaderboard's harness never added it.")
]

PresetOpt = Annotated[
    str | None,
    typer.Option(
        help="A fixed, recorded subset of documents per task (nightly: see `evalsuite tasks --format json`); the "
        "run is partial. Not with --limit."
    ),
]

BackendOpt = Annotated[
    str,
    typer.Option(
        help="How the model runs. shared-prefix: each shared few-shot prefix is forwarded once (same choices "
        "as lm-eval, log-likelihoods equal to float rounding); lm-eval-hf: lm-eval's HF model, request by "
        "request; served: a model behind an OpenAI-compatible server such as vLLM (docs/served.md); or an "
        "installed backend (docs/backends-and-gpus.md). Recorded."
    ),
]

BackendOptionsOpt = Annotated[
    str | None,
    typer.Option(
        help="The backend's options, k=v,k2=v2; shared-prefix: pack_tokens=N (tokens per packed row, 1024), "
        "generation=evalsuite|transformers (what decodes GSM8K); served: url=http://HOST:PORT/v1, api_key_env, "
        "served_name, concurrency, timeout. Checked before the model loads; recorded."
    ),
]


CLUSTER_HELP = (
    "The Ray cluster: HOST:PORT, ray://HOST:PORT or auto; local starts a private one on this machine for the "
    "length of the command. Needs pip install 'evalsuite[cluster]' (docs/cluster.md)."
)
ClusterOpt = Annotated[str | None, typer.Option(metavar="ADDRESS", help=CLUSTER_HELP)]
GpusPerTaskOpt = Annotated[
    float | None,
    typer.Option(help="GPUs each task asks the cluster for (Ray pins them). Default: 1 where the cluster has GPUs."),
]


def run_request(
    model: str | None, tasks: str | None, limit: int | None, batch_size: str, dtype: str | None, device: str | None,
    data_dir: Path | None, output_dir: Path, seed: str, log_samples: bool, model_args: str | None,
    add_bos_token: bool, preset: str | None, backend: str, backend_options: str | None, protocol: str,
    precision: str | None = None, adapter: str | None = None, delta: str | None = None,
) -> RunRequest:  # fmt: skip
    """The run a command line asks for, its text parsed into typed settings (one OptionError for a bad one)."""
    from evalsuite.run import RunRequest

    return RunRequest(
        model=model,
        tasks=task_keys(tasks),
        limit=limit,
        batch_size=BatchSize.parse(batch_size),
        dtype=Dtype.parse(dtype) if dtype is not None else None,
        device=device,
        data_dir=data_dir,
        output_dir=output_dir,
        seeds=Seeds.parse(seed),
        log_samples=log_samples,
        model_args=model_args,
        add_bos_token=add_bos_token,
        preset=preset,
        backend=backend,
        backend_options=backend_options,
        protocol=parse_protocol(protocol),
        precision=Precision.parse(precision) if precision is not None else None,
        adapter=adapter,
        delta=delta,
    )


def task_keys(tasks: str | None) -> list[str] | None:
    if tasks is None:
        return None
    keys = [t.strip() for t in tasks.split(",") if t.strip()]
    if not keys:
        raise SuiteConfigError("--tasks is empty; name task keys (see `evalsuite tasks`) or leave it out")
    return keys


PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        help="The leaderboard's precision: float16, bfloat16 (the weights in that dtype), 8bit, 4bit (quantized on "
        "load by bitsandbytes, computing in --dtype) or GPTQ (a GPTQ checkpoint). Default: --dtype's, or the "
        "checkpoint's own quantization. Recorded; compare leaderboard: takes the archive's row at it."
    ),
]
AdapterOpt = Annotated[
    str | None,
    typer.Option(
        metavar="ADAPTER[@REV]",
        help="A PEFT adapter (folder or Hub id) run over MODEL, or over the base model its adapter_config.json "
        "names when MODEL is left out. Results are filed under the adapter, weight type Adapter.",
    ),
]
DeltaOpt = Annotated[
    str | None,
    typer.Option(
        metavar="BASE[@REV]",
        help="MODEL holds delta weights: add them to BASE's, tensor by tensor (weight type Delta).",
    ),
]
OptionalModelArg = Annotated[
    str | None,
    typer.Argument(
        help="Hub id (org/name, optionally @revision), a local Hugging Face model folder, or a .gguf file "
        "(dequantized once into the cache). With --adapter: the base model (default: the one the adapter names).",
        show_default=False,
    ),
]
