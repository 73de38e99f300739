"""Errors that end a request, each carrying its HTTP status."""


class CDSError(Exception):
    status = 500
    code = "exception"  # FHIR OperationOutcome issue type

    def __init__(self, message: str = "The service could not answer this request.") -> None:
        super().__init__(message)
        self.message = message


class InvalidHookRequest(CDSError):
    status = 400
    code = "invalid"


class Unauthorized(CDSError):
    """A bare 401 for the client; `reason` is for the log and the evaluation log only (never the token)."""

    status = 401
    code = "login"

    def __init__(self, message: str = "Unauthorized.", *, reason: str = "refused") -> None:
        super().__init__(message)
        self.reason = reason


class UnknownService(CDSError):
    status = 404
    code = "not-found"


class MethodNotAllowed(CDSError):
    status = 405
    code = "not-supported"


class FhirDataUnavailable(CDSError):
    """CDS Hooks 2.0: data the service needs was neither prefetched nor obtainable."""

    status = 412
    code = "incomplete"


class StoreUnavailable(CDSError):
    """The database does not answer: try again shortly (the answer carries Retry-After)."""

    status = 503
    code = "transient"
    retry_after_seconds = 5

    def __init__(self, message: str = "The store does not answer; try again shortly.") -> None:
        super().__init__(message)


class BodyTooLarge(CDSError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(CDSError):
    status = 415
    code = "not-supported"


class ConfigError(Exception):
    """A configuration file that cannot be used; lists every violation."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration {source}:\n{lines}")
