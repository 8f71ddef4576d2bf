"""The living leaderboard's page parts in a real headless Chromium (Debian's chromium and
chromedriver, as in test_site_browser.py): the twins banner, the status badges and filter, the
study's reported rows beside a reproduction, and the hardware selector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.run_records import A100, H100, make_run
from fixtures.site_records import fixture_records, write_all
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

# Skips this module too where Chromium is missing; `browser` is the shared Chromium fixture.
from test_site_browser import browser, console_errors, keep_screenshot, open_page, webdriver

from leaderboard import render_site

__all__ = ["browser"]
TASK = "rocov2_paper327"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("living")
    results = root / "results"
    for seed in (0, 1, 2):
        make_run(results / TASK / "qwen2-vl-2b-qlora" / f"seed-{seed}", "qwen2-vl-2b-qlora", seed)
        make_run(
            results / "alice" / TASK / "qwen2-vl-2b-qlora" / f"seed-{seed}",
            "qwen2-vl-2b-qlora",
            seed,
            hardware=H100,
            generate_s=4.0,
        )
    bad = results / "mallory" / TASK / "qwen2-vl-2b" / "seed-0"
    make_run(bad, "qwen2-vl-2b", 0, hardware=A100)
    data = json.loads((bad / "record.json").read_text())
    data["metrics"]["rouge_l"]["value"] = 0.9
    (bad / "record.json").write_text(json.dumps(data))
    write_all(results / "twins", fixture_records()[:3])  # twins: the banner must say so
    return render_site(results, root / "site", images=False)


def shown_rows(driver: webdriver.Chrome, task: str = TASK) -> list[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{task}-table tbody tr[data-variant]")
    return [
        f"{r.get_attribute('data-variant')}@{r.get_attribute('data-status')}"
        for r in rows
        if r.is_displayed()
    ]


def test_banner_badges_reported_rows_and_hardware(site: Path, browser: webdriver.Chrome) -> None:
    open_page(browser, site)
    banner = browser.find_element(By.ID, "twins-banner")
    assert banner.is_displayed() and "Not real results" in banner.text
    # nine reported rows, the QLoRA row beside its reproductions, the others not yet reproduced
    reported = browser.find_elements(By.CSS_SELECTOR, "#reported-table tr.reported-row")
    assert len(reported) == 9 and all(r.is_displayed() for r in reported)
    group = browser.find_element(
        By.CSS_SELECTOR, '#reported-table tbody[data-variant="qwen2-vl-2b-qlora"]'
    )
    assert "0.1142 ± 0.0011" in group.text and "reproduced by alice" in group.text
    assert "Δ" in group.text
    missing = browser.find_elements(By.CSS_SELECTOR, "#reported-table tr.missing")
    assert len(missing) == 7 and "not yet reproduced" in missing[0].text
    # badges, and the status filter
    badges = {
        b.get_attribute("data-status-badge")
        for b in browser.find_elements(By.CSS_SELECTOR, "[data-status-badge]")
        if b.is_displayed()
    }
    assert badges == {"checked", "rejected"}
    assert len(shown_rows(browser)) == 3
    status = Select(
        browser.find_element(By.CSS_SELECTOR, f'select[data-status-filter="{TASK}-table"]')
    )
    status.select_by_value("rejected")
    assert shown_rows(browser) == ["qwen2-vl-2b@rejected"]
    status.select_by_value("")
    # the hardware selector: one machine's rows at a time for time, memory and energy
    hardware = Select(
        browser.find_element(By.CSS_SELECTOR, f'select[data-hardware-filter="{TASK}-table"]')
    )
    assert {o.text for o in hardware.options} >= {"A100-SXM4-40GB", "2 x H100 80GB HBM3"}
    table = browser.find_element(By.ID, f"{TASK}-table")
    assert "mixed-hardware" in table.get_attribute("class")
    hardware.select_by_visible_text("2 x H100 80GB HBM3")
    assert shown_rows(browser) == ["qwen2-vl-2b-qlora@checked"]
    assert "mixed-hardware" not in table.get_attribute("class")
    keep_screenshot(browser, "living")
    assert console_errors(browser) == []
