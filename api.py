"""HTTP and CLI interface of the face-recognition service: the routes, and the status of each
domain error. Each route parses its input, makes one call to the service and returns its record.

Development: ``hug -f api.py``; production: ``gunicorn api:__hug_wsgi__``; shell:
``hug -f api.py -c recognize photo.jpg`` or ``facerec recognize photo.jpg``. Local paths are
accepted only by CLI commands.
"""

import functools
import json
import logging

import falcon
import hug

import recognizer
from recognizer import errors, sessions
from recognizer.build import progress_bar
from recognizer.streams import live
from recognizer.web import cli as commands
from recognizer.web import compat, documents, inputs, requestlog
from recognizer.web.devserver import keep_queries_out_of_request_logs
from recognizer.web.middleware import Edge, error_headers
from recognizer.web.routes import Routes
from recognizer.web.scopes import Scopes

log = logging.getLogger("facerec.api")
api = hug.API(__name__)
cli = commands.Commands(output=hug.output_format.pretty_json)
routes = Routes()

STATUS = {
    errors.InvalidParameter: falcon.HTTP_400,
    errors.HostNotAllowed: falcon.HTTP_400,
    errors.UrlNotAllowed: falcon.HTTP_400,
    errors.FetchFailed: falcon.HTTP_400,
    errors.ImageTooLarge: falcon.HTTP_413,
    errors.UnsupportedMediaType: falcon.HTTP_415,
    errors.UnsupportedImage: falcon.HTTP_415,
    errors.UnsupportedVideo: falcon.HTTP_415,
    errors.VideoTooLarge: falcon.HTTP_413,
    errors.VideoTooComplex: falcon.HTTP_422,
    errors.UnusableFace: falcon.HTTP_422,
    errors.ImageTooComplex: falcon.HTTP_422,
    errors.TooMuchWork: falcon.HTTP_422,
    errors.NameConflict: falcon.HTTP_409,
    errors.UnknownPerson: falcon.HTTP_404,
    errors.UnknownFace: falcon.HTTP_404,
    errors.UnknownStream: falcon.HTTP_404,
    errors.UnknownWebhook: falcon.HTTP_404,
    errors.UnknownEvent: falcon.HTTP_404,
    errors.NameTaken: falcon.HTTP_409,
    errors.DestinationNotAllowed: falcon.HTTP_400,
    errors.StreamElsewhere: "421 Misdirected Request",
    errors.UnknownSession: falcon.HTTP_404,
    errors.SessionElsewhere: "421 Misdirected Request",
    errors.SessionBusy: falcon.HTTP_409,
    errors.TooManySessions: falcon.HTTP_503,
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
    requestlog.configure(settings.log_format)
    return recognizer.FaceService(settings)


@hug.directive()
def injected(default=None, **kwargs):
    """Inject the service; hug leaves directives out of CLI arguments."""
    return get_service()


@hug.directive()
def scope_of_key(default=None, request=None, **kwargs):
    """Inject what the request's key may do (see Gate.scope_of)."""
    return get_service().gate.scope_of(None if request is None
                                       else request.get_header("X-API-Key"))


def _settings():
    return get_service().settings


scope = Scopes(lambda: get_service().gate, lambda: _settings().cors_origins,
               lambda: _settings().trusted_proxy)
IMAGES = inputs.image_bodies(lambda: _settings().max_image_bytes)
# Routes whose fields (a camera's password, a webhook's secret) must stay out of URLs
BODY_ONLY = frozenset({("POST", "/streams"), ("POST", "/webhooks")})
ENROLL_BODIES = inputs.image_bodies(lambda: _settings().max_image_bytes,
                                    max_video_bytes=lambda: _settings().max_video_bytes)
api.http.add_middleware(Edge(api, lambda error: STATUS.get(type(error), falcon.HTTP_400),
                             _settings, BODY_ONLY))
hug.startup(api=api)(keep_queries_out_of_request_logs)
hug.startup(api=api)(inputs.keep_commas_in_query_strings)


@hug.startup()
def check_settings(api):
    """Fail at start-up, not at the first request, when a FACEREC_* variable is unusable."""
    if getattr(api.http, "falcon", None) is not None and commands.running is None:
        start_serving()  # a server, not a command
    get_service()


def start_serving(recognises: bool = True):
    """Once a process: say what the server runs with, and load dlib's models now (unless it
    only serves live views and event feeds: scripts/serve's second listener)."""
    service = get_service()
    if not service.announced:
        service.announced = True
        log.info("%s", service.settings.summary())
        if service.gate.open:
            log.warning("no API keys are set (FACEREC_API_KEYS): the HTTP API is open to anyone")
        if recognises:
            service.warm_up()


def main():
    """``facerec <command>``: the CLI commands, without hug's runner."""
    commands.run(api)


# -- HTTP endpoints --------------------------------------------------------------------------


@routes.urls("/recognize", accept=("GET", "POST"), inputs=IMAGES, requires=scope.read)
def recognize(service: injected, image_url: inputs.text = None, image=None, image_base64=None,
              tolerance: inputs.tolerance = None, top_k: inputs.top_k = 3,
              model: inputs.model = None, upsample: inputs.upsample = None):
    """Find every face in an image and say who each one is."""
    picture = service.picture_from_request(image_url, image, image_base64)
    return service.recognize(picture, tolerance, top_k, model, upsample)


@routes.urls("/enroll", accept=("GET", "POST"), inputs=ENROLL_BODIES, status=falcon.HTTP_201,
             requires=scope.admin)
def enroll(service: injected, response, name: inputs.person_name,
           image_url: inputs.text = None, image=None, image_base64=None, video=None,
           largest_face: inputs.flag = False, force: inputs.flag = False,
           max_shots: inputs.max_shots = None):
    """Add the one face in an image, or up to max_shots frames of the one person in a short
    video, to a person; the same image or video again adds nothing (200)."""
    if video is None:
        picture = service.picture_from_request(image_url, image, image_base64)
        enrolled = service.enroll(name, picture, largest_face, force)
    else:
        clip = service.clip_from_request(video, image_url, image, image_base64)
        enrolled = service.enroll_clip(name, clip, max_shots, force)
    response.status = falcon.HTTP_200 if enrolled.duplicate else falcon.HTTP_201
    return enrolled


@routes.urls("/verify", accept=("GET", "POST"), inputs=IMAGES, requires=scope.read)
def verify(service: injected, image_url: inputs.text = None, image=None, image_base64=None,
           name: inputs.person_name = None, other_image_url: inputs.text = None,
           other_image=None, other_image_base64=None, largest_face: inputs.flag = False):
    """1:1: is the face in an image the person called name, or the face in another image?"""
    other = (None if (other_image_url, other_image, other_image_base64) == (None,) * 3 else
             service.picture_from_request(other_image_url, other_image, other_image_base64,
                                          prefix="other_"))
    picture = service.picture_from_request(image_url, image, image_base64)
    return service.verify(picture, other, name, largest_face)


@routes.urls("/detect", accept=("GET", "POST"), inputs=IMAGES, requires=scope.read)
def detect(service: injected, image_url: inputs.text = None, image=None, image_base64=None,
           model: inputs.model = None, upsample: inputs.upsample = None):
    """Every face's box, landmarks and quality, without looking anyone up."""
    picture = service.picture_from_request(image_url, image, image_base64)
    return service.detect(picture, model, upsample)


@cli
@routes.get("/people", parse_body=False, requires=scope.read)
def people(service: injected, page: inputs.page_number = 1, size: inputs.page_size = 100,
           search: inputs.text = None):
    """List everyone enrolled (or whose name contains SEARCH), in name order, a page at a time,
    with their face counts."""
    return service.people(page, size, search)


@cli.name("person")
@routes.get("/people/{name}", parse_body=False, requires=scope.read)
def person(name: inputs.person_name, service: injected):
    """One person: when they were enrolled, and each face's id, source and date."""
    return service.person(name)


@cli.name("forget")
@routes.delete("/people/{name}", parse_body=False, requires=scope.admin)
def forget(name: inputs.person_name, service: injected):
    """Delete a person and every face of theirs."""
    return service.forget(name)


@cli.name("forget-face")
@routes.delete("/people/{name}/faces/{face_id}", parse_body=False, requires=scope.admin)
def forget_face(name: inputs.person_name, face_id: inputs.face_id, service: injected):
    """Delete one of a person's faces; the person is deleted with their last face."""
    return service.forget_face(name, face_id)


@cli.name("rename")
@routes.post("/people/{name}/rename", inputs=inputs.RENAME_BODIES, requires=scope.admin)
def rename(name: inputs.person_name, new_name: inputs.person_name, service: injected):
    """Rename a person; to a name somebody already has, the two become one person (a merge)."""
    return service.rename(name, new_name)


# -- live video: streams, events, presence, webhooks ---------------------------------------


@routes.post("/streams", inputs=inputs.FORM_BODIES, status=falcon.HTTP_201, requires=scope.admin)
def add_stream(service: injected, name: inputs.stream_name, source: inputs.text,
               every: inputs.video_every = None, scale: inputs.video_scale = None,
               tolerance: inputs.tolerance = None):
    """Attach a camera (rtsp://, http(s):// MJPEG or video, or a local camera's index); a
    stream runner starts it within seconds."""
    return service.live.add_stream(name, source, every, scale, tolerance)


@routes.get("/streams", parse_body=False, requires=scope.read)
def streams(service: injected):
    """Every stream, with its live status."""
    return service.live.streams()


@routes.get("/streams/{stream_id}", parse_body=False, requires=scope.read)
def stream(stream_id: inputs.stream_id, service: injected):
    """One stream, with its live status: running, fps, last frame, reconnects, last error."""
    return service.live.stream(stream_id)


@routes.delete("/streams/{stream_id}", parse_body=False, requires=scope.admin)
def delete_stream(stream_id: inputs.stream_id, service: injected):
    """Stop a stream and delete it, with its events."""
    return service.live.delete_stream(stream_id)


@routes.get("/streams/{stream_id}/live", parse_body=False, requires=scope.read,
            output=documents.as_is)
def live_view(stream_id: inputs.stream_id, service: injected, response,
              fps: inputs.live_fps = 10):
    """The stream's annotated frames as MJPEG (for an <img>), at most fps a second."""
    view = service.live.view(stream_id, fps)
    response.content_type = f"multipart/x-mixed-replace; boundary={live.BOUNDARY}"
    return view


@routes.get("/events", parse_body=False, requires=scope.read)
def events(service: injected, since_id: inputs.since_id = 0, stream: inputs.stream_id = None,
           person: inputs.person_name = None, unknown: inputs.flag = False,
           limit: inputs.event_limit = 100, newest: inputs.flag = False):
    """Events (appear, change, leave) after since_id, oldest first; or the newest first."""
    return service.live.events(since_id, stream, person, unknown, limit, newest)


@routes.get("/events/stream", parse_body=False, requires=scope.read, output=documents.as_is)
def event_stream(service: injected, request, response, since_id: inputs.since_id = None,
                 stream: inputs.stream_id = None, person: inputs.person_name = None,
                 unknown: inputs.flag = False):
    """Server-Sent Events: each event as it happens; resumes after Last-Event-ID."""
    feed = service.live.feed(request.get_header("Last-Event-ID"), since_id, stream, person,
                             unknown)
    response.content_type = "text/event-stream; charset=utf-8"
    response.set_header("X-Accel-Buffering", "no")
    return feed


@routes.get("/events/{event_id}/snapshot", parse_body=False, requires=scope.read,
            output=documents.as_is)
def event_snapshot(event_id: inputs.event_id, service: injected, response):
    """An unknown face's snapshot (with FACEREC_SNAPSHOTS=on), as JPEG."""
    jpeg = service.live.snapshot(event_id)
    response.content_type = "image/jpeg"
    return jpeg


@routes.get("/presence", parse_body=False, requires=scope.read)
def presence(service: injected):
    """Who is in view now, on which stream and since when; and when others were last seen."""
    return service.live.presence()


@routes.post("/webhooks", inputs=inputs.FORM_BODIES, status=falcon.HTTP_201,
             requires=scope.admin)
def add_webhook(service: injected, url: inputs.text, events: inputs.event_kinds = None,
                people: inputs.person_names = None, unknown: inputs.flag = True,
                secret: inputs.text = None):
    """POST every event of these kinds (and people) to a URL, signed with HMAC-SHA256."""
    return service.live.add_webhook(url, events, people, unknown, secret)


@routes.get("/webhooks", parse_body=False, requires=scope.read)
def webhooks(service: injected):
    """Every webhook, with how its deliveries go."""
    return service.live.webhooks()


@routes.get("/webhooks/{webhook_id}", parse_body=False, requires=scope.read)
def webhook(webhook_id: inputs.webhook_id, service: injected):
    """One webhook, with how its deliveries go."""
    return service.live.webhook(webhook_id)


@routes.delete("/webhooks/{webhook_id}", parse_body=False, requires=scope.admin)
def delete_webhook(webhook_id: inputs.webhook_id, service: injected):
    """Delete a webhook."""
    return service.live.delete_webhook(webhook_id)


@routes.get("/unknown", parse_body=False, requires=scope.read)
def unknown_faces(service: injected, limit: inputs.event_limit = 50):
    """Recent unknown faces from the streams, newest first, each with how often it was seen."""
    return service.live.unknown_faces(limit)


@routes.post("/events/{event_id}/enroll", inputs=inputs.FORM_BODIES, status=falcon.HTTP_201,
             requires=scope.admin)
def name_unknown(event_id: inputs.event_id, name: inputs.person_name, service: injected):
    """Who is this? Enrol an unknown face from its event; its next appearance is named."""
    return service.live.name_unknown(event_id, name)


@routes.post("/events/{event_id}/not", parse_body=False, requires=scope.admin)
def not_them(event_id: inputs.event_id, service: injected):
    """Not X: take a wrong name back from an event (and the face behind it, if it came from
    "who is this?")."""
    return service.live.correct(event_id)


# -- webcam sessions: a browser's frames, tracked (the web app's live page) ---------------------


@routes.post("/sessions", parse_body=False, status=falcon.HTTP_201, requires=scope.read)
def open_session(service: injected):
    """Open a webcam session: then POST its frames, one at a time."""
    return service.sessions.open()


@routes.post("/sessions/{session_id}/frames", inputs=IMAGES, requires=scope.frames)
def session_frame(session_id: inputs.session_id, service: injected, image=None,
                  image_base64=None):
    """The faces in view after this frame (a JPEG), tracked and named."""
    picture = service.picture_from_request(None, image, image_base64)
    return service.sessions.frame(session_id, picture)


@routes.delete("/sessions/{session_id}", parse_body=False, requires=scope.read)
def close_session(session_id: inputs.session_id, service: injected):
    """Close a webcam session."""
    return service.sessions.close(session_id)


@routes.post("/sessions/{session_id}/tracks/{track}/enroll", inputs=inputs.FORM_BODIES,
             status=falcon.HTTP_201, requires=scope.admin)
def name_track(session_id: inputs.session_id, track: inputs.track_id,
               name: inputs.person_name, service: injected):
    """Who is this? Enrol a face in view of a webcam session from its tracked encodings."""
    encoding = service.sessions.encoding(session_id, track)
    return service.enroll_encoding(name, encoding, sessions.face_source(session_id))


@routes.get("/access", parse_body=False, requires=scope.read)
def access(caller: scope_of_key):
    """What the key sent may do: admin, read, or open (no keys configured)."""
    return {"scope": caller}


# -- the web app -------------------------------------------------------------------------------


@routes.get("/favicon.ico", parse_body=False, requires=scope.open, output=documents.as_is)
def favicon(response):
    """The app's icon, where browsers look for one."""
    return app(response, "icon.svg")


@routes.get(("/", "/app/{asset}"), parse_body=False, requires=scope.open, output=documents.as_is)
def app(response, asset: inputs.text = "index.html"):
    """The web app: recognise photos, the webcam and the cameras live, people, unknown faces."""
    found = documents.app_file(asset) or documents.NOT_FOUND
    response.status = falcon.HTTP_200 if found is not documents.NOT_FOUND else falcon.HTTP_404
    response.content_type = found[1]
    response.set_headers(documents.APP_HEADERS)
    return found[0]


@routes.get("/health", parse_body=False, requires=scope.open)
def health(service: injected):
    """Liveness; with no API keys set, also how many people and faces are enrolled."""
    return service.health(counts=service.gate.open)


@routes.get("/ready", parse_body=False, requires=scope.open)
def ready(service: injected, response):
    """Whether this process can recognise now: models loaded, store reachable (else 503)."""
    readiness = service.readiness()
    response.status = falcon.HTTP_200 if readiness.ready else falcon.HTTP_503
    return readiness


@routes.get("/metrics", parse_body=False, requires=scope.read, output=documents.as_is)
def metrics(service: injected, response):
    """Prometheus metrics of every process of this server (see docs/deployment.md)."""
    response.content_type = recognizer.metrics.CONTENT_TYPE
    return service.metrics()


@routes.get("/openapi.json", parse_body=False, requires=scope.open)
def openapi():
    """This API's OpenAPI 3 description."""
    return documents.openapi()


@routes.get("/openapi.yaml", parse_body=False, requires=scope.open,
            output=hug.output_format.text)
def openapi_yaml(response):
    """This API's OpenAPI 3 description, as written."""
    response.content_type = "application/yaml; charset=utf-8"
    return documents.openapi_text()


@routes.get(("/docs", "/docs/{asset}"), parse_body=False, requires=scope.open,
            output=documents.as_is)
def docs(response, asset: inputs.text = "index.html"):
    """Swagger UI over this description."""
    found = documents.asset(asset) or documents.NOT_FOUND
    response.status = falcon.HTTP_200 if found is not documents.NOT_FOUND else falcon.HTTP_404
    response.content_type = found[1]
    response.set_header("Content-Security-Policy", documents.CSP)
    return found[0]


compat.declare(api, scope, injected, lambda: _settings().max_image_bytes)  # CompreFace, DeepStack


@hug.not_found(requires=scope.read)
def not_found():
    """Unknown routes get a JSON 404, not hug's generated list of endpoints."""
    return {"errors": {"path": "not_found"}}


# -- CLI commands: local paths are accepted here, and only here ----------------------------------


@cli.name("enroll")
def enroll_file(name: inputs.person_name, path: inputs.text, service: injected,
                largest_face: inputs.flag = False, force: inputs.flag = False,
                max_shots: inputs.max_shots = None):
    """Add the face in a local image file, or up to MAX_SHOTS frames of the one person in a
    local video clip, to a person."""
    return service.enroll_path(name, path, largest_face, force, max_shots)


@cli.name("recognize")
def recognize_file(path: inputs.text, service: injected, tolerance: inputs.tolerance = None,
                   top_k: inputs.top_k = 3, model: inputs.model = None,
                   upsample: inputs.upsample = None):
    """Find every face in a local image file and say who each one is."""
    return service.recognize(service.picture_from_path(path), tolerance, top_k, model, upsample)


@cli.name("build")
def build(service: injected, force: inputs.flag = False, prune: inputs.flag = False,
          workers: inputs.build_workers = None, *directory):
    """Enrol every photo of a folder-per-person tree (DIR, known_faces/ by default) with
    WORKERS processes (one per core by default); --prune forgets faces whose files left the
    tree. Exits 3 when files were refused. Ctrl-C keeps what was recorded."""
    return service.build(*directory, force=force, prune=prune, workers=workers,
                         progress=progress_bar)


@cli.name("watch")
def watch(source: inputs.text, service: injected, output: inputs.text = None,
          scale: inputs.video_scale = None, every: inputs.video_every = None,
          tolerance: inputs.tolerance = None):
    """Recognise faces in a video file, webcam index (0) or stream URL: one JSON line per
    event (appear, change, leave), then a summary."""
    from recognizer import video

    for event in video.watch(service, source, scale, every, tolerance, output):
        print(json.dumps(event), flush=True)


@cli.name("streams")
def run_streams(service: injected):
    """Run the streams defined over HTTP (POST /streams), with the other runners of this
    store: until Ctrl-C or SIGTERM."""
    from recognizer.streams.runner import Runner

    return Runner(service).run()


@cli.name("import-encodings")
def import_encodings(file: inputs.text, service: injected):
    """Add the faces of an .npz of names (N strings) and encodings (N x 128), all or none."""
    return service.import_encodings(file)


@cli.name("export-encodings")
def export_encodings(file: inputs.text, service: injected):
    """Write every encoding, with its person's name, to an .npz (owner-only, atomically)."""
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
