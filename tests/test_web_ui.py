"""The web chat in a real browser: headless Chromium (Debian's chromium + chromium-driver,
driven by selenium) against a live `g2c serve` app on 127.0.0.1.

The served model is a tiny random g2c run; the assistant runs on a deterministic stand-in model
(its tools, the conversation store and the HTTP layer are the real ones), so the page's
behaviour can be checked exactly: a streamed answer with a collapsed tool call, Markdown built
from DOM nodes (an answer full of HTML and a javascript: link renders as text), the
conversation found again after a reload, and the stop button ending a long answer on the
server too."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import torch
from tiny_runs import save_tiny_run

from g2c.assistant import Assistant, AssistantConfig, ConversationStore
from g2c.inference import Backend, BackendInfo, ChatResult, TextStream
from g2c.serve import create_app
from g2c.tokenizer import BPETokenizer
from g2c.tools import ToolRegistry, make_calculator, parse_tool_calls
from g2c.transformer import TransformerLM, load_model

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[ui]')")  # fmt: skip
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")
from live_server import LiveServer  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver; .ci/run installs them)",
)  # fmt: skip

CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "17 * 23"}}</tool_call>'
EVIL = ("Careful: <script>alert(1)</script> and <b>x</b> and <img src=x onerror=alert(3)> "
        "are text. **bold** and `a <i>code</i> span`, [bad](javascript:alert(2)), "
        "[good](https://example.com/page).\n\n```python\nprint('<i>hi</i>')\n```\n\n"
        "- one <u>1</u>\n- two")  # fmt: skip


class StandIn(Backend):
    """Deterministic replies: "multiply" → a calculator call then "The answer is **N**.";
    "danger" → :data:`EVIL`; "long" → 400 words, one every ``delay`` s; else an echo.
    ``closed`` is set when a stream is closed before its end (the stop button)."""

    def __init__(self, delay: float = 0.04) -> None:
        self.delay = delay
        self.closed = threading.Event()

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("stand-in", "stand-in", {"max_len": 4096})

    def _reply(self, messages: list[dict], tools: bool) -> str:
        last = messages[-1]
        if last["role"] == "tool":
            return f"The answer is **{last['content']}**."
        text = last["content"]
        if tools and "multiply" in text:
            return "Let me compute. " + CALL
        if "danger" in text:
            return EVIL
        if "long" in text:
            return " ".join(f"word{i}" for i in range(400))
        return f"You said: {text}"

    def _pieces(self, text: str, slow: bool) -> Iterator[str]:
        done = False
        try:
            for piece in re.findall(r"\S+\s*|\s+", text):
                if slow:
                    time.sleep(self.delay)
                yield piece
            done = True
        finally:
            if not done:
                self.closed.set()

    def stream_complete(self, prompt, **kw) -> TextStream:
        return self.stream_chat([{"role": "user", "content": prompt}], **kw)

    def stream_chat(self, messages, **kw) -> TextStream:
        text = self._reply(messages, False)
        return TextStream(self._pieces(text, "word1 " in text),
                          lambda t, lat, ttft: self._result("", t, 10, len(t) // 4, lat))  # fmt: skip

    def stream_chat_with_tools(self, messages, tools=None, **kw) -> TextStream:
        text = self._reply(messages, bool(tools))
        calls = [{"name": c.name, "arguments": c.arguments, "call_id": "call_1"}
                 for c in parse_tool_calls(text)] if tools else []  # fmt: skip
        content = text.split("<tool_call>")[0] if calls else text
        return TextStream(self._pieces(content, "word1 " in content), lambda t, lat, ttft:
                          ChatResult(messages, t, calls, 10, len(text) // 4, lat, self.info))  # fmt: skip


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    torch.manual_seed(0)
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast("hello there, the cat sat on the mat.\n" * 8, tok.base_vocab_size + 20)
    model = TransformerLM(tok.vocab_size, 32, 2, 4, 256, positional="rope", norm="rmsnorm",
                          mlp="swiglu", generator=torch.Generator().manual_seed(0))  # fmt: skip
    return load_model(save_tiny_run(tmp_path_factory.mktemp("webui") / "tiny", model, tok,
                                    name="Tiny-0K"))  # fmt: skip


@pytest.fixture(scope="module")
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ConversationStore:
    return ConversationStore(tmp_path_factory.mktemp("webui-store") / "c.sqlite")


@pytest.fixture(scope="module")
def url(loaded, stand_in, store) -> Iterator[str]:
    registry = ToolRegistry([make_calculator()])
    assistant = Assistant(stand_in, registry, config=AssistantConfig(max_new_tokens=64))
    app = create_app(loaded, model_id="tiny", max_batch_size=2, store=store, assistant=assistant)
    srv = LiveServer(app)
    yield srv.url
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,860", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))  # fmt: skip
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


# -- helpers -----------------------------------------------------------------------------------------
def wait(driver, predicate, timeout: float = 10.0):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate())


def load(driver, url: str) -> None:
    driver.get(url + "/")
    wait(driver, lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))


def send(driver, text: str) -> None:
    box = driver.find_element(By.ID, "input")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def answers(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#messages .msg.assistant")


def finished(driver, n: int) -> bool:
    msgs = answers(driver)
    return len(msgs) >= n and "streaming" not in msgs[n - 1].get_attribute("class")


def no_alert(driver) -> bool:
    try:
        _ = driver.switch_to.alert  # raises when no alert is open
    except NoAlertPresentException:
        return True
    return False


# -- the tests ---------------------------------------------------------------------------------------
def test_chat_streams_renders_safely_and_survives_a_reload(browser, url, store):
    d = browser
    load(d, url)
    assert d.find_element(By.ID, "model").get_attribute("value") == "g2c-assistant"
    send(d, "please multiply 17 by 23")
    wait(d, lambda: finished(d, 1))
    first = answers(d)[0]
    assert (
        first.find_element(By.CSS_SELECTOR, ".content").text == "Let me compute. The answer is 391."
    )
    assert first.find_element(By.CSS_SELECTOR, ".content strong").text == "391"
    call = first.find_element(By.CSS_SELECTOR, "details.tool-call")
    assert call.get_property("open") is False  # collapsed by default
    assert "calculator" in call.text and '"17 * 23"' in call.text
    call.find_element(By.TAG_NAME, "summary").click()
    assert call.find_element(By.CSS_SELECTOR, "pre.output").text == "391"

    # an answer full of HTML: text, never markup
    send(d, "danger zone")
    wait(d, lambda: finished(d, 2))
    second = answers(d)[1].find_element(By.CSS_SELECTOR, ".content")
    shown = second.text
    assert "<script>alert(1)</script>" in shown and "<b>x</b>" in shown and "<img src=x" in shown
    assert no_alert(d)
    for tag in ("script", "b", "img", "i", "u"):
        assert second.find_elements(By.TAG_NAME, tag) == [], tag
    assert second.find_element(By.TAG_NAME, "strong").text == "bold"
    assert second.find_element(By.CSS_SELECTOR, "p code").text == "a <i>code</i> span"
    assert second.find_element(By.CSS_SELECTOR, "pre code").text == "print('<i>hi</i>')"
    assert [li.text for li in second.find_elements(By.CSS_SELECTOR, "ul li")] == [
        "one <u>1</u>", "two"]  # fmt: skip
    links = second.find_elements(By.TAG_NAME, "a")
    assert [a.get_attribute("href") for a in links] == ["https://example.com/page"]
    assert "[bad](javascript:alert(2))" in shown

    # the conversation is stored: a reload finds it in the list, and opening it shows it again
    cid = store.list()[0].id
    d.get(url + "/")  # no #c= hash: nothing opened
    wait(d, lambda: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    assert answers(d) == []
    item = d.find_element(By.CSS_SELECTOR, f'#conversations li[data-id="{cid}"]')
    assert item.find_element(By.CSS_SELECTOR, ".title").text == "please multiply 17 by 23"
    item.find_element(By.CSS_SELECTOR, "button.open").click()
    wait(d, lambda: len(answers(d)) == 2)
    users = d.find_elements(By.CSS_SELECTOR, "#messages .msg.user")
    assert [u.text.split("\n")[-1] for u in users] == ["please multiply 17 by 23", "danger zone"]
    again = answers(d)
    assert again[0].find_element(By.CSS_SELECTOR, "details.tool-call pre.output").get_attribute(
        "textContent") == "391"  # fmt: skip
    assert again[1].find_elements(By.CSS_SELECTOR, ".content script, .content b") == []
    assert "<script>alert(1)</script>" in again[1].text and no_alert(d)


def test_the_stop_button_ends_a_long_answer_on_the_server(browser, url, store, stand_in):
    d = browser
    load(d, url)
    d.find_element(By.ID, "new-chat").click()
    send(d, "a long one please")
    wait(d, lambda: answers(d) and "word3" in answers(d)[-1].text)
    assert d.find_element(By.ID, "stop").is_displayed()
    d.find_element(By.ID, "stop").click()
    wait(d, lambda: answers(d)[-1].find_elements(By.CSS_SELECTOR, ".stopped"))
    assert stand_in.closed.wait(5)  # the server noticed and closed the model's stream
    assert d.find_element(By.ID, "send").is_displayed()
    shown = answers(d)[-1].find_element(By.CSS_SELECTOR, ".content").text
    assert shown.startswith("word0 word1") and "word399" not in shown

    def stored():
        msgs = store.get(store.list()[0].id).messages
        return msgs if len(msgs) == 2 else None

    msgs = wait(d, stored)
    assert msgs[1].metadata.get("stopped") is True and "word399" not in msgs[1].content
    assert httpx.get(url + "/health").json()["status"] == "ok"
