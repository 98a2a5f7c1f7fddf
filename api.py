"""HTTP and CLI interface of the face-recognition service: parse, call recognizer, shape JSON.

Development: ``hug -f api.py``; production: ``gunicorn api:__hug_wsgi__``;
shell: ``hug -f api.py -c recognize photo.jpg``. Local paths are accepted only by CLI commands.
"""

import argparse
import dataclasses
import functools
import json
import logging
import re
import sys
import time
import wsgiref.simple_server
from pathlib import Path

import falcon
import hug
import yaml
from tqdm import tqdm

import recognizer
from recognizer import errors, uploads

log = logging.getLogger("facerec.api")
api = hug.API(__name__)
cli = hug.cli(output=hug.output_format.pretty_json)

_STATUS = {
    errors.InvalidParameter: falcon.HTTP_400,
    errors.UrlNotAllowed: falcon.HTTP_400,
    errors.FetchFailed: falcon.HTTP_400,
    errors.ImageTooLarge: falcon.HTTP_413,
    errors.UnsupportedImage: falcon.HTTP_415,
    errors.UnusableFace: falcon.HTTP_422,
    errors.UnknownPerson: falcon.HTTP_404,
    errors.UnknownFace: falcon.HTTP_404,
    errors.VideoUnavailable: falcon.HTTP_400,
    errors.Unauthorized: falcon.HTTP_401,
    errors.Forbidden: falcon.HTTP_403,
    errors.RateLimited: falcon.HTTP_429,
    errors.StoreUnavailable: falcon.HTTP_503,
}


@functools.lru_cache(maxsize=1)
def get_service():
    """Read the settings and open the store, once per process."""
    settings = recognizer.Settings.from_env()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s")
    service = recognizer.FaceService(settings)
    if service.gate.open:
        log.warning("no API keys are set (FACEREC_API_KEYS): the HTTP API is open to anyone")
    return service


@hug.startup()
def check_settings(api):
    """Fail at start-up, not at the first request, when a FACEREC_* variable is unusable."""
    get_service()


@hug.directive()
def face_service(default=None, **kwargs):
    """Inject the service; hug leaves directives out of CLI arguments."""
    return get_service()


# -- input types: hug validates and documents these for HTTP and the CLI alike ------------------


class InvalidValue(ValueError, argparse.ArgumentTypeError):
    """A bad value: hug's HTTP validation and argparse both print just this message."""


@hug.type(extend=hug.types.float_number)
def tolerance(value):
    """A distance above 0 and at most 1; lower is stricter"""
    if not 0 < value <= 1:
        raise InvalidValue("must be > 0 and <= 1")
    return value


@hug.type(extend=hug.types.text)
def person_name(value):
    """1-100 letters, digits, spaces and ._'- including a letter or digit"""
    try:
        return recognizer.check_name(value)
    except errors.InvalidParameter as error:
        raise InvalidValue(error.message) from None


def _whole_number(value, low, high):
    """Digits only (no sign, space, fraction or exponent), from low to high."""
    if not re.fullmatch(r"[0-9]{1,19}", value) or not low <= int(value) <= high:
        raise InvalidValue(f"must be a whole number from {low} to {high}")
    return int(value)


@hug.type(extend=hug.types.text)
def page_number(value):
    """A page of the list, from 1 to 1000000"""
    return _whole_number(value, 1, recognizer.service.MAX_PAGE)


@hug.type(extend=hug.types.text)
def page_size(value):
    """How many people a page lists, from 1 to 1000"""
    return _whole_number(value, 1, recognizer.service.MAX_PAGE_SIZE)


@hug.type(extend=hug.types.text)
def face_id_number(value):
    """A face's id, a whole number from 1"""
    return _whole_number(value, 1, recognizer.service.MAX_FACE_ID)


top_k = hug.types.in_range(1, 11)
model = hug.types.one_of(("hog", "cnn"))
upsample = hug.types.in_range(0, 3)


def _raw_image(body, content_length=0, **params):
    return {"image": uploads.read_raw(body, content_length, _max_bytes())}


def _multipart(body, content_length=0, **params):
    return uploads.read_multipart(body, params.get("boundary"), content_length, _max_bytes())


