"""The CompreFace- and DeepStack-compatible routes (docs/compreface.md, docs/deepstack.md): thin
adapters that read each API's parameters, make one call to the same service as every other
route, and answer in that API's JSON (``recognizer.compat``). Every error is the service's,
raised as anywhere else and reshaped into the API's error body at the edge (middleware). Each
route declares its scope; DeepStack's clients may send the key as the form field ``api_key``.

api.py adds the routes with :func:`declare`.
"""

import contextlib
import time
from typing import Callable, Iterator

import falcon
import hug

from .. import limits, timing
from ..compat import compreface, deepstack
from ..errors import InvalidParameter, RecognizerError, UnknownPerson, UnusableFace
from ..names import check_name
from . import inputs
from .routes import Routes
from .scopes import Scopes

RECOGNITION = "/api/v1/recognition"
SUBJECTS = RECOGNITION + "/subjects/{subject_name}"
FACE = "/v1/vision/face"
COMPREFACE_BODIES = ("multipart/form-data", "application/json")
DEEPSTACK_BODIES = ("multipart/form-data", "application/x-www-form-urlencoded")
FACE_PAGE_SIZE = 20  # CompreFace's default page of faces
IMAGE_GIVEN_AS = "a multipart file, or base64 text in a JSON body"


def declare(api: hug.API, scope: Scopes, injected: Callable, max_bytes: Callable[[], int]) -> None:
    """Add both surfaces' routes to the API, each with its scope and the service injected.

    :param injected: the API's directive that gives the service
    :param max_bytes: gives the largest image the service takes (read per request)
    """
    route = _Declare(api, injected)
    _compreface(route, scope, max_bytes)
    _deepstack(route, scope.with_form_key("api_key"), max_bytes)


def _compreface(route: "_Declare", scope: Scopes, max_bytes: Callable[[], int]) -> None:
    images = inputs.image_bodies(max_bytes, COMPREFACE_BODIES)
    subjects = inputs.image_bodies(max_bytes, inputs.FORM_TYPES)
    route.post(RECOGNITION + "/recognize", compreface_recognize, requires=scope.read,
               inputs=images)
    route.post(RECOGNITION + "/faces", compreface_add_face, requires=scope.admin, inputs=images,
               status=falcon.HTTP_201)
    route.get(RECOGNITION + "/faces", compreface_list_faces, requires=scope.read)
    route.delete(RECOGNITION + "/faces", compreface_delete_subject_faces, requires=scope.admin)
    route.delete(RECOGNITION + "/faces/{image_id}", compreface_delete_face,
                 requires=scope.admin)
    route.get(RECOGNITION + "/subjects", compreface_subjects, requires=scope.read)
    route.post(RECOGNITION + "/subjects", compreface_add_subject, requires=scope.admin,
               inputs=subjects, status=falcon.HTTP_201)
    route.put(SUBJECTS, compreface_rename_subject, requires=scope.admin, inputs=subjects)
    route.delete(SUBJECTS, compreface_delete_subject, requires=scope.admin)
    route.post("/api/v1/verification/verify", compreface_verify, requires=scope.read,
               inputs=images)
    route.post("/api/v1/detection/detect", compreface_detect, requires=scope.read,
               inputs=images)


def _deepstack(route: "_Declare", keyed: Scopes, max_bytes: Callable[[], int]) -> None:
    """DeepStack's routes: their scopes take the key from the form too (``keyed``), checked as
    soon as the body is read."""
    image = {"inputs": inputs.image_bodies(max_bytes, ("multipart/form-data",)),
             "validate": keyed.check_form_key}
    form = {"inputs": inputs.image_bodies(max_bytes, DEEPSTACK_BODIES),
            "validate": keyed.check_form_key}
    route.post(FACE, deepstack_detect, requires=keyed.read, **image)
    route.post(FACE + "/recognize", deepstack_recognize, requires=keyed.read, **image)
    route.post(FACE + "/register", deepstack_register, requires=keyed.admin, **image)
    route.post(FACE + "/list", deepstack_list, requires=keyed.read, **form)
    route.post(FACE + "/delete", deepstack_delete, requires=keyed.admin, **form)


