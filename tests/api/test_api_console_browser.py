"""The web console in a real headless browser (Debian's chromium + chromium-driver, driven by selenium) against
`vigil api` started for real on a free port over the real Redis: sign in, see a live alert appear, play its
clip (a real H.264 MP4 made with PyAV), label it, find the label in Redis; screenshots into the test's temporary
folder, or into ``$VIGIL_SCREENSHOTS_DIR`` when set (``make screenshots`` writes docs/screenshots/ that way), so
that running the suite never changes the checkout.

The test uses its own Redis database (``/11``) so that the camera wall shows only its cameras, and removes
its keys afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import OPERATOR, free_port, score_into_redis
from evidence_fixtures import jpeg, make_clip, write_evidence, write_live_view

DB = 11
INSTALL = "infra/local/install.sh (sudo apt-get install -y chromium chromium-driver)"


def _driver():  # noqa: ANN202
    chromium, chromedriver = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
    if not Path(chromium).exists() or chromedriver is None:
        pytest.fail(f"the browser tests need Debian's chromium and chromium-driver: run {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--force-device-scale-factor=1"):  # fmt: skip
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(chromedriver))


@pytest.fixture
def own_db(redis_settings):  # noqa: ANN001, ANN201
    """Redis settings and a client on the test's own database; its keys are removed afterwards."""
    base = redis_settings.url.rsplit("/", 1)[0]
    settings = redis_settings.model_copy(update={"url": f"{base}/{DB}"})
    client = settings.client()
    token = uuid.uuid4().hex[:4]
    yield settings, client, token
    for key in client.scan_iter(match=f"*{token}*", count=1000):
        client.delete(key)
    from vigil.services.scorer.alerts import decode_entry
    from vigil.shared.redis_keys import ALERTS_STREAM

    mine = [i for i, f in client.xrange(ALERTS_STREAM) if (a := decode_entry(f)) is not None and token in a.camera_id]
    if mine:
        client.xdel(ALERTS_STREAM, *mine)
    client.close()