def _strict(parse):
    """A hug body parser whose malformed input is a 400, not an unexpected error."""

    def parse_or_refuse(body, **params):
        try:
            return parse(body, **params)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            raise errors.InvalidParameter("body", "malformed_body") from None

    return parse_or_refuse


# What each JSON body field must be: hug's types would turn true into 1.0 or 5 into "5".
_JSON_TYPES = {
    "image_url": (str,), "name": (str,), "model": (str,), "tolerance": (int, float),
    "top_k": (int,), "upsample": (int,), "largest_face": (bool,), "force": (bool,),
    "new_name": (str,),
}
_JSON_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number",
                    bool: "true or false"}


def _json_object(body, **params):
    """A JSON body: an object whose known fields have their JSON types."""
    fields = _strict(hug.input_format.json)(body, **params)
    if not isinstance(fields, dict):
        raise errors.InvalidParameter("body", "malformed_body")
    for name, allowed in _JSON_TYPES.items():
        if name in fields and type(fields[name]) not in allowed:
            raise errors.InvalidParameter(name, f"must be {_JSON_TYPE_NAMES[allowed[-1]]}")
    return fields


def _max_bytes():
    return get_service().settings.max_image_bytes


class BodyFormats(dict):
    """hug finds a body parser by exact content type; send every image/* type to the raw reader."""

    def get(self, content_type, default=None):
        if content_type and content_type.startswith("image/"):
            return _raw_image
        return super().get(content_type, default)


BODY = BodyFormats({
    "multipart/form-data": _multipart,
    "application/json": _json_object,
    "application/x-www-form-urlencoded": _strict(hug.input_format.urlencoded),
})


class OnlyTheseBodies(dict):
    """Body parsers by content type, with no fallback to hug's defaults: other bodies are
    ignored."""

    def get(self, content_type, default=None):
        return super().get(content_type)


def _path_kept(parse):
    """A body parser refusing a body that names the person: hug would let it replace the
    path's name."""

    def parse_and_check(body, **params):
        fields = parse(body, **params)
        if isinstance(fields, dict) and "name" in fields:
            raise errors.InvalidParameter("name", "only_in_path")
        return fields

    return parse_and_check


RENAME_BODY = OnlyTheseBodies({
    "application/json": _path_kept(_json_object),
    "application/x-www-form-urlencoded": _path_kept(_strict(hug.input_format.urlencoded)),
})


# -- HTTP endpoints --------------------------------------------------------------------------


@hug.http("/recognize", accept=("GET", "POST"), inputs=BODY)
def recognize(
    faces: face_service,
    image_url: hug.types.text = None,
    image=None,
    tolerance: tolerance = None,
    top_k: top_k = 3,
    model: model = None,
    upsample: upsample = None,
):
    """Find every face in an image (image_url, or an upload) and say who each one is."""
    picture = faces.picture_from_request(image_url, image)
    return _recognition(faces.recognize(picture, tolerance, top_k, model, upsample))


@hug.http("/enroll", accept=("GET", "POST"), inputs=BODY, status=falcon.HTTP_201)
def enroll(
    faces: face_service,
    name: person_name,
    image_url: hug.types.text = None,
    image=None,
    largest_face: hug.types.smart_boolean = False,
    force: hug.types.smart_boolean = False,
):
    """Add the one face in an image (image_url, or an upload) to a person."""
    picture = faces.picture_from_request(image_url, image)
    return dataclasses.asdict(faces.enroll(name, picture, largest_face, force))


@cli
@hug.get("/people", parse_body=False)
def people(faces: face_service, page: page_number = 1, size: page_size = 100):
    """List everyone enrolled, in name order, a page at a time, with their face counts."""
    return dataclasses.asdict(faces.people(page, size))


@cli.name("person")
@hug.get("/people/{name}", parse_body=False)
def person(name: person_name, faces: face_service):
    """One person: when they were enrolled, and each face's id, source and date."""
    return dataclasses.asdict(faces.person(name))


@cli.name("forget")
@hug.delete("/people/{name}", parse_body=False)
def forget(name: person_name, faces: face_service):
    """Delete a person and every face of theirs."""
    return {"name": name, "deleted_faces": faces.forget(name)}


@cli.name("forget-face")
@hug.delete("/people/{name}/faces/{face_id}", parse_body=False)
def forget_face(name: person_name, face_id: face_id_number, faces: face_service):
    """Delete one of a person's faces; the person is deleted with their last face."""
    return {"name": name, "deleted_face": face_id, "faces_left": faces.forget_face(name, face_id)}


