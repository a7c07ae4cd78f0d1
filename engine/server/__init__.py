"""The HTTP server (``taiwa run``): Sanic app, channels, API, auth, limits, metrics."""