@pytest.fixture
def api(own_db, tokens_file, tmp_path):  # noqa: ANN001, ANN201
    """`vigil api` as a process on a free port, over the test's Redis database."""
    settings, _, _ = own_db
    port, metrics_port = free_port(), free_port()
    env = os.environ | {"VIGIL_API_PORT": str(port), "VIGIL_API_METRICS_PORT": str(metrics_port), "VIGIL_REDIS_URL": settings.url,
                        "VIGIL_API_TOKENS_FILE": str(tokens_file), "VIGIL_API_SSE_KEEPALIVE_S": "2"}  # fmt: skip
    log = (tmp_path / "api.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "vigil.cli", "api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    from test_api_http import _wait_ready

    try:
        _wait_ready(f"http://127.0.0.1:{metrics_port}/readyz", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        assert OPERATOR not in log.read()


def _wait(driver, what, timeout: float = 60.0, message: str = ""):  # noqa: ANN001, ANN202
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: what(d), message)


def _cameras(client, token: str) -> list[str]:  # noqa: ANN001
    """Three more cameras for the wall: a latest frame, a timeline and a scorer record each (one alerting)."""
    from vigil.shared.redis_keys import camera_hash

    names = [f"gate-{token}", f"bike-path-{token}", f"lobby-{token}"]
    for i, cam in enumerate(names):
        write_live_view(client, cam, points=120)
        client.hset(camera_hash(cam), mapping={"status": "alert" if i == 1 else "normal", "scoring_mode": "calibrated",
                                               "score": "7.9" if i == 1 else "0.9", "threshold": "2.6", "model": "prednet-ped2",
                                               "last_frame_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})  # fmt: skip
        client.expire(camera_hash(cam), 600)
    return names


def test_console_live_alert_clip_label_and_screenshots(api, own_db, tmp_path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    from vigil.shared.redis_keys import ALERT_LABELS

    settings, client, token = own_db
    cam = f"street-{token}"
    others = _cameras(client, token)
    driver = _driver()
    try:
        driver.get(api + "/review?camera=" + cam)  # not signed in: the sign-in page, then back here
        _wait(driver, lambda d: d.find_elements(By.ID, "token"), 20, "no sign-in form")
        driver.find_element(By.ID, "token").send_keys(OPERATOR)
        driver.find_element(By.ID, "sign-in").click()
        _wait(driver, lambda d: "/review" in d.current_url and d.find_elements(By.CSS_SELECTOR, "#live.on"), 20, "live stream not open")

        feeder = threading.Thread(target=score_into_redis, args=(settings, {cam: [(200, 239)]}, 300))
        feeder.start()  # the real scorer core publishes the alert's changes into Redis
        card = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'.card[data-camera="{cam}"]'), 90, "no live alert card")[0]
        alert_id = card.get_attribute("data-alert-id")
        feeder.join()
        assert alert_id.startswith(cam + ":")

        write_live_view(client, cam, points=120)
        box = tuple(float(v) for v in card.get_attribute("data-box").split(","))
        write_evidence(client, alert_id, make_clip(frames=40), jpeg(text="peak", box=box))  # as `vigil evidence` would
        video = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-alert-id="{alert_id}"] video.clip'), 30, "no clip")[0]
        driver.execute_script("arguments[0].muted = true; arguments[0].play();", video)
        _wait(driver, lambda d: d.execute_script("const v = arguments[0]; return v.readyState >= 2 && v.currentTime > 0.3 "
                                                 "&& v.duration > 3 && !v.error;", video), 30,
              f"the clip does not play: {driver.execute_script('const v = arguments[0]; return [v.readyState, v.currentTime, v.duration, v.error && v.error.message];', video)}")  # fmt: skip
        snap = driver.find_element(By.CSS_SELECTOR, f'[data-alert-id="{alert_id}"] img.snapshot')
        assert "frame" in snap.get_attribute("src") and driver.execute_script("return arguments[0].naturalWidth", snap) == 180

        driver.find_element(By.CSS_SELECTOR, f'[data-alert-id="{alert_id}"] button[data-kind="bike"]').click()
        _wait(driver, lambda d: "labelled bike" in d.find_element(By.CSS_SELECTOR, f'[data-alert-id="{alert_id}"] .label-state').text,
              20, "label not confirmed")  # fmt: skip
        import json

        stored = json.loads(client.hget(ALERT_LABELS, alert_id))
        assert stored["kind"] == "bike" and stored["by"].startswith("operator:")
        client.hdel(ALERT_LABELS, alert_id)  # the test's label: not left in the shared hash
        driver.execute_script("arguments[0].pause(); arguments[0].currentTime = 2.0;", video)
        _screens(driver, api, cam, others, Path(os.environ.get("VIGIL_SCREENSHOTS_DIR") or tmp_path))
    finally:
        driver.quit()


def _screens(driver, api: str, cam: str, others: list[str], shots: Path) -> None:  # noqa: ANN001
    """Screenshots of the review queue, the wall, a camera page and the zone editor."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    shots.mkdir(parents=True, exist_ok=True)
    time.sleep(0.5)
    driver.save_screenshot(str(shots / "review.png"))
    for attempt in range(3):  # the camera list is cached for VIGIL_API_CAMERAS_CACHE_S (5 s): a new camera may need a reload
        driver.get(api + "/")
        try:
            _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".frame.has")) >= 4, 8, "wall frames not shown")
            break
        except Exception:
            if attempt == 2:
                raise
    time.sleep(1.0)  # the sparklines
    driver.save_screenshot(str(shots / "wall.png"))
    driver.get(f"{api}/cameras/{cam}")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".frame.has") and d.find_elements(By.CSS_SELECTOR, ".card"), 20)
    time.sleep(1.0)
    driver.save_screenshot(str(shots / "camera.png"))
    driver.get(f"{api}/cameras/{others[1]}/zones")
    canvas = _wait(driver, lambda d: d.find_elements(By.ID, "zone-canvas"), 20)[0]
    _wait(driver, lambda d: d.execute_script("return document.getElementById('zone-frame').naturalWidth") > 0, 20)
    w, h = canvas.size["width"], canvas.size["height"]
    for fx, fy in [(0.05, 0.55), (0.5, 0.45), (0.95, 0.6), (0.95, 0.95), (0.05, 0.95)]:
        ActionChains(driver).move_to_element_with_offset(canvas, int((fx - 0.5) * w), int((fy - 0.5) * h)).click().perform()
    driver.find_element(By.ID, "z-close").click()
    _wait(driver, lambda d: "exclude:" in d.find_element(By.ID, "z-yaml").text and "[0.05" in d.find_element(By.ID, "z-yaml").text, 20)
    driver.save_screenshot(str(shots / "zones.png"))
