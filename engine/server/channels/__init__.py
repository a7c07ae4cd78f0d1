"""Channels: one module per platform, each ``verify -> parse -> process -> reply``."""
