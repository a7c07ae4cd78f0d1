"""Flows: step-by-step tasks and slot filling."""
