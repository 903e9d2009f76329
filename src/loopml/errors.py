"""One error hierarchy for loopml.

Every error says what went wrong, where, and how to fix it, and carries the HTTP
status and CLI exit code that the server and CLI map it to (by type, never by string)::

    LoopMLError                  (500, exit 1)
      + InputError               the user's data or arguments are wrong (400, exit 2)
      |   x ContractViolation    data breaks its contract, or a contract cannot be used
      |   x SpecError            a spec, contract or config file does not parse or validate
      |   x NotFound             a named dataset, version or object does not exist (404)
      |   x Conflict             the change collides with the current state (409)
      |   x UserCodeError        user code (a transform, a trainer) raised; names the step
      |   x GateFailed           a promotion's gates failed; lists each failing gate (409)
      + AccessDenied             the acting identity may not do this (403, exit 3)
      + StoreError               I/O failure or corruption in a store (500, exit 4)
          x IntegrityError       a stored object does not match its checksum
"""

from __future__ import annotations


class LoopMLError(Exception):
    """Base of every error loopml raises on purpose.

    Args:
        message: what went wrong, and where.
        hint: how to fix it; shown after the message.
    """

    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class InputError(LoopMLError):
    """The user's data, arguments or files are wrong; retrying unchanged will fail again."""

    http_status = 400
    exit_code = 2


class ContractViolation(InputError):
    """Data breaks its contract as a whole (for example too many quarantined rows)."""

    http_status = 422


class SpecError(InputError):
    """A spec, contract or config file does not parse or does not validate."""

    http_status = 422


class NotFound(InputError):
    """A named dataset, version, file or object does not exist."""

    http_status = 404


class Conflict(InputError):
    """The change collides with the current state, such as an existing name."""

    http_status = 409


class UserCodeError(InputError):
    """User code (a transform, a custom trainer) raised; the message names the step.

    The original exception is the ``__cause__``; ``LOOPML_DEBUG=1`` shows its traceback.
    """

    http_status = 422


class GateFailed(InputError):
    """A promotion was refused: the version fails one or more of the model's gates.

    Attributes:
        failures: one line per failing gate (what was measured, what the gate asks).
    """

    http_status = 409

    def __init__(self, message: str, failures: list[str], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failures = failures

    def __str__(self) -> str:
        lines = [super().__str__(), *(f"  - {line}" for line in self.failures)]
        return "\n".join(lines)


class AccessDenied(LoopMLError):
    """The acting identity is not allowed to do this."""

    http_status = 403
    exit_code = 3


class StoreError(LoopMLError):
    """A store failed: I/O, an unreachable database, a corrupt object."""

    http_status = 500
    exit_code = 4


class IntegrityError(StoreError):
    """A stored object does not match the checksum it was committed with."""
