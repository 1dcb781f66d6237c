"""What evalsuite relies on in lm-eval beyond its documented command line, checked against the installed version,
so an lm-eval upgrade that moves one of these fails here, by name, and not as wrong prompts somewhere else.

Protocol leaderboard-v1 (evalsuite/engine/fewshot.py, runner.TaskGroup):
- a task config's `fewshot_config.sampler` may be a `ContextSampler` subclass; lm-eval builds it as
  `cls(fewshot_docs, rnd=None)` and keeps it as `task.sampler`; `set_fewshot_seed` calls `sampler.set_rnd`;
- `Task.build_all_requests(limit=, samples=)` asks the sampler once per document, in `doc_iterator` order
  (Hub order; with `samples`, the chosen documents in Hub order, renumbered 0, 1, ...), before any other;
- the built requests stay on `task.instances`, each with `doc_id`, `idx`, `request_type` and `args`;
- `TaskManager.load([config])` returns {"tasks": {name: Task}, "groups": {name: Group}}; `task.eval_docs`.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from conftest import SAMPLE_DATA

from evalsuite.data import plan_local
from evalsuite.engine import runner
from evalsuite.engine.backends import hf
from evalsuite.settings import Seeds
from evalsuite.suite import Preset, Protocol, default_tasks_dir, load_suite


def test_context_sampler_interface():
    from lm_eval.api.samplers import ContextSampler

    init = inspect.signature(ContextSampler.__init__).parameters
    assert list(init)[:2] == ["self", "df"] and "rnd" in init, f"ContextSampler.__init__ is now {list(init)}"
    sample = inspect.signature(ContextSampler.sample).parameters
    assert {"n", "eval_doc", "df"} <= set(sample), f"ContextSampler.sample is now {list(sample)}"
    assert callable(ContextSampler.set_rnd) and callable(ContextSampler.fewshot_docs)


def _arc_group(preset=None) -> runner.TaskGroup:
    """ARC on the sample rows with a sampler that records what lm-eval asks of it."""
    from evalsuite.engine.fewshot import LeaderboardWalkSampler

    suite = load_suite().for_protocol(Protocol.LEADERBOARD_V1)
    data = plan_local(SAMPLE_DATA, suite.select(["arc"])).tasks[0]
    group = runner.load_task_group(runner.build_task_manager(default_tasks_dir()), default_tasks_dir(), data, preset)
    (task,) = group.tasks.values()
    assert type(task.sampler) is LeaderboardWalkSampler, "lm-eval did not build the sampler class the config named"
    return group


@pytest.mark.lm_eval
def test_build_all_requests_asks_the_sampler_once_per_document_in_hub_order():
    group = _arc_group()
    (task,) = group.tasks.values()
    asked: list[int] = []
    original = task.sampler.sample

    def recording(n, eval_doc=None, df=None, **kwargs):
        asked.append(task.sampler.visited)
        return original(n, eval_doc=eval_doc, df=df, **kwargs)

    task.sampler.sample = recording
    task.set_fewshot_seed(seed=1234)  # lm-eval resets the sampler's generator: the walk starts again
    task.build_all_requests(limit=5)
    assert asked == [0, 1, 2, 3, 4], "lm-eval no longer asks for exemplars once per document, in order"
    assert sorted({i.doc_id for i in task.instances}) == [0, 1, 2, 3, 4]
    first = min(task.instances, key=lambda i: (i.doc_id, i.idx))
    assert first.request_type == "loglikelihood" and len(first.args) == 2 and first.idx == 0


@pytest.mark.lm_eval
def test_samples_are_built_in_hub_order_and_renumbered():
    suite = load_suite()
    group = _arc_group(Preset(seed=1234, documents={key: 4 for key in suite.keys}))  # 4 of the sample's 12
    (name, task), *_ = group.tasks.items()
    chosen = group.document_ids[name]
    assert len(chosen) == 4 and chosen != list(range(4))
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(samples=chosen)
    assert sorted({i.doc_id for i in task.instances}) == list(range(len(chosen))), "lm-eval's doc_id numbering moved"
    # each document's own question ends its context, in the order of the preset's (sorted) indices
    for instance in task.instances:
        question = task.eval_docs[chosen[instance.doc_id]]["question"]
        assert instance.args[0].endswith(f"Question: {question}\nAnswer:")
    assert [d.doc_id for d in group.requests()] == chosen


@pytest.mark.lm_eval
def test_prompt_templates_are_compiled_once_and_render_the_same_text():
    # evalsuite/engine/compat.py replaces lm_eval.utils.apply_template, which lm-eval's tasks call through the module
    from lm_eval import utils

    from evalsuite.engine.compat import cache_compiled_templates

    original = utils.apply_template
    assert list(inspect.signature(original).parameters) == ["template", "doc"], "apply_template moved"
    assert hasattr(utils.env, "from_string"), "lm_eval.utils.env is no longer a Jinja environment"
    doc = {"question": "Why?", "choices": {"text": ["a", "b"]}, "answerKey": "B"}
    templates = ["Question: {{question}}\nAnswer:", "{{choices.text}}", "{{['A', 'B'].index(answerKey)}}"]
    expected = [original(t, doc) for t in templates]
    cache_compiled_templates()
    cache_compiled_templates()  # idempotent
    assert [utils.apply_template(t, doc) for t in templates] == expected
    group = _arc_group()
    calls = []
    cached = utils.apply_template
    utils.apply_template = lambda template, doc: calls.append(template) or cached(template, doc)
    try:
        runner.build_requests(group, 1, Seeds())
    finally:
        utils.apply_template = cached
    assert calls, "lm-eval's tasks no longer render their templates through lm_eval.utils.apply_template"


# --- huggingface_hub (exported API only): card update must see the front matter the Hub sees

CARDS = Path(__file__).parent / "fixtures" / "cards"
FRONT_MATTER_CASES = [
    "---\nlicense: mit\n---  \nbody",  # a closer with trailing blanks
    "---\r\na: 1\r\n---\r\n\r\n# body\r\n",  # CRLF
    "\n\n---\na: 1\n---\n",  # blank lines before the opener
    "---\na: '--- x'\n---\nbody\n---\nmore\n",  # the first `---` line closes
    "---\na: 1\n",  # no closer: no front matter
    "# title\n---\na: 1\n---\n",  # not at the start: no front matter
    "---\na: 1\n---",  # a closer at the end of the file
]


SAMPLE_CARDS = sorted(p for p in CARDS.rglob("*.md") if p.name != "SOURCES.md")


@pytest.mark.parametrize(
    "text",
    FRONT_MATTER_CASES + [p.read_text() for p in SAMPLE_CARDS],
    ids=[f"case{i}" for i in range(len(FRONT_MATTER_CASES))] + [p.stem for p in SAMPLE_CARDS],
)
def test_readme_front_matter_ends_where_model_card_says(text: str):
    from huggingface_hub import ModelCard

    from evalsuite.publish.readme import split_readme

    readme = split_readme(text)
    card = ModelCard(text)
    assert readme.body == card.text, "huggingface_hub's ModelCard no longer cuts front matter as readme.FRONT_MATTER"
    metadata = yaml.safe_load(readme.front_matter or "") or {}
    assert {k: v for k, v in metadata.items() if k != "model-index"} == {
        k: v for k, v in card.data.to_dict().items() if k not in ("model-index", "eval_results", "model_name")
    }


def test_model_index_conversions_and_yaml_style_are_huggingface_hubs():
    from huggingface_hub import EvalResult, ModelCardData

    from evalsuite.publish import model_index

    result = EvalResult(task_type="text-generation", dataset_type="ai2_arc", dataset_name="ARC",
                        metric_type="acc_norm", metric_value=70.99, dataset_args={"num_few_shot": 25})  # fmt: skip
    entry = model_index._model_index_entry("m", [result])
    assert entry["name"] == "m" and entry["results"][0]["metrics"] == [{"type": "acc_norm", "value": 70.99}]
    (parsed,) = model_index._parsed_results(entry["results"][0])
    assert parsed.unique_identifier == result.unique_identifier and parsed.metric_value == 70.99
    assert model_index._parsed_results({"task": "not a mapping"}) == [], "ModelCardData no longer refuses bad results"
    written = ModelCardData(model_name="m", eval_results=[result], license="mit", tags=["ü"]).to_yaml()
    ours = model_index._dump({"license": "mit", "tags": ["ü"], "model-index": [entry]})
    assert ours == written + "\n", "huggingface_hub writes card YAML in another style than model_index._dump"


def test_eval_results_entries_files_and_errors_are_huggingface_hubs():
    """`.eval_results` (publish/eval_results.py, publish/benchmarks.py, publish/hub.py): the folder's name, the
    entry's fields and YAML keys both ways, the source rule, the download errors that mean "no eval.yaml" and
    "not cached", hf_hub_download's `local_files_only`, and a commit of several files."""
    import huggingface_hub
    from huggingface_hub import EvalResultEntry, constants, eval_result_entries_to_yaml, parse_eval_result_entries
    from huggingface_hub import errors as hub_errors

    assert constants.EVAL_RESULTS_FOLDER == ".eval_results"
    entry = EvalResultEntry(dataset_id="openai/gsm8k", task_id="gsm8k", value=65.2, date="2024-01-01T00:00:00Z",
                            source_url="https://x", source_name="logs", notes="5-shot")  # fmt: skip
    (data,) = eval_result_entries_to_yaml([entry])
    assert data == {"dataset": {"id": "openai/gsm8k", "task_id": "gsm8k"}, "value": 65.2,
                    "date": "2024-01-01T00:00:00Z", "source": {"url": "https://x", "name": "logs"},
                    "notes": "5-shot"}  # fmt: skip
    assert list(data) == ["dataset", "value", "date", "source", "notes"]  # the key order the golden files hold
    assert parse_eval_result_entries([data]) == [entry]
    with pytest.raises(ValueError):
        EvalResultEntry(dataset_id="d", task_id="t", value=1, source_name="no url")
    with pytest.raises(KeyError):  # eval_results._parse turns this into one line
        parse_eval_result_entries([{"value": 1}])
    assert issubclass(hub_errors.RemoteEntryNotFoundError, hub_errors.EntryNotFoundError)
    assert issubclass(hub_errors.LocalEntryNotFoundError, hub_errors.EntryNotFoundError)
    assert not issubclass(hub_errors.LocalEntryNotFoundError, hub_errors.RemoteEntryNotFoundError)
    assert {"repo_type", "local_files_only"} <= set(inspect.signature(huggingface_hub.hf_hub_download).parameters)
    commit = inspect.signature(huggingface_hub.HfApi.create_commit).parameters
    assert {"repo_id", "operations", "commit_message", "repo_type", "create_pr"} <= set(commit)
    assert {"path_in_repo", "path_or_fileobj"} <= set(inspect.signature(huggingface_hub.CommitOperationAdd).parameters)


