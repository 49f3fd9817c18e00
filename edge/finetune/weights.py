"""The base model with its weights read into memory the model owns (no mmap).

``from_pretrained`` maps the safetensors file: every page a forward pass touches counts in the process's
resident set until the whole file is unmapped, which never happens while one tensor of it is alive. A
round reads the weights instead, tensor by tensor, straight into the parameters' own storage, so the
layers it stops needing (the frozen lower layers, once their output is cached) give their memory back.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from edge.model.runtime import quiet_libraries, transformers_api
from shared.errors import ModelSourceError

_HEADER_LIMIT = 100 << 20  # a safetensors JSON header larger than this is not a model we made


def load_causal_lm(hf_dir: Path) -> Any:
    """An fp32 causal LM from a prepared ``hf/`` directory (fp32 ``*.safetensors``), in eval mode."""
    import torch
    from transformers.modeling_utils import no_init_weights

    tf = transformers_api()
    with quiet_libraries():
        config = tf.AutoConfig.from_pretrained(str(hf_dir))
        with no_init_weights():  # storage allocated, never written: pages stay unmapped until read into
            model = tf.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    loaded: set[str] = set()
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise ModelSourceError(f"{hf_dir}: no *.safetensors weights")
    for path in files:
        loaded |= _read_into(path, tensors)
    model.tie_weights()
    missing = sorted({name for name, _ in model.named_parameters()} - loaded)
    if missing:
        raise ModelSourceError(f"{hf_dir}: weights missing for {missing[:4]}")
    return model.eval()


def _read_into(path: Path, tensors: dict[str, Any]) -> set[str]:
    """Copy every tensor of one safetensors file into the model tensor of the same name."""
    import torch

    loaded = set()
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        if size > _HEADER_LIMIT:
            raise ModelSourceError(f"{path}: safetensors header of {size} bytes")
        header = json.loads(fh.read(size))
        base = 8 + size
        for name, entry in header.items():
            if name == "__metadata__" or name not in tensors:
                continue
            target = tensors[name]
            begin, end = entry["data_offsets"]
            if entry["dtype"] != "F32" or list(entry["shape"]) != list(target.shape):
                raise ModelSourceError(
                    f"{path}: {name} is {entry['dtype']} {entry['shape']}, expected F32 {list(target.shape)}"
                )
            with torch.no_grad():
                view = target.data.numpy().reshape(-1).view("uint8")  # the parameter's own memory
                if end - begin != view.nbytes:
                    raise ModelSourceError(f"{path}: {name} holds {end - begin} bytes, expected {view.nbytes}")
                fh.seek(base + begin)
                if fh.readinto(memoryview(view)) != view.nbytes:
                    raise ModelSourceError(f"{path}: truncated at {name}")
            loaded.add(name)
    return loaded
