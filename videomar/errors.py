"""Errors shared by every area. Messages name the field or file at fault and say how to fix it."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field (e.g. ``model.heads``)."""
