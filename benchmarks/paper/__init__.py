"""``llmtwin bench paper``: the paper's case study (Table 2, Fig. 5-9) measured on this system.

Parts (each its own module):
    adapters   per-home adapters trained by the real edge pipeline (``python -m edge.finetune.round``
               child processes), cached in the work dir so a rerun resumes instead of retraining
    privacy    Table 2: normal-prompt accuracy, reverse-prompt attacker success, a likelihood attacker
               ranking candidate objects, canary exposure of the sensitive fields
    compute    Fig. 5-8 analogues: edge compute per update (LoRA round vs a FedAvg local full-weight
               round), server compute (adapter load vs FedAvg aggregation over n entities)
    comms      Fig. 9 analogue: bytes and time over simulated time for several λ and K
    figures    the PNGs for docs/results.md
    run        the orchestration, resumable phases and the JSON
"""