@cli.name("rename")
@hug.post("/people/{name}/rename", inputs=RENAME_BODY)
def rename(name: person_name, new_name: person_name, faces: face_service):
    """Rename a person; to a name somebody already has, the two become one person (a merge)."""
    return dataclasses.asdict(faces.rename(name, new_name))


@hug.get("/health")
def health(faces: face_service):
    """Liveness, and how many people and faces are enrolled."""
    return faces.health()


@hug.get("/openapi.json")
def openapi():
    """This API's OpenAPI 3 description (openapi.yaml), open to everyone like /health."""
    return _openapi_document()


def _methods_of(path):
    """The methods openapi.yaml lists for a path, and OPTIONS."""
    for template, operations in _openapi_document().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(template)), path):
            return sorted(method.upper() for method in operations if method != "parameters") + [
                "OPTIONS"]
    return ["OPTIONS"]


@functools.lru_cache(maxsize=1)
def _openapi_document():
    with open(Path(__file__).with_name("openapi.yaml"), encoding="utf-8") as spec:
        return yaml.safe_load(spec)


@hug.not_found()
def not_found():
    """Unknown routes get a JSON 404, not hug's generated list of endpoints."""
    return {"errors": {"path": "not_found"}}


# -- CLI commands: local paths are accepted here, and only here ----------------------------------


@cli.name("enroll")
def enroll_file(name: person_name, path: hug.types.text, faces: face_service,
                largest_face: hug.types.smart_boolean = False,
                force: hug.types.smart_boolean = False):
    """Add the face in a local image file to a person."""
    picture = faces.picture_from_path(path)
    return dataclasses.asdict(faces.enroll(name, picture, largest_face, force))


@cli.name("recognize")
def recognize_file(path: hug.types.text, faces: face_service, tolerance: tolerance = None,
                   top_k: top_k = 3, model: model = None, upsample: upsample = None):
    """Find every face in a local image file and say who each one is."""
    picture = faces.picture_from_path(path)
    return _recognition(faces.recognize(picture, tolerance, top_k, model, upsample))


@cli.name("build")
def build(faces: face_service, force: hug.types.smart_boolean = False,
          workers: hug.types.in_range(1, 65) = None, *directory):
    """Enrol every photo of a folder-per-person tree (DIR, known_faces/ by default) with
    WORKERS processes (one per core by default). Ctrl-C stops it and keeps what it recorded;
    the next build carries on from there."""
    if len(directory) > 1:
        raise errors.InvalidParameter("directory", "give at most one directory")
    bar = functools.partial(tqdm, desc="build", unit="file", file=sys.stderr)
    try:
        report = faces.build(*directory, force=force, progress=bar, workers=workers)
    except KeyboardInterrupt:
        sys.stderr.write(json.dumps({"errors": {"build": "interrupted"}}) + "\n")
        raise SystemExit(130) from None  # 128 + SIGINT, as the shell reports a Ctrl-C
    return {"files": report.files, "summary": report.summary(),
            "people": faces.health()["people"]}


@cli.name("watch")
def watch(source: hug.types.text, faces: face_service, output: hug.types.text = None,
          scale: hug.types.float_number = None, every: hug.types.in_range(1, 301) = None,
          tolerance: tolerance = None):
    """Recognise faces in a video file, webcam index (0) or stream URL: one JSON line per
    event (appear, change, leave), then a summary."""
    from recognizer import video

    for event in video.watch(faces, source, scale, every, tolerance, output):
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


@cli.name("import-encodings")
def import_encodings(file: hug.types.text, faces: face_service):
    """Add the faces of an .npz holding arrays names (N strings) and encodings (N x 128), as a
    face_recognition script saves them: all or none; a file imported before adds nothing."""
    return dataclasses.asdict(faces.import_encodings(file))


@cli.name("export-encodings")
def export_encodings(file: hug.types.text, faces: face_service):
    """Write every encoding, with its person's name, to an .npz that import-encodings reads
    (owner-only, replaced atomically)."""
    return dataclasses.asdict(faces.export_encodings(file))


