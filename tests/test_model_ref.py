from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite.errors import ModelRefError
from evalsuite.model import ModelSource, check_gguf_header, parse_model_ref


def test_hub_id_with_revision():
    ref = parse_model_ref("kyujinpy/Sakura-SOLAR-Instruct@main")
    assert (ref.source, ref.location, ref.revision) == (ModelSource.HUB, "kyujinpy/Sakura-SOLAR-Instruct", "main")
    assert ref.results_dir_name == "kyujinpy__Sakura-SOLAR-Instruct"


def test_hub_id_without_org():
    ref = parse_model_ref("gpt2")
    assert (ref.source, ref.revision, ref.results_dir_name) == (ModelSource.HUB, None, "hub__gpt2")


def test_local_folder_needs_config(tmp_path: Path):
    with pytest.raises(ModelRefError, match="no config.json"):
        parse_model_ref(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelRefError, match="has no model_type"):
        parse_model_ref(str(tmp_path))
    (tmp_path / "config.json").write_text("not json")
    with pytest.raises(ModelRefError, match="not readable JSON"):
        parse_model_ref(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "llama", "rope_theta": 10000}')
    ref = parse_model_ref(str(tmp_path))
    assert ref.config_keys() == {"model_type", "rope_theta"}
    assert ref.source is ModelSource.LOCAL and ref.results_dir_name == f"local__{tmp_path.name}"


def test_gguf_file(tmp_path: Path):
    gguf = tmp_path / "tiny.Q4.gguf"
    gguf.write_bytes(b"GGUF....")
    ref = parse_model_ref(str(gguf))
    assert ref.source is ModelSource.GGUF and ref.model_id == "tiny.Q4"


@pytest.mark.parametrize("text", ["./nope", "/does/not/exist", "missing.gguf", "a/b/c", "~/nothing-here"])
def test_missing_paths_are_errors(text: str):
    with pytest.raises(ModelRefError, match="no such file or directory"):
        parse_model_ref(text)


@pytest.mark.parametrize("text", ["", "org/name@", "bad id!"])
def test_not_a_hub_id(text: str):
    with pytest.raises(ModelRefError):
        parse_model_ref(text)


def test_bad_gguf_header(tmp_path: Path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelRefError, match="not a GGUF file"):
        check_gguf_header(path)