def test_the_hub_calls_a_push_makes_and_the_errors_it_sorts():
    """publish/hub.py reads the card at the head (`HfApi.model_info(repo).sha`, `hf_hub_download(revision=)`)
    and commits on it (`create_commit(parent_commit=)`: the Hub answers 412 to a stale parent); model/hub.py sorts
    failures by huggingface_hub's own classes and the HTTP status on the error's `response`."""
    import huggingface_hub
    from huggingface_hub import errors as hub_errors
    from huggingface_hub.hf_api import ModelInfo

    assert "parent_commit" in inspect.signature(huggingface_hub.HfApi.create_commit).parameters
    assert "revision" in inspect.signature(huggingface_hub.hf_hub_download).parameters
    assert "sha" in ModelInfo.__dataclass_fields__
    assert issubclass(hub_errors.GatedRepoError, hub_errors.RepositoryNotFoundError)
    assert issubclass(hub_errors.RepositoryNotFoundError, hub_errors.HfHubHTTPError)
    assert issubclass(hub_errors.RemoteEntryNotFoundError, hub_errors.HfHubHTTPError)
    assert "response" in inspect.signature(hub_errors.HfHubHTTPError.__init__).parameters


# --- transformers / lm-eval: what `--model-args` may name (backends.hf.HFBackend.check_model_args)


