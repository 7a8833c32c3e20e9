"""Helpers for tools/make_fixtures.py (reference-fixture generator; transformers is the truth)."""
