"""The leaderboard page in a real headless Chromium: tables, loaded images, sorting by a click."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from clbench.board.rank import REFERENCE
from clbench.suites import load_suite

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "leaderboard" / "index.html"
NUM = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)")
#: strategies of the cpu-v1 suite: one row each per stream table
K = len(load_suite("cpu-v1").strategies)
#: the ranked strategies, those in the Friedman test: all but the reference rows (joint, cumulative)
K_RANKED = len(set(load_suite("cpu-v1").strategies) - REFERENCE)


def _find(*names: str) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def browser() -> Iterator["object"]:
    chromium, driver = _find("chromium", "chromium-browser"), _find("chromedriver")
    if not (chromium and driver):
        msg = "chromium and chromedriver are needed: apt-get install chromium chromium-driver (ci/setup.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI installs them: their absence is a broken setup, not a skip
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def _column(drv: "object", table_id: str, col: int) -> list[str]:
    return drv.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.getElementById(arguments[0]).tBodies[0].rows)"
        ".map(r => r.cells[arguments[1]].textContent.trim());", table_id, col)


def _images(drv: "object") -> list[dict[str, object]]:
    return drv.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
        "complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}));")


def test_page_shows_tables_and_loaded_images(browser: "object") -> None:
    from selenium.webdriver.common.by import By

    browser.get(PAGE.as_uri())  # type: ignore[attr-defined]
    ids = [t.get_attribute("id") for t in browser.find_elements(By.CSS_SELECTOR, "table.sortable")]  # type: ignore[attr-defined]
    assert ids == ["overall", "stream-perm-fmnist", "stream-split-digits", "stream-split-fmnist",
                   "stream-split-mnist1d", "protocol-0", "protocol-1"]
    for table_id in ids[1:5]:
        assert len(_column(browser, table_id, 1)) == K  # one row per cpu-v1 strategy
    assert f"Friedman test over N = 4 streams and k = {K_RANKED}" in browser.find_element(By.ID, "friedman").text  # type: ignore[attr-defined]
    imgs = _images(browser)
    assert [i["src"] for i in imgs] == ["cd-diagram.png", "pareto-state.png", "pareto-time.png"]
    for i in imgs:
        assert i["complete"] and int(i["w"]) > 0 and int(i["h"]) > 0, i  # type: ignore[call-overload]


def test_images_missing_beside_the_page_are_detected(browser: "object", tmp_path: Path) -> None:
    """Control: the same page copied without its PNGs has broken images (naturalWidth 0)."""
    shutil.copy(PAGE, tmp_path / "index.html")
    browser.get((tmp_path / "index.html").as_uri())  # type: ignore[attr-defined]
    assert all(int(i["w"]) == 0 for i in _images(browser))  # type: ignore[call-overload]


def test_clicking_a_header_sorts_the_rows(browser: "object") -> None:
    from selenium.webdriver.common.by import By

    browser.get(PAGE.as_uri())  # type: ignore[attr-defined]
    table = browser.find_element(By.ID, "stream-split-fmnist")  # type: ignore[attr-defined]
    headers = [h.text.strip() for h in table.find_elements(By.CSS_SELECTOR, "thead th")]
    col = headers.index("train s")
    before = _column(browser, "stream-split-fmnist", col)
    rows_before = dict(zip(_column(browser, "stream-split-fmnist", 1), before))
    values = [float(NUM.match(v).group(0)) for v in before]  # type: ignore[union-attr]
    assert values != sorted(values), "rows start in rank order, not by train time"
    th = table.find_elements(By.CSS_SELECTOR, "thead th")[col]
    th.click()
    assert th.get_attribute("aria-sort") == "ascending"
    up = [float(NUM.match(v).group(0)) for v in _column(browser, "stream-split-fmnist", col)]  # type: ignore[union-attr]
    assert up == sorted(values)
    th.click()
    assert th.get_attribute("aria-sort") == "descending"
    down = [float(NUM.match(v).group(0)) for v in _column(browser, "stream-split-fmnist", col)]  # type: ignore[union-attr]
    assert down == sorted(values, reverse=True)
    # rows move whole: each strategy keeps its own value
    after = dict(zip(_column(browser, "stream-split-fmnist", 1),
                     _column(browser, "stream-split-fmnist", col)))
    assert after == rows_before
    # text column: alphabetical; an undefined metric ("-", joint's forgetting) sorts last
    table.find_elements(By.CSS_SELECTOR, "thead th")[1].click()
    names = _column(browser, "stream-split-fmnist", 1)
    assert names == sorted(names)
    fcol = headers.index("forgetting (max) %")
    table.find_elements(By.CSS_SELECTOR, "thead th")[fcol].click()
    forgetting = _column(browser, "stream-split-fmnist", fcol)
    assert forgetting[-1] == "-" and _column(browser, "stream-split-fmnist", 1)[-1] == "joint (reference)"
