"""A small OpenAI-compatible test server (see server.py) for the served-model tests."""
