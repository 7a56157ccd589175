"""Screenshots of the dashboard's main pages for docs/: a simulation watched live, in headless chromium.

Runs ``flchain simulate --dashboard`` (anvil, memory storage) to its end, then saves the task table,
a task page and a participant page as PNG files, and stops the simulation (SIGINT).

    .venv/bin/python scripts/dashboard_screenshots.py [--out docs] [--nodes 4] [--rounds 8]

Needs chromium and chromium-driver (scripts/install.sh as root) and selenium (the test extra).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from fl_chain.ports import free_port

#: Seconds the simulation may take from start to its last audited round.
TIMEOUT = 300


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    out, port = Path(args.out), free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="flchain-shots-") as tmp:
        command = [sys.executable, "-m", "fl_chain.cli", "simulate", "--nodes", str(args.nodes)]
        command += ["--rounds", str(args.rounds), "--dataset", "digits", "--split", "dirichlet", "--chain", "anvil"]
        command += ["--quiet", "--out", f"{tmp}/run", "--dashboard", "--dashboard-port", str(port)]
        process = subprocess.Popen(command, start_new_session=True)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            deadline = time.monotonic() + TIMEOUT
            while not _finished_and_audited(base, args.rounds):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("the simulation did not finish in time")
                time.sleep(1)
            shots = {"dashboard-tasks.png": "/", "dashboard-task.png": "/tasks/1"}
            for name, path in shots.items():
                driver.get(base + path)
                time.sleep(3)  # the page's first poll and its charts
                driver.save_screenshot(str(out / name))
            account = driver.find_elements(By.CSS_SELECTOR, "a.participant")[0].get_attribute("href")
            driver.get(str(account))
            time.sleep(3)
            driver.save_screenshot(str(out / "dashboard-participant.png"))
        finally:
            driver.quit()
            os.killpg(process.pid, signal.SIGINT)
            process.wait(60)
    print(f"screenshots in {out}: dashboard-tasks.png, dashboard-task.png, dashboard-participant.png")
    return 0


def _finished_and_audited(base: str, rounds: int) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/api/tasks/1", timeout=10) as response:
            task = json.load(response)
    except OSError:
        return False
    audited = [r for r in task["rounds"] if r["audit"]["status"] == "equal"]
    return task["state"] == "finished" and len(audited) == rounds


if __name__ == "__main__":
    sys.exit(main())
