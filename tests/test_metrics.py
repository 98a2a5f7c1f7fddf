"""What shows where time goes: /metrics (Prometheus, added up over gunicorn's workers), the
Server-Timing header, X-Request-ID in answers and in every log line, the JSON log format; and
the speed-ups it measures: adaptive jitters, detection split over two threads, JPEGs decoded at
the size recognition needs."""

import io
import json
import re
import threading
from pathlib import Path

import falcon
import hug
import numpy as np
import pytest
import requests
from PIL import Image

import api
from conftest import face, free_port, png_bytes
from recognizer import images, metrics, pictures
from recognizer.matching import Candidate, Evidence, Match
from recognizer.service import near_boundary
from test_server import VENV_BIN, server, settings

pytestmark = pytest.mark.store  # run on both store backends


def _recognize(data: bytes, **headers):
    return hug.test.post(api, "recognize", body=data,
                         headers={"content-type": "image/jpeg", **headers})


def _enrol(name: str, relative: str) -> None:
    answer = hug.test.post(api, "enroll", body=face(relative).read_bytes(),
                           headers={"content-type": "image/jpeg"}, name=name)
    assert answer.status in (falcon.HTTP_200, falcon.HTTP_201), answer.data


# -- headers and in-process metrics ---------------------------------------------------------


def test_a_recognition_says_how_long_each_stage_took_and_carries_the_clients_request_id(env):
    answer = _recognize(face("misc/two_people.jpg").read_bytes(), **{"X-Request-ID": "job-42.a"})
    assert answer.status == falcon.HTTP_200
    assert answer.headers_dict["X-Request-ID"] == "job-42.a"
    stages = dict(re.fullmatch(r"(\w+);dur=([0-9.]+)", entry.strip()).groups()
                  for entry in answer.headers_dict["Server-Timing"].split(","))
    assert {"decode", "detect", "encode", "match", "total"} <= set(stages)
    assert float(stages["total"]) >= float(stages["detect"])


@pytest.mark.parametrize("given", ["", "has space", "x" * 129, "-leading-dash", "a/b", "é"])
def test_an_insane_request_id_is_replaced_by_a_new_one(env, given):
    answer = hug.test.get(api, "health", headers={"X-Request-ID": given})
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers_dict["X-Request-ID"])
    assert "Server-Timing" not in answer.headers_dict  # (only the pipeline's routes)


def test_every_answer_has_a_request_id_even_an_error(env):
    answer = hug.test.get(api, "no/such/route")
    assert answer.status == falcon.HTTP_404
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers_dict["X-Request-ID"])
    refused = _recognize(b"not an image")
    assert refused.status == falcon.HTTP_415 and "total;dur=" in refused.headers_dict[
        "Server-Timing"]


def test_metrics_count_requests_stages_faces_and_the_gallery(env):
    _enrol("obama", "people/obama/obama.jpg")
    before = _value(_metrics_text(), "facerec_http_requests_total",
                    method="POST", route="/recognize", status="200")
    assert _recognize(face("misc/two_people.jpg").read_bytes()).status == falcon.HTTP_200
    text = _metrics_text()
    assert _value(text, "facerec_http_requests_total", method="POST", route="/recognize",
                  status="200") == before + 1
    assert _value(text, "facerec_http_request_duration_seconds_count", route="/recognize") >= 1
    for stage in ("decode", "detect", "encode", "match"):
        assert _value(text, "facerec_stage_duration_seconds_count", stage=stage) >= 1
    assert _value(text, "facerec_faces_per_image_count") >= 1
    assert _value(text, "facerec_gallery_people") == 1
    assert _value(text, "facerec_gallery_faces") == 1


def test_stream_metrics_are_counted_by_stream(env):
    metrics.stream_status(7, 12.5)
    metrics.stream_reconnected(7)
    metrics.stream_event(7, "appear")
    text = metrics.exposition().decode()
    assert _value(text, "facerec_stream_fps", stream="7") == 12.5
    assert _value(text, "facerec_stream_reconnects_total", stream="7") >= 1
    assert _value(text, "facerec_stream_events_total", stream="7", kind="appear") >= 1


