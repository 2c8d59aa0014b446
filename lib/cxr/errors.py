"""Expected failures: one clear line for a person, an exit code, no traceback.

Every module raises :class:`CxrError` (or a subclass) for a failure a user can fix
(bad configuration, bad input, an unreachable store). The CLI turns it into one line
on stderr and its ``exit_code``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn


class CxrError(Exception):
    """A failure the user can act on. ``setting`` names the configuration key at fault."""

    exit_code = 1

    def __init__(self, message: str, *, setting: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.setting = setting
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:  # one line, names the setting when there is one
        if self.setting:
            return f"{self.setting}: {self.message}"
        return self.message


class ConfigError(CxrError):
    """A setting is wrong: unknown scheme, missing file, unreachable server, bad password."""

    exit_code = 2


class InputError(CxrError):
    """A file or argument given by the user is unusable (bad image, bad model file, ...)."""

    exit_code = 3


class IntegrityError(CxrError):
    """A verification failed (checksums, counts, watermark guard): nothing was changed."""

    exit_code = 4


def fail(exc: CxrError) -> NoReturn:
    """Print one line for an expected failure and exit with its code (the CLI and the Glue scripts)."""
    print(f"cxr: error: {exc}", file=sys.stderr)
    raise SystemExit(exc.exit_code) from None
