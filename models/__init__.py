"""Recipes (TOML) for the default models and example pipelines; installed as `roots_edge.models`."""
