"""The web app in a real browser: Debian's Chromium, headless, driven by Selenium through
/usr/bin/chromedriver, against scripts/serve (nginx, gunicorn with 2 workers, the live
listener, a stream runner) with API keys. The browser's webcam is the Hamilton clip (Chromium's
fake capture device plays a .y4m made from it), so the webcam page sees Lin-Manuel Miranda.

Each test that fails leaves a screenshot in test-artifacts/ (FACEREC_TEST_ARTIFACTS to move it).
Accessibility: axe-core (selenium-axe-python's copy) finds no serious or critical violation on
any page, and the flows below use the keyboard where a user would.
"""

import os
import re
import subprocess
import time

import imageio_ffmpeg
import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium_axe_python import Axe

from conftest import ROOT, face, free_port, fresh_store
from recognizer.cameras import MjpegCamera
from test_server import server

READ, ADMIN = "read-k3y-0123456789", "admin-k3y-9876543210"
LIN, OBAMA, BIDEN = "Lin-Manuel Miranda", "Barack Obama", "Joe Biden"
CLIP = "video/short_hamilton_clip.mp4"
ARTIFACTS = os.environ.get("FACEREC_TEST_ARTIFACTS", str(ROOT / "test-artifacts"))


def enrol(base, name, photo, key=ADMIN):
    with open(face(photo), "rb") as image:
        answer = requests.post(f"{base}/enroll", data={"name": name}, files={"image": image},
                               headers={"X-API-Key": key}, timeout=60)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def api(method, base, path, key=ADMIN, **kwargs):
    return requests.request(method, base + path, headers={"X-API-Key": key}, timeout=30,
                            **kwargs)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """scripts/serve with keys, snapshots and streams on loopback; Obama, Biden and Lin
    enrolled: (base URL, its environment)."""
    folder = tmp_path_factory.mktemp("webapp")
    with fresh_store(folder) as location:
        port = free_port()
        env = {"FACEREC_STORE": location, "PORT": str(port), "WORKERS": "2",
               "FACEREC_API_KEYS": f"{READ}:read,{ADMIN}:admin",
               "FACEREC_STREAM_NETWORKS": "127.0.0.0/8", "FACEREC_SNAPSHOTS": "on",
               "FACEREC_RATE_STATE": str(folder / "rates.sqlite3"), "PYTHONWARNINGS": "ignore"}
        env |= {key: "" for key in os.environ if key.startswith("FACEREC_")
                and not key.startswith("FACEREC_TEST_") and key not in env}
        with server(["scripts/serve"], env, port) as (base, _):
            enrol(base, OBAMA, "people/obama/obama.jpg")
            enrol(base, BIDEN, "people/biden/biden.jpg")
            enrol(base, LIN, "people/lin_manuel_miranda/lin-manuel-miranda.png")
            yield base, env


@pytest.fixture(scope="module")
def webcam_file(tmp_path_factory):
    """The Hamilton clip as the .y4m that Chromium's fake camera plays (and loops)."""
    y4m = tmp_path_factory.mktemp("camera") / "clip.y4m"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                    "-i", str(face(CLIP)), "-an", "-pix_fmt", "yuv420p", "-r", "15", str(y4m)],
                   check=True, timeout=120)
    return y4m


@pytest.fixture(scope="module")
def chromium(webcam_file):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--use-fake-device-for-media-stream",
                     "--use-fake-ui-for-media-stream",
                     f"--use-file-for-fake-video-capture={webcam_file}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium, site, request):
    """The browser on the app, this tab's key forgotten; a screenshot if the test fails."""
    base, _ = site
    chromium.get(base + "/app/icon.svg")
    chromium.execute_script("sessionStorage.clear()")
    yield chromium
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        os.makedirs(ARTIFACTS, exist_ok=True)
        chromium.save_screenshot(os.path.join(ARTIFACTS, f"{request.node.name}.png"))


def wait(check, timeout=30.0, every=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if answer := check():
                return answer
        except WebDriverException as error:  # an element replaced meanwhile: look again
            last = error
        time.sleep(every)
    pytest.fail(f"not within {timeout} s ({last})")


def open_page(driver, base, page, key=ADMIN):
    """Open a page with a key in this tab, as the key dialog leaves it."""
    driver.get(f"{base}/app/icon.svg")  # (a page of the origin, to set its storage)
    driver.execute_script("sessionStorage.setItem('facerec.apiKey', arguments[0])", key)
    driver.get(f"{base}/#/{page}")
    wait(lambda: driver.execute_script("return document.readyState") == "complete")
    wait(lambda: driver.find_elements(By.CSS_SELECTOR, "main h1"))


def labels(driver, css):
    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, css)]


def no_serious_violations(driver):
    axe = Axe(driver)
    axe.inject()
    found = axe.run(options={"resultTypes": ["violations"]})["violations"]
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in found
               if v["impact"] in ("serious", "critical")]
    assert serious == []


