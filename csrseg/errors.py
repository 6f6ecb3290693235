"""The base of every error csrseg raises on purpose: bad input, not a bug.

The CLI prints these as one line (``csrseg: error: ...``) instead of a traceback.
"""


class CsrsegError(Exception):
    """An error whose message names the file or value at fault."""


class ConfigError(CsrsegError, ValueError):
    """A config file, preset name or override that cannot be applied."""
