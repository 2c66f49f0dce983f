#!/usr/bin/env python
"""Start app.py as a server and drive its page in headless Chromium: the helpers of tests/test_app.py, and the
script that takes the README's screenshot (docs/demo.png):

    python tests/app_browser.py --model outputs/demo --output docs/demo.png

Servers listen on 127.0.0.1 at a free port. Chromium and chromedriver are Debian's (`apt-get install chromium
chromium-driver`); Selenium is given both paths, so Selenium Manager downloads nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence


REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
SENTENCE = "张伟昨天从杭州出差回来，给大家带了龙井茶。"
# Reads the highlighted output: [text, label] per highlighted span of the HighlightedText with id "entities".
READ_HIGHLIGHTS = """
return Array.from(document.querySelectorAll('#entities .token.highlighted')).map(span => [
    span.querySelector('.text').textContent, (span.querySelector('.label') || {textContent: null}).textContent
]);
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env() -> dict[str, str]:
    """The environment of a server: offline, no telemetry, one thread each, no proxy for 127.0.0.1."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.pop("GRADIO_SERVER_NAME", None)
    env.pop("GRADIO_SERVER_PORT", None)
    return env


class AppServer:
    """app.py in a subprocess on 127.0.0.1 and a free port, its output in a log file; `stop()` ends it."""

    def __init__(self, app: Path, args: Sequence[str], cwd: Path, log: Path, isolated: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = Path(log)
        command = [sys.executable, str(app), *args, "--host", "127.0.0.1", "--port", str(self.port)]
        env = server_env()
        if isolated:  # the repository off sys.path: only the script's own folder there, as in a Space
            env.pop("PYTHONPATH", None)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 180.0) -> str:
        """The URL once the page answers; a RuntimeError with the server's output if it exits or times out."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            try:
                with opener.open(self.url, timeout=5) as response:
                    if response.status == 200:
                        return self.url
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"app.py did not answer at {self.url} within {timeout:.0f} s:\n{self.output()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _first(paths: Sequence[str]) -> str | None:
    return next((p for p in paths if os.access(p, os.X_OK)), None)


def missing_browser() -> str | None:
    """Why headless Chromium cannot run here, or None when it can."""
    if _first(CHROMIUM) is None or _first(CHROMEDRIVER) is None:
        return "chromium not installed: apt-get install chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed: pip install -r requirements-app.txt"
    return None


def open_browser(width: int = 1200, height: int = 900) -> Any:
    """Headless Chromium through Selenium, with the installed chromedriver, and no background network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _first(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",  # as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(_first(CHROMEDRIVER)), options=options)
    # The page itself gets width x height (the window's size includes the browser's frame).
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    return driver


def submit(driver: Any, url: str, text: str, expected: list[list[str]] | None = None, timeout: float = 60.0) -> list:
    """Load the page, type `text`, press the button and return the highlighted spans ([text, label] each), once
    some show (or, given `expected`, once they equal it: until then, the page may show an earlier answer)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.2)
    box = wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "textarea")))
    box.send_keys(text)
    driver.find_element(By.ID, "submit").click()
    try:
        wait.until(lambda d: (found := d.execute_script(READ_HIGHLIGHTS)) and (expected is None or found == expected))
    except TimeoutException:
        pass  # the caller compares what is there
    return driver.execute_script(READ_HIGHLIGHTS)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Screenshot of app.py's page after submitting a sentence.")
    parser.add_argument("--model", default="outputs/demo", help="a model folder or Hub id (default outputs/demo)")
    parser.add_argument("--output", default="docs/demo.png")
    parser.add_argument("--text", default=SENTENCE)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    reason = missing_browser()
    if reason:
        sys.exit(reason)
    output = Path(args.output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.mkdtemp()) / "app.log"
    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model  # the server runs in the repo
    server = AppServer(REPO_ROOT / "app.py", ["--model", model], REPO_ROOT, log)
    try:
        url = server.wait_ready()
        driver = open_browser(args.width, args.height)
        try:
            spans = submit(driver, url, args.text)
            time.sleep(1.0)  # the table renders after the highlights
            driver.save_screenshot(str(output))
        finally:
            driver.quit()
    finally:
        server.stop()
    shutil.rmtree(log.parent)
    print(f"{args.output}: {len(spans)} entities highlighted: {spans}")


if __name__ == "__main__":
    main()
