"""The taiwa command line."""
