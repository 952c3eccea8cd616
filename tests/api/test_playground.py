"""The web playground in a real headless browser (Debian's chromium, driven by Selenium
through Debian's chromedriver) against a real server with real sandboxes.

Set ``EXECBOX_SCREENSHOTS=DIR`` to save a screenshot of each main view there (the README's
come from ``EXECBOX_SCREENSHOTS=docs``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
KEY = "playground-key"
WAIT_S = 90

pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver (./run.sh test installs them)",
)


@pytest.fixture(scope="module")
def site(start_server):
    """A server with an API key (so the page must send it) that pauses after two executions."""
    return start_server(env={"EXECBOX_API_KEYS": f"play:{KEY}"}, args=("--max-tool-iterations", "2"))


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1440,960", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(browser: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = WAIT_S) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)


def find(browser: WebDriver, css: str) -> WebElement:
    return wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, css))


def all_of(browser: WebDriver, css: str) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, css)


def screenshot(browser: WebDriver, name: str) -> None:
    folder = os.environ.get("EXECBOX_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))


def open_page(browser: WebDriver, site) -> None:
    """Load the playground; enter the API key once (it is kept in the page's storage)."""
    browser.get(site.url + "/")
    key = find(browser, "#api-key")
    if key.get_attribute("value") != KEY:
        key.clear()
        key.send_keys(KEY)
        find(browser, "#save-key").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))


def send(browser: WebDriver, text: str) -> None:
    prompt = find(browser, "#prompt")
    prompt.clear()
    browser.execute_script("arguments[0].value = arguments[1]", prompt, text)
    find(browser, "#send").click()


def status(browser: WebDriver) -> str:
    return find(browser, "#status").text


def test_the_page_needs_the_key(site, browser: WebDriver) -> None:
    browser.get(site.url + "/")
    browser.execute_script("localStorage.clear()")
    browser.get(site.url + "/")
    wait(browser, lambda d: "key refused" in d.find_element(By.ID, "key-state").text)
    assert not all_of(browser, "#model option")
    open_page(browser, site)
    models = [o.get_attribute("value") for o in all_of(browser, "#model option")]
    assert "execbox-direct" in models


def test_chat_shows_a_plot(site, browser: WebDriver) -> None:
    open_page(browser, site)
    send(browser, "Plot the squares.\n```python\n"
                  "import os, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                  "plt.figure(figsize=(5, 3))\nplt.plot([1, 2, 3, 4], [1, 4, 9, 16], marker='o')\n"
                  "plt.title('squares')\nplt.savefig(os.path.join(os.environ['OUTPUT_DIR'], 'squares.png'))\n"
                  "plt.savefig(os.path.join(os.environ['OUTPUT_DIR'], 'squares.svg'))\n"
                  "print('saved the plot')\n```")
    images = wait(browser, lambda d: len(all_of(d, "img.output-image")) == 2 and all_of(d, "img.output-image"))
    loaded = "return arguments[0].every(i => i.complete && i.naturalWidth > 0)"
    wait(browser, lambda d: d.execute_script(loaded, images))
    widths = {i.get_attribute("alt"): browser.execute_script("return arguments[0].naturalWidth", i) for i in images}
    assert widths == {"squares.png": 500, "squares.svg": 480}  # 5 in at 100 dpi; 360 pt at 96/72 px per pt
    cell = find(browser, "[data-testid=code-cell]")
    assert "matplotlib" in cell.find_element(By.CSS_SELECTOR, "pre.code").text
    assert cell.find_elements(By.CSS_SELECTOR, "pre.code .tok-kw")  # highlighted
    assert "saved the plot" in cell.find_element(By.CSS_SELECTOR, "[data-testid=stdout]").text
    assert cell.find_element(By.CSS_SELECTOR, "[data-testid=return-code]").text == "return code 0"
    link = cell.find_element(By.CSS_SELECTOR, "a.download")
    assert link.text == "squares.png" and link.get_attribute("href").startswith("blob:")
    wait(browser, lambda d: status(d) == "stop_reason: end_turn")
    assert browser.find_element(By.ID, "chat-container").text.startswith("container_")
    browser.execute_script("arguments[0].scrollIntoView()", cell)
    screenshot(browser, "playground-chat")


