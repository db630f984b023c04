"""The README's screenshot of the web page: `maskcls serve`, headless Chromium, one uploaded photo.

    python docs/screenshot.py --onnx model.onnx --photo photo.jpg --out docs/images/serve_page.png

Starts the server on a free loopback port, opens the page in Debian's chromium (through chromedriver),
uploads the photo through the file input, waits for the prediction and saves the window as a small
palette PNG.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/images/serve_page.png"))
    parser.add_argument("--size", default="960x700", help="Window WxH.")
    args = parser.parse_args()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "maskcls", "serve", "--onnx", str(args.onnx), "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    profile = tempfile.mkdtemp(prefix="maskcls-chromium-")
    driver = None
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={args.size.replace('x', ',')}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.get(url + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "model-line").text.startswith("Model "))
        driver.find_element(By.ID, "file-input").send_keys(str(args.photo.resolve()))
        wait.until(seen.visibility_of_element_located((By.ID, "result")))
        time.sleep(0.5)  # let the preview image paint
        raw = Path(profile) / "page.png"
        driver.save_screenshot(str(raw))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(raw).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            args.out, optimize=True
        )
        print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