def test_from_pretrained_still_takes_the_model_args_evalsuite_lets_through():
    from transformers import PreTrainedModel

    source = inspect.getsource(PreTrainedModel.from_pretrained)
    params = inspect.signature(PreTrainedModel.from_pretrained).parameters
    gone = [k for k in hf.SCORER_MODEL_ARGS if k not in params and f'"{k}"' not in source]
    assert not gone, f"from_pretrained no longer takes {gone}; drop them from backends.hf.FROM_PRETRAINED_MODEL_ARGS"


def test_hflm_takes_keyword_arguments_by_name():
    from lm_eval.models.huggingface import HFLM

    params = inspect.signature(HFLM.__init__).parameters
    assert {"pretrained", "dtype", "device", "batch_size", "add_bos_token", "trust_remote_code"} <= set(params)
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()), "HFLM stopped forwarding **kwargs"


def test_lm_eval_types_model_arg_values_and_builds_models_from_a_dict():
    """backends.hf: `--model-args` values typed by lm-eval's own `handle_arg_string` (as its command line does),
    and a backend's LM class built by `create_from_arg_obj(arguments, additional_config)`."""
    from lm_eval.api.model import LM
    from lm_eval.utils import handle_arg_string

    assert [handle_arg_string(v) for v in ("False", "true", "512", "0.5", "'7'", "none", "x")] == [
        False, True, 512, 0.5, "7", None, "x"]  # fmt: skip
    assert list(inspect.signature(LM.create_from_arg_obj).parameters)[:2] == ["arg_dict", "additional_config"]
    assert hf.typed_value("False") is False


@pytest.mark.subprocess
def test_lm_eval_probes_git_through_the_evaluator_module():
    from lm_eval import evaluator

    from evalsuite.engine.compat import quiet_git_probe

    assert "get_git_commit_hash()" in inspect.getsource(evaluator.simple_evaluate), (
        "simple_evaluate no longer calls evaluator.get_git_commit_hash(); drop engine.compat.quiet_git_probe"
    )
    quiet_git_probe()
    assert evaluator.get_git_commit_hash() is None or isinstance(evaluator.get_git_commit_hash(), str)