def test_uploaded_csv_is_read_and_results_previewed(site, browser: WebDriver, tmp_path: Path) -> None:
    open_page(browser, site)
    find(browser, "#new-chat").click()
    data = tmp_path / "sales.csv"
    data.write_text("region,value\nnorth,10\nsouth,20\neast,30\n")
    find(browser, "#attach").send_keys(str(data))
    assert find(browser, "[data-testid=attachment]").text.startswith("sales.csv")
    send(browser, "```python\nimport os, pandas as pd\ndf = pd.read_csv('sales.csv')\n"
                  "print('total', df['value'].sum())\n"
                  "df.describe().to_csv(os.path.join(os.environ['OUTPUT_DIR'], 'summary.csv'))\n```")
    stdout = find(browser, "[data-testid=stdout]")
    assert stdout.text.strip() == "total 60"
    table = find(browser, "[data-testid=csv-preview]")
    rows = [[c.text for c in r.find_elements(By.CSS_SELECTOR, "th, td")] for r in table.find_elements(By.TAG_NAME, "tr")]
    assert rows[0] == ["", "value"] and rows[1] == ["count", "3.0"] and rows[2] == ["mean", "20.0"]
    assert "sales.csv" in browser.find_element(By.CSS_SELECTOR, ".msg.user").text
    screenshot(browser, "playground-files")


def test_tool_errors_pause_turn_and_client_tools(site, browser: WebDriver) -> None:
    open_page(browser, site)
    find(browser, "#new-chat").click()
    # Three executions with a limit of two per request: the turn pauses, Continue runs the third.
    send(browser, "```view /workspace/missing.txt\n```\n```bash\necho second\n```\n```bash\necho third\n```")
    error = find(browser, "[data-testid=tool-error]")
    assert "file_not_found" in error.text
    find(browser, "[data-testid=continue]").click()
    wait(browser, lambda d: any("third" in e.text for e in d.find_elements(By.CSS_SELECTOR, "[data-testid=stdout]")))
    wait(browser, lambda d: status(d) == "stop_reason: end_turn")
    assert [e.text.strip() for e in all_of(browser, "[data-testid=stdout]")] == ["second", "third"]

    find(browser, "#new-chat").click()
    tools = find(browser, "#client-tools")
    browser.execute_script(
        "arguments[0].value = arguments[1]", tools,
        '[{"name": "get_weather", "description": "Weather of a city", '
        '"input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]',
    )
    send(browser, '```tool get_weather\n{"city": "Paris"}\n```')
    answer = find(browser, "[data-testid=tool-answer]")
    assert status(browser) == "stop_reason: tool_use"
    answer.send_keys("sunny, 21 degrees")
    find(browser, "[data-testid=send-tool-results]").click()
    wait(browser, lambda d: status(d) == "stop_reason: end_turn")
    assert "sunny, 21 degrees" in all_of(browser, ".msg.assistant")[-1].text
    browser.execute_script("arguments[0].value = ''", tools)


