"""Settings come from FACEREC_* variables, read once; bad values stop the service at start."""

from pathlib import Path

import pytest

from recognizer.config import ROOT, ConfigError, Settings
from recognizer.quality import QualityLimits


def test_defaults():
    settings = Settings.from_env({})
    assert settings.store == str(ROOT / "facerec.sqlite3")
    assert settings.tolerance == 0.55 and settings.ratio == 0.8475 and settings.model == "hog"
    assert settings.jitters == 5 and settings.enroll_jitters == 10
    assert settings.quality_limits == QualityLimits()
    assert settings.max_image_bytes == 32 * 1024 * 1024  # a 50 MP phone photo fits
    assert settings.max_video_bytes == 64 * 1024 * 1024 and settings.max_video_seconds == 15
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
        "FACEREC_MAX_ROLL": "25", "UNRELATED": "x", "FACEREC_TEST_STORE": "the tests'",
        "FACEREC_CORS_ORIGINS": "https://app.example.com, http://localhost:3000/",
        "FACEREC_MAX_VIDEO_BYTES": "5000", "FACEREC_MAX_VIDEO_SECONDS": "4.5",
    })
    assert settings == Settings(
        store="/data/faces.sqlite3", known_faces_dir=Path("/photos"), tolerance=0.5, model="cnn",
        upsample=0, detect_max_side=800, max_image_bytes=1000, max_image_pixels=2000,
        fetch_timeout=3.5, allow_private_networks=True, ratio=0.9, jitters=1, enroll_jitters=3,
        min_face_size=80, min_sharpness=12.5, max_yaw=30, max_pitch=20, max_roll=25,
        cors_origins=("https://app.example.com", "http://localhost:3000"),
        max_video_bytes=5000, max_video_seconds=4.5,
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


@pytest.mark.parametrize("variable, suggestion", [
    ("FACEREC_ALLOW_PRIVATE_NETWORK", "FACEREC_ALLOW_PRIVATE_NETWORKS"),
    ("FACEREC_TOLERENCE", "FACEREC_TOLERANCE"),
    ("FACEREC_API_KEY", "FACEREC_API_KEYS"),
])
def test_an_unknown_variable_stops_start_up_naming_the_closest(variable, suggestion):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({variable: "1"})
    assert str(refused.value) == f"{variable} is not a setting: did you mean {suggestion}?"


@pytest.mark.parametrize("value", ["*", "app.example.com", "https://a.example/path",
                                   "javascript:alert(1)"])
def test_cors_origins_must_be_origins(value):
    with pytest.raises(ConfigError, match="FACEREC_CORS_ORIGINS"):
        Settings.from_env({"FACEREC_CORS_ORIGINS": value})


def test_the_start_up_line_hides_the_store_password_and_every_key():
    settings = Settings.from_env({"FACEREC_STORE": "postgresql://facerec:s3cret@db:5432/faces",
                                  "FACEREC_API_KEYS": "k3y-one:read"})
    line = settings.summary()
    assert "s3cret" not in line and "k3y-one" not in line
    assert "postgresql://facerec:***@db:5432/faces" in line and "1 API keys" in line
    assert "(open)" in Settings.from_env({}).summary()


def test_a_store_in_a_folder_that_does_not_exist_is_refused(tmp_path):
    from recognizer.store import open_store

    with pytest.raises(ConfigError, match="does not exist"):
        open_store(tmp_path / "missing" / "store.sqlite3")
    assert not (tmp_path / "missing").exists()  # no silent mkdir -p
