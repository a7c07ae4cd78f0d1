"""Evaluation: score the NLU and the assistant on held-out data and golden sets."""
