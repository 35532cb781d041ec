"""Errors shared by every area. Messages name the field or file at fault and say how to fix it.

Every bad input a user can give (a spec, a flag, a file, a dataset) raises a ``UserError``; the
command line prints its message as one line and exits 2, without a traceback.
"""


class UserError(ValueError):
    """Bad input from the user; the message names the field or path at fault."""


class ConfigError(UserError):
    """A configuration value is invalid; the message names the field (e.g. ``model.heads``)."""


class SpecError(UserError):
    """A job spec is invalid; the message names the file and the field at fault."""
