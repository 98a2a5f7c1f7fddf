"""Service settings: one frozen object, built once from FACEREC_* environment variables. A
FACEREC_* variable the service does not know stops it, naming the closest one it does."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from . import limits
from .access import Key, parse_keys, read_key_file
from .gallery import INDEX_ABOVE
from .limits import Bound
from .networks import Networks
from .quality import QualityLimits

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("hog", "cnn")


class ConfigError(ValueError):
    """A FACEREC_* variable holds a value the service cannot use."""


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError("expected text or json")
    return text


def _model(text: str) -> str:
    if text not in MODELS:
        raise ValueError(f"expected one of {', '.join(MODELS)}")
    return text


def _origins(text: str) -> tuple[str, ...]:
    origins = tuple(entry.strip().rstrip("/") for entry in text.split(",") if entry.strip())
    for origin in origins:
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9a-fA-F:.]+\]"
                            r"(:[0-9]{1,5})?", origin):
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
    return origins


def _hosts(text: str) -> tuple[str, ...]:
    hosts = tuple(entry.strip().lower() for entry in text.split(",") if entry.strip())
    for host in hosts:
        if host != "*" and not re.fullmatch(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]", host):
            raise ValueError(f"{host!r} is not a host name, an address or *")
    return hosts


def _duration(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise ValueError("expected a duration: a number of seconds, or with s, m, h or d")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def _mqtt_url(text: str) -> str:
    if text and not re.fullmatch(r"mqtts?://[^/?#\s]+(:[0-9]{1,5})?/?", text):
        raise ValueError("expected mqtt://[user:password@]host[:port] or mqtts://...")
    return text


def _topic(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", text):
        raise ValueError("expected topic levels of letters, digits, _ . - separated by /")
    return text


def _api_keys(environ: Mapping[str, str]) -> tuple[Key, ...]:
    """Keys from FACEREC_API_KEYS and FACEREC_API_KEYS_FILE; errors never show a key."""
    keys: list[Key] = []
    for variable, read in (("FACEREC_API_KEYS", parse_keys),
                           ("FACEREC_API_KEYS_FILE", lambda path: read_key_file(Path(path)))):
        if environ.get(variable):
            try:
                keys += read(environ[variable])
            except ValueError as error:
                raise ConfigError(f"{variable}: {error}") from None
    if len({key.digest for key in keys}) != len(keys):
        raise ConfigError("FACEREC_API_KEYS and FACEREC_API_KEYS_FILE repeat a key")
    return tuple(keys)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, with the defaults it runs on."""

    store: str = str(ROOT / "facerec.sqlite3")
    known_faces_dir: Path = ROOT / "known_faces"
    tolerance: float = 0.55
    ratio: float = 0.8475
    jitters: int = 5
    # A face is encoded without jitter, and again with `jitters` only when its decision is
    # within this distance of a boundary (scripts/eval_jitters.py; 1: every face jittered)
    jitter_margin: float = 0.05
    enroll_jitters: int = 10
    min_face_size: int = QualityLimits.min_face_size
    min_sharpness: float = QualityLimits.min_sharpness
    max_yaw: float = QualityLimits.max_yaw
    max_pitch: float = QualityLimits.max_pitch
    max_roll: float = QualityLimits.max_roll
    model: str = "hog"
    upsample: int = 1
    detect_max_side: int = 640
    max_faces: int = 20
    request_threads: int = 2  # threads one recognition uses when its process has no other
    log_format: str = "text"  # or "json": one object a line
    max_image_bytes: int = 32 * 1024 * 1024  # a 50 MP phone photo is 15-30 MB
    max_image_pixels: int = 40_000_000
    max_video_bytes: int = 64 * 1024 * 1024  # an enrolment clip: 15 s of 1080p is 20-40 MB
    max_video_seconds: float = 15.0  # of a clip, read; the rest is ignored
    fetch_timeout: float = 10.0
    allow_private_networks: bool = False
    api_keys: tuple[Key, ...] = field(default=(), repr=False)
    rate_limit: float = 10.0
    rate_burst: int = 20
    auth_failures: int = 10  # failed authentications an address may make at once (0: no limit)
    index_above: int = INDEX_ABOVE  # people above which the gallery searches with faiss
    cors_origins: tuple[str, ...] = ()  # origins a browser page may call the API from
    # Host headers answered (DNS rebinding); "*" answers any. scripts/serve adds its HOST.
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    allow_cnn: bool = False  # dlib's CNN detector: 10-25 s and several GB a photo on a CPU
    max_detect_work: int = 640 * 640 * 16  # detection pixels x 4^upsample x model factor
    strict_names: bool = False  # a name that looks like another person's is refused (409)
    # Where the rate limit's buckets live, shared by the processes of a host: a file ("" for one
    # in shared memory named after the store; "memory" keeps them in each process)
    rate_state: str = ""
    trusted_proxy: bool = False  # behind scripts/serve's nginx: the client is X-Real-IP
    # Live video: where stream sources and webhook receivers may be (CIDRs and/or "public";
    # none by default), how long events are kept, and unknown faces' snapshots
    stream_networks: Networks = Networks(public=False)
    webhook_networks: Networks = Networks(public=False)
    event_retention: float = 7 * 86400.0
    snapshots: bool = False
    mqtt_url: str = field(default="", repr=False)  # mqtt[s]://[user:password@]host[:port]
    mqtt_topic: str = "facerec"  # the topics' first level

    def __post_init__(self) -> None:
        for name, (_, bound) in _VARIABLES.items():
            value = getattr(self, name)
            if bound is not None and value not in bound:
                raise ConfigError(f"FACEREC_{name.upper()} must be {bound.rule}")
        _model(self.model)

    @property
    def quality_limits(self) -> QualityLimits:
        """The enrolment quality gate's limits."""
        return QualityLimits(self.min_face_size, self.min_sharpness, self.max_yaw,
                             self.max_pitch, self.max_roll)

    @property
    def rate_state_path(self) -> str:
        """The file of the host's rate-limit buckets, or "" to keep them in each process."""
        if self.rate_state:
            return "" if self.rate_state == "memory" else self.rate_state
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        store = hashlib.sha256(self.store.encode()).hexdigest()[:16]
        return os.path.join(folder, f"facerec-rates-{os.getuid()}-{store}.sqlite3")

    @property
    def live_folder(self) -> str:
        """The folder where stream runners leave each stream's latest annotated frame for the
        server's live views: in shared memory, named after the store, owner-only."""
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        store = hashlib.sha256(self.store.encode()).hexdigest()[:16]
        return os.path.join(folder, f"facerec-live-{os.getuid()}-{store}")

    def summary(self) -> str:
        """One line for the start-up log: the store (its password hidden), the detection and
        decision settings, and whether keys are set. Never a key."""
        store = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", self.store)
        return (f"store {store}; detection {self.model}, upsample {self.upsample}, at most"
                f" {self.detect_max_side} px; tolerance {self.tolerance}, ratio {self.ratio};"
                f" {len(self.api_keys)} API keys" + ("" if self.api_keys else " (open)"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """Build settings from FACEREC_* variables; unset ones keep their defaults.

        :raises ConfigError: a variable is set to something unusable, or a FACEREC_* variable
            is not one the service knows (FACEREC_TEST_* are the test suite's)
        """
        known = {f"FACEREC_{name.upper()}" for name in _VARIABLES} | _KEY_VARIABLES
        for variable in sorted(environ):
            if (variable.startswith("FACEREC_") and variable not in known
                    and not variable.startswith("FACEREC_TEST_")):
                close = difflib.get_close_matches(variable, sorted(known), n=1)
                raise ConfigError(f"{variable} is not a setting"
                                  + (f": did you mean {close[0]}?" if close else ""))
        values: dict[str, object] = {}
        for name, (parse, _) in _VARIABLES.items():
            raw = environ.get(f"FACEREC_{name.upper()}")
            if raw is None:
                continue
            try:
                values[name] = parse(raw)
            except ValueError as error:
                raise ConfigError(f"FACEREC_{name.upper()}={raw!r}: {error}") from None
        return cls(**values, api_keys=_api_keys(environ))


# Each FACEREC_* variable (but the keys'): how its text is read, and the range it must be in.
_VARIABLES: dict[str, tuple[Callable[[str], object], Bound | None]] = {
    "store": (str, None),
    "known_faces_dir": (Path, None),
    "tolerance": (float, limits.TOLERANCE),
    "ratio": (float, limits.RATIO),
    "jitters": (int, limits.JITTERS),
    "jitter_margin": (float, limits.JITTER_MARGIN),
    "enroll_jitters": (int, limits.JITTERS),
    "min_face_size": (int, limits.FACE_SIZE),
    "min_sharpness": (float, limits.SHARPNESS),
    "max_yaw": (float, limits.ANGLE),
    "max_pitch": (float, limits.ANGLE),
    "max_roll": (float, limits.ANGLE),
    "model": (_model, None),
    "upsample": (int, limits.UPSAMPLE),
    "detect_max_side": (int, limits.DETECT_MAX_SIDE),
    "max_faces": (int, limits.MAX_FACES),
    "request_threads": (int, limits.REQUEST_THREADS),
    "log_format": (_log_format, None),
    "max_image_bytes": (int, limits.BYTES),
    "max_image_pixels": (int, limits.PIXELS),
    "max_video_bytes": (int, limits.BYTES),
    "max_video_seconds": (float, limits.VIDEO_SECONDS),
    "fetch_timeout": (float, limits.FETCH_TIMEOUT),
    "allow_private_networks": (_flag, None),
    "rate_limit": (float, limits.RATE_LIMIT),
    "rate_burst": (int, limits.RATE_BURST),
    "auth_failures": (int, limits.AUTH_FAILURES),
    "index_above": (int, limits.INDEX_ABOVE),
    "cors_origins": (_origins, None),
    "allowed_hosts": (_hosts, None),
    "allow_cnn": (_flag, None),
    "max_detect_work": (int, limits.DETECT_WORK),
    "strict_names": (_flag, None),
    "rate_state": (str, None),
    "trusted_proxy": (_flag, None),
    "stream_networks": (Networks.parse, None),
    "webhook_networks": (Networks.parse, None),
    "event_retention": (_duration, limits.RETENTION),
    "snapshots": (_flag, None),
    "mqtt_url": (_mqtt_url, None),
    "mqtt_topic": (_topic, None),
}
_KEY_VARIABLES = {"FACEREC_API_KEYS", "FACEREC_API_KEYS_FILE"}
