"""Test doubles that speak real protocols (imported as ``fakes.*``: ``tests/`` is on sys.path)."""
