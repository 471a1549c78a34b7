"""Screenshots of the web console's pages for the docs (docs/console/*.png), taken in Debian's headless Chromium.

    .venv/bin/python scripts/console_screenshots.py [--out docs/console]

Starts the stack the browser tests use (tests/gateway/console_stack.py: Trainer, inference service, gateway on
loopback), trains the digits in a Trainer job, and photographs each page as a user sees it: Try a model with
a digit classified, Models (a FAILED version among them), Jobs (the finished job's curves, report and
confusion matrix) and API docs. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.gateway.console_stack import TOKEN, chromium, console_stack  # noqa: E402
from tests.gateway.servers import IMAGE_SHAPE, LABELS  # noqa: E402


def seed_models(base: Path) -> Path:
    """``tiny/1``: a small untrained CNN over the gateway tests' three labels (as their model_base fixture)."""
    from tfic.modeldir import ModelMetadata, Preprocessing
    from trainer_svc.training import architectures
    from trainer_svc.training.export import export_version
    from trainer_svc.training.model import build_classifier

    model = build_classifier(
        architectures.small_cnn(IMAGE_SHAPE), len(LABELS), IMAGE_SHAPE, Preprocessing(), 0.0, 0.0, 3
    )
    export_version(base, "tiny", model, ModelMetadata(labels=LABELS, image_shape=IMAGE_SHAPE))
    return base


def until(check: Any, timeout: float = 120) -> Any:
    """Poll ``check`` (a page condition) until it is truthy."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except WebDriverException:
            pass  # not on the page yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not get there within {timeout:.0f} s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "console")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tfic-console-") as tmp:
        work = Path(tmp)
        stack_cm = console_stack(work / "stack", seed_models(work / "seed"))
        with stack_cm as stack, chromium(1280, 860) as browser:
            job = stack.start_job("digits-demo", 8)
            browser.get(stack.gateway.url + "/console/#jobs")
            until(lambda: browser.find_element("id", "token-dialog").get_attribute("open") is not None)
            browser.find_element("id", "token-input").send_keys(TOKEN)
            browser.find_element("id", "token-save").click()
            until(lambda: browser.find_elements("css selector", f'tr[data-job="{job.name}"]'))[0].click()
            until(lambda: browser.find_element("id", "job-state").text == "Completed", 300)
            until(lambda: browser.find_element("id", "job-report").is_displayed())
            browser.set_window_size(1280, 1560)  # the curves, the report and the confusion matrix in one picture
            browser.save_screenshot(str(args.out / "jobs.png"))
            browser.set_window_size(1280, 860)

            browser.get(stack.gateway.url + "/console/#models")
            until(lambda: "FAILED" in browser.find_element("id", "models-list").text)
            digits = 'article[data-model="digits"]'
            until(lambda: "AVAILABLE" in browser.find_element("css selector", digits).text, 60)
            browser.save_screenshot(str(args.out / "models.png"))

            from selenium.webdriver.support.select import Select

            browser.get(stack.gateway.url + "/console/#try")
            until(lambda: "digits" in [o.text for o in Select(browser.find_element("id", "try-model")).options])
            Select(browser.find_element("id", "try-model")).select_by_value("digits")
            digit = sorted(stack.digits.glob("digit_3/*.png"))[0]
            browser.find_element("id", "try-file").send_keys(str(digit))
            until(lambda: browser.find_element("id", "try-label").text or browser.find_element("id", "error").text)
            if browser.find_element("id", "error").text:
                raise RuntimeError(f"the page shows an error: {browser.find_element('id', 'error').text}")
            browser.save_screenshot(str(args.out / "try.png"))

            browser.get(stack.gateway.url + "/console/#api")
            browser.switch_to.frame(browser.find_element("id", "api-frame"))
            until(lambda: browser.find_elements("css selector", ".swagger-ui .opblock"))
            time.sleep(0.5)  # Swagger UI's fade-in: a picture, not a test
            browser.switch_to.default_content()
            browser.save_screenshot(str(args.out / "api.png"))
    for name in ("try", "models", "jobs", "api"):
        print(args.out / f"{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