def test_metrics_need_a_read_key_when_keys_are_set(reconfigure):
    reconfigure(API_KEYS="r3ad-key-for-tests:read")
    assert hug.test.get(api, "metrics").status == falcon.HTTP_401
    keyed = hug.test.get(api, "metrics", headers={"X-API-Key": "r3ad-key-for-tests"})
    assert keyed.status == falcon.HTTP_200 and "facerec_http_requests_total" in keyed.data


def _metrics_text() -> str:
    answer = hug.test.get(api, "metrics")
    assert answer.status == falcon.HTTP_200
    assert answer.headers_dict["content-type"].startswith("text/plain; version=0.0.4")
    return answer.data if isinstance(answer.data, str) else answer.data.decode()


def _value(text: str, name: str, **labels) -> float:
    """The sum of a metric's samples whose labels include these (0 when there are none)."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:{{(.*)}})? (\S+)", line)
        if match:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match[1] or ""))
            if all(found.get(key) == value for key, value in labels.items()):
                total += float(match[2])
    return total


# -- under gunicorn, with 2 workers ------------------------------------------------------------


def test_two_gunicorn_workers_counts_add_up_and_every_log_line_has_the_request_id(
        store_location, tmp_path):
    """Real HTTP: requests spread over both workers; any worker's /metrics counts them all, and
    each process's own count (its file in the multiprocess folder) is part of the sum. The log
    is JSON (FACEREC_LOG_FORMAT=json), each request's line carries its id, and no URL."""
    from prometheus_client.mmap_dict import MmapedDict

    folder = tmp_path / "metrics"
    folder.mkdir()
    port = free_port()
    # a worker holds at most 2 connections: concurrent requests must reach both
    command = [f"{VENV_BIN}/gunicorn", "-w", "2", "--worker-connections", "2", "-b",
               f"127.0.0.1:{port}", "--timeout", "60", "api:__hug_wsgi__"]
    env_vars = settings(store_location) | {"OPENBLAS_NUM_THREADS": "1",
                                           "PROMETHEUS_MULTIPROC_DIR": str(folder),
                                           "FACEREC_LOG_FORMAT": "json", "FACEREC_RATE_LIMIT": "0"}
    with server(command, env_vars, port) as (base, log):
        sent, lock = 0, threading.Lock()

        def people(number: int) -> None:
            nonlocal sent
            answer = requests.get(f"{base}/people", timeout=30, headers={
                "Connection": "close", "X-Request-ID": f"people-{number}"})
            assert answer.status_code == 200
            assert answer.headers["X-Request-ID"] == f"people-{number}"
            with lock:
                sent += 1

        for batch in range(10):  # until both workers have answered some
            threads = [threading.Thread(target=people, args=(batch * 20 + n,)) for n in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if len(_per_process(folder, MmapedDict)) >= 2:
                break
        per_process = _per_process(folder, MmapedDict)
        assert len(per_process) >= 2, per_process
        assert sum(per_process.values()) == sent
        for _ in range(4):  # whichever worker answers, it counts both
            text = requests.get(f"{base}/metrics", headers={"Connection": "close"},
                                timeout=30).text
            assert _value(text, "facerec_http_requests_total", method="GET", route="/people",
                          status="200") == sent
        with open(face("misc/two_people.jpg"), "rb") as photo:
            recognized = requests.post(f"{base}/recognize", files={"image": photo}, timeout=60,
                                       headers={"X-Request-ID": "r-2"})
        assert recognized.status_code == 200 and "detect;dur=" in recognized.headers[
            "Server-Timing"]
        log.flush()
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.strip()]
    objects = [json.loads(line) for line in lines]  # every line, gunicorn's own too
    ours = [line for line in objects if line.get("request_id") == "r-2"]
    assert ours and all(line["pid"] and line["level"] for line in ours)
    assert any("POST /recognize 200" in line["message"] for line in ours)
    # no client address, no URL of a request (the start-up line names the store, password
    # hidden: on PostgreSQL a URL the operator set, never a caller's)
    assert not any("127.0.0.1:" in line["message"] or "image_url" in line["message"]
                   for line in objects if not line["message"].startswith("store "))