class _Declare:
    """Routes on an API (``Routes``, the service's conventions) for functions that take the
    service as their ``service`` parameter."""

    def __init__(self, api: hug.API, injected: Callable) -> None:
        self.api, self.injected = api, injected

    def _add(self, method: str, path: str, function: Callable, **options) -> None:
        arguments = {**function.__annotations__, "service": self.injected}
        if method in ("get", "delete"):
            options.setdefault("parse_body", False)
        getattr(Routes(api=self.api), method)(path, args=arguments, **options)(function)

    def get(self, path: str, function: Callable, **options) -> None:
        self._add("get", path, function, **options)

    def post(self, path: str, function: Callable, **options) -> None:
        self._add("post", path, function, **options)

    def put(self, path: str, function: Callable, **options) -> None:
        self._add("put", path, function, **options)

    def delete(self, path: str, function: Callable, **options) -> None:
        self._add("delete", path, function, **options)


@contextlib.contextmanager
def _fields_named(names: dict[str, str]) -> Iterator[None]:
    """The service's errors within, naming the surface's fields instead of its own."""
    try:
        yield
    except RecognizerError as error:
        error.field = names.get(error.field, error.field)
        raise


def _picture(service, given: object, field: str):
    """The picture of an image given as a file (bytes) or base64 text, its errors naming the
    route's field."""
    if given is None:
        raise InvalidParameter(field, "missing_image", IMAGE_GIVEN_AS)
    with _fields_named({"image": field, "image_base64": field}), timing.stage("decode"):
        if isinstance(given, bytes):
            return service.picture_from_request(image=given)
        return service.picture_from_request(image_base64=given)


def _status(spent: dict[str, float], status: bool) -> dict | None:
    return compreface.execution_time(spent) if status else None


# -- CompreFace (compreface-sdk, Double Take) -----------------------------------------------------


def compreface_recognize(service, file=None, limit: inputs.face_limit = 0,
                         prediction_count: inputs.top_k = 1,
                         det_prob_threshold: inputs.probability = None,
                         face_plugins: inputs.plugin_names = (), status: inputs.flag = False):
    """Every face (the largest limit, 0 for all) and its prediction_count nearest subjects."""
    with timing.collect() as spent:
        record = service.recognize(_picture(service, file, "file"), top_k=prediction_count)
    if not record.faces:
        raise UnusableFace("no_face", "file")
    return compreface.answer(compreface.recognized(record, limit, _status(spent, status)),
                             service.settings.model if status else None, face_plugins)


def compreface_add_face(service, response, subject: inputs.person_name, file=None,
                        det_prob_threshold: inputs.probability = None):
    """Add the one face in an image to a subject (created if new)."""
    picture = _picture(service, file, "file")
    with _fields_named({"name": "subject", "image": "file"}):
        enrolled = service.enroll(subject, picture)
    response.status = falcon.HTTP_200 if enrolled.duplicate else falcon.HTTP_201
    return compreface.enrolled(enrolled)


def compreface_list_faces(service, page: inputs.zero_based_page = 0,
                          size: inputs.page_size = FACE_PAGE_SIZE,
                          subject: inputs.person_name = None):
    """One page (the first is 0) of the faces enrolled, everyone's or one subject's."""
    with _fields_named({"name": "subject"}):
        return compreface.faces_page(service.faces(page + 1, size, subject), page)


def compreface_delete_subject_faces(service, subject: inputs.person_name):
    """Delete every face of a subject (and so the subject)."""
    with _fields_named({"name": "subject"}):
        return {"deleted": service.forget(subject).deleted_faces}


def compreface_delete_face(service, image_id: inputs.face_id):
    """Delete one face; its subject goes with their last face."""
    with _fields_named({"face_id": "image_id"}):
        forgotten = service.forget_face_by_id(image_id)
    return {"image_id": str(image_id), "subject": forgotten.name}


def compreface_subjects(service):
    """Every subject with a face, in name order."""
    return {"subjects": _everyone(service)}


def _everyone(service) -> list[str]:
    """Every name enrolled, in name order, read a page of the service's at a time."""
    names, page, pages = [], 1, 1
    while page <= pages:
        listed = service.people(page, limits.PAGE_SIZE.high)
        names += [person.name for person in listed.people]
        page, pages = page + 1, listed.pages
    return names


def compreface_add_subject(service, response, subject: inputs.person_name):
    """Check a subject's name: a subject is kept once it has a face, so this stores nothing
    (201 for a subject with no face yet, 200 for one with faces)."""
    try:
        service.person(subject)
        response.status = falcon.HTTP_200
    except UnknownPerson:
        pass
    return {"subject": subject}


