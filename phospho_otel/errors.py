"""Exceptions raised by phospho-otel: one tree.

::

    PhosphoError
    ├── ConfigurationError        an unusable init() argument or setting (also a ValueError)
    └── ServerError               answered to a client; carries its HTTP status and gRPC code
        ├── BadRequest            400  INVALID_ARGUMENT   a malformed parameter or body
        │   └── DecodeError       400  INVALID_ARGUMENT   a body that is not OTLP
        ├── Unauthorized          401  UNAUTHENTICATED    missing or wrong bearer token
        ├── Forbidden             403  PERMISSION_DENIED  a form without its CSRF token
        ├── NotFound              404  NOT_FOUND          an unknown id
        ├── PayloadTooLarge       413  RESOURCE_EXHAUSTED a body over the size limit
        ├── UnsupportedMediaType  415  INVALID_ARGUMENT   a Content-Type or -Encoding we do not read
        ├── StoreError            500  INTERNAL           the store failed; a retry cannot help
        └── Unavailable           503  UNAVAILABLE        retry later (``retry_after_s``)
            ├── Overloaded        503  UNAVAILABLE        the ingest queue is full
            ├── StoreClosed       503  UNAVAILABLE        the aggregator is shutting down
            └── StoreUnavailable  503  UNAVAILABLE        the store cannot write now (locked
                                                          by another process, disk full...)

A store says of each failure whether a retry can fix it (``store.api``): ``StoreError`` is
permanent (the same request would fail again: a value it cannot hold, a damaged file, a
bug), so receivers answer it as OTLP's non-retryable errors (HTTP 500, gRPC ``INTERNAL``)
and a collector does not send the same batch forever; ``StoreUnavailable`` is a condition
of its surroundings that passes (a lock, a full disk), answered as retryable. Opening a
store raises ``StoreError`` with one line saying what is wrong and what to do.

Bad arguments to the SDK's logging calls raise the builtin ``TypeError`` / ``ValueError``
at the call site; export problems are never raised into the app (they are logged and
counted, see ``phospho_otel.stats()``).

A ``ServerError`` is rendered once per protocol: the ``/api`` JSON body
(``phospho_otel.api.errors``), Jaeger's envelopes (``phospho_otel.api.jaeger``), OTLP's
``google.rpc.Status`` and gRPC status (``phospho_otel.receiver``). Any other exception
reaching a protocol boundary is a bug: logged, and answered as an internal error (OTLP
receivers answer it as retryable, so that nothing acknowledged is lost).
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ConfigurationError",
    "DecodeError",
    "Forbidden",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PhosphoError",
    "ServerError",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
]


class PhosphoError(Exception):
    """Root of every exception defined by phospho-otel."""


class ConfigurationError(PhosphoError, ValueError):
    """An unusable setting given to ``init()`` or the server (argument or variable)."""


class ServerError(PhosphoError):
    """An error answered to a client with ``status`` (HTTP) and ``grpc_code`` (the name
    of a ``grpc.StatusCode``) and a message saying what is wrong."""

    status: int = 500
    grpc_code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServerError, ValueError):
    """A malformed or out-of-range request parameter or body (400)."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"


class DecodeError(BadRequest):
    """A request body that is not a valid OTLP export request (400)."""


class Unauthorized(ServerError):
    """Missing or wrong bearer token (401)."""

    status = 401
    grpc_code = "UNAUTHENTICATED"


class Forbidden(ServerError):
    """A dashboard form without a valid CSRF token, or from another origin (403)."""

    status = 403
    grpc_code = "PERMISSION_DENIED"


class NotFound(ServerError):
    """An unknown session, user, task or trace id (404)."""

    status = 404
    grpc_code = "NOT_FOUND"


class PayloadTooLarge(ServerError):
    """A request body, as received or inflated, over the size limit (413)."""

    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(ServerError):
    """A ``Content-Type`` or ``Content-Encoding`` the receiver does not read (415)."""

    status = 415
    grpc_code = "INVALID_ARGUMENT"


class StoreError(ServerError):
    """The store failed in a way a retry cannot fix: a record it cannot hold, a damaged
    file, a failed integrity check, a file that cannot be opened or upgraded (one line
    saying what is wrong and what to do). Nothing of the failed write was kept. Answered
    500 / ``INTERNAL``: OTLP exporters do not retry it."""

    status = 500
    grpc_code = "INTERNAL"


class Unavailable(ServerError):
    """Try again after ``retry_after_s`` seconds (503 + ``Retry-After``, gRPC
    ``UNAVAILABLE`` + ``RetryInfo``): collectors retry, nothing is lost."""

    status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Overloaded(Unavailable):
    """The ingest queue is full: the writer is behind."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"ingest queue is full; retry in {retry_after_s:.0f} s", retry_after_s)


class StoreClosed(Unavailable):
    """The store or the ingest queue is closed (the aggregator is shutting down)."""

    def __init__(self, what: str = "store") -> None:
        super().__init__(f"not accepting data: the {what} is closed", 1.0)


class StoreUnavailable(Unavailable):
    """The store cannot write now, for a reason that passes without changing the request:
    its file is locked by another process, the disk is full, an I/O error. Nothing of the
    failed write was kept; retry after ``retry_after_s``."""