def test_container_cells_and_files(site, browser: WebDriver) -> None:
    open_page(browser, site)
    find(browser, "#tab-containers").click()
    find(browser, "#new-container").click()
    container = wait(browser, lambda d: d.find_element(By.ID, "container-id").text)
    assert container.startswith("container_")
    wait(browser, lambda d: any(r.get_attribute("data-id") == container for r in all_of(d, "[data-testid=container-row]")))

    def run_cell(index: int, source: str) -> WebElement:
        cell = wait(browser, lambda d: all_of(d, "[data-testid=nb-cell]")[index])
        text = cell.find_element(By.CSS_SELECTOR, "[data-testid=cell-source]")
        browser.execute_script("arguments[0].value = arguments[1]", text, source)
        cell.find_element(By.CSS_SELECTOR, "[data-testid=run-cell]").click()
        wait(browser, lambda d: cell.find_elements(By.CSS_SELECTOR, "[data-testid=cell-return-code]"))
        return cell

    run_cell(0, "x = 41\nopen('note.txt', 'w').write('kept between cells')\nprint('first cell', flush=True)")
    second = run_cell(1, "print(open('note.txt').read())\nprint(x + 1)")
    # The cells share the container's live kernel: the variable, as well as the file.
    assert second.find_element(By.CSS_SELECTOR, "[data-testid=cell-stdout]").text == "kept between cells\n42"
    assert "variables persist" in browser.find_element(By.ID, "kernel-note").text
    find(browser, "#refresh-containers").click()
    row = wait(browser, lambda d: [r for r in all_of(d, "[data-testid=container-row]") if r.get_attribute("data-id") == container])
    assert row[0].find_elements(By.TAG_NAME, "td")[4].text == "live"

    # Output shows while the cell runs.
    cell = wait(browser, lambda d: all_of(d, "[data-testid=nb-cell]")[2])
    source = cell.find_element(By.CSS_SELECTOR, "[data-testid=cell-source]")
    browser.execute_script("arguments[0].value = arguments[1]", source,
                           "import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('finished')")
    cell.find_element(By.CSS_SELECTOR, "[data-testid=run-cell]").click()
    wait(browser, lambda d: "started" in cell.text)
    assert "finished" not in cell.text and not cell.find_elements(By.CSS_SELECTOR, "[data-testid=cell-return-code]")
    wait(browser, lambda d: cell.find_elements(By.CSS_SELECTOR, "[data-testid=cell-return-code]"))
    assert cell.find_element(By.CSS_SELECTOR, "[data-testid=cell-stdout]").text == "started\nfinished"

    files = wait(browser, lambda d: [r for r in all_of(d, "[data-testid=container-file]") if "note.txt" in r.text])
    files[0].find_element(By.TAG_NAME, "button").click()
    assert "kept between cells" in find(browser, "#file-preview pre").text
    screenshot(browser, "playground-containers")


def test_output_is_shown_as_text_never_as_html(site, browser: WebDriver) -> None:
    """Model and sandbox output is untrusted: markup in it must stay text."""
    open_page(browser, site)
    find(browser, "#new-chat").click()
    send(browser, "<img src=x onerror=\"window.pwnedByPrompt=1\">\n```python\n"
                  "print('<img src=x onerror=\"window.pwnedByOutput=1\"><b>bold</b>')\n```")
    stdout = find(browser, "[data-testid=stdout]")
    assert stdout.text.strip() == '<img src=x onerror="window.pwnedByOutput=1"><b>bold</b>'
    wait(browser, lambda d: status(d) == "stop_reason: end_turn")
    assert not stdout.find_elements(By.TAG_NAME, "b") and not all_of(browser, ".msg img")
    assert browser.execute_script("return [window.pwnedByPrompt, window.pwnedByOutput]") == [None, None]


def test_repl_tool_keeps_variables_across_turns(site, browser: WebDriver) -> None:
    open_page(browser, site)
    find(browser, "#new-chat").click()
    find(browser, "#tool-version option[value=code_execution_20260521]").click()
    send(browser, "```python\nanswer = 6 * 7\nprint('set')\n```")
    wait(browser, lambda d: status(d) == "stop_reason: end_turn")
    send(browser, "```python\nprint(answer)\n```")
    wait(browser, lambda d: len(all_of(d, "[data-testid=stdout]")) == 2)
    assert [e.text.strip() for e in all_of(browser, "[data-testid=stdout]")] == ["set", "42"]
    assert all_of(browser, "[data-testid=code-cell] .cell-head span")[0].text == "code_execution"
    find(browser, "#tool-version option[value=code_execution_20250825]").click()
