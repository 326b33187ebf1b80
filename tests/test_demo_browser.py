"""`compressor demo` in a real browser: the server started as a user starts it, headless Chromium (Selenium)
compresses a prompt on the page and the highlighted kept words are there. The screenshot is kept in
$TEST_ARTIFACTS (default .test-artifacts/) whether the test passes or not. Plus the CLI's start errors."""

import os
from pathlib import Path

import pytest

from browser import REPO, browser_missing, chromium, click_button, fill, running_demo, wait_for
from cli_runner import assert_one_line_error, run_cli
from compressor.prompt.compressor import PromptCompressor
from test_prompt import ehpc_dir  # noqa: F401  (a fixture: the tiny Llama with a prompt_compressor.json)

CONTEXT = ("The library opens at nine. 도서관은 아홉 시에 문을 엽니다. " + "Rain fell on the quiet town all day. " * 20)
QUESTION = "When does the library open?"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / ".test-artifacts"))


@pytest.fixture
def browser_available():
    why = browser_missing()
    if why and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {why}")
    if why:
        pytest.skip(why)


def test_compress_in_headless_chromium_highlights_the_kept_words(ehpc_dir, tmp_path, browser_available):  # noqa: F811
    from selenium.webdriver.common.by import By

    expected = PromptCompressor.from_pretrained(ehpc_dir).compress(CONTEXT, rate=0.25, question=QUESTION)
    kept_words = [expected.source[s:e] for s, e in expected.kept_spans]
    log_path = tmp_path / "demo.log"
    with running_demo(ehpc_dir, log_path=log_path, env={"COMPRESSOR_HOME": str(tmp_path / "home")}) as (url, _), \
            chromium() as driver:
        try:
            driver.get(url)
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, 'textarea[aria-label="Prompt (context)"]'), 60)
            fill(driver, 'textarea[aria-label="Prompt (context)"]', CONTEXT)
            fill(driver, 'input[aria-label="Question (kept whole, steers the scores)"]', QUESTION)
            click_button(driver, "Compress")
            kept_selector = "pre.compressor-kept span.k"
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, kept_selector), 60)
            shown = [e.get_attribute("textContent") for e in driver.find_elements(By.CSS_SELECTOR, kept_selector)]
            dropped = driver.find_elements(By.CSS_SELECTOR, "pre.compressor-kept span.d")
            assert shown == kept_words and dropped, (shown, kept_words)
            assert "도서관은" in "".join(shown) or "도서관은" in "".join(e.get_attribute("textContent") for e in dropped)
            metrics = driver.find_element(By.CSS_SELECTOR, '[data-testid="stMetricValue"]').text
            assert metrics == f"{expected.tokens_in:,}"
            assert "Traceback" not in driver.page_source
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "demo-prompt-compressor.png"))
    assert "Traceback" not in log_path.read_text(errors="replace")


@pytest.mark.parametrize("case", ["missing", "file", "port"])
def test_cli_start_errors_are_one_line(monkeypatch, capsys, tmp_path, case):
    import socket

    args = {"missing": [str(tmp_path / "nowhere")], "file": [str(REPO / "README.md")]}.get(case, [])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, out, err = run_cli(monkeypatch, capsys, "demo", *args, "--port", str(taken.getsockname()[1]))
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("compressor demo: starting"))
    assert_one_line_error(code, err)
    assert {"missing": "nowhere: no such folder", "file": "README.md: not a folder",
            "port": "already in use"}[case] in err