def compreface_rename_subject(service, subject_name: inputs.person_name,
                              subject: inputs.person_name = None, api_endpoint: inputs.text = None):
    """Rename a subject to subject (required, in the body or the query); to a name another
    subject has, the two become one (a merge). (compreface-sdk repeats the current name as
    api_endpoint: it is not read.)"""
    if subject is None:
        raise InvalidParameter("subject", "missing_parameter")
    with _fields_named({"name": "subject_name", "new_name": "subject"}):
        service.rename(subject_name, subject)
    return {"updated": True}


def compreface_delete_subject(service, subject_name: inputs.person_name):
    """Delete a subject and every face of theirs."""
    with _fields_named({"name": "subject_name"}):
        return {"subject": service.forget(subject_name).name}


def compreface_verify(service, source_image=None, target_image=None,
                      limit: inputs.face_limit = 0, det_prob_threshold: inputs.probability = None,
                      face_plugins: inputs.plugin_names = (), status: inputs.flag = False):
    """Whether the largest face of source_image is the largest face of target_image."""
    with timing.collect() as spent:
        source = _picture(service, source_image, "source_image")
        target = _picture(service, target_image, "target_image")
        with _fields_named({"image": "source_image", "other_image": "target_image"}):
            record = service.verify(source, target, largest_face=True)
    return compreface.answer(compreface.verified(record, _status(spent, status)),
                             service.settings.model if status else None, face_plugins)


def compreface_detect(service, file=None, limit: inputs.face_limit = 0,
                      det_prob_threshold: inputs.probability = None,
                      face_plugins: inputs.plugin_names = (), status: inputs.flag = False):
    """Every face's box (the largest limit, 0 for all), without looking anyone up."""
    with timing.collect() as spent:
        record = service.detect(_picture(service, file, "file"))
    if not record.faces:
        raise UnusableFace("no_face", "file")
    return compreface.answer(compreface.detected(record, limit, _status(spent, status)),
                             service.settings.model if status else None, face_plugins)


# -- DeepStack (deepstack-python, Home Assistant, Double Take) ------------------------------------
# Their parameters have no types: the key in the form is checked first (check_form_key), and a
# caller without one learns nothing about the rest of the request.


def _min_confidence(value: object) -> float:
    """DeepStack's min_confidence (0 when absent): a number from 0 to 1."""
    if value is None:
        return 0.0
    try:
        return float(limits.PROBABILITY.check("min_confidence", float(str(value))))
    except ValueError:
        raise InvalidParameter("min_confidence", "out_of_range", limits.PROBABILITY.rule) from None


def _userid(value: object) -> str:
    with _fields_named({"name": "userid"}):
        if value is None:
            raise InvalidParameter("name", "missing_parameter")
        return check_name(value)


def deepstack_detect(service, request, image=None, min_confidence=None, api_key=None):
    """Every face's box, without looking anyone up. (min_confidence is checked, and keeps
    every face: the detectors give no score, see deepstack.detected.)"""
    _min_confidence(min_confidence)
    started = time.monotonic()
    record = service.detect(_picture(service, image, "image"))
    return deepstack.detected(record, _elapsed(started))


def deepstack_recognize(service, request, image=None, min_confidence=None, api_key=None):
    """Every face, named (userid) or unknown."""
    minimum, started = _min_confidence(min_confidence), time.monotonic()
    record = service.recognize(_picture(service, image, "image"), top_k=1)
    return deepstack.recognized(record, minimum, _elapsed(started))


def deepstack_register(service, request, image=None, userid=None, min_confidence=None,
                       api_key=None):
    """Add the one face in an image to a userid (created if new). (deepstack-python sends
    min_confidence with every image: it is checked, and has nothing to decide here.)"""
    _min_confidence(min_confidence)
    name = _userid(userid)
    service.enroll(name, _picture(service, image, "image"))
    return deepstack.registered()


def deepstack_list(service, request, api_key=None):
    """Every userid with a face."""
    return deepstack.listed(_everyone(service))


def deepstack_delete(service, request, userid=None, api_key=None):
    """Delete a userid and every face of theirs."""
    with _fields_named({"name": "userid"}):
        service.forget(_userid(userid))
    return deepstack.deleted()


def _elapsed(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
