"""A real browser on the demo: `compressor demo` started on a free port, headless Debian Chromium via Selenium.

Used by tests/test_demo_browser.py and benchmarks/demo.py. Chromium runs with the flags this machine needs
(no sandbox as root, no background networking: the closed network refuses those connections).
"""

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from compressor.runtimes.vllm_server import free_port, start_server, stop_server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[1]


def browser_missing() -> str | None:
    """Why no browser test can run here (None when it can)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        return f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (.ci/run does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium missing: pip install -e '.[dev]'"
    return None


@contextlib.contextmanager
def running_demo(*folders, log_path: Path, env=None):
    """`compressor demo FOLDERS --port P` as a child process (its output in LOG_PATH); yields (url, seconds until it
    answered /_stcore/health)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = start_server([sys.executable, "-m", "compressor.cli", "demo", *map(str, folders), "--port", str(port)],
                           url, log_path, 90, env={**os.environ, **(env or {})}, what="compressor demo",
                           ready_path="/_stcore/health", poll_s=0.05)
    try:
        yield url, time.perf_counter() - started
    finally:
        stop_server(process)


def wait_for(condition, timeout: float) -> float:
    """Poll CONDITION until true; the time it became true. Fails when time runs out."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if condition():
            return time.perf_counter()
        time.sleep(0.05)
    raise TimeoutError(f"not ready within {timeout} s")


@contextlib.contextmanager
def chromium():
    """A headless Chromium WebDriver with a fresh profile, removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="compressor-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1800", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def fill(driver, selector: str, text: str) -> None:
    """Type TEXT into a Streamlit text input or area (CSS SELECTOR) and commit it (focus leaves the field).
    Long texts go in through the native value setter and an input event, as React expects, instead of key by key."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.CSS_SELECTOR, selector)
    field.click()
    driver.execute_script(
        "const f = arguments[0], proto = Object.getPrototypeOf(f);"
        "Object.getOwnPropertyDescriptor(proto, 'value').set.call(f, arguments[1]);"
        "f.dispatchEvent(new Event('input', {bubbles: true}));", field, text[:-1])
    field.send_keys(text[-1:], Keys.TAB)


def click_button(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    buttons = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == label]
    if not buttons:
        raise LookupError(f"no button {label!r} on the page")
    buttons[0].click()
