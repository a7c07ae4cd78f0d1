"""The dialogue engine: tracker state, response rendering, policies, flows, the turn loop."""
