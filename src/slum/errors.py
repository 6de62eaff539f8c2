"""Errors that carry their HTTP status and CLI exit code.

The web layer turns a SlumError into `{"error": message}` with `status`; the CLI prints the message
as one line on stderr and exits with `exit_code`. Anything else is a bug and is reported as such.
"""

from __future__ import annotations


class SlumError(Exception):
    status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SlumError):
    status = 400
    exit_code = 2


class Unauthorized(SlumError):
    status = 401


class NotFound(SlumError):
    status = 404


class Conflict(SlumError):
    status = 409


class PayloadTooLarge(SlumError):
    status = 413


class Unavailable(SlumError):
    status = 503


class ConfigError(BadRequest):
    """tenement.toml (or a CLI argument standing in for it) is wrong; names file, line and key."""


class ServerUnreachable(SlumError):
    """The CLI could not talk to a running `slum serve`."""
