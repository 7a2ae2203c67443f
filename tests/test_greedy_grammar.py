"""The greedy grammar sampler picks, token for token, what llama-cpp-python's own grammar chain picks."""

from __future__ import annotations

import pytest

from agent3d.agent import suspect_schema
from agent3d.llm.greedy_grammar import GreedyGrammarSampler, greedy_grammar_llama
from agent3d.llm.embedded import default_model_path
from agent3d.llm.llama_cpp import load_llama

llama_cpp = pytest.importorskip("llama_cpp")

MESSAGES = [
    {"role": "system", "content": "You inspect scanned parts. Answer in JSON."},
    {"role": "user", "content": "Points (id x y z):\n" + "\n".join(
        f"p{i} {i * 7 % 100} {i * 13 % 100} {(i * 29 % 100) if i != 9 else 99}" for i in range(24))
        + "\nWhich points look defective?"},
]


def _reply(llama_class, schema):
    llm, _ = load_llama(llama_class, default_model_path(), n_ctx=2048, seed=0, n_threads=2)
    out = llm.create_chat_completion(messages=MESSAGES, response_format={"type": "json_object", "schema": schema},
                                     temperature=0.0, max_tokens=120, seed=0)
    return out["choices"][0]["message"]["content"], llm


def test_same_tokens_as_the_full_vocabulary_grammar_chain():
    schema = suspect_schema([f"p{i}" for i in range(24)])
    expected, _ = _reply(llama_cpp.Llama, schema)
    got, llm = _reply(greedy_grammar_llama(), schema)
    assert got == expected
    assert got.lstrip().startswith("{")
    assert llm._sampler.fallbacks_ > 0  # the ids' enum refuses some unconstrained picks: both paths ran


def test_a_schema_the_model_would_not_follow_unaided():
    # every reply must carry the key "zzz", which the model would never write by itself
    schema = {"type": "object", "properties": {"zzz": {"type": "integer"}}, "required": ["zzz"]}
    expected, _ = _reply(llama_cpp.Llama, schema)
    got, llm = _reply(greedy_grammar_llama(), schema)
    assert got == expected and '"zzz"' in got
    assert llm._sampler.fallbacks_ >= 1


def test_other_sampling_settings_keep_llama_cpp_samplers():
    llama_class = greedy_grammar_llama()
    llm, _ = load_llama(llama_class, default_model_path(), n_ctx=256, seed=0, n_threads=2)
    grammar = llama_cpp.LlamaGrammar.from_json_schema('{"type": "object"}', verbose=False)
    assert isinstance(llm._init_sampler(temp=0.0, grammar=grammar, repeat_penalty=1.0), GreedyGrammarSampler)
    assert not isinstance(llm._init_sampler(temp=0.7, grammar=grammar, repeat_penalty=1.0), GreedyGrammarSampler)
    assert not isinstance(llm._init_sampler(temp=0.0, grammar=None, repeat_penalty=1.0), GreedyGrammarSampler)
    assert not isinstance(llm._init_sampler(temp=0.0, grammar=grammar, repeat_penalty=1.1), GreedyGrammarSampler)
