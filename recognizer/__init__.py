"""Face recognition over face_recognition (dlib): decode, detect, encode, match, store.

The public API is re-exported here; ``faces`` (which loads dlib's models) is imported lazily.
"""

import logging

from .config import ConfigError, Settings
from .errors import (
    FetchFailed,
    ImageTooLarge,
    InvalidParameter,
    RecognizerError,
    UnknownPerson,
    UnsupportedImage,
    UnusableFace,
    UrlNotAllowed,
)
from .gallery import Gallery
from .matching import best_match
from .names import check_name
from .pictures import Picture
from .results import Enrolment, Recognition
from .service import FaceService
from .store import Store, open_store

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "ConfigError", "Enrolment", "FaceService", "FetchFailed", "Gallery", "ImageTooLarge",
    "InvalidParameter", "Picture", "Recognition", "RecognizerError", "Settings", "Store",
    "UnknownPerson", "UnsupportedImage", "UnusableFace", "UrlNotAllowed", "best_match",
    "check_name", "open_store",
]
