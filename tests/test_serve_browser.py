"""The web page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Starts from `maskcls serve` (the ``live_server`` fixture), opens the page, uploads a photo through the
file input and reads what the page drew: the class, and bars that match the API's probabilities.
Skips, saying why, only where no Chromium is installed (``make test`` installs it on Debian as root).
"""

import re
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        reason = (
            f"no Chromium here ({CHROMIUM} or {CHROMEDRIVER} missing): `make test` installs chromium and "
            "chromium-driver with apt-get when run as root"
        )
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="maskcls-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1000,760",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ):  # a synthetic webcam, allowed without a prompt
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _bars(driver, head: str) -> dict[str, tuple[float, str]]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#bars-{head} .bar")
    return {
        row.get_attribute("data-label"): (
            float(row.get_attribute("data-probability")),
            row.find_element(By.CSS_SELECTOR, ".bar-fill").get_attribute("style"),
        )
        for row in rows
    }


def test_upload_a_photo_and_read_the_prediction(browser, live_server, demo_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    photo = sorted((demo_dir / "eval" / "images").iterdir())[1]
    expected = httpx.post(
        live_server + "/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")}
    ).json()
    browser.get(live_server + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "model-line").text.startswith("Model "))
    assert expected["model_id"] in browser.find_element(By.ID, "model-line").text

    browser.find_element(By.ID, "file-input").send_keys(str(photo))
    wait.until(seen.visibility_of_element_located((By.ID, "result")))
    assert browser.find_element(By.ID, "class-name").text == expected["class_name"]
    assert browser.find_element(By.ID, "class-id").text == str(expected["class"])
    assert browser.find_element(By.ID, "preview").get_attribute("naturalWidth") not in (None, "0")  # the photo is shown
    for head in ("mask", "gender", "age"):
        bars = _bars(browser, head)
        assert list(bars) == list(expected["heads"][head])
        for label, (probability, style) in bars.items():
            assert probability == pytest.approx(expected["heads"][head][label], abs=1e-4)
            width = float(re.search(r"width:\s*([\d.]+)%", style).group(1))
            assert width == pytest.approx(100 * expected["heads"][head][label], abs=0.06)  # the bar is drawn to scale
    top = [int(item.get_attribute("data-class")) for item in browser.find_elements(By.CSS_SELECTOR, "#top-classes li")]
    assert top == [t["class"] for t in expected["top_classes"]] and top[0] == expected["class"]
    assert "most probable of the 18 joint classes" in browser.find_element(By.ID, "class-rule").text
    in_class = browser.find_element(By.CSS_SELECTOR, "#bars-age .bar.in-class").get_attribute("data-label")
    assert in_class == expected["age_group"]  # the class's own age group is marked, whatever the longest bar
    best_mask = max(expected["heads"]["mask"], key=expected["heads"]["mask"].get)
    assert "best" in browser.find_element(By.CSS_SELECTOR, f'#bars-mask .bar[data-label="{best_mask}"]').get_attribute(
        "class"
    )

    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo at all")
    browser.find_element(By.ID, "file-input").send_keys(str(notes))
    wait.until(seen.visibility_of_element_located((By.ID, "error")))
    error = browser.find_element(By.ID, "error").text
    assert "could not be classified" in error and "not an image file" in error
    assert not browser.find_element(By.ID, "result").is_displayed()

    browser.find_element(By.ID, "camera-start").click()  # the webcam path, with Chromium's fake camera
    wait.until(lambda d: d.execute_script("return document.getElementById('camera-video').videoWidth") > 0)
    browser.find_element(By.ID, "camera-shot").click()
    wait.until(seen.visibility_of_element_located((By.ID, "result")))
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert browser.find_element(By.ID, "class-name").text.count("/") == 2
