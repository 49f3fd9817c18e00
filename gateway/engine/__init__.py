"""ONNX Runtime serving engine: one base model, a different LoRA adapter per batch row, no torch.

Modules: ``engine`` (Engine: graph + bank + tokenizer), ``generator`` (continuous batching:
add/step), ``bank`` (resident adapter slots), ``runtime`` (ORT session, EngineOptions),
``sampling``, ``kv`` (batch/KV bookkeeping), ``text`` (tokenizer, chat prompt).
"""

from gateway.engine.bank import AdapterBank
from gateway.engine.engine import Engine
from gateway.engine.generator import GenerationRequest, GenerationResult, Generator, TokenEvent
from gateway.engine.runtime import EngineOptions
from gateway.engine.sampling import SamplingParams
from gateway.engine.text import TextCodec, chat_prompt

__all__ = [
    "AdapterBank",
    "Engine",
    "EngineOptions",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "SamplingParams",
    "TextCodec",
    "TokenEvent",
    "chat_prompt",
]
