"""The library's public names are importable from the package root, each from the subpackage that owns it."""

from __future__ import annotations

import evalsuite


def test_every_public_name_resolves_to_its_owner():
    for name in evalsuite.__all__:
        value = getattr(evalsuite, name)
        if name != "__version__":
            owner = value.__module__.split(".")[1]
            assert owner in {"run", "results", "suite", "settings"}, (name, value.__module__)
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
