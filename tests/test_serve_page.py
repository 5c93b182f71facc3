"""The web page of `elmd serve` in a real headless browser (Debian's chromium + chromium-driver,
Selenium pointed at /usr/bin/chromedriver: nothing downloaded): upload a sample video, type a
Chinese message, see the reply and its emotion; a corrupt upload shows an error and the page keeps
working; "重新生成" answers the last turn again; "清空" empties the chat. A screenshot is saved (``ELMD_SERVE_SCREENSHOT`` names a copy)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serve_standin import LiveServer, StandInPipe, standin_cfg

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="no /usr/bin/chromium + /usr/bin/chromedriver (apt-get install chromium "
                                       "chromium-driver; scripts/install.sh does it as root with the serve extra)")


@pytest.fixture(scope="module")
def page():
    pytest.importorskip("gradio")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    from elmd.serve import build

    pipe = StandInPipe()
    backend, app = build(None, standin_cfg(page=True, max_wait_ms=5), pipe=pipe)
    server = LiveServer(app)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1100",
                "--lang=zh-CN", "--no-first-run", "--disable-background-networking"):
        opts.add_argument(arg)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    opts.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver, server, pipe, backend
    finally:
        driver.quit()
        server.stop()
        backend.close()


def _wait_text(driver, css, text, timeout=60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import TimeoutException

    try:
        WebDriverWait(driver, timeout).until(lambda d: text in d.find_element(By.CSS_SELECTOR, css).text)
    except TimeoutException:
        shot = os.environ.get("ELMD_SERVE_SCREENSHOT")
        if shot:
            driver.save_screenshot(shot + ".failed.png")
        raise AssertionError(f"'{text}' never appeared in {css}: {driver.find_element(By.CSS_SELECTOR, css).text!r}")
    return driver.find_element(By.CSS_SELECTOR, css).text


def _wait(cond, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _say(driver, text):
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, "#elmd-input textarea")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.CSS_SELECTOR, "#elmd-send").click()


def test_page_chat_with_video_bad_upload_and_clear(page, video_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, server, pipe, backend = page
    driver.get(server.url + "/")
    upload = "#elmd-video input[type=file]"
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#elmd-input textarea")
                                    and d.find_elements(By.CSS_SELECTOR, upload))
    assert "ELMD" in driver.title and "情感多模态对话" in driver.page_source

    driver.find_element(By.CSS_SELECTOR, upload).send_keys(str(video_dir / "v12.mp4"))
    _wait_text(driver, "#elmd-status", "视频已上传")
    _say(driver, "你好呀，今天过得怎么样？")
    chat = _wait_text(driver, "#elmd-chat", "收到：你好呀，今天过得怎么样？")
    emotion = _wait_text(driver, "#elmd-emotion", "（")  # '预测情绪： 高兴（happy）' (the page draws a seed per turn)
    word = "高兴" if "高兴（happy）" in emotion else "悲伤" if "悲伤（sad）" in emotion else None
    assert word and f"情绪：{word}" in chat  # beside the reply and in it
    assert driver.find_element(By.CSS_SELECTOR, "#elmd-demo textarea").get_attribute("value").startswith("参考回复")
    seen = pipe.seen[-1]
    assert seen.video and Path(seen.video).parent == backend.videos.root  # the upload went with this turn
    driver.save_screenshot(str(tmp_path / "page.png"))

    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, upload))  # the box was emptied
    driver.find_element(By.CSS_SELECTOR, upload).send_keys(str(video_dir / "corrupt.mp4"))
    assert "视频无法使用" in _wait_text(driver, "#elmd-status", "视频无法使用")
    _say(driver, "还在吗")
    _wait_text(driver, "#elmd-chat", "收到：还在吗")
    assert pipe.seen[-1].video is None and [t.text for t in pipe.seen[-1].history][:1] == ["你好呀，今天过得怎么样？"]
    driver.save_screenshot(str(tmp_path / "page_after_bad_upload.png"))
    if os.environ.get("ELMD_SERVE_SCREENSHOT"):
        shutil.copy(tmp_path / "page.png", os.environ["ELMD_SERVE_SCREENSHOT"])
        shutil.copy(tmp_path / "page_after_bad_upload.png", os.environ["ELMD_SERVE_SCREENSHOT"] + ".after.png")

    calls = len(pipe.seen)
    driver.find_element(By.CSS_SELECTOR, "#elmd-regen").click()  # the last reply is answered again
    _wait(lambda: len(pipe.seen) == calls + 1)
    _wait_text(driver, "#elmd-chat", "收到：还在吗")
    assert pipe.seen[-1].utterance == "还在吗" and len(pipe.seen[-1].history) == len(pipe.seen[-2].history)
    assert driver.find_element(By.CSS_SELECTOR, "#elmd-chat").text.count("收到：还在吗") == 1

    driver.find_element(By.CSS_SELECTOR, "#elmd-clear").click()
    WebDriverWait(driver, 30).until(lambda d: "收到" not in d.find_element(By.CSS_SELECTOR, "#elmd-chat").text)
    _say(driver, "重新开始")
    _wait_text(driver, "#elmd-chat", "收到：重新开始")
    assert pipe.seen[-1].history == ()  # cleared history is gone from the prompt
