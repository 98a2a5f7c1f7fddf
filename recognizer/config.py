"""Service settings: one frozen object, built once from FACEREC_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from .access import Key, parse_keys, read_key_file
from .gallery import INDEX_ABOVE
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


def _model(text: str) -> str:
    if text not in MODELS:
        raise ValueError(f"expected one of {', '.join(MODELS)}")
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
    tolerance: float = 0.5
    ratio: float = 0.82
    jitters: int = 5
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
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    fetch_timeout: float = 10.0
    allow_private_networks: bool = False
    api_keys: tuple[Key, ...] = field(default=(), repr=False)
    rate_limit: float = 10.0
    rate_burst: int = 20
    index_above: int = INDEX_ABOVE  # people above which the gallery searches with faiss

    def __post_init__(self) -> None:
        checks: dict[str, tuple[bool, str]] = {
            "tolerance": (0 < self.tolerance <= 1, "must be > 0 and <= 1"),
            "ratio": (0 < self.ratio <= 1, "must be > 0 and <= 1"),
            "jitters": (1 <= self.jitters <= 100, "must be 1 to 100"),
            "enroll_jitters": (1 <= self.enroll_jitters <= 100, "must be 1 to 100"),
            "min_face_size": (self.min_face_size >= 0, "must be 0 or more pixels"),
            "min_sharpness": (self.min_sharpness >= 0, "must be 0 or more"),
            "max_yaw": (0 <= self.max_yaw <= 180, "must be 0 to 180 degrees"),
            "max_pitch": (0 <= self.max_pitch <= 180, "must be 0 to 180 degrees"),
            "max_roll": (0 <= self.max_roll <= 180, "must be 0 to 180 degrees"),
            "upsample": (0 <= self.upsample <= 2, "must be 0, 1 or 2"),
            "detect_max_side": (self.detect_max_side >= 160, "must be at least 160"),
            "max_faces": (1 <= self.max_faces <= 1000, "must be 1 to 1000"),
            "max_image_bytes": (self.max_image_bytes > 0, "must be positive"),
            "max_image_pixels": (self.max_image_pixels > 0, "must be positive"),
            "fetch_timeout": (0 < self.fetch_timeout <= 120, "must be > 0 and <= 120 seconds"),
            "rate_limit": (0 <= self.rate_limit <= 10_000, "must be 0 (off) to 10000 a second"),
            "rate_burst": (1 <= self.rate_burst <= 100_000, "must be 1 to 100000"),
            "index_above": (self.index_above >= 0, "must be 0 (always the index) or more"),
        }
        for name, (ok, message) in checks.items():
            if not ok:
                raise ConfigError(f"FACEREC_{name.upper()} {message}")
        _model(self.model)

    @property
    def quality_limits(self) -> QualityLimits:
        """The enrolment quality gate's limits."""
        return QualityLimits(self.min_face_size, self.min_sharpness, self.max_yaw,
                             self.max_pitch, self.max_roll)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """Build settings from FACEREC_* variables; unset ones keep their defaults.

        :raises ConfigError: a variable is set to something unusable
        """
        parsers: dict[str, Callable[[str], object]] = {
            "store": str, "known_faces_dir": Path, "tolerance": float, "ratio": float,
            "jitters": int, "enroll_jitters": int, "min_face_size": int, "min_sharpness": float,
            "max_yaw": float, "max_pitch": float, "max_roll": float, "model": _model,
            "upsample": int, "detect_max_side": int, "max_faces": int, "max_image_bytes": int,
            "max_image_pixels": int, "fetch_timeout": float, "allow_private_networks": _flag,
            "rate_limit": float, "rate_burst": int, "index_above": int,
        }
        values: dict[str, object] = {}
        for name, parse in parsers.items():
            raw = environ.get(f"FACEREC_{name.upper()}")
            if raw is None:
                continue
            try:
                values[name] = parse(raw)
            except ValueError as error:
                raise ConfigError(f"FACEREC_{name.upper()}={raw!r}: {error}") from None
        return cls(**values, api_keys=_api_keys(environ))
