"""Domain errors. Each names the input field at fault, a stable machine-readable code and,
where it helps, a detail in words.

Every code a class can give is listed once, on the class (``codes``), and an error with any
other code cannot be made. The HTTP edge (api.py) maps each class to a status once, and the CLI
prints the same body: ``{"errors": {field: code}}``, plus ``{"detail": {field: detail}}``.
"""

from __future__ import annotations


class RecognizerError(Exception):
    """Base class: something about the caller's input that the service refuses."""

    codes: tuple[str, ...] = ()

    def __init__(self, field: str, message: str, detail: str | None = None) -> None:
        if message not in self.codes:
            raise ValueError(f"{type(self).__name__} has no code {message!r}")
        super().__init__(message if detail is None else f"{message}: {detail}")
        self.field = field
        self.message = message  # the code
        self.detail = detail

    def __reduce__(self):
        # the subclasses' own constructors take other arguments: rebuild from the attributes
        return _rebuild, (type(self), dict(self.__dict__))

    def as_body(self) -> dict:
        """The error in hug's own shape, ``{"errors": {field: code}}``, with its detail."""
        body: dict = {"errors": {self.field: self.message}}
        if self.detail is not None:
            body["detail"] = {self.field: self.detail}
        return body


class InvalidParameter(RecognizerError):
    """A parameter is missing, malformed or out of range."""

    codes = ("missing_parameter", "unknown_parameter", "repeated_parameter", "out_of_range",
             "wrong_type",
             "invalid_value", "invalid_name", "only_in_path", "only_in_body", "malformed_body",
             "malformed_multipart", "missing_image", "several_images", "not_an_image_upload",
             "not_a_video_upload",
             "invalid_base64", "no_such_file", "not_a_file", "unreadable", "not_a_directory",
             "one_directory_only",
             # an encodings file's (encodings_file.py)
             "not_a_npz", "missing_array", "unexpected_array", "pickled_arrays", "bad_dtype",
             "bad_shape", "length_mismatch", "empty", "too_large", "not_finite", "unwritable")


class UrlNotAllowed(RecognizerError):
    """The URL is refused before any network access (scheme, userinfo, length, ...)."""

    codes = ("url_not_allowed",)

    def __init__(self, message: str = "url_not_allowed") -> None:
        super().__init__("image_url", message)


class FetchFailed(RecognizerError):
    """Any network outcome that yields no image: blocked address, DNS, refused, timeout, non-2xx.

    One code for all of them, so that callers cannot map the network behind the service.
    """

    codes = ("image_fetch_failed",)

    def __init__(self) -> None:
        super().__init__("image_url", "image_fetch_failed")


class ImageTooLarge(RecognizerError):
    """The image is over the byte or pixel limit; the detail says which, and the limit."""

    codes = ("image_too_large",)

    def __init__(self, field: str = "image", detail: str | None = None) -> None:
        super().__init__(field, "image_too_large", detail)


class ImageTooComplex(RecognizerError):
    """Decoding the image would cost more than an image's budget: thousands of progressive
    JPEG scans, a huge canvas in a few bytes, more CPU time than allowed."""

    codes = ("image_too_complex",)

    def __init__(self, detail: str, field: str = "image") -> None:
        super().__init__(field, "image_too_complex", detail)


class VideoTooComplex(RecognizerError):
    """Decoding the clip would cost more than a clip's budget: CPU time, memory or time."""

    codes = ("video_too_complex",)

    def __init__(self, detail: str, field: str = "video") -> None:
        super().__init__(field, "video_too_complex", detail)


class TooMuchWork(RecognizerError):
    """The detection asked for (model, upsampling, image size) is over the work budget."""

    codes = ("too_much_work",)

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(field, "too_much_work", detail)


class NameConflict(RecognizerError):
    """The name looks like another person's (Unicode confusables), and names are strict."""

    codes = ("name_looks_like_another",)

    def __init__(self, field: str, other: str) -> None:
        super().__init__(field, "name_looks_like_another", f"looks like {other!r}")
        self.other = other


class HostNotAllowed(RecognizerError):
    """The request's Host header is not one the service answers to (DNS rebinding)."""

    codes = ("host_not_allowed",)

    def __init__(self) -> None:
        super().__init__("host", "host_not_allowed")


class UnsupportedMediaType(RecognizerError):
    """The request's body is of a type the route does not read; the detail names those it
    does."""

    codes = ("unsupported_media_type",)

    def __init__(self, accepted: str) -> None:
        super().__init__("body", "unsupported_media_type", f"send one of: {accepted}")


class UnsupportedImage(RecognizerError):
    """The bytes are not an image in a format the service decodes, or the image is truncated."""

    codes = ("unsupported_image", "image_truncated")

    def __init__(self, message: str = "unsupported_image", field: str = "image") -> None:
        super().__init__(field, message)


class UnsupportedVideo(RecognizerError):
    """The bytes are not a clip in a container and codec the service reads (MP4, QuickTime,
    WebM, Matroska), or no frame could be decoded from them."""

    codes = ("unsupported_video",)

    def __init__(self, field: str = "video") -> None:
        super().__init__(field, "unsupported_video")


class VideoTooLarge(RecognizerError):
    """The clip is over the byte limit; the detail says the limit."""

    codes = ("video_too_large",)

    def __init__(self, detail: str, field: str = "video") -> None:
        super().__init__(field, "video_too_large", detail)


# The quality gate's reasons (quality.py), in the order it gives them.
QUALITY_REASONS = ("small_face", "blurry", "extreme_pose")


class UnusableFace(RecognizerError):
    """The image cannot be enrolled: ``no_face``, ``multiple_faces``, or a face that fails the
    quality gate (one of QUALITY_REASONS); nor can a clip with ``multiple_people`` in it."""

    codes = ("no_face", "multiple_faces", "multiple_people", *QUALITY_REASONS)

    def __init__(self, message: str, field: str = "image") -> None:
        super().__init__(field, message)


