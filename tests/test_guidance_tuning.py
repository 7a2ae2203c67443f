"""Guidance readers trained through the model (``tune generated --method guidance-lora|guidance-verbalizer``): the
verbalizer starts as the model's own next-word choice, and what is written is read back by llama.cpp."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("peft")


@pytest.mark.slow  # Gemma 3 270M through transformers: the untrained verbalizer against the model's own logits
def test_the_verbalizer_head_starts_as_the_models_next_word_choice_among_the_kind_words():
    import torch

    from agent3d.guidance import NOTE
    from agent3d.guidance_corpus import generate
    from agent3d.tuning.reader import VERBALIZER, ReaderModel

    corpus = generate(12, seed=3)
    model = ReaderModel("gemma-3-270m", seed=0, verbalizer=VERBALIZER)
    model.probe_start(corpus, lambda text: None)
    texts = ["Report dents only.", "튀어나온 돌기만 불량입니다."]
    read = model.predict(texts)["kind"]
    words = [model.tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in VERBALIZER]
    with torch.no_grad():
        for text, probabilities in zip(texts, read):
            ids = model.tokenizer(NOTE.format(text), return_tensors="pt")
            logits = model.model(**ids).logits[0, -1, words]
            np.testing.assert_allclose(probabilities, torch.softmax(logits, dim=0).numpy(), atol=1e-4)


@pytest.mark.slow  # two steps of LoRA training, then llama.cpp reads with the written adapter
def test_a_verbalizer_reader_is_written_and_read_back_with_llama_cpp(tmp_path):
    from agent3d.guidance import GuidanceReader, read_spec
    from agent3d.tuning.reader import VERBALIZER, tune_reader

    record = tune_reader(tmp_path / "reader", n=24, verbalizer=VERBALIZER)
    assert (record["method"], record["pooling"], record["verbalizer"]) == ("guidance-verbalizer", "note, last token",
                                                                            list(VERBALIZER))
    assert 0.34 <= record["abstain_below"] <= 0.99 and record["corpus"]["train"] + record["corpus"][
        "held_apart_templates"] == 24
    reader = GuidanceReader(tmp_path / "reader")
    assert reader.adapter_.is_file() and not reader.arrays_["mean"].any() and reader.arrays_["coef"].shape[0] == 3
    spec = read_spec(reader, "Report dents only.")
    assert spec.reader == "reader" and sum(spec.probabilities.kind.values()) == pytest.approx(1.0)
