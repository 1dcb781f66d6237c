"""The library's public names are importable from the package root, each from the subpackage that owns it, each
with a docstring of its own; the request objects take what a user writes and hand out typed values (mypy
checks this module whole, as a user's checker would: [tool.mypy] in pyproject.toml)."""

from __future__ import annotations

import evalsuite


def test_every_public_name_resolves_to_its_owner():
    for name in evalsuite.__all__:
        value = getattr(evalsuite, name)
        if name != "__version__":
            owner = value.__module__.split(".")[1]
            assert owner in {"run", "results", "suite", "settings", "publish", "track", "engine"}, (
                name,
                value.__module__,
            )
            own = value.__dict__.get("__doc__") if isinstance(value, type) else value.__doc__
            assert own and not own.startswith(f"{name}("), f"{name} has no docstring of its own"
    assert sorted(evalsuite.__all__) == dir(evalsuite)


def test_the_library_runs_from_the_root_names(tmp_path):
    from evalsuite import RunRequest, SuiteResults, read_results

    request = RunRequest(model="org/model", batch_size="auto", dtype="bfloat16")  # text parsed into the types
    assert request.batch_size == evalsuite.BatchSize.auto_size() and request.dtype is evalsuite.Dtype.BFLOAT16
    assert callable(read_results) and SuiteResults.model_fields["schema_version"].default >= 2


def test_an_unknown_name_is_an_attribute_error():
    try:
        evalsuite.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("evalsuite.no_such_thing resolved")


def test_cards_comparisons_and_reproductions_have_library_entry_points(tmp_path):
    from conftest import FIXTURES, SAKURA

    from evalsuite import CardUpdateRequest, compare_runs, plan_card_update, read_card_inputs, read_run, reproduce
    from evalsuite.archive import published_result
    from evalsuite.suite import load_suite

    run = read_run(SAKURA)
    assert compare_runs(run, run).regressed == []
    request = CardUpdateRequest(readme=tmp_path / "README.md", results=SAKURA)
    update = plan_card_update(request, read_card_inputs(request))
    assert update.files[0].old == "" and "model-index" in update.files[0].new and not list(tmp_path.iterdir())
    published = published_result("HenryJJ/Instruct_Yi-6B_Dolly15K", FIXTURES / "archive" / "results")
    reproduction = reproduce(published, run, load_suite())  # another model's run: compared, and warned about
    assert reproduction.published_model == "HenryJJ/Instruct_Yi-6B_Dolly15K" and reproduction.warnings