def test_the_app_asks_for_a_key_and_keeps_it_in_the_tab_only(browser, site):
    base, _ = site
    browser.get(f"{base}/#/people")
    dialog = wait(lambda: browser.find_element(By.ID, "key-dialog"))
    wait(lambda: dialog.get_attribute("open") is not None)
    field = browser.find_element(By.ID, "key-input")
    field.send_keys("not-a-key")
    field.send_keys(Keys.ENTER)
    wait(lambda: "not valid" in browser.find_element(By.ID, "key-error").text)
    field = browser.find_element(By.ID, "key-input")
    field.clear()
    field.send_keys(ADMIN + Keys.ENTER)
    wait(lambda: OBAMA in labels(browser, "#people-table td"))
    assert browser.execute_script("return sessionStorage.getItem('facerec.apiKey')") == ADMIN
    assert browser.execute_script("return localStorage.length") == 0
    assert ADMIN not in browser.current_url
    assert browser.find_element(By.ID, "key-button").text == "API key (admin)"


def test_recognising_two_people_shows_two_named_boxes(browser, site):
    base, _ = site
    open_page(browser, base, "recognize")
    browser.find_element(By.ID, "photo-file").send_keys(str(face("misc/two_people.jpg")))
    boxes = wait(lambda: labels(browser, "#photo-stage .box.known .label"))
    assert sorted(re.sub(r" \d+%$", "", label) for label in boxes) == [OBAMA, BIDEN]
    assert "2 faces: 2 named" in browser.find_element(By.ID, "recognize-status").text
    box = browser.find_elements(By.CSS_SELECTOR, "#photo-stage .box")[0]
    box.send_keys(Keys.NULL)  # focus shows the details: confidence and candidates
    browser.execute_script("arguments[0].focus()", box)
    assert "confidence" in box.find_element(By.CSS_SELECTOR, ".more").text
    no_serious_violations(browser)


def test_errors_are_sentences_not_json(browser, site, tmp_path):
    base, _ = site
    open_page(browser, base, "recognize")
    text_file = tmp_path / "notes.png"
    text_file.write_text("these are not the pixels you are looking for")
    browser.find_element(By.ID, "photo-file").send_keys(str(text_file))
    status = wait(lambda: browser.find_element(By.CSS_SELECTOR, "#recognize-status.error").text)
    assert status == "That file is not an image this service reads (JPEG, PNG, GIF, WebP," \
                     " BMP or TIFF)."


def test_the_webcam_page_names_lin_manuel_miranda_within_seconds(browser, site):
    base, _ = site
    open_page(browser, base, "webcam")
    started = time.monotonic()
    wait(lambda: any(label.startswith(LIN) for label in
                     labels(browser, "#webcam-stage .box.known .label")), timeout=45)
    seconds = time.monotonic() - started
    stats = browser.execute_script("return window.facerecWebcam")
    assert len(stats["answers"]) >= 2, stats  # answers keep coming, tracked
    assert "updates a second" in browser.find_element(By.ID, "webcam-stats").text
    no_serious_violations(browser)
    print(f"named after {seconds:.1f} s")


def test_who_is_this_enrols_a_face_in_view_and_it_is_named_next(browser, site):
    base, _ = site
    deleted = api("DELETE", base, f"/people/{LIN}")
    assert deleted.status_code == 200, (deleted.text, deleted.headers)
    try:
        open_page(browser, base, "webcam")
        form_input = wait(lambda: browser.find_element(By.CSS_SELECTOR,
                                                       "#webcam-faces li form input"), 60)
        form_input.send_keys(LIN + Keys.ENTER)
        wait(lambda: any(label.startswith(LIN) for label in
                         labels(browser, "#webcam-stage .box.known .label")), timeout=45)
        person = api("GET", base, f"/people/{LIN}").json()
        assert [f["source"].split(":")[0] for f in person["faces"]] == ["session"]
    finally:
        api("DELETE", base, f"/people/{LIN}")
        enrol(base, LIN, "people/lin_manuel_miranda/lin-manuel-miranda.png")


def test_webcam_enrolment_takes_checked_shots_and_enrols_them(browser, site):
    base, _ = site
    open_page(browser, base, "webcam")
    wait(lambda: browser.execute_script("return window.facerecWebcam.answers.length"), 45)
    browser.find_element(By.ID, "burst-name").send_keys("Lin from the webcam" + Keys.ENTER)
    guide = wait(lambda: (text := browser.find_element(By.ID, "burst-guide").text)
                 .endswith("faces now.") and text, timeout=120)
    good = browser.find_elements(By.CSS_SELECTOR, "#burst-shots img.good")
    assert len(good) >= 1 and guide.startswith("Lin from the webcam enrolled")
    person = api("GET", base, "/people/Lin from the webcam").json()
    assert len(person["faces"]) == len(good)
    assert api("DELETE", base, "/people/Lin from the webcam").status_code == 200


