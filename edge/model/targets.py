"""Map LoRA target names (``q_proj``) to the per-layer projections of a loaded torch model."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from edge.model.lora_graph import LoraSite
from shared.errors import ModelSourceError

_LAYER_PATH = re.compile(r"^(?P<prefix>.*\.)(?P<layer>\d+)\.(?P<rest>(?:.*\.)?)(?P<module>[^.]+)$")


def find_sites(model: Any, targets: Sequence[str], n_layers: int) -> tuple[list[LoraSite], dict[str, str]]:
    """One :class:`LoraSite` per (layer, target) and the module path template of each target.

    Every target must be an ``nn.Linear`` present exactly once in each of the ``n_layers`` decoder
    layers under the same path (e.g. ``model.layers.{layer}.self_attn.q_proj``); anything else is a
    ModelSourceError naming the projections that do exist.
    """
    import torch

    found: dict[str, dict[int, tuple[str, Any]]] = {t: {} for t in targets}
    linear_names: set[str] = set()
    for path, module in model.named_modules():
        match = _LAYER_PATH.match(path)
        if match is None:
            continue
        name = match.group("module")
        if isinstance(module, torch.nn.Linear):
            linear_names.add(name)
        if name in found:
            found[name][int(match.group("layer"))] = (path, module)
    sites: list[LoraSite] = []
    templates: dict[str, str] = {}
    for target in targets:
        per_layer = found[target]
        if sorted(per_layer) != list(range(n_layers)):
            available = sorted(linear_names)
            raise ModelSourceError(
                f"target {target!r} is not a projection in every layer; available: {available}"
            )
        for layer, (path, module) in sorted(per_layer.items()):
            if not isinstance(module, torch.nn.Linear):
                raise ModelSourceError(
                    f"target {path} is a {type(module).__name__}, only nn.Linear is supported"
                )
            template = re.sub(rf"\.{layer}\.", ".{layer}.", path, count=1)
            if templates.setdefault(target, template) != template:
                raise ModelSourceError(f"target {target!r} sits at different paths in different layers")
            sites.append(LoraSite(layer, target, path, module.in_features, module.out_features))
    return sites, templates