def _per_process(folder: Path, mmaped) -> dict[str, float]:
    """{file: GET /people 200 count} of each process's counter file."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        for key, value, *_ in mmaped.read_all_values_from_file(str(path)):
            _, name, labels, _ = json.loads(key)
            if name == "facerec_http_requests_total" and labels == {
                    "method": "GET", "route": "/people", "status": "200"} and value:
                counts[path.name] = counts.get(path.name, 0) + value
    return counts


# -- adaptive jitters ------------------------------------------------------------------------


def _match(*distances: float) -> Match:
    return Match(None, None, None, [Candidate(f"p{i}", d) for i, d in enumerate(distances)])


# tolerance 0.55 and ratio 0.8475 (the defaults); evidence at 1,000 people, one photo each, so
# that the ratio test allows a distance of 0.8475 x the local scale
@pytest.mark.parametrize("distances, scale, close", [
    ((0.30, 0.80), 0.80, False),  # clearly the nearest person
    ((0.52, 0.80), 0.80, True),  # near the tolerance
    ((0.58, 0.80), 0.80, True),  # just over it
    ((0.70, 0.75), 0.75, False),  # far from everyone: unknown whatever the encoding
    ((0.45, 0.60), 0.55, True),  # near the ratio test's limit (0.8475 x 0.55 = 0.466)
    ((0.20, 0.23), 0.50, True),  # two candidates close together
    ((0.30,), 0.81, False),  # one person enrolled
])
def test_a_face_is_encoded_again_only_near_a_boundary(distances, scale, close):
    found = Evidence(distances[0], scale, 1000, 1)
    assert near_boundary(_match(*distances), found, 0.55, 0.8475, 0.05) is close


def test_no_candidates_is_never_near_a_boundary():
    assert near_boundary(Match(None, None, None, []), None, 0.55, 0.8475, 0.05) is False


def test_adaptive_jitters_name_the_same_people_as_jittering_every_face(reconfigure):
    _enrol("obama", "people/obama/obama.jpg")
    _enrol("biden", "people/biden/biden.jpg")
    names = {}
    for margin in ("0", "0.05", "1"):
        reconfigure(JITTER_MARGIN=margin)
        answer = _recognize(face("misc/obama_and_biden.jpg").read_bytes())
        names[margin] = sorted(str(found["name"]) for found in answer.data["faces"])
    assert names["0"] == names["0.05"] == names["1"] == ["None", "biden", "obama"]


# -- detection on two threads, JPEGs decoded at the size needed --------------------------------


@pytest.mark.parametrize("relative", ["misc/two_people.jpg", "misc/obama_and_biden.jpg",
                                      "misc/kit_with_rose.jpg", "people/obama/obama-240p.jpg"])
def test_detection_split_over_two_threads_finds_the_same_faces(relative):
    from recognizer import faces

    pixels = images.decode(face(relative).read_bytes(), 40_000_000)
    one = faces.detect(pixels, threads=1)
    two = faces.detect(pixels, threads=2)
    assert len(one) == len(two)
    assert all(max(box.overlap(other) for other in two) > 0.6 for box in one)


def test_a_large_jpeg_is_decoded_at_half_size_and_its_boxes_are_the_full_sized_ones(env):
    photo = Image.open(face("misc/two_people.jpg")).convert("RGB")
    large = photo.resize((photo.width * 3, photo.height * 3), Image.Resampling.BICUBIC)
    data = png_bytes(large, format="JPEG", quality=90)
    pixels, original = images.decode_scaled(data, 40_000_000, least_side=1600)
    assert original == large.size and pixels.shape[:2] == (-(-large.height // 2),
                                                           -(-large.width // 2))
    whole, _ = images.decode_scaled(data, 40_000_000)
    assert whole.shape[:2] == (large.height, large.width)  # (without least_side: whole)
    png = png_bytes(large)
    assert images.decode_scaled(png, 40_000_000, least_side=1600)[0].shape[1] == large.width
    answer = _recognize(data)
    boxes = [found["box"] for found in answer.data["faces"]]
    assert answer.data["image"] == {"width": large.width, "height": large.height}
    assert len(boxes) == 2 and max(box["right"] for box in boxes) > photo.width * 2


def test_a_request_image_keeps_the_detail_the_encoder_uses():
    assert pictures.DETAIL * 40 >= 100  # the smallest face found at detection size, 100 px
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((3000, 4000, 3), np.uint8)).save(buffer, "JPEG")
    pixels, original = images.decode_scaled(buffer.getvalue(), 40_000_000, least_side=1600)
    assert original == (4000, 3000) and pixels.shape[:2] == (1500, 2000)
