"""Leaves: errors, paths and atomic writes, model families, config checking, text checks, versions.

Nothing here imports another roots_edge layer, torch or a runtime library."""