def _recognition(result):
    return {"faces": [dataclasses.asdict(face) for face in result.faces],
            "image": {"width": result.width, "height": result.height}}


# -- errors, limits and logging: mapped once, here -------------------------------------------


@hug.exception(Exception, exclude=(falcon.HTTPError, falcon.HTTPStatus))
def handle_error(exception, response):
    """Domain errors get their status and hug's error body; anything else a bare 500."""
    if isinstance(exception, errors.RecognizerError):
        response.status = _STATUS.get(type(exception), falcon.HTTP_400)
        return exception.as_body()
    log.error("unexpected %s", type(exception).__name__, exc_info=exception)
    response.status = falcon.HTTP_500
    return {"errors": {"server": "internal_error"}}


@hug.request_middleware()
def guard(request, response):
    """Before anything is read: the API key, its scope and rate, then the body's size."""
    request.context["started"] = time.monotonic()
    try:
        get_service().gate.check(request.method, request.path, request.get_header("X-API-Key"),
                                 set(request.params), request.remote_addr or "-")
        if (request.content_length or 0) > _max_bytes() + uploads.FORM_OVERHEAD:
            raise errors.ImageTooLarge()
    except errors.RecognizerError as refused:
        response.status = _STATUS[type(refused)]
        response.content_type = "application/json; charset=utf-8"
        response.body = json.dumps(refused.as_body())
        if isinstance(refused, errors.RateLimited):
            response.set_header("Retry-After", str(refused.retry_after))
        response.complete = True


@hug.middleware_class()
class PathParametersStay:
    """hug lets a query parameter replace a path parameter of the same name, so that
    ``DELETE /people/alice?name=bob`` would delete bob: refuse such a request instead."""

    def process_resource(self, request, response, resource, params):
        """Before the endpoint runs: no path parameter may be given again in the query."""
        repeated = sorted(set(params) & set(request.params))
        if repeated:
            response.status = falcon.HTTP_400
            response.content_type = "application/json; charset=utf-8"
            response.body = json.dumps({"errors": {repeated[0]: "only_in_path"}})
            response.complete = True


@hug.response_middleware()
def harden(request, response, resource):
    """Every response: not cached, not sniffed; falcon's own 405 in the service's JSON shape."""
    response.set_header("Cache-Control", "no-store")
    response.set_header("X-Content-Type-Options", "nosniff")
    if response.status == falcon.HTTP_405 or request.method not in falcon.COMBINED_METHODS:
        response.status = falcon.HTTP_405
        response.content_type = "application/json; charset=utf-8"
        response.body = json.dumps({"errors": {"method": "method_not_allowed"}})
        if not response.get_header("Allow"):  # falcon names them, except for unknown methods
            response.set_header("Allow", ", ".join(_methods_of(request.path)))


@hug.response_middleware()
def log_request(request, response, resource):
    """One line per request: method, route, status, time. Never the query (it holds URLs)."""
    started = request.context.get("started", time.monotonic())
    log.info("%s %s %s %.0fms", request.method, request.uri_template or "-", response.status,
             (time.monotonic() - started) * 1000)


def _cli_excepthook(kind, error, trace):
    """On the command line, domain and configuration errors print as JSON, not a traceback."""
    if isinstance(error, errors.RecognizerError):
        sys.stderr.write(json.dumps(error.as_body()) + "\n")
    elif isinstance(error, recognizer.ConfigError):
        sys.stderr.write(json.dumps({"errors": {"config": str(error)}}) + "\n")
    else:
        sys.__excepthook__(kind, error, trace)


sys.excepthook = _cli_excepthook


def _log_without_query(handler, code="-", size="-"):
    """hug's development server (wsgiref) logs whole request lines; keep URLs out of logs."""
    handler.log_message('"%s %s" %s', handler.command, handler.path.split("?", 1)[0], code)


wsgiref.simple_server.WSGIRequestHandler.log_request = _log_without_query


def _accept_dashed_options():
    """hug names CLI options after parameters (--largest_face); accept --largest-face too."""
    for command in api.cli.commands.values():
        for action in list(command.parser._actions):
            for option in list(action.option_strings):
                dashed = option[:2] + option[2:].replace("_", "-")
                if option.startswith("--") and dashed != option:
                    action.option_strings.append(dashed)
                    command.parser._option_string_actions[dashed] = action


_accept_dashed_options()
