"""Base model preparation (torch side): sources, fingerprint, ONNX export with per-row LoRA, validation.

Entry point: :func:`edge.model.prepare.prepare_model`. Modules: ``sources`` (smollm2-135m GGUF,
tiny, local dirs), ``fingerprint`` (stdlib), ``export`` + ``lora_graph`` (optimum + onnx surgery),
``targets`` (LoRA target discovery), ``validate`` (ORT vs PyTorch/PEFT parity), ``runtime``.
"""
