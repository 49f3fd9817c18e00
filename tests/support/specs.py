"""A hand-built ModelSpec for tests that need real adapter artifacts but no model at all."""

from __future__ import annotations

from shared.modelspec import ModelSpec, Validation

FINGERPRINT = "f" * 64


def tiny_spec(fingerprint: str = FINGERPRINT) -> ModelSpec:
    """Two layers, hidden 8: an adapter is a few hundred floats, so every test writes real artifacts."""
    return ModelSpec(
        name="tiny", source="tiny", fingerprint=fingerprint, architecture="LlamaForCausalLM",
        model_type="llama", n_layers=2, n_heads=2, n_kv_heads=1, head_dim=4, hidden=8, vocab=32,
        eos_token_ids=(2,), bos_token_id=1, has_chat_template=False,
        targets={"q_proj": (8, 8), "v_proj": (8, 4)},
        module_paths={"q_proj": "model.layers.{layer}.self_attn.q_proj",
                      "v_proj": "model.layers.{layer}.self_attn.v_proj"},
        max_rank=4, bank_dtype="float32", input_names=("input_ids",), output_names=("logits",),
        validation=Validation(1e-3, 1e-4, 0.0, 0.0, 0.0, 0.0, 0.1), created="2026-01-01T00:00:00Z",
    )  # fmt: skip
