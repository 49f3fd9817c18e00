"""The serving engine: one base model graph, one adapter bank, one tokenizer (importable without torch).

Usage::

    engine = Engine(model_dir, EngineOptions(threads=2, slots=64))
    engine.bank.load(3, read_adapter(path, engine.spec))       # adapter -> slot 3
    gen = engine.generator()
    events = gen.add([GenerationRequest("r1", chat_prompt("Hi"), slot=3)])
    while len(gen):
        events = gen.step()                                      # rows may join between steps
    # or simply: engine.generate([...]) -> [GenerationResult, ...]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.engine.bank import AdapterBank
from gateway.engine.generator import GenerationRequest, GenerationResult, Generator
from gateway.engine.runtime import EngineOptions, OrtModel
from gateway.engine.text import TextCodec
from shared.errors import ModelError
from shared.modelspec import ModelSpec, load_spec


class Engine:
    def __init__(self, model_dir: Path, options: EngineOptions | None = None) -> None:
        options = options or EngineOptions()
        options.check()
        self.options = options
        self.spec: ModelSpec = load_spec(model_dir)
        self.model = OrtModel(model_dir / (options.onnx_file or self.spec.onnx_file), self.spec, options)
        self.bank = (
            AdapterBank(self.spec, options.slots, fixed_rank=self.model.static_rank)
            if self.model.has_lora
            else None
        )
        self.codec = TextCodec(model_dir / self.spec.tokenizer_file)
        self.eos_ids = frozenset(self.spec.eos_token_ids)

    def bank_values(self) -> Mapping[str, Any] | None:
        return self.bank.values if self.bank is not None else None

    def generator(self, *, keep_logits: bool = False) -> Generator:
        return Generator(self, keep_logits=keep_logits)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run ``requests`` as one batch to completion; results in request order."""
        gen = self.generator()
        done: dict[str, GenerationResult] = {}
        events = gen.add(requests)
        while True:
            done.update((e.request_id, e.result) for e in events if e.result is not None)
            if not len(gen):
                break
            events = gen.step()
        return [done[r.request_id] for r in requests]

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """Validated token ids of a request's prompt (ModelError on anything unusable)."""
        request.sampling.check()
        if request.max_new_tokens < 1:
            raise ModelError(f"{request.request_id}: max_new_tokens must be >= 1")
        n_slots = self.bank.slots if self.bank is not None else 1
        if not 0 <= request.slot < n_slots:
            raise ModelError(f"{request.request_id}: slot {request.slot} outside 0..{n_slots - 1}")
        ids = self.codec.encode(request.prompt) if isinstance(request.prompt, str) else list(request.prompt)
        if not ids:
            raise ModelError(f"{request.request_id}: empty prompt")
        if min(ids) < 0 or max(ids) >= self.spec.vocab:
            raise ModelError(f"{request.request_id}: token id outside the vocabulary of {self.spec.vocab}")
        return ids