def _tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def test_dynamic_cache_layers_are_what_continuous_batching_edits():
    """generation.py's continuous batching edits a DynamicCache's layers directly: it replaces each layer with
    `_InPlaceLayer` (a DynamicLayer subclass), reassigns `keys`/`values` ([rows, kv heads, columns, head dim])
    to drop rows or columns, and relies on the model writing each step through `layer.update`."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    from evalsuite.engine import generation
    from evalsuite.engine.compat import kv_cache_kwarg

    model = _tiny_llama()
    layers = DynamicCache(config=model.config).layers
    assert len(layers) == 2 and all(type(layer) is DynamicLayer for layer in layers), (
        "DynamicCache(config=...) no longer builds one DynamicLayer per decoder layer"
    )
    layer = DynamicLayer()
    assert layer.keys is None and layer.values is None and layer.is_initialized is False, (
        "DynamicLayer() no longer starts with keys/values None and is_initialized False"
    )
    states = ["key_states", "value_states"]
    methods = {
        "update": states,
        "lazy_initialization": states,
        "get_seq_length": [],
        "batch_select_indices": ["indices"],
    }
    for method, params in methods.items():
        signature = inspect.signature(getattr(DynamicLayer, method))
        assert list(signature.parameters)[1 : 1 + len(params)] == params, f"DynamicLayer.{method}{signature} moved"

    ids = torch.tensor([[1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]])
    plain, in_place = DynamicCache(config=model.config), generation._in_place_cache(model)
    with torch.no_grad():
        for cache in (plain, in_place):
            model(ids[:, :3], **{kv_cache_kwarg(model): cache}, use_cache=True)
            cache.batch_select_indices(torch.tensor([0, 2]))
            for layer in cache.layers:  # drop the first column, as a compaction does
                layer.keys, layer.values = layer.keys[..., 1:, :], layer.values[..., 1:, :]
        logits = [
            model(ids[[0, 2], 3:], **{kv_cache_kwarg(model): cache}, attention_mask=torch.ones(2, 3, dtype=torch.long),
                  position_ids=torch.tensor([[3], [3]]), use_cache=True).logits
            for cache in (plain, in_place)
        ]  # fmt: skip
    assert all(isinstance(layer, generation._InPlaceLayer) for layer in in_place.layers), (
        "the model replaced the cache's layers: generation._InPlaceLayer is no longer used"
    )
    for mine, theirs in zip(in_place.layers, plain.layers, strict=True):
        assert mine.keys.shape == theirs.keys.shape == (2, 2, 3, 8), (
            "DynamicLayer.keys is no longer [rows, heads, columns, dim]"
        )
        assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)
    assert torch.equal(logits[0], logits[1])


def test_transformers_continuous_batching_manager_is_what_managed_greedy_drives():
    """engine/generation.py's ManagedGreedy drives transformers' ContinuousBatchingManager: built by
    `init_continuous_batching(generation_config=, continuous_batching_config=)` from a ContinuousBatchingConfig
    with the fields it sets; `start`, `add_request(input_ids, request_id=, max_new_tokens=, streaming=,
    eos_token_id=)`, `get_result(timeout=)` giving GenerationOutputs (`request_id`, `generated_tokens` so far,
    `error`, `is_finished()`), `cancel_request`, `is_running`, `background_thread_status.fatal_error`,
    `stop(block=, hard_stop=)`, `destroy`; and a greedy request's tokens equal `generate`'s."""
    import dataclasses

    import torch
    from transformers import ContinuousBatchingConfig
    from transformers.generation.continuous_batching import ContinuousBatchingManager
    from transformers.generation.continuous_batching.requests import GenerationOutput

    from evalsuite.engine import generation

    fields = {f.name for f in dataclasses.fields(ContinuousBatchingConfig)}
    used = {"page_size", "num_blocks", "max_requests_per_batch", "max_batch_tokens", "allow_block_sharing",
            "auto_switch_to_flash", "use_cuda_graph", "default_compile_level"}  # fmt: skip
    assert used <= fields, f"ContinuousBatchingConfig no longer has {sorted(used - fields)}"
    methods = {
        "add_request": ["input_ids", "request_id", "max_new_tokens", "streaming"],
        "get_result": ["request_id", "timeout"],
        "cancel_request": ["request_id"],
        "stop": ["block", "timeout", "keep_for_next_session", "hard_stop"],
    }
    for method, params in methods.items():
        signature = inspect.signature(getattr(ContinuousBatchingManager, method))
        assert set(params) <= set(signature.parameters), f"ContinuousBatchingManager.{method}{signature} moved"
    assert "eos_token_id" in inspect.signature(ContinuousBatchingManager.add_request).parameters
    output_fields = {f.name for f in dataclasses.fields(GenerationOutput)}
    assert {"request_id", "generated_tokens", "error", "status"} <= output_fields, output_fields

    model = _tiny_llama()
    prompts = [[1, 5, 9, 13, 17], [2, 6, 10], [3, 7, 11, 15, 19, 23, 27]]
    expected = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             pad_token_id=0, eos_token_id=None)  # fmt: skip
        expected.append(out[0, len(prompt) :].tolist())
    generator = generation.ManagedGreedy(
        model, budget=generation.CacheBudget(slots=2, tokens=16), eos=set(), pad_token_id=0
    )
    assert generator.run(prompts, [6, 6, 6]) == expected, "the manager's greedy tokens are no longer generate's"
    assert model.config._attn_implementation == "sdpa", "the manager left the model on another attention"


def test_a_one_row_kv_cache_is_copied_to_many_rows_and_generate_continues_from_it():
    """The contamination check's shared prefill: forward the prefix once, `batch_repeat_interleave` the cache,
    hand it to `generate` under the installed name; the tokens equal generate's own from the whole prompt."""
    import torch

    from evalsuite.engine.compat import kv_cache_kwarg, returned_kv_cache

    model = _tiny_llama()
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        cache = returned_kv_cache(model(ids[:, :-1], use_cache=True))
    assert cache is not None and hasattr(cache, "batch_repeat_interleave"), "forward no longer returns a KV cache"
    cache.batch_repeat_interleave(3)
    kwarg = kv_cache_kwarg(model)
    generate_kwargs = dict(max_new_tokens=4, min_new_tokens=4, do_sample=True, pad_token_id=0)
    torch.manual_seed(1)
    theirs = model.generate(ids, attention_mask=torch.ones_like(ids), num_return_sequences=3, **generate_kwargs)
    torch.manual_seed(1)
    rows = ids.repeat(3, 1)
    ours = model.generate(rows, attention_mask=torch.ones_like(rows), **{kwarg: cache}, **generate_kwargs)
    assert torch.equal(ours, theirs), f"generate no longer continues from a cache passed as `{kwarg}`"


