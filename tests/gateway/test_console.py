"""The web console in a real headless Chromium against the real gateway, inference service and Trainer.

One browser and one stack for the module. When Chromium or its driver is missing these tests fail (they do not
skip): ``make test`` installs them first (scripts/ensure_browser.sh).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.settings import GatewaySettings
from tests.gateway.console_stack import TOKEN, ConsoleStack, chromium, console_stack
from tests.gateway.servers import run_gateway
from tfic.v1 import trainer_pb2 as pb

EPOCHS = 6
POLL = 0.05


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_base: Path) -> Iterator[ConsoleStack]:
    with console_stack(tmp_path_factory.mktemp("console"), model_base) as running:
        yield running


@pytest.fixture(scope="module")
def browser(stack: ConsoleStack) -> Iterator[Any]:
    with chromium() as driver:
        # The pages are public; the first one asks for the token, which the tab then keeps.
        driver.get(stack.gateway.url + "/console/")
        wait(driver).until(lambda d: d.find_element("id", "token-dialog").get_attribute("open") is not None)
        driver.find_element("id", "token-input").send_keys(TOKEN)
        driver.find_element("id", "token-save").click()
        yield driver


@pytest.fixture(scope="module")
def digits_job(stack: ConsoleStack) -> str:
    """A job training the digits model (started before the browser opens it, so its curve grows in view)."""
    return stack.start_job("console-digits", EPOCHS).name


def wait(driver: Any, timeout: float = 60) -> Any:
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=POLL)


def text(driver: Any, element_id: str) -> str:
    value: str = driver.find_element("id", element_id).text
    return value


def api(stack: ConsoleStack) -> httpx.Client:
    return stack.gateway.client(headers={"Authorization": f"Bearer {TOKEN}"})


def test_a_jobs_curve_grows_while_it_trains_then_shows_its_report(
    stack: ConsoleStack, browser: Any, digits_job: str
) -> None:
    browser.get(stack.gateway.url + "/console/#jobs")
    row = wait(browser).until(lambda d: d.find_element("css selector", f'tr[data-job="{digits_job}"]'))
    row.click()
    wait(browser).until(lambda d: text(d, "job-title") == digits_job)
    chart = browser.find_element("id", "chart-loss")
    seen: list[int] = []
    deadline = time.monotonic() + 240
    while text(browser, "job-state") != "Completed":
        assert time.monotonic() < deadline, f"the job did not complete; the page says {text(browser, 'job-state')}"
        assert text(browser, "job-state") not in ("Failed", "Stopped"), text(browser, "job-failure")
        points = int(chart.get_attribute("data-points") or 0)
        if not seen or points != seen[-1]:
            seen.append(points)
        time.sleep(POLL)  # sampling what the page shows, not synchronising with it
    seen.append(int(chart.get_attribute("data-points") or 0))
    grown = [p for p in seen if p > 0]
    assert grown[-1] == EPOCHS and len(set(grown)) >= 2, f"the curve did not grow epoch by epoch: {seen}"
    assert grown == sorted(grown)
    wait(browser).until(lambda d: d.find_element("id", "job-report").is_displayed())
    metrics = text(browser, "job-metrics")
    assert "validation:accuracy" in metrics
    confusion = browser.find_elements("css selector", "#job-confusion tbody tr")
    assert len(confusion) == 10
    total = sum(int(td.text) for tr in confusion for td in tr.find_elements("css selector", "td"))
    assert total == 80  # every validation image, once
    assert "tensorboard --logdir" in text(browser, "job-tensorboard")


def test_uploading_a_digit_shows_the_label_the_api_returns(stack: ConsoleStack, browser: Any, digits_job: str) -> None:
    done = stack.wait_job(digits_job)
    assert done.state == pb.JOB_STATE_COMPLETED, done.failure_reason
    with api(stack) as client:
        deadline = time.monotonic() + 60
        while not _available(client.get("/models/digits")):
            assert time.monotonic() < deadline, "the inference service did not load the trained version"
            time.sleep(POLL)
        # A digit the trained model gets right, as a client sees it through the API.
        picked = None
        for path in sorted(stack.digits.glob("digit_*/*.png"))[::7]:
            answer = client.post(
                "/models/digits/invocations?top_k=3",
                content=path.read_bytes(),
                headers={"Content-Type": "application/x-image", "Accept": "application/json;verbose"},
            ).json()
            if answer["predicted_label"] == path.parent.name:
                picked = path, answer
                break
    assert picked is not None, "the trained model got none of the sampled digits right"
    path, answer = picked

    browser.get(stack.gateway.url + "/console/#try")
    from selenium.webdriver.support.select import Select

    wait(browser).until(lambda d: "digits" in [o.text for o in Select(d.find_element("id", "try-model")).options])
    Select(browser.find_element("id", "try-model")).select_by_value("digits")
    browser.find_element("id", "try-k").clear()
    browser.find_element("id", "try-k").send_keys("3")
    browser.find_element("id", "try-file").send_keys(str(path))
    wait(browser).until(lambda d: text(d, "try-label"))
    assert text(browser, "try-label") == path.parent.name == answer["predicted_label"]
    bars = browser.find_elements("css selector", "#try-bars li")
    assert [b.find_element("css selector", ".bar-label").text for b in bars] == answer["labels"]
    shown = [float(b.find_element("css selector", ".bar-value").text.rstrip(" %")) for b in bars]
    assert shown == pytest.approx([100 * p for p in answer["probabilities"]], abs=0.006)
    assert text(browser, "try-latency").endswith(" ms")


def _available(response: httpx.Response) -> bool:
    return response.status_code == 200 and any(v["state"] == "AVAILABLE" for v in response.json()["versions"])


def test_a_failed_version_shows_its_reason(stack: ConsoleStack, browser: Any) -> None:
    with api(stack) as client:
        deadline = time.monotonic() + 60
        while not (r := client.get("/models/broken")).is_success or r.json()["versions"][0]["state"] != "FAILED":
            assert time.monotonic() < deadline, "the broken version never failed"
            time.sleep(POLL)
        reason = r.json()["versions"][0]["error"]
    browser.get(stack.gateway.url + "/console/#models")
    row = wait(browser).until(lambda d: d.find_element("css selector", 'article[data-model="broken"] tbody tr'))
    assert row.find_element("css selector", ".state").text == "FAILED"
    assert row.find_element("css selector", ".reason").text == reason and reason
    tiny = browser.find_element("css selector", 'article[data-model="tiny"] tbody tr')
    assert tiny.find_element("css selector", ".state").text == "AVAILABLE"
    assert "16×16×3" in tiny.text and "épée" in tiny.text


def test_a_job_is_stopped_from_the_page(stack: ConsoleStack, browser: Any, digits_job: str) -> None:
    job = stack.start_job("console-stop-me", 50, model_name="stopped")
    browser.get(stack.gateway.url + "/console/#jobs")
    wait(browser).until(lambda d: d.find_element("css selector", f'tr[data-job="{job.name}"]')).click()
    wait(browser).until(lambda d: text(d, "job-title") == job.name)
    wait(browser).until(lambda d: d.find_element("id", "job-stop").is_displayed())
    browser.find_element("id", "job-stop").click()
    wait(browser, 90).until(lambda d: text(d, "job-state") == "Stopped")
    assert stack.wait_job(job.name).state == pb.JOB_STATE_STOPPED


def test_the_api_docs_render_the_gateways_openapi_document(stack: ConsoleStack, browser: Any) -> None:
    browser.get(stack.gateway.url + "/console/#api")
    frame = wait(browser).until(lambda d: d.find_element("id", "api-frame"))
    browser.switch_to.frame(frame)
    try:
        title = wait(browser).until(lambda d: d.find_element("css selector", ".swagger-ui .info .title"))
        assert "tfic" in title.text.lower()
        operations = browser.find_elements("css selector", ".opblock-summary-path")
        assert "/invocations" in [o.text.replace("\u200b", "") for o in operations]
    finally:
        browser.switch_to.default_content()


def test_without_the_token_the_pages_load_but_the_api_refuses(stack: ConsoleStack) -> None:
    with stack.gateway.client() as client:
        assert client.get("/").status_code == 307 and client.get("/").headers["location"] == "/console/"
        assert client.get("/console/").status_code == 200
        assert client.get("/console/static/console.js").status_code == 200
        assert client.get("/console/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert client.get("/console/api/jobs").status_code == 401
        assert client.get("/models").status_code == 401
    with api(stack) as client:
        assert client.get("/console/api/jobs/no-such-job").status_code == 404
        assert client.get("/console/api/jobs/no-such-job/events").status_code == 404


def test_no_console_serves_no_pages(refused_port: int) -> None:
    """--no-console: / and /console/ are the API's 404s again."""
    settings = GatewaySettings(inference=f"127.0.0.1:{refused_port}", console=False)
    with run_gateway(settings) as gateway, gateway.client() as client:
        for path in ("/", "/console/", "/console/static/console.js", "/console/config.json"):
            response = client.get(path)
            assert response.status_code == 404 and response.json()["error"]["status"] == "NOT_FOUND", path


def test_without_a_trainer_the_jobs_api_says_what_is_missing(refused_port: int) -> None:
    """A console with no --trainer: its jobs routes are a 404 naming the flag, not the generic route_not_found."""
    settings = GatewaySettings(inference=f"127.0.0.1:{refused_port}")
    with run_gateway(settings) as gateway, gateway.client() as client:
        assert client.get("/console/config.json").json()["jobs"] is False
        for method, path in (("GET", "/console/api/jobs"), ("GET", "/console/api/jobs/j1/events"),
                             ("POST", "/console/api/jobs/j1/stop")):  # fmt: skip
            response = client.request(method, path)
            assert response.status_code == 404, path
            error = response.json()["error"]
            assert error["status"] == "NOT_FOUND" and "route_not_found" not in response.text, path
            assert "--trainer HOST:PORT" in error["message"], path
