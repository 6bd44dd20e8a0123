"""The project's own error types.

Every problem a user can cause (a bad topology file, a bad flag, a bad data file, a
run that diverges) raises a `NeurolocalError`; the CLI prints its one-line message and
exits 2. Errors name parameters (`field="staleness"`), never flags: only the CLI maps a
parameter to the flag that sets it (neurolocal/cli.py, `PARAMETER_FLAGS`).
Anything else escaping is a bug in neurolocal.
"""

from __future__ import annotations

import re
from typing import Mapping

#: a message longer than this is cut: one line stays readable whatever value it quotes
MAX_DETAIL = 2000

#: how a message refers to a parameter (`param("resume")`): a private-use character on
#: each side of its name, never whitespace, so the one-line normalisation keeps it
_MARK = "\ue000"
_PARAMETER = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_.]*){_MARK}")


def param(name: str) -> str:
    """A parameter named inside an error's text: Python callers read it as `name`, the
    command line as the flag that sets it (neurolocal/cli.py maps one to the other)."""
    return f"{_MARK}{name}{_MARK}"


class NeurolocalError(Exception):
    """A user-facing error: one line naming where the problem is and what was expected."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        # one line, always: messages may quote a parser that wraps its own text
        self.detail = " ".join(str(message).split())
        if len(self.detail) > MAX_DETAIL:    # e.g. the repr of a hostile value
            self.detail = self.detail[:MAX_DETAIL] + " ..."
        super().__init__(self._format())

    def _format(self) -> str:
        return self.told()

    def told(self, flags: Mapping[str, str] | None = None,
             fields: Mapping[str, str] | None = None) -> str:
        """The one line, each parameter named with `param` told by `flags` (name -> flag)
        or else as `name`; a plain `field` found in `fields` is told by its flag too."""
        flags = flags or {}
        field = (fields or {}).get(self.field, self.field)
        prefix = ": ".join(p for p in (self.source, field) if p)
        text = f"{prefix}: {self.detail}" if prefix else self.detail
        return _PARAMETER.sub(lambda m: flags.get(m[1]) or f"`{m[1]}`", text)

    def located(self, source: str | None = None, field: str | None = None) -> "NeurolocalError":
        """The same error with a file and/or field filled in where it was missing."""
        return type(self)(
            self.detail,
            source=self.source or source,
            field=self.field or field,
        )


    def within(self, prefix: str) -> "NeurolocalError":
        """The same error with its field nested under `prefix` (e.g. vertices.h + units)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return type(self)(self.detail, source=self.source, field=field)


class TopologyError(NeurolocalError):
    """A graph or topology file that cannot be built: schema, shapes, cycles, ops."""


class ConfigError(NeurolocalError):
    """A setting (flag or training-section value) out of its allowed range."""


class DataError(NeurolocalError):
    """A data file that is missing, unreadable or of the wrong shape."""


class EngineError(NeurolocalError):
    """A distributed run that could not finish: an actor died or did not answer in time."""


class TrainingDiverged(NeurolocalError):
    """Training produced a non-finite loss, energy or parameter (issue 19): no setting was
    out of its range, the run blew up (try a smaller lr or eta). `field` names the
    algorithm (pc or bp); the CLI prints the one line and exits 2 like every other error."""
