"""Dialogue policies and their configuration."""