def test_rename_merge_and_delete_on_the_people_page(browser, site):
    base, _ = site
    enrol(base, "Biden Again", "people/biden/biden2.jpg")
    open_page(browser, base, "people")
    search = browser.find_element(By.ID, "people-search")
    search.send_keys("again")
    wait(lambda: labels(browser, "#people-table tbody button") == ["Biden Again"])
    browser.find_element(By.CSS_SELECTOR, "#people-table tbody button").send_keys(Keys.ENTER)
    wait(lambda: browser.find_element(By.ID, "person-name").text == "Biden Again")
    rename = browser.find_element(By.ID, "rename-to")
    rename.send_keys("Joseph Biden" + Keys.ENTER)  # a rename
    wait(lambda: browser.find_element(By.ID, "person-name").text == "Joseph Biden")
    rename = browser.find_element(By.ID, "rename-to")
    rename.send_keys(BIDEN + Keys.ENTER)  # a merge into Joe Biden
    wait(lambda: browser.find_element(By.ID, "person-name").text == BIDEN)
    assert len(api("GET", base, f"/people/{BIDEN}").json()["faces"]) == 2
    # delete one face, then the person, each after a confirmation
    browser.find_elements(By.CSS_SELECTOR, "#person-faces button.danger")[-1].click()
    wait(lambda: browser.find_element(By.ID, "confirm-dialog").get_attribute("open") is not None)
    browser.find_element(By.ID, "confirm-yes").click()
    wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#person-faces tbody tr")) == 1)
    browser.find_element(By.ID, "delete-person").click()
    wait(lambda: browser.find_element(By.ID, "confirm-dialog").get_attribute("open") is not None)
    browser.find_element(By.ID, "confirm-yes").click()
    wait(lambda: api("GET", base, f"/people/{BIDEN}").status_code == 404)
    no_serious_violations(browser)
    enrol(base, BIDEN, "people/biden/biden.jpg")


def test_a_read_key_sees_no_admin_action(browser, site):
    base, _ = site
    open_page(browser, base, "people", key=READ)
    wait(lambda: OBAMA in labels(browser, "#people-table td"))
    assert not browser.find_element(By.ID, "upload").is_displayed()
    browser.find_element(By.CSS_SELECTOR, "#people-table tbody button").click()
    wait(lambda: browser.find_element(By.ID, "person-name").text)
    assert not browser.find_element(By.ID, "rename-form").is_displayed()
    assert not browser.find_element(By.ID, "delete-person").is_displayed()
    assert not any(button.is_displayed() for button in
                   browser.find_elements(By.CSS_SELECTOR, "#person-faces button"))
    open_page(browser, base, "webcam", key=READ)
    wait(lambda: browser.execute_script("return window.facerecWebcam.answers.length"), 45)
    assert not browser.find_element(By.ID, "burst").is_displayed()
    assert browser.find_element(By.ID, "key-button").text == "API key (read)"


def test_cameras_live_and_who_is_this_from_the_unknown_faces(browser, site):
    base, _ = site
    with MjpegCamera(face(CLIP), loops=30) as camera:
        created = api("POST", base, "/streams", json={"name": "stage", "source": camera.url})
        stream_id = created.json()["id"]
        try:
            open_page(browser, base, "cameras")
            wait(lambda: (browser.find_element(By.CSS_SELECTOR, "#cameras img.live")
                          .get_attribute("src") or "").startswith("blob:"), timeout=60)
            wait(lambda: any(LIN in text for text in labels(browser, "#event-feed li")), 60)
            wait(lambda: any(LIN in text for text in labels(browser, "#presence li")), 30)
            no_serious_violations(browser)
            # an unknown face of the audience: who is this?
            open_page(browser, base, "unknown")
            card = wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#unknown-faces article"))[0]
            event_id = card.get_attribute("data-event")
            wait(lambda: (card.find_element(By.CSS_SELECTOR, "img").get_attribute("src")
                          or "").startswith("blob:"))
            card.find_element(By.CSS_SELECTOR, "input").send_keys("Someone In The Audience"
                                                                  + Keys.ENTER)
            wait(lambda: api("GET", base, "/people/Someone In The Audience").status_code == 200)
            faces = api("GET", base, "/people/Someone In The Audience").json()["faces"]
            assert [f["source"] for f in faces] == [f"event:{event_id}"]
            no_serious_violations(browser)
        finally:
            api("DELETE", base, f"/streams/{stream_id}")
            api("DELETE", base, "/people/Someone In The Audience")


def test_every_page_is_reached_from_the_keyboard(browser, site):
    base, _ = site
    open_page(browser, base, "recognize")
    first = browser.execute_script(  # the first stop of the Tab key: the skip link
        "return [...document.querySelectorAll('a[href], button, input, [tabindex]')]"
        ".find((e) => e.tabIndex >= 0 && !e.disabled)")
    assert first.get_attribute("class") == "skip"
    browser.execute_script("arguments[0].focus()", first)
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    for page in ("People", "Unknown faces", "Cameras", "Webcam", "Recognise"):
        link = browser.find_element(By.LINK_TEXT, page)
        browser.execute_script("arguments[0].focus()", link)
        browser.switch_to.active_element.send_keys(Keys.ENTER)
        wait(lambda: browser.find_element(By.CSS_SELECTOR, "nav a[aria-current=page]").text
             == page)
        no_serious_violations(browser)