def test_datasets_pings_download_counts_only_while_its_config_says_so():
    """`data.no_download_count_pings`: datasets' loader sends its S3 download-count request from
    `load.increase_load_count`, gated by `config.HF_UPDATE_DOWNLOAD_COUNTS` (read at call time)."""
    from datasets import config, load

    from evalsuite.data import no_download_count_pings

    source = inspect.getsource(load.increase_load_count)
    assert "config.HF_UPDATE_DOWNLOAD_COUNTS" in source, (
        "datasets.load.increase_load_count no longer reads config.HF_UPDATE_DOWNLOAD_COUNTS: "
        "data.no_download_count_pings stops nothing; find the new switch"
    )
    before = config.HF_UPDATE_DOWNLOAD_COUNTS
    with no_download_count_pings():
        assert config.HF_UPDATE_DOWNLOAD_COUNTS is False
    assert config.HF_UPDATE_DOWNLOAD_COUNTS == before  # restored: callers' processes keep their setting


def test_hflm_reads_rank_world_size_and_batch_size_through_the_properties_evalsuite_overrides():
    """backend.SharedPrefixLM overrides HFLM's `rank`/`world_size` (0/1: lm-eval builds every request on every
    rank, evalsuite splits the forwards) and `batch_size` (the rows of one generation chunk under auto). That
    works only while HFLM and the evaluator read them through the properties, never `_rank`/`_world_size`/
    `batch_size_per_gpu` directly (outside __init__ and the properties themselves)."""
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM

    direct = {
        name: [attr for attr in ("self._rank", "self._world_size", "self.batch_size_per_gpu") if attr in source]
        for name, member in vars(HFLM).items()
        if name not in ("__init__", "rank", "world_size", "batch_size")
        and callable(getattr(member, "fget", member))
        and (source := inspect.getsource(getattr(member, "fget", member)))
    }
    assert {name: attrs for name, attrs in direct.items() if attrs} == {}, "HFLM reads its state directly again"
    assert "self.batch_size" in inspect.getsource(HFLM.generate_until), "HFLM.generate_until stopped batching"
    assert "lm.rank" in inspect.getsource(evaluator.evaluate) and "lm.world_size" in inspect.getsource(
        evaluator.evaluate
    )


def test_lm_eval_generation_helpers_keep_their_signatures():
    """backend.py calls these three lm_eval.models.utils helpers as HFLM.generate_until does."""
    from lm_eval.models import utils

    assert list(inspect.signature(utils.handle_stop_sequences).parameters) == ["until", "eos"]
    assert list(inspect.signature(utils.postprocess_generated_text).parameters)[:2] == ["generation", "stop"]
    assert list(inspect.signature(utils.normalize_gen_kwargs).parameters) == ["gen_kwargs", "default_max_gen_toks"]
    assert utils.normalize_gen_kwargs({"until": ["\n"]}, 7)["max_gen_toks"] == 7


def test_lm_evals_request_cache_is_one_sqlitedict_per_rank():
    """checkpoint.py finds a task's answered requests in `<use_cache>_rank<N>.db`, SqliteDict's table `unnamed`."""
    from lm_eval import evaluator
    from lm_eval.api import model
    from sqlitedict import SqliteDict  # type: ignore[import-untyped]

    assert '"_rank"' in inspect.getsource(evaluator.simple_evaluate) and '".db"' in inspect.getsource(
        evaluator.simple_evaluate
    ), "simple_evaluate names its request cache differently: update evalsuite/results/lm_eval_files.py"
    assert "SqliteDict(cache_db" in inspect.getsource(model.CachingLM.__init__)
    assert inspect.signature(SqliteDict.__init__).parameters["tablename"].default == "unnamed"
    # answers are committed as they come, so a killed task keeps them (run/checkpoint.py, tests/test_faults.py)
    assert "autocommit=True" in inspect.getsource(model.CachingLM.__init__)
    # a full disk under the cache is recognised by sqlite's error code, not its text (run/pipeline.storage_full)
    import sqlite3
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".db") as not_a_database:
        not_a_database.write(b"random bytes" * 512)
        not_a_database.flush()
        with pytest.raises(sqlite3.DatabaseError) as raised, sqlite3.connect(not_a_database.name) as conn:
            conn.execute("SELECT name FROM sqlite_master").fetchall()
    assert raised.value.sqlite_errorcode == sqlite3.SQLITE_NOTADB and sqlite3.SQLITE_FULL == 13


def test_lm_eval_results_keep_the_keys_evalsuite_reads():
    """results/from_lm_eval.py reads `results[leaf]["<metric>,<filter>"]` and `n-samples[leaf]["effective"]` of the
    EvalResults simple_evaluate returns (lm_eval.result_schema types it)."""
    from typing import get_type_hints

    from lm_eval import result_schema

    keys = result_schema.EvalResults.__annotations__
    assert {"results", "n-samples", "samples", "configs"} <= set(keys), f"EvalResults keys moved: {sorted(keys)}"
    assert "effective" in get_type_hints(result_schema._SampleCount), "n-samples[task] lost `effective`"


