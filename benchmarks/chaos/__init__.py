"""``llmtwin bench chaos``: hostile input, auth, faults, load and leak scans against real processes, with counts."""
