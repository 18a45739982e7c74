"""Deployment: bundles of artifacts, the torch-free runtime and wheels for a target platform."""
