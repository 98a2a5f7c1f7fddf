"""Settings come from FACEREC_* variables, read once; bad values stop the service at start."""

from pathlib import Path

import pytest

from recognizer.config import ROOT, ConfigError, Settings
from recognizer.quality import QualityLimits


def test_defaults():
    settings = Settings.from_env({})
    assert settings.store == str(ROOT / "facerec.sqlite3")
    assert settings.tolerance == 0.5 and settings.ratio == 0.82 and settings.model == "hog"
    assert settings.jitters == 5 and settings.enroll_jitters == 10
    assert settings.quality_limits == QualityLimits()
    assert settings.max_image_bytes == 10 * 1024 * 1024
    assert settings.allow_private_networks is False


def test_every_variable_is_read():
    settings = Settings.from_env({
        "FACEREC_STORE": "/data/faces.sqlite3", "FACEREC_KNOWN_FACES_DIR": "/photos",
        "FACEREC_TOLERANCE": "0.5", "FACEREC_MODEL": "cnn", "FACEREC_UPSAMPLE": "0",
        "FACEREC_DETECT_MAX_SIDE": "800", "FACEREC_MAX_IMAGE_BYTES": "1000",
        "FACEREC_MAX_IMAGE_PIXELS": "2000", "FACEREC_FETCH_TIMEOUT": "3.5",
        "FACEREC_ALLOW_PRIVATE_NETWORKS": "yes", "FACEREC_RATIO": "0.9", "FACEREC_JITTERS": "1",
        "FACEREC_ENROLL_JITTERS": "3", "FACEREC_MIN_FACE_SIZE": "80",
        "FACEREC_MIN_SHARPNESS": "12.5", "FACEREC_MAX_YAW": "30", "FACEREC_MAX_PITCH": "20",
        "FACEREC_MAX_ROLL": "25", "UNRELATED": "x",
    })
    assert settings == Settings(
        store="/data/faces.sqlite3", known_faces_dir=Path("/photos"), tolerance=0.5, model="cnn",
        upsample=0, detect_max_side=800, max_image_bytes=1000, max_image_pixels=2000,
        fetch_timeout=3.5, allow_private_networks=True, ratio=0.9, jitters=1, enroll_jitters=3,
        min_face_size=80, min_sharpness=12.5, max_yaw=30, max_pitch=20, max_roll=25,
    )
    assert settings.quality_limits == QualityLimits(80, 12.5, 30, 20, 25)


@pytest.mark.parametrize("variable, value", [
    ("FACEREC_TOLERANCE", "0"), ("FACEREC_TOLERANCE", "1.1"), ("FACEREC_TOLERANCE", "high"),
    ("FACEREC_MODEL", "resnet"), ("FACEREC_UPSAMPLE", "3"), ("FACEREC_MAX_IMAGE_BYTES", "-1"),
    ("FACEREC_FETCH_TIMEOUT", "0"), ("FACEREC_ALLOW_PRIVATE_NETWORKS", "maybe"),
    ("FACEREC_DETECT_MAX_SIDE", "10"), ("FACEREC_MAX_FACES", "0"), ("FACEREC_RATIO", "0"), ("FACEREC_RATIO", "1.5"),
    ("FACEREC_JITTERS", "0"), ("FACEREC_ENROLL_JITTERS", "101"), ("FACEREC_MIN_FACE_SIZE", "-1"),
    ("FACEREC_MAX_YAW", "200"), ("FACEREC_MIN_SHARPNESS", "sharp"),
])
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})
