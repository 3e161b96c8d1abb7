"""The Gradio chat page in a real headless Chromium (Debian's chromium + chromedriver): type a
question, watch the answer stream in, read the routing panel, export the conversation.

Set COGUMI_SCREENSHOT=<file.png> to keep the screenshot (otherwise it lands in pytest's tmp folder).
"""

import json
import os
import re
import shutil
import time

import pytest

from cogumi.serve.launch import running_server

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium/chromedriver missing: `make system-deps` installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Root in a sandbox, no GPU, and no background calls to Google's hosts (the network is closed).
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _bot_text(driver) -> str:
    from selenium.webdriver.common.by import By

    bots = driver.find_elements(By.CSS_SELECTOR, "#cogumi-chat .bot, #cogumi-chat [data-testid='bot']")
    return bots[-1].text.strip() if bots else ""


def test_chat_page_streams_an_answer_and_shows_routing(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    outputs = tmp_path / "outputs"
    with running_server(env={"COGUMI_OUTPUTS": str(outputs)}, log_path=tmp_path / "server.log") as (base, _):
        browser.get(f"{base}/")  # redirects to the page at /chat/
        box = WebDriverWait(browser, 60).until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, "#cogumi-input textarea")))
        assert "/chat" in browser.current_url
        limit = browser.find_element(By.CSS_SELECTOR, "#cogumi-max-tokens input[type=number]")
        limit.send_keys(Keys.CONTROL, "a")
        limit.send_keys("32", Keys.TAB)  # short answers keep the test quick on a busy CPU
        box.send_keys("Write a short poem about the sea.")
        box.send_keys(Keys.ENTER)

        # Streaming: the answer is seen at several lengths before it is complete.
        lengths, deadline = set(), time.time() + 120
        while time.time() < deadline:
            text = _bot_text(browser)
            if text:
                lengths.add(len(text))
            if "route" in browser.find_element(By.ID, "cogumi-routing").text and "page" in \
                    browser.find_element(By.ID, "cogumi-routing").text:
                break
            time.sleep(0.05)
        answer = _bot_text(browser)
        routing = browser.find_element(By.ID, "cogumi-routing").text
        screenshot = os.environ.get("COGUMI_SCREENSHOT") or str(tmp_path / "chat_page.png")
        browser.save_screenshot(screenshot)
        assert answer and "Write a short poem" not in answer, routing
        assert len(lengths) >= 2, f"answer did not stream: lengths seen {sorted(lengths)}"
        assert "base" in routing and "smollm2-135m" in routing
        tokens = re.search(r'"tokens"\s*:\s*(\d+)', routing)
        assert tokens and 0 < int(tokens.group(1)) <= 32, routing  # the page's max tokens reached the API
        # The one-line summary under the controls: route, domain, confidence, swap time of this answer.
        summary = browser.find_element(By.ID, "cogumi-route").text
        assert "route base" in summary and "swap" in summary and "confidence" in summary, summary
        assert browser.find_elements(By.CSS_SELECTOR, "#cogumi-mode input[value=quality]")  # the mode choice

        # Second turn keeps the history: two bot messages.
        box.send_keys("Now in one line.")
        box.send_keys(Keys.ENTER)
        WebDriverWait(browser, 120).until(lambda d: len(d.find_elements(
            By.CSS_SELECTOR, "#cogumi-chat .bot, #cogumi-chat [data-testid='bot']")) >= 2)

        browser.find_element(By.ID, "cogumi-export").click()
        exports = outputs / "chat" / "exports"
        WebDriverWait(browser, 30).until(lambda d: exports.is_dir() and any(exports.glob("*.json")))
        exported = json.loads(next(exports.glob("*.json")).read_text())
        assert "Write a short poem" in json.dumps(exported["messages"])
        assert exported["routing"] and all(r["route"] == "base" for r in exported["routing"])  # per answer
