"""How live the web app's webcam page is: box updates a second, and the delay from a face
appearing on the camera to its name on the screen.

scripts/serve runs (2 workers, no keys, a store in a temporary folder, Lin-Manuel Miranda
enrolled); Debian's Chromium, headless, opens the webcam page with a fake camera playing, again
and again, 2 s of an empty grey scene and then 2 s of Lin-Manuel Miranda's close-up (the
Hamilton clip's frames 100-159, 640x360 at 30 fps). A script in the page watches the video: it
notes when a frame first shows him (the grey scene ends) and when a box first says his name
after that. Box updates a second are the page's own count of answers over the last 2 s.

The baseline, in the same run: what a page that sends each frame to /recognize (one stateless
recognition a frame, as CompreFace's webcam demo does) gets from the same server: recognitions
a second, from this script, one at a time.

    .venv/bin/python scripts/bench_web.py [--seconds 40] [--screenshots docs/images]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from recognizer.cameras import MjpegCamera, jpeg_frames
from recognizer.testing import FACES, free_port, serving

LIN = "Lin-Manuel Miranda"
CLIP = FACES / "video" / "short_hamilton_clip.mp4"

# Runs in the page: when the video turns from grey to a picture, and when a box names him next.
WATCH = """
const video = document.getElementById("webcam-video");
const canvas = document.createElement("canvas");
canvas.width = 32; canvas.height = 18;
const context = canvas.getContext("2d", { willReadFrequently: true });
window.bench = { shown: [], named: [], grey: true };
function look() {
  context.drawImage(video, 0, 0, 32, 18);
  const pixels = context.getImageData(0, 0, 32, 18).data;
  let low = 255, high = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    low = Math.min(low, pixels[i]);
    high = Math.max(high, pixels[i]);
  }
  const grey = high - low < 12;
  if (window.bench.grey && !grey) window.bench.shown.push(performance.now());
  window.bench.grey = grey;
  video.requestVideoFrameCallback(look);
}
video.requestVideoFrameCallback(look);
new MutationObserver(() => {
  const named = [...document.querySelectorAll("#webcam-stage .box.known .label")]
    .some((label) => label.textContent.startsWith(arguments[0]));
  const bench = window.bench;
  if (named && bench.shown.length > bench.named.length) bench.named.push(performance.now());
}).observe(document.getElementById("webcam-stage"),
           { subtree: true, childList: true, characterData: true });
