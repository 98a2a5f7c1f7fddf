"""HTTP and CLI interface of the face-recognition service: the routes, and the status of each
domain error. Each route parses its input, makes one call to the service and returns its record.

Development: ``hug -f api.py``; production: ``gunicorn api:__hug_wsgi__``; shell:
``hug -f api.py -c recognize photo.jpg``. Local paths are accepted only by CLI commands.
"""

import functools
import json
import logging
from pathlib import Path

import falcon
import hug
import yaml

import recognizer
from recognizer import errors
from recognizer.build import progress_bar
from recognizer.web import cli as commands
from recognizer.web import inputs
from recognizer.web.devserver import keep_queries_out_of_request_logs
from recognizer.web.middleware import Edge, error_headers
from recognizer.web.scopes import Scopes

log = logging.getLogger("facerec.api")
api = hug.API(__name__)
cli = commands.Commands(output=hug.output_format.pretty_json)

STATUS = {
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


@hug.directive()
def injected(default=None, **kwargs):
    """Inject the service; hug leaves directives out of CLI arguments."""
    return get_service()


def _max_bytes():
    return get_service().settings.max_image_bytes


scope = Scopes(lambda: get_service().gate)
IMAGE_BODIES = inputs.image_bodies(_max_bytes)
api.http.add_middleware(Edge(api, lambda error: STATUS.get(type(error), falcon.HTTP_400),
                             _max_bytes))
hug.startup(api=api)(keep_queries_out_of_request_logs)


@hug.startup()
def check_settings(api):
    """Fail at start-up, not at the first request, when a FACEREC_* variable is unusable."""
    get_service()


# -- HTTP endpoints --------------------------------------------------------------------------


@hug.http("/recognize", accept=("GET", "POST"), inputs=IMAGE_BODIES, requires=scope.read)
def recognize(service: injected, image_url: hug.types.text = None, image=None,
              tolerance: inputs.tolerance = None, top_k: inputs.top_k = 3,
              model: inputs.model = None, upsample: inputs.upsample = None):
    """Find every face in an image (image_url, or an upload) and say who each one is."""
    picture = service.picture_from_request(image_url, image)
    return service.recognize(picture, tolerance, top_k, model, upsample)


@hug.http("/enroll", accept=("GET", "POST"), inputs=IMAGE_BODIES, status=falcon.HTTP_201,
          requires=scope.admin)
def enroll(service: injected, name: inputs.person_name, image_url: hug.types.text = None,
           image=None, largest_face: hug.types.smart_boolean = False,
           force: hug.types.smart_boolean = False):
    """Add the one face in an image (image_url, or an upload) to a person."""
    picture = service.picture_from_request(image_url, image)
    return service.enroll(name, picture, largest_face, force)


@cli
@hug.get("/people", parse_body=False, requires=scope.read)
def people(service: injected, page: inputs.page_number = 1, size: inputs.page_size = 100):
    """List everyone enrolled, in name order, a page at a time, with their face counts."""
    return service.people(page, size)


@cli.name("person")
@hug.get("/people/{name}", parse_body=False, requires=scope.read)
def person(name: inputs.person_name, service: injected):
    """One person: when they were enrolled, and each face's id, source and date."""
    return service.person(name)


@cli.name("forget")
@hug.delete("/people/{name}", parse_body=False, requires=scope.admin)
def forget(name: inputs.person_name, service: injected):
    """Delete a person and every face of theirs."""
    return service.forget(name)


@cli.name("forget-face")
@hug.delete("/people/{name}/faces/{face_id}", parse_body=False, requires=scope.admin)
def forget_face(name: inputs.person_name, face_id: inputs.face_id, service: injected):
    """Delete one of a person's faces; the person is deleted with their last face."""
    return service.forget_face(name, face_id)


@cli.name("rename")
@hug.post("/people/{name}/rename", inputs=inputs.RENAME_BODIES, requires=scope.admin)
def rename(name: inputs.person_name, new_name: inputs.person_name, service: injected):
    """Rename a person; to a name somebody already has, the two become one person (a merge)."""
    return service.rename(name, new_name)


@hug.get("/health", requires=scope.open)
def health(service: injected):
    """Liveness, and how many people and faces are enrolled."""
    return service.health()


@hug.get("/openapi.json", requires=scope.open)
def openapi():
    """This API's OpenAPI 3 description (openapi.yaml)."""
    return _openapi_document()


@functools.lru_cache(maxsize=1)
def _openapi_document():
    with open(Path(__file__).with_name("openapi.yaml"), encoding="utf-8") as spec:
        return yaml.safe_load(spec)


@hug.not_found(requires=scope.read)
def not_found():
    """Unknown routes get a JSON 404, not hug's generated list of endpoints."""
    return {"errors": {"path": "not_found"}}


# -- CLI commands: local paths are accepted here, and only here ----------------------------------


@cli.name("enroll")
def enroll_file(name: inputs.person_name, path: hug.types.text, service: injected,
                largest_face: hug.types.smart_boolean = False,
                force: hug.types.smart_boolean = False):
    """Add the face in a local image file to a person."""
    return service.enroll(name, service.picture_from_path(path), largest_face, force)


@cli.name("recognize")
def recognize_file(path: hug.types.text, service: injected, tolerance: inputs.tolerance = None,
                   top_k: inputs.top_k = 3, model: inputs.model = None,
                   upsample: inputs.upsample = None):
    """Find every face in a local image file and say who each one is."""
    return service.recognize(service.picture_from_path(path), tolerance, top_k, model, upsample)


@cli.name("build")
def build(service: injected, force: hug.types.smart_boolean = False,
          workers: inputs.build_workers = None, *directory):
    """Enrol every photo of a folder-per-person tree (DIR, known_faces/ by default) with
    WORKERS processes (one per core by default). Ctrl-C stops it and keeps what it recorded;
    the next build carries on from there."""
    return service.build(*directory, force=force, workers=workers, progress=progress_bar)


@cli.name("watch")
def watch(source: hug.types.text, service: injected, output: hug.types.text = None,
          scale: inputs.video_scale = None, every: inputs.video_every = None,
          tolerance: inputs.tolerance = None):
    """Recognise faces in a video file, webcam index (0) or stream URL: one JSON line per
    event (appear, change, leave), then a summary."""
    from recognizer import video

    for event in video.watch(service, source, scale, every, tolerance, output):
        print(json.dumps(event), flush=True)


@cli.name("import-encodings")
def import_encodings(file: hug.types.text, service: injected):
    """Add the faces of an .npz holding arrays names (N strings) and encodings (N x 128), as a
    face_recognition script saves them: all or none; a file imported before adds nothing."""
    return service.import_encodings(file)


@cli.name("export-encodings")
def export_encodings(file: hug.types.text, service: injected):
    """Write every encoding, with its person's name, to an .npz that import-encodings reads
    (owner-only, replaced atomically)."""
    return service.export_encodings(file)


# -- errors: mapped once, here ------------------------------------------------------------------


@hug.exception(Exception, exclude=(falcon.HTTPError, falcon.HTTPStatus))
def handle_error(exception, response):
    """Domain errors get their status and hug's error body; anything else a bare 500."""
    if isinstance(exception, errors.RecognizerError):
        response.status = STATUS.get(type(exception), falcon.HTTP_400)
        for header, value in error_headers(exception).items():
            response.set_header(header, value)
        return exception.as_body()
    log.error("unexpected %s", type(exception).__name__, exc_info=exception)
    response.status = falcon.HTTP_500
    return {"errors": {"server": "internal_error"}}