def test_simple_evaluate_takes_the_keywords_evalsuite_passes():
    from lm_eval import simple_evaluate

    passed = {"model", "model_args", "tasks", "limit", "samples", "log_samples", "task_manager", "use_cache",
              "random_seed", "numpy_random_seed", "torch_random_seed", "fewshot_random_seed"}  # fmt: skip
    gone = passed - set(inspect.signature(simple_evaluate).parameters)
    assert not gone, f"lm_eval.simple_evaluate no longer takes {sorted(gone)} (runner.run_task passes them)"


@pytest.mark.lm_eval
def test_lm_evals_task_folders_still_define_the_tasks_the_suite_builds_on():
    """runner.build_task_manager indexes only lm-eval's folders in runner._LM_EVAL_TASK_DIRS beside tasks/:
    every lm-eval task the suite's groups name must be found there."""
    manager = runner.build_task_manager(default_tasks_dir())
    named = set()
    for path in default_tasks_dir().glob("h6_*.yaml"):
        named |= {m["task"] for m in yaml.safe_load(path.read_text())["task"] if isinstance(m, dict)}
    assert len(named) == 5 + 57
    missing = sorted(named - set(manager.all_tasks))
    assert not missing, f"lm-eval's folders {runner._LM_EVAL_TASK_DIRS} no longer define {missing[:5]}"


def test_lm_evals_json_helper_makes_its_output_plain_as_run_task_expects():
    """runner._plain_json serialises lm-eval's output with lm-eval's own `handle_non_serializable`, so that what a
    run reports, writes and resumes from are the same plain values: numpy numbers as Python numbers (float32
    ones exactly as `float()` gives them), sets as lists, anything else as its text."""
    import numpy as np
    from lm_eval.utils import handle_non_serializable

    from evalsuite.engine.runner import _plain_json

    assert handle_non_serializable(np.int64(3)) == 3 and type(handle_non_serializable(np.int64(3))) is int
    assert handle_non_serializable(np.float32(0.1)) == float(np.float32(0.1))
    assert handle_non_serializable(np.bool_(True)) is True
    assert handle_non_serializable({2}) == [2]
    assert handle_non_serializable(len) == str(len)
    plain = _plain_json({"acc,none": np.float64(0.25), "n": np.int64(2), "f": np.float32(0.1), "s": (1, 2)})
    assert plain == {"acc,none": 0.25, "n": 2, "f": float(np.float32(0.1)), "s": [1, 2]}


def test_ray_calls_the_cluster_makes():
    """run/cluster.py, the one module that imports ray: the keywords it passes and the exceptions it sorts."""
    import ray
    from ray import exceptions
    from ray._common import ray_option_utils
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    init = inspect.signature(ray.init).parameters
    assert {"address", "log_to_driver", "logging_level", "include_dashboard", "object_store_memory"} <= set(init)
    # private, popped from **kwargs: a local instance's node address (127.0.0.1 only with Ray's loopback switch off:
    # test_ray_keeps_a_private_cluster_on_the_loopback_and_its_token_off_disk)
    assert 'kwargs.pop("_node_ip_address"' in inspect.getsource(ray._private.worker.init)
    assert {"num_cpus", "num_gpus", "max_retries", "retry_exceptions", "scheduling_strategy"} <= set(
        ray_option_utils.task_options
    )
    assert {"num_returns", "timeout"} <= set(inspect.signature(ray.wait).parameters)
    assert "timeout" in inspect.signature(ray.get).parameters
    assert "force" in inspect.signature(ray.cancel).parameters
    assert {"node_id", "soft"} <= set(inspect.signature(NodeAffinitySchedulingStrategy.__init__).parameters)
    assert callable(ray.get_runtime_context) and hasattr(ray.runtime_context.RuntimeContext, "get_node_id")
    # a cell that raised carries its exception as `cause`; a lost worker or node is another RayError
    assert "cause" in inspect.signature(exceptions.RayTaskError.__init__).parameters
    for lost in (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError,
                 exceptions.TaskCancelledError):  # fmt: skip
        assert issubclass(lost, exceptions.RayError) and not issubclass(lost, exceptions.RayTaskError), lost


