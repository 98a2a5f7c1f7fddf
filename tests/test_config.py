"""Settings come from FACEREC_* variables, read once; bad values stop the service at start."""

from pathlib import Path

import pytest

from recognizer.config import ROOT, ConfigError, Settings


def test_defaults():
    settings = Settings.from_env({})
    assert settings.store == str(ROOT / "facerec.sqlite3")
    assert settings.tolerance == 0.6 and settings.model == "hog"
    assert settings.max_image_bytes == 10 * 1024 * 1024
    assert settings.allow_private_networks is False


def test_every_variable_is_read():
    settings = Settings.from_env({
        "FACEREC_STORE": "/data/faces.sqlite3", "FACEREC_KNOWN_FACES_DIR": "/photos",
        "FACEREC_TOLERANCE": "0.5", "FACEREC_MODEL": "cnn", "FACEREC_UPSAMPLE": "0",
        "FACEREC_DETECT_MAX_SIDE": "800", "FACEREC_MAX_IMAGE_BYTES": "1000",
        "FACEREC_MAX_IMAGE_PIXELS": "2000", "FACEREC_FETCH_TIMEOUT": "3.5",
        "FACEREC_ALLOW_PRIVATE_NETWORKS": "yes", "UNRELATED": "x",
    })
    assert settings == Settings(
        store="/data/faces.sqlite3", known_faces_dir=Path("/photos"), tolerance=0.5, model="cnn",
        upsample=0, detect_max_side=800, max_image_bytes=1000, max_image_pixels=2000,
        fetch_timeout=3.5, allow_private_networks=True,
    )


@pytest.mark.parametrize("variable, value", [
    ("FACEREC_TOLERANCE", "0"), ("FACEREC_TOLERANCE", "1.1"), ("FACEREC_TOLERANCE", "high"),
    ("FACEREC_MODEL", "resnet"), ("FACEREC_UPSAMPLE", "3"), ("FACEREC_MAX_IMAGE_BYTES", "-1"),
    ("FACEREC_FETCH_TIMEOUT", "0"), ("FACEREC_ALLOW_PRIVATE_NETWORKS", "maybe"),
    ("FACEREC_DETECT_MAX_SIDE", "10"),
])
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})
