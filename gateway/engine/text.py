"""Text <-> token ids with a ``tokenizers.Tokenizer`` file (no transformers on the gateway)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shared.errors import ModelSourceError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"


class TextCodec:
    """Encodes prompts and decodes generated ids. Special tokens written as text (``<|im_start|>``)
    map to their ids; decoding drops special tokens."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for unreadable files
            raise ModelSourceError(f"{path}: cannot load the tokenizer: {exc}") from exc

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self._tok.encode(text, add_special_tokens=True).ids
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        text: str = self._tok.decode(list(ids), skip_special_tokens=True)
        return text

    @property
    def vocab_size(self) -> int:
        size: int = self._tok.get_vocab_size(with_added_tokens=True)
        return size


def chat_prompt(user: str, system: str | None = None) -> str:
    """A one-turn ChatML prompt as SmolLM2-Instruct expects, ending where the assistant answers."""
    head = f"{IM_START}system\n{system}{IM_END}\n" if system else ""
    return f"{head}{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"
