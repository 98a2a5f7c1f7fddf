"""Service settings: one frozen object, built once from FACEREC_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Mapping

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


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, with the defaults it runs on."""

    store: str = str(ROOT / "facerec.sqlite3")
    known_faces_dir: Path = ROOT / "known_faces"
    tolerance: float = 0.6
    model: str = "hog"
    upsample: int = 1
    detect_max_side: int = 1024
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    fetch_timeout: float = 10.0
    allow_private_networks: bool = False

    def __post_init__(self) -> None:
        checks: dict[str, tuple[bool, str]] = {
            "tolerance": (0 < self.tolerance <= 1, "must be > 0 and <= 1"),
            "upsample": (0 <= self.upsample <= 2, "must be 0, 1 or 2"),
            "detect_max_side": (self.detect_max_side >= 160, "must be at least 160"),
            "max_image_bytes": (self.max_image_bytes > 0, "must be positive"),
            "max_image_pixels": (self.max_image_pixels > 0, "must be positive"),
            "fetch_timeout": (0 < self.fetch_timeout <= 120, "must be > 0 and <= 120 seconds"),
        }
        for name, (ok, message) in checks.items():
            if not ok:
                raise ConfigError(f"FACEREC_{name.upper()} {message}")
        _model(self.model)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """Build settings from FACEREC_* variables; unset ones keep their defaults.

        :raises ConfigError: a variable is set to something unusable
        """
        parsers: dict[str, Callable[[str], object]] = {
            "store": str, "known_faces_dir": Path, "tolerance": float, "model": _model,
            "upsample": int, "detect_max_side": int, "max_image_bytes": int,
            "max_image_pixels": int, "fetch_timeout": float, "allow_private_networks": _flag,
        }
        values = {}
        for field in fields(cls):
            raw = environ.get(f"FACEREC_{field.name.upper()}")
            if raw is None:
                continue
            try:
                values[field.name] = parsers[field.name](raw)
            except ValueError as error:
                raise ConfigError(f"FACEREC_{field.name.upper()}={raw!r}: {error}") from None
        return cls(**values)
