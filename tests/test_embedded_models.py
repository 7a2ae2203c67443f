"""The embedded models by name (SmolLM2-135M-Instruct, Gemma 3 270M) and the plain prompt format of models without
a chat template; the slow tests run the real Gemma file through llama.cpp."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent3d.base import EMBEDDED_MODELS
from agent3d.cli import app
from agent3d.llm.embedded import EMBEDDED
from agent3d.llm.head import HeadAdapter
from agent3d.llm.plain_format import ANSWER_CUE, plain_prompt

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"
GEMMA = "gemma-3-270m"


def test_the_configuration_accepts_exactly_the_embedded_names():
    assert tuple(EMBEDDED) == EMBEDDED_MODELS and EMBEDDED["smollm2-135m"].extra == "local"
    assert EMBEDDED[GEMMA].extra == "gemma" and len(EMBEDDED[GEMMA].sha256) == 64


def test_the_plain_format_is_the_system_text_the_user_text_then_the_answer_cue():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                {"role": "assistant", "content": '{"suspects": []}'}, {"role": "user", "content": "U2"}]
    assert plain_prompt(messages[:2]) == f"S\n\nU1\n\n{ANSWER_CUE}"
    assert plain_prompt(messages) == f'S\n\nU1\n\n{ANSWER_CUE} {{"suspects": []}}\n\nU2\n\n{ANSWER_CUE}'


def hide(monkeypatch, distribution: str) -> None:
    """Make ``distribution`` look uninstalled to agent3d (as a machine without the extra)."""
    real = metadata.distribution

    def distribution_or_none(name):
        if name == distribution:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr("agent3d.llm.embedded.metadata.distribution", distribution_or_none)


def test_a_missing_embedded_model_names_its_extra_in_one_line_and_exits_3(monkeypatch, tmp_path):
    hide(monkeypatch, EMBEDDED[GEMMA].distribution)
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--model", GEMMA, "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 3 and len(result.stderr.strip().splitlines()) == 1
    assert "pip install 'agent3d[gemma]'" in result.stderr and not (tmp_path / "out").exists()
    listed = json.loads(runner.invoke(app, ["models", "--json"]).stdout)["embedded_models"]
    gemma = next(m for m in listed if m["name"] == GEMMA)
    assert not gemma["installed"] and "agent3d[gemma]" in gemma["missing"]


def test_models_lists_both_embedded_models_with_their_files():
    report = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    listed = {m["name"]: m for m in report["embedded_models"]}
    assert set(listed) == set(EMBEDDED_MODELS) and listed["smollm2-135m"]["default"]
    gemma = listed[GEMMA]
    assert gemma["sha256"] == EMBEDDED[GEMMA].sha256 and gemma["bytes"] > 200e6 and gemma["parameters"] == "270M"
    assert "Gemma" in gemma["license"] and report["embedded_model"]["name"] == "smollm2-135m"
    table = runner.invoke(app, ["models"]).stdout
    assert GEMMA in table and "smollm2-135m" in table and "(default)" in table


def test_a_head_records_its_prompt_format_and_refuses_another(tmp_path):
    from test_head import write_head

    head = HeadAdapter(write_head(tmp_path / "h", base_model={"name": "m.gguf", "sha256": "a" * 64,
                                                              "format": "plain-v1"}))
    head.check_base("m.gguf", "a" * 64, "plain-v1")
    with pytest.raises(ValueError, match="plain-v1 format; m.gguf reads chat-template"):
        head.check_base("m.gguf", "a" * 64, "chat-template")
    older = HeadAdapter(write_head(tmp_path / "old"))  # written before formats were recorded: a chat template
    assert older.record.base_model.format == "chat-template"


@pytest.mark.slow  # runs Gemma 3 270M
def test_detect_runs_gemma_by_name_and_names_it():
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--model", GEMMA, "--json",
                                 "--n-points", "32"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "gemma-3-270m-q4_k_m.gguf" and data["backend"] == "llama-cpp"
    assert data["tokens"]["prompt"] > 500 and data["llm"]["calls"] >= 1


@pytest.mark.slow  # runs Gemma 3 270M
def test_the_plain_format_token_count_is_what_the_backend_reads():
    from agent3d.agent import suspect_schema
    from agent3d.llm.llama_cpp import LlamaCppBackend
    from agent3d.llm.states import LineStateReader

    messages = [{"role": "system", "content": 'Answer {"suspects": [{"id": "p1", "confidence": 1, "reason": "x"}]}'},
                {"role": "user", "content": "p0 10 20 30\np1 40 50 60\nWhich point lies on a defect?"}]
    backend = LlamaCppBackend(GEMMA, n_ctx=1024, max_tokens=48)
    assert backend.params["format"] == "plain-v1"
    reply = backend.complete(messages, suspect_schema(["p0", "p1"], 2))
    assert reply.prompt_tokens == backend.count_tokens(messages) == LineStateReader(GEMMA, n_ctx=1024).count_tokens(
        messages)


@pytest.mark.slow  # runs Gemma 3 270M
def test_gemma_line_states_come_from_each_lines_own_last_token():
    """Through SentencePiece as through byte-level BPE: changing one line changes its state and later ones only."""
    from agent3d.llm.states import LineStateReader
    from test_head import changed_line_differences

    reader = LineStateReader(GEMMA, n_ctx=2048)
    assert reader.n_embd == 640
    difference = changed_line_differences(reader)
    assert difference[:12].max() == 0 and difference[12] > 1e-3


@pytest.mark.slow  # runs Gemma 3 270M
def test_a_head_of_smollm2_is_refused_with_gemma(tmp_path):
    from agent3d.llm.base import file_sha256
    from agent3d.llm.embedded import default_model_path
    from agent3d.prompts import load_prompt
    from test_head import write_head

    geom = load_prompt("geom")
    folder = write_head(tmp_path / "h", base_model={"name": "smollm2.gguf", "sha256": file_sha256(
        [default_model_path()])}, prompt={"name": "geom", "hash": geom.digest, "format": geom.format})
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--model", GEMMA, "--adapter",
                                 str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "another base model (smollm2.gguf" in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow  # loads Gemma 3 270M through llama.cpp and transformers
def test_transformers_reads_gemma_in_the_same_plain_format_as_llama_cpp():
    from agent3d.llm.states import LineStateReader
    from agent3d.llm.transformers import chat_ids, load_base, model_identity, prompt_format

    messages = [{"role": "system", "content": "Name the points on a defect."},
                {"role": "user", "content": "p0 10 20 30\np1 40 50 60\nWhich point lies on a defect?"}]
    _, tokenizer = load_base(model_identity(GEMMA), "cpu")
    assert prompt_format(tokenizer) == "plain-v1"
    assert chat_ids(tokenizer, messages) == LineStateReader(GEMMA, n_ctx=512).tokens(messages)
