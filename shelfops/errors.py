"""One exception tree for all of shelfops.

Every error carries a stable ``code`` (for logs, JSON reports and the HTTP API) and the
HTTP status the API answers it with. Catch :class:`ShelfopsError` to catch them all.

::

    ShelfopsError                      shelfops_error         500
    ├── ConfigError                    config_invalid         400   (all problems at once)
    ├── DataError                      data_error             422
    │   ├── SourceReadError            source_unreadable      422   (names the file)
    │   ├── SchemaError                schema_mismatch        422   (names the column)
    │   └── RejectRatioExceeded        reject_ratio_exceeded  422
    ├── ArtifactError                  artifact_error         500
    │   ├── ArtifactNotFound           artifact_not_found     404
    │   └── IntegrityError             integrity_mismatch     409
    ├── ModelError                     model_error            500
    ├── GateError                      gate_failed            409
    ├── RegistryError                  registry_error         409
    │   └── PromotionRefused           promotion_refused      409
    └── ServeError                     serve_error            500
        ├── BadRequest                 bad_request            400
        ├── Unauthorized               unauthorized           401
        └── Unavailable                unavailable            503
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ShelfopsError(Exception):
    """Base of every error shelfops raises on purpose."""

    code: str = "shelfops_error"
    http_status: int = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class ConfigError(ShelfopsError):
    """The configuration is invalid; ``problems`` lists every problem found, not just the first."""

    code = "config_invalid"
    http_status = 400

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} configuration problem(s){where}:\n{lines}",
            problems=self.problems,
        )


class DataError(ShelfopsError):
    code = "data_error"
    http_status = 422


class SourceReadError(DataError):
    """A source file cannot be read at all (missing, wrong format, not decodable)."""

    code = "source_unreadable"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"cannot read {path}: {problem}", path=str(path), problem=problem)
        self.path = str(path)


class SchemaError(DataError):
    code = "schema_mismatch"


class RejectRatioExceeded(DataError):
    """Too large a share of a table's rows was quarantined."""

    code = "reject_ratio_exceeded"


class ArtifactError(ShelfopsError):
    code = "artifact_error"


class ArtifactNotFound(ArtifactError):
    code = "artifact_not_found"
    http_status = 404


class IntegrityError(ArtifactError):
    """An artifact's content does not match the checksum recorded for it."""

    code = "integrity_mismatch"
    http_status = 409


class ModelError(ShelfopsError):
    code = "model_error"


class GateError(ShelfopsError):
    code = "gate_failed"
    http_status = 409


class RegistryError(ShelfopsError):
    code = "registry_error"
    http_status = 409


class PromotionRefused(RegistryError):
    code = "promotion_refused"


class ServeError(ShelfopsError):
    code = "serve_error"


class BadRequest(ServeError):
    code = "bad_request"
    http_status = 400


class Unauthorized(ServeError):
    code = "unauthorized"
    http_status = 401


class Unavailable(ServeError):
    code = "unavailable"
    http_status = 503


class DependencyUnavailable(Unavailable):
    """A store the server depends on (Redis, the registry) did not answer in time; the message
    names it. Retry later: the server itself is up."""

    code = "dependency_unavailable"
