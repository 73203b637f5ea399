"""Deployments: the record and its states, the queue, the worker and the build-and-run pipeline."""