"""


def fake_camera(folder: Path) -> Path:
    """The .y4m the fake camera plays: 2 s of grey, then 2 s of his close-up."""
    frames, _ = jpeg_frames(CLIP)
    grey = np.full((360, 640, 3), 110, np.uint8)
    pictures = [grey] * 60 + [cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR)
                              for frame in frames[100:160]]
    y4m = folder / "camera.y4m"
    encoder = subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f",
         "rawvideo", "-pix_fmt", "bgr24", "-s", "640x360", "-r", "30", "-i", "-", "-pix_fmt",
         "yuv420p", str(y4m)], stdin=subprocess.PIPE)
    encoder.communicate(b"".join(picture.tobytes() for picture in pictures))
    return y4m


def browser(camera: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--use-fake-device-for-media-stream",
                     "--use-fake-ui-for-media-stream",
                     f"--use-file-for-fake-video-capture={camera}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def webcam_page(driver, base: str, seconds: float) -> tuple[list[float], list[float]]:
    """(box updates a second, sampled each second; delays from face to name, in s)."""
    driver.get(f"{base}/#/webcam")
    deadline = time.monotonic() + 60
    answers = "return (window.facerecWebcam || {answers: []}).answers.length"
    while not driver.execute_script(answers):
        if time.monotonic() > deadline:
            raise RuntimeError("the webcam page never answered")
        time.sleep(0.2)
    driver.execute_script(WATCH, LIN)
    rates = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(1.0)
        rates.append(driver.execute_script("return window.facerecWebcam.answers.length") / 2)
    bench = driver.execute_script("return window.bench")
    delays = [(named - shown) / 1000 for shown, named in zip(bench["shown"], bench["named"])]
    return rates, delays


def stateless(base: str, seconds: float) -> float:
    """Recognitions a second with one /recognize a frame, one at a time."""
    frames, _ = jpeg_frames(CLIP)
    done, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        requests.post(f"{base}/recognize", data=frames[100 + done % 60], timeout=30,
                      headers={"Content-Type": "image/jpeg"}).raise_for_status()
        done += 1
    return done / seconds


def screenshots(driver, base: str, folder: Path) -> None:
    """A screenshot of each page, for the docs."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(FACES / "people/obama/obama.jpg", "rb") as photo:
        requests.post(f"{base}/enroll", data={"name": "Barack Obama"}, files={"image": photo})
    with open(FACES / "people/biden/biden.jpg", "rb") as photo:
        requests.post(f"{base}/enroll", data={"name": "Joe Biden"}, files={"image": photo})
    driver.get(f"{base}/#/recognize")
    time.sleep(1)
    driver.find_element(By.ID, "photo-file").send_keys(str(FACES / "misc/two_people.jpg"))
    time.sleep(3)
    driver.save_screenshot(str(folder / "recognize.png"))
    driver.get(f"{base}/#/webcam")
    when(driver, "#webcam-stage .box.known")
    driver.save_screenshot(str(folder / "webcam.png"))
    with MjpegCamera(CLIP, loops=10) as camera:
        requests.post(f"{base}/streams", json={"name": "stage", "source": camera.url})
        driver.get(f"{base}/#/cameras")
        when(driver, "#presence li:not(.hint)")
        time.sleep(1)
        driver.save_screenshot(str(folder / "cameras.png"))
        driver.get(f"{base}/#/unknown")
        time.sleep(3)
        driver.save_screenshot(str(folder / "unknown.png"))
    driver.get(f"{base}/#/people")
    time.sleep(2)
    driver.find_element(By.CSS_SELECTOR, "#people-table tbody button").click()
    time.sleep(1)
    driver.save_screenshot(str(folder / "people.png"))


def when(driver, css: str, seconds: float = 60) -> None:
    """Wait until the page shows an element (for a screenshot that shows something)."""
    deadline = time.monotonic() + seconds
    while not driver.find_elements(By.CSS_SELECTOR, css) and time.monotonic() < deadline:
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--screenshots", type=Path, help="save a screenshot of each page here")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-web-"))
    port = free_port()
    env = {"FACEREC_STORE": str(folder / "store.sqlite3"), "PORT": str(port), "WORKERS": "2",
           "FACEREC_STREAM_NETWORKS": "127.0.0.0/8", "FACEREC_SNAPSHOTS": "on",
           "FACEREC_RATE_LIMIT": "0"}
    env |= {key: "" for key in os.environ if key.startswith("FACEREC_") and key not in env}
    camera = fake_camera(folder)
    with serving(["scripts/serve"], port, folder / "serve.log", "/health", env=env) as base:
        with open(FACES / "people/lin_manuel_miranda/lin-manuel-miranda.png", "rb") as photo:
            requests.post(f"{base}/enroll", data={"name": LIN}, files={"image": photo},
                          timeout=60).raise_for_status()
        print(f"{os.cpu_count()} cores; fake webcam 640x360 at 30 fps: 2 s grey, 2 s of {LIN}")
        baseline = stateless(base, 15.0)
        print(f"baseline: one stateless /recognize a frame: {baseline:.1f} updates a second")
        driver = browser(camera)
        try:
            rates, delays = webcam_page(driver, base, options.seconds)
            rate = statistics.median(rates)
            ordered = sorted(delays)
            p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else 0
            print(f"webcam page: {rate:.1f} box updates a second (median of {len(rates)} s;"
                  f" {rate / baseline:.1f}x the baseline)")
            print(f"face to name on screen: p50 {statistics.median(ordered):.2f} s, p95"
                  f" {p95:.2f} s (n={len(ordered)})" if ordered else "no name appeared")
            if options.screenshots:
                screenshots(driver, base, options.screenshots)
                print(f"screenshots in {options.screenshots}")
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main())