class UnknownPerson(RecognizerError):
    """No person of that name is enrolled."""

    codes = ("unknown_person",)

    def __init__(self, name: str) -> None:
        super().__init__("name", "unknown_person")
        self.name = name


class UnknownFace(RecognizerError):
    """The person has no face with that id."""

    codes = ("unknown_face",)

    def __init__(self) -> None:
        super().__init__("face_id", "unknown_face")


class VideoUnavailable(RecognizerError):
    """A video source cannot be read, or an output cannot be written."""

    codes = ("no_such_file", "not_a_video", "camera_unavailable", "stream_unavailable",
             "output_unwritable")

    def __init__(self, message: str, field: str = "source", detail: str | None = None) -> None:
        super().__init__(field, message, detail)


class Unauthorized(RecognizerError):
    """No valid API key. A key is only ever taken from the X-API-Key header (URLs end up in
    logs), so one in the query is refused."""

    codes = ("missing_api_key", "invalid_api_key", "api_key_in_query")

    def __init__(self, message: str) -> None:
        super().__init__("api_key", message)


class Forbidden(RecognizerError):
    """The API key is valid but its scope does not allow this endpoint, or a browser was made
    to send a request that changes data from another site (``cross_site_request``)."""

    codes = ("insufficient_scope", "cross_site_request")

    def __init__(self, code: str = "insufficient_scope") -> None:
        super().__init__("api_key" if code == "insufficient_scope" else "origin", code)


class RateLimited(RecognizerError):
    """Over the rate limit; retry after ``retry_after`` seconds."""

    codes = ("rate_limited",)

    def __init__(self, retry_after: int) -> None:
        super().__init__("rate", "rate_limited")
        self.retry_after = retry_after


class StoreUnavailable(RecognizerError):
    """The store cannot be reached (a PostgreSQL server down or unreachable); nothing was
    changed, and the request can be retried."""

    codes = ("store_unavailable",)

    def __init__(self) -> None:
        super().__init__("store", "store_unavailable")


class NameTaken(RecognizerError):
    """Something of that name exists already (a stream)."""

    codes = ("name_taken",)

    def __init__(self, field: str = "name") -> None:
        super().__init__(field, "name_taken")


class DestinationNotAllowed(RecognizerError):
    """A stream source or webhook URL is malformed, or reaches an address outside the networks
    its setting lists; the detail says which setting. Checked again on every connection."""

    codes = ("destination_not_allowed", "invalid_destination")

    def __init__(self, field: str, message: str, detail: str) -> None:
        super().__init__(field, message, detail)


class UnknownStream(RecognizerError):
    """No stream has that id."""

    codes = ("unknown_stream",)

    def __init__(self) -> None:
        super().__init__("stream_id", "unknown_stream")


class UnknownWebhook(RecognizerError):
    """No webhook has that id."""

    codes = ("unknown_webhook",)

    def __init__(self) -> None:
        super().__init__("webhook_id", "unknown_webhook")


class UnknownEvent(RecognizerError):
    """No event has that id, or none of an unknown face with what was asked for (a
    snapshot)."""

    codes = ("unknown_event", "no_snapshot")

    def __init__(self, message: str = "unknown_event") -> None:
        super().__init__("event_id", message)


class StreamElsewhere(RecognizerError):
    """The stream runs on another host, whose frames this one does not have; the detail names
    it."""

    codes = ("stream_on_another_host", "stream_not_running")

    def __init__(self, message: str, detail: str) -> None:
        super().__init__("stream_id", message, detail)


class UnknownSession(RecognizerError):
    """No webcam session has that id here (closed, or idle too long), or it has no such track
    in view."""

    codes = ("unknown_session", "unknown_track")

    def __init__(self, message: str, detail: str) -> None:
        super().__init__("session_id" if message == "unknown_session" else "track", message,
                         detail)


class SessionElsewhere(RecognizerError):
    """The webcam session lives on another host; the detail names it."""

    codes = ("session_on_another_host",)

    def __init__(self, detail: str) -> None:
        super().__init__("session_id", "session_on_another_host", detail)


class SessionBusy(RecognizerError):
    """The session is still working on its previous frame: send one at a time."""

    codes = ("session_busy",)

    def __init__(self) -> None:
        super().__init__("session_id", "session_busy", "send one frame at a time")


class TooManySessions(RecognizerError):
    """As many webcam sessions are open as this process takes; retry after ``retry_after``
    seconds."""

    codes = ("too_many_sessions",)

    def __init__(self, most: int) -> None:
        super().__init__("session", "too_many_sessions", f"at most {most} at once")
        self.retry_after = 5


class WorkersFailed(RecognizerError):
    """Build's worker processes keep dying, whatever they are given."""

    codes = ("workers_keep_crashing",)

    def __init__(self) -> None:
        super().__init__("build", "workers_keep_crashing")


def _rebuild(kind: type[RecognizerError], attributes: dict) -> RecognizerError:
    """An error sent from another process (the image decoders), as it was."""
    error = kind.__new__(kind)
    detail = attributes.get("detail")
    Exception.__init__(error, attributes["message"] if detail is None
                       else f"{attributes['message']}: {detail}")
    error.__dict__.update(attributes)
    return error


def every_code() -> dict[str, type[RecognizerError]]:
    """Every code an error can carry, and its class."""
    found: dict[str, type[RecognizerError]] = {}
    classes = list(RecognizerError.__subclasses__())
    while classes:
        kind = classes.pop()
        found.update((code, kind) for code in kind.codes)
        classes += kind.__subclasses__()
    return found
