"""Serving a stage export: the Ray Serve HTTP application (online and /v1/batches) and the
offline ``generate`` job, sharing one generation engine."""
