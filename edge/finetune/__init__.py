"""On-device fine-tuning: static facts -> one-way Q/A dataset -> LoRA -> eval gate -> ``.onnx_adapter``.

Entry point: :func:`edge.finetune.round.run_round` (or ``python -m edge.finetune.round --request F``).
Modules: ``dataset`` (pairs, tokens, batches), ``train`` (the torch + PEFT loop), ``evaluate``
(held-out accuracy on the ONNX serving engine, PEFT parity), ``round`` (one complete round).
"""