def test_ray_keeps_a_private_cluster_on_the_loopback_and_its_token_off_disk(tmp_path, monkeypatch):
    """run/cluster.py `_private_cluster` (`--cluster local`), through Ray's internals:
    - `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` is read into `ray_constants.ENABLE_RAY_CLUSTER` on import; with it off, a
      node's address is the loopback (`get_node_ip_address`, which ray.init's `_node_ip_address="127.0.0.1"` goes
      through), with no 8.8.8.8 probe; services.py reads the constant from the module at each call, so setting it
      after the import counts;
    - ray.init of a new cluster sets `RAY_AUTH_MODE=token` in os.environ when unset, and writes ~/.ray/auth_token
      only when the token loader finds no token; the loader looks at `RAY_AUTH_TOKEN`, then the file
      `RAY_AUTH_TOKEN_PATH` names, then ~/.ray/auth_token, keeps what it found until `reset_cache`, and
      `Config.initialize("")` reads the mode from the environment again."""
    import ray
    import ray._private.authentication.authentication_token_setup as token_setup
    from ray._private import ray_constants, services
    from ray._raylet import AuthenticationMode, AuthenticationTokenLoader, Config, get_authentication_mode

    from evalsuite.run import cluster

    assert ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR == cluster.LOOPBACK_ONLY
    assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool)
    assert services.ray_constants is ray_constants  # the module, not a copy of its value
    node_ip = inspect.getsource(services.get_node_ip_address)
    assert "if not ray_constants.ENABLE_RAY_CLUSTER:" in node_ip and "return get_localhost_ip()" in node_ip
    assert "services.resolve_ip_for_localhost(_node_ip_address)" in inspect.getsource(ray._private.worker.init)
    assert "return get_node_ip_address()" in inspect.getsource(services.resolve_ip_for_localhost)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"

    assert token_setup.AUTH_MODE_ENV_VAR == cluster.AUTH_MODE
    assert 'os.environ[AUTH_MODE_ENV_VAR] = "token"' in inspect.getsource(token_setup._enable_token_auth)
    assert "_enable_token_auth()" in inspect.getsource(token_setup.enable_token_auth_by_default)
    ensure = inspect.getsource(token_setup.ensure_token_if_auth_enabled)
    assert 0 <= ensure.index("has_token(ignore_auth_mode=True)") < ensure.index("generate_and_save_token()")
    assert token_setup._get_default_token_path() == Path.home() / ".ray" / "auth_token"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("in-home")
    (tmp_path / "named").write_text("in-named-file")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(cluster.AUTH_TOKEN, "in-variable")
    monkeypatch.setenv(cluster.AUTH_TOKEN_PATH, str(tmp_path / "named"))
    monkeypatch.setenv(cluster.AUTH_MODE, "token")
    loader = AuthenticationTokenLoader.instance()
    try:
        found = []
        for unset in (cluster.AUTH_TOKEN, cluster.AUTH_TOKEN_PATH, None):
            loader.reset_cache()
            found.append(loader.get_raw_token(ignore_auth_mode=True))
            monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))  # the loader keeps what it found
            assert loader.get_raw_token(ignore_auth_mode=True) == found[-1]
            monkeypatch.setenv("HOME", str(tmp_path))
            if unset:
                monkeypatch.delenv(unset)
        assert found == ["in-variable", "in-named-file", "in-home"]
        Config.initialize("")
        assert get_authentication_mode() == AuthenticationMode.TOKEN
        monkeypatch.delenv(cluster.AUTH_MODE)
        Config.initialize("")
        assert get_authentication_mode() != AuthenticationMode.TOKEN
    finally:
        monkeypatch.undo()
        Config.initialize("")
        loader.reset_cache()


def test_hflm_creates_its_model_where_loads_weights_hooks_in():  # the only test of this touch point
    """engine/backends/hf.py `LoadsWeights`: HFLM.__init__ calls `self._create_model(..., quantization_config=,
    **kwargs)` and the model is `self._model` after it; `peft` is HFLM's adapter argument (PeftModel over the
    model); transformers 5 takes bitsandbytes only as `quantization_config=BitsAndBytesConfig(...)`."""
    from lm_eval.models.huggingface import HFLM
    from transformers import BitsAndBytesConfig

    create = inspect.signature(HFLM._create_model).parameters
    assert {"quantization_config", "peft", "delta", "dtype", "kwargs"} <= set(create)
    init_source = inspect.getsource(HFLM.__init__)
    assert "self._create_model(" in init_source and "quantization_config=quantization_config" in init_source
    assert "PeftModel.from_pretrained(" in inspect.getsource(HFLM._create_model)
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype="float32")
    assert config.load_in_4bit and not BitsAndBytesConfig(load_in_8bit=True).load_in_4bit


def test_sample_records_hold_each_requests_arguments_and_responses():
    """Pairing with the leaderboard's details (results/lm_eval_files.logged_documents) reads, per logged sample,
    `arguments` as one [context, continuation or generation kwargs] per request, `resps` (generation: the text
    first) and `filtered_resps` ((log-likelihood, is-greedy) per choice), beside `doc`, `target` and `metrics`:
    where lm-eval's evaluate() builds the record."""
    from lm_eval import evaluator

    source = inspect.getsource(evaluator.evaluate)
    for field in ('"doc_id"', '"doc"', '"target"', '"arguments": [req.args for req in requests]', '"resps"',
                  '"filtered_resps"', '"filter"', '"metrics"', '"doc_hash"'):  # fmt: skip
        assert field in source, f"lm-eval's sample record no longer has {field}"


