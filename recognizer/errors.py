"""Domain errors. Each names the input field at fault and a short machine-readable code.

The HTTP edge (api.py) maps each class to a status once; the CLI prints the same body.
"""


class RecognizerError(Exception):
    """Base class: something about the caller's input that the service refuses."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def as_body(self) -> dict:
        """The error in hug's own shape: ``{"errors": {field: message}}``."""
        return {"errors": {self.field: self.message}}


class InvalidParameter(RecognizerError):
    """A parameter is missing, malformed or out of range."""


class UrlNotAllowed(RecognizerError):
    """The URL is refused before any network access (scheme, userinfo, length, ...)."""

    def __init__(self, message: str = "url_not_allowed") -> None:
        super().__init__("image_url", message)


class FetchFailed(RecognizerError):
    """Any network outcome that yields no image: blocked address, DNS, refused, timeout, non-2xx.

    One code for all of them, so that callers cannot map the network behind the service.
    """

    def __init__(self) -> None:
        super().__init__("image_url", "image_fetch_failed")


class ImageTooLarge(RecognizerError):
    """The image is over the byte or pixel limit."""

    def __init__(self, field: str = "image") -> None:
        super().__init__(field, "image_too_large")


class UnsupportedImage(RecognizerError):
    """The bytes are not an image in a format the service decodes, or the image is truncated."""

    def __init__(self, message: str = "unsupported_image", field: str = "image") -> None:
        super().__init__(field, message)


class UnusableFace(RecognizerError):
    """The image cannot be enrolled: ``no_face``, ``multiple_faces``, or a face that fails the
    quality gate: ``small_face``, ``blurry``, ``extreme_pose``."""

    def __init__(self, message: str) -> None:
        super().__init__("image", message)


class UnknownPerson(RecognizerError):
    """No person of that name is enrolled."""

    def __init__(self, name: str) -> None:
        super().__init__("name", "unknown_person")
        self.name = name


class VideoUnavailable(RecognizerError):
    """A video source cannot be read: ``no_such_file``, ``not_a_video``, ``camera_unavailable``,
    ``stream_unavailable``, or an output that cannot be written (``output_unwritable``)."""

    def __init__(self, message: str, field: str = "source") -> None:
        super().__init__(field, message)


class Unauthorized(RecognizerError):
    """No valid API key: ``missing_api_key``, ``invalid_api_key``, or ``api_key_in_query`` (a key
    is only ever taken from the X-API-Key header: URLs end up in logs)."""

    def __init__(self, message: str) -> None:
        super().__init__("api_key", message)


class Forbidden(RecognizerError):
    """The API key is valid but its scope does not allow this endpoint."""

    def __init__(self) -> None:
        super().__init__("api_key", "insufficient_scope")


class RateLimited(RecognizerError):
    """Over the rate limit; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("rate", "rate_limited")
        self.retry_after = retry_after


class UnknownFace(RecognizerError):
    """The person has no face with that id."""

    def __init__(self) -> None:
        super().__init__("face_id", "unknown_face")


class StoreUnavailable(RecognizerError):
    """The store cannot be reached (a PostgreSQL server down or unreachable); nothing was
    changed, and the request can be retried."""

    def __init__(self) -> None:
        super().__init__("store", "store_unavailable")
