"""The dashboard in a real browser (Debian's headless chromium, driven by Selenium through chromedriver)
while ``flchain simulate --dashboard`` runs: the task appears, its round count and accuracy chart grow,
a participant's page opens, and a round's model downloads with the bytes ``flchain model get`` writes.

The simulation is a child process (anvil, one embedded kubo peer per node, all on 127.0.0.1); it ends
in this test. Every wait is bounded and waits for progress, never for a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fl_chain.chain.anvil import ANVIL_BINARY
from fl_chain.ports import free_port
from tests.helpers.cli_runner import InProcessCli
from tests.helpers.gated_client import GATE_ENV, allow

#: The repository root (the simulation imports the gated client from tests/).
REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NODES, ROUNDS = 3, 6
#: Bounds of the waits: the simulation's start (imports, anvil, three kubo peers) and its whole run.
START_SECONDS = 90
RUN_SECONDS = 150

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kubo,
    pytest.mark.process_chain,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="chromium and chromium-driver are not installed (scripts/install.sh installs them as root)",
    ),
]

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float, *, process: subprocess.Popen[Any]) -> T:
    """``check()``'s first truthy value, polled until ``timeout``; fails early if the simulation died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"the simulation exited ({process.returncode}) while waiting for {what}")
        time.sleep(0.1)
    pytest.fail(f"no {what} within {timeout:.0f} s")


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1400")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def simulation(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[Any], int, Path]]:
    """``flchain simulate --dashboard`` in its own process group, stopped (SIGINT) at the end of the test.
    Its nodes train through :mod:`tests.helpers.gated_client`: one round at first, then as the test allows
    (``allow(tmp_path / "gate", k)``)."""
    if not ANVIL_BINARY.exists():
        pytest.fail(f"anvil is not installed at {ANVIL_BINARY}; run npm ci --prefix ganache")
    port, out = free_port(), tmp_path / "run"
    command = [sys.executable, "-m", "fl_chain.cli", "simulate", "--nodes", str(NODES), "--rounds", str(ROUNDS)]
    command += ["--dataset", "digits", "--model", "logreg", "--epochs", "1", "--partitions", "2"]
    command += ["--client", "tests.helpers.gated_client:make_client"]
    allow(tmp_path / "gate", 1)
    command += ["--chain", "anvil", "--storage", "kubo", "--quiet", "--out", str(out)]
    command += ["--dashboard", "--dashboard-port", str(port)]
    log = (tmp_path / "simulate.log").open("w")
    env = {k: v for k, v in os.environ.items() if k not in ("FLCHAIN_DEBUG", "FLCHAIN_KEY_PASSWORD")}
    env[GATE_ENV] = str(tmp_path / "gate")
    env["PYTHONPATH"] = str(REPO_ROOT)  # the gated client lives in tests/
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        yield process, port, out
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # the dashboard lingers until Ctrl-C
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        log.close()
        print((tmp_path / "simulate.log").read_text()[-3000:])


def _text(driver: Any, selector: str) -> str | None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0].text if found else None
    except WebDriverException:  # the page replaced the element while we read it
        return None


def _attribute(driver: Any, selector: str, name: str) -> str | None:
    """The ``name`` attribute of the first element ``selector`` finds (None while absent or being replaced)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0].get_attribute(name) if found else None
    except WebDriverException:
        return None


def _count(driver: Any, selector: str) -> int:
    from selenium.webdriver.common.by import By

    return len(driver.find_elements(By.CSS_SELECTOR, selector))


def test_browser_watches_a_simulation_and_downloads_a_model_equal_to_model_get(
    browser: Any,
    simulation: tuple[subprocess.Popen[Any], int, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    process, port, out = simulation
    base = f"http://127.0.0.1:{port}"

    # The dashboard comes up with the federation; the task appears in the table.
    def page_loads() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/api/chain", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for("dashboard", page_loads, START_SECONDS, process=process)
    browser.get(f"{base}/?poll=300")
    wait_for("task row", lambda: _text(browser, '#tasks-table tr[data-task="1"] .rounds-done'), 30, process=process)

    # The task page: the round count and the accuracy chart grow while the rounds run. The nodes train
    # one round at a time as the test allows, so the page is seen in every state of the running task.
    # Links are followed by their href: the pages re-render on every poll, so a click can land on a row
    # being replaced.
    task_link = 'tr[data-task="1"] a.task-link'
    browser.get(wait_for("the task's link", lambda: _attribute(browser, task_link, "href"), 30, process=process))
    points: list[int] = []
    for done in range(1, ROUNDS + 1):
        if done > 1:
            allow(tmp_path / "gate", done)
        wait_for(
            f"{done}/{ROUNDS} rounds done on the page",
            lambda: _text(browser, ".cards .rounds-done") == f"{done}/{ROUNDS}",  # noqa: B023 - waited here
            RUN_SECONDS,
            process=process,
        )
        points.append(_count(browser, "#accuracy-chart circle.point"))
    wait_for(
        "the full accuracy chart",
        lambda: _count(browser, "#accuracy-chart circle.point") == ROUNDS - 1,
        30,
        process=process,
    )
    assert points == sorted(points) and points[0] < ROUNDS - 1, f"accuracy points seen per round: {points}"
    accuracy = float(_text(browser, ".latest-accuracy") or 0)
    assert 0.5 < accuracy <= 1.0
    wait_for("audits", lambda: _count(browser, "#rounds-table .badge.audit-equal") == ROUNDS, 60, process=process)
    browser.save_screenshot(str(tmp_path / "task.png"))

    # A participant's page.
    participant_link = "#participants-table a.participant"
    account = wait_for("a participant link", lambda: _text(browser, participant_link), 30, process=process)
    browser.get(wait_for("its address", lambda: _attribute(browser, participant_link, "href"), 30, process=process))
    record = wait_for("participant record", lambda: _text(browser, "#participant-record"), 30, process=process)
    assert f"{ROUNDS} (rounds 0, 1, 2, 3, 4, 5)" in record
    assert account in (_text(browser, "h1") or "")

    # A round's model, downloaded through the page's link, is what `flchain model get` writes.
    browser.back()
    link = wait_for(
        "model link",
        lambda: _attribute(browser, f'a.model-link[data-round="{ROUNDS - 2}"]', "href"),
        30,
        process=process,
    )
    with urllib.request.urlopen(link, timeout=60) as response:
        downloaded = response.read()
    with urllib.request.urlopen(f"{base}/api/chain", timeout=10) as response:
        rpc = json.load(response)["rpc"]  # the simulation's anvil
    cli = InProcessCli(capsys, monkeypatch)
    result = cli(
        "model", "get", "--rpc", str(rpc), "--deployment", str(out / "deployment.json"), "--task", "1",
        "--round", str(ROUNDS - 2), "--out", str(tmp_path / "model.npy"), "--timeout", "30",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert downloaded == (tmp_path / "model.npy").read_bytes()

    # A task that does not exist: the page says so.
    browser.get(f"{base}/tasks/7")
    assert "task 7 does not exist" in (_text(browser, "#error-message") or "")