def test_dataset_card_configs_are_read_and_written_by_huggingface_hub():
    """The details' card (archive/details.card_configs reads it, publish/details._card writes it): a dataset
    card's YAML `configs` through `DatasetCard(text).data.to_dict()` and `DatasetCardData(configs=).to_yaml()`."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from evalsuite.archive import details

    path = "**/details_harness|arc:challenge|25_2024-01-06T09-45-44.755529.parquet"
    configs = [{"config_name": "harness_arc_challenge_25", "data_files": [{"split": "latest", "path": [path]}]}]
    text = f"---\n{DatasetCardData(configs=configs).to_yaml()}\n---\n\n# card\n"
    assert DatasetCard(text).data.to_dict()["configs"] == configs
    assert details.card_configs(text) == configs
    index = details.index_from_configs(details.card_configs(text))
    assert index.latest == {"harness|arc:challenge|25": "2024-01-06T09-45-44.755529"}


@pytest.mark.subprocess  # importing gptqmodel runs ldconfig
def test_gptqmodel_layers_logger_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """GPTQ (engine/backends/hf.py check_quantized, engine/compat.py prepare_gptqmodel): gptqmodel's kernels derive
    from `BaseQuantLinear`; its log goes through logbar's shared LogBar, whose level sticks once set; importing it
    sets the Hugging Face cache variables (tokenicer), which prepare_gptqmodel puts back."""
    import logging
    import os

    from evalsuite.engine.backends.hf import QUANTIZED_LAYERS
    from evalsuite.engine.compat import _GPTQMODEL_ENVIRONMENT, prepare_gptqmodel
    from evalsuite.settings import Precision

    for name in _GPTQMODEL_ENVIRONMENT:  # set, then unset: monkeypatch records them, and unsets them after
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    prepare_gptqmodel()
    assert [os.environ.get(name) for name in _GPTQMODEL_ENVIRONMENT] == [str(tmp_path / "hf-home"), None, None, None]
    import tokenicer

    with monkeypatch.context() as patch:  # what the import did, run again: the variables prepare_gptqmodel restores
        for name in _GPTQMODEL_ENVIRONMENT:
            patch.setenv(name, "")
            patch.delenv(name)
        patch.setenv("HF_HOME", str(tmp_path / "tokenicer"))  # its folders go there
        tokenicer._configure_hf_cache()
        assert all(os.environ.get(name) for name in _GPTQMODEL_ENVIRONMENT), "tokenicer no longer sets the caches"
    for name in _GPTQMODEL_ENVIRONMENT[1:]:
        assert name not in os.environ

    from gptqmodel.nn_modules.qlinear import BaseQuantLinear
    from gptqmodel.nn_modules.qlinear.torch_aten_kernel import TorchAtenLinear
    from logbar import LogBar

    assert BaseQuantLinear.__name__ in QUANTIZED_LAYERS[Precision.GPTQ]
    assert BaseQuantLinear in TorchAtenLinear.__mro__
    assert LogBar.shared().level >= logging.INFO
    assert LogBar.shared() is logging.getLogger("logbar")


def test_template_lm_splits_requests_as_the_served_backend_relies_on():
    """The served backend (engine/backends/served.py) is a TemplateLM: lm-eval's `loglikelihood` splits each
    (context, continuation) with `_encode_pair` (HFLM inherits it too) and hands `_loglikelihood_tokens` tuples of
    (request, context ids, continuation ids); its `tok_encode` copies HFLM's rules through lm-eval's own helpers."""
    from lm_eval.api.model import TemplateLM
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import _add_special_kwargs, has_bos_prefix

    assert issubclass(HFLM, TemplateLM) and "_encode_pair" not in HFLM.__dict__
    assert "self._encode_pair(context, continuation)" in inspect.getsource(TemplateLM.loglikelihood)
    assert "_loglikelihood_tokens(new_reqs" in inspect.getsource(TemplateLM.loglikelihood)
    assert {"tok_encode", "_loglikelihood_tokens", "eot_token_id", "generate_until"} <= TemplateLM.__abstractmethods__
    assert _add_special_kwargs(None, False) == {"add_special_tokens": False}
    assert _add_special_kwargs(True, False) == {"add_special_tokens": True}
    assert has_bos_prefix("<s>x", "<s>") and not has_bos_prefix("x", None)
    hflm = inspect.getsource(HFLM.tok_encode)
    assert "_add_special_kwargs(" in hflm and "has_bos_prefix(" in hflm and "self.prefix_token_id" in hflm


def test_ray_says_a_version_mismatch_as_run_cluster_reads_it():
    """run/cluster.py turns only Ray's version check among ray.init's RuntimeErrors into the user's one line (the
    others are misuses of init: bugs, raised as they are)."""
    import ray._private.utils as ray_utils

    source = inspect.getsource(ray_utils.check_version_info)
    assert 'f"Version mismatch: {mismatch_msg}"' in source and "raise RuntimeError(error_message)" in source


def test_lm_evals_cache_hook_holds_the_request_cache_the_served_backend_flushes():
    """ServedLM commits lm-eval's request cache (blocking) before a task gives up: the CacheHook it is given holds
    CachingLM's SqliteDict as `dbdict`, whose writes commit in a thread of their own (`commit(blocking=True)`
    waits for them)."""
    from lm_eval.api.model import CacheHook, CachingLM
    from sqlitedict import SqliteDict

    assert "self.dbdict = cachinglm.dbdict" in inspect.getsource(CacheHook.__init__)
    assert "self.dbdict[hsh] = res" in inspect.getsource(CacheHook.add_partial)
    assert "SqliteDict(" in inspect.getsource(CachingLM.__init__)
    assert "blocking" in inspect.signature(SqliteDict.commit).parameters
