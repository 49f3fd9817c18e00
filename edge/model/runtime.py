"""Shared plumbing for the torch-side model code: silencing library noise, progress reporting."""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

# A progress callback gets one human-readable line per long step (the CLI prints it).
Progress = Callable[[str], None]

_NOISY_LOGGERS = ("transformers", "optimum", "peft", "torch.onnx", "huggingface_hub")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Mute third-party warnings and info logs for the duration (tracer warnings, deprecations).

    They are about the libraries' internals, not about our inputs, and the test suite turns
    warnings into errors; errors still propagate as exceptions.
    """
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    try:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def transformers_api() -> Any:
    """The ``transformers`` module, untyped: its partial annotations do not survive --strict."""
    return importlib.import_module("transformers")
