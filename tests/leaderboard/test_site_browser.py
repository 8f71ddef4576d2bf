"""The rendered site in a real headless Chromium, driven by chromedriver through Selenium.

Loaded from file:// as a reader would open it: no console errors, no network request, sorting by
mouse and keyboard, filters, plot and seed pickers, hostile record text shown as text, and the
variant page with its sample browser and thumbnails. A screenshot of each page is kept in
$ROCOBENCH_TEST_ARTIFACTS (default: a temporary folder) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.site_records import (
    EVIL_CAPTION,
    EVIL_DESCRIPTION,
    EVIL_VARIANT,
    SAMPLE_IDS,
    bundled_dataset_ref,
    fixture_records,
    make_record,
    write_all,
)

from leaderboard import render_site

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1600,1000",
)
REMOTE_SCHEMES = ("http:", "https:", "ws:", "wss:", "ftp:")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium: run `make install`")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed: run `make install`",
        allow_module_level=True,
    )

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """Fixture records on the bundled sample, so that thumbnails are made and shown."""
    dataset = bundled_dataset_ref(repo_root)
    records = [
        make_record(r.variant, r.seed, {m: v.value for m, v in r.metrics.items()}, dataset=dataset)
        for r in fixture_records()
    ]
    root = tmp_path_factory.mktemp("browser")
    write_all(root / "results", records, samples=True)
    return render_site(root / "results", root / "site")


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium's driver manager: never download
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rocobench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: webdriver.Chrome, page: Path) -> None:
    driver.get(page.resolve().as_uri())
    driver.get_log("browser")  # drop messages of earlier pages
    driver.refresh()


def console_errors(driver: webdriver.Chrome) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def keep_screenshot(driver: webdriver.Chrome, name: str) -> None:
    folder = Path(os.environ.get("ROCOBENCH_TEST_ARTIFACTS", tempfile.gettempdir()))
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / f"rocobench-{name}.png"))


def variants(driver: webdriver.Chrome, visible_only: bool = False) -> list[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr[data-variant]")
    return [r.get_attribute("data-variant") for r in rows if not visible_only or r.is_displayed()]


def header_button(driver: webdriver.Chrome, column: str):  # type: ignore[no-untyped-def]
    return driver.find_element(By.CSS_SELECTOR, f'th[data-column="{column}"] > button')


def test_index_loads_from_file_without_errors_or_network(
    site: Path, browser: webdriver.Chrome
) -> None:
    browser.get_log("performance")
    open_page(browser, site)
    assert browser.title == "rocobench leaderboard"
    assert console_errors(browser) == []
    urls = requested_urls(browser)
    assert any(u.startswith("file://") and u.endswith("index.html") for u in urls)
    assert [u for u in urls if u.startswith(REMOTE_SCHEMES)] == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.pareto")) > 0
    keep_screenshot(browser, "index")


def test_sorting_by_click_and_by_keyboard(site: Path, browser: webdriver.Chrome) -> None:
    open_page(browser, site)
    assert variants(browser) == sorted(variants(browser))  # by name at first
    bleu = header_button(browser, "bleu4")
    bleu.click()  # best first
    assert variants(browser)[0] == EVIL_VARIANT
    th = browser.find_element(By.CSS_SELECTOR, 'th[data-column="bleu4"]')
    assert th.get_attribute("aria-sort") == "descending"
    bleu.click()
    assert variants(browser)[0] == "llama-base" and th.get_attribute("aria-sort") == "ascending"

    rouge = header_button(browser, "rouge_l")
    rouge.send_keys(Keys.ENTER)
    assert variants(browser) == ["llama-base", EVIL_VARIANT, "qwen-qlora"]
    rouge.send_keys(Keys.SPACE)
    assert variants(browser) == ["qwen-qlora", EVIL_VARIANT, "llama-base"]
    # Costs sort cheapest first.
    header_button(browser, "s_per_image").send_keys(Keys.ENTER)
    assert variants(browser)[0] == "qwen-qlora"
    assert console_errors(browser) == []


def test_hostile_description_and_id_stay_text(site: Path, browser: webdriver.Chrome) -> None:
    open_page(browser, site)
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert browser.execute_script("return document.scripts.length") == 1
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
    quoted = EVIL_VARIANT.replace('"', '\\"')
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-variant="{quoted}"]')
    assert EVIL_DESCRIPTION in row.text and EVIL_VARIANT in row.text


def test_filters_by_technique_base_and_text(site: Path, browser: webdriver.Chrome) -> None:
    open_page(browser, site)
    technique = Select(browser.find_element(By.CSS_SELECTOR, "form.filters select[name=technique]"))
    technique.select_by_visible_text("qlora")
    assert variants(browser, visible_only=True) == ["qwen-qlora"]
    technique.select_by_visible_text("none (uncompressed)")
    assert sorted(variants(browser, visible_only=True)) == sorted([EVIL_VARIANT, "llama-base"])
    technique.select_by_visible_text("all")
    base = Select(browser.find_element(By.CSS_SELECTOR, "form.filters select[name=base]"))
    base.select_by_visible_text("twin:mllama")
    assert sorted(variants(browser, visible_only=True)) == sorted([EVIL_VARIANT, "llama-base"])
    base.select_by_visible_text("all")
    browser.find_element(By.CSS_SELECTOR, "form.filters input[name=q]").send_keys("llama-base")
    assert variants(browser, visible_only=True) == ["llama-base"]
    assert "1 of 3" in browser.find_element(By.CSS_SELECTOR, "form.filters output").text


def test_plot_metric_picker_shows_one_metric(site: Path, browser: webdriver.Chrome) -> None:
    open_page(browser, site)
    shown = browser.find_elements(By.CSS_SELECTOR, ".plot-grid figure:not([hidden])")
    assert {f.get_attribute("data-metric") for f in shown} == {"bleu4"}
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-plots]")).select_by_value("rouge_l")
    shown = browser.find_elements(By.CSS_SELECTOR, ".plot-grid figure:not([hidden])")
    assert {f.get_attribute("data-metric") for f in shown} == {"rouge_l"} and len(shown) == 3
    # The front is drawn and each point links to a variant page.
    links = shown[0].find_elements(By.CSS_SELECTOR, "a.point")
    assert len(links) == 3 and all(".html" in a.get_dom_attribute("href") for a in links)


def test_variant_page_and_sample_browser(site: Path, browser: webdriver.Chrome) -> None:
    open_page(browser, site)
    browser.find_element(By.CSS_SELECTOR, 'tr[data-variant="llama-base"] a.variant').click()
    assert browser.current_url.endswith("/v/roco-caption--llama-base.html")
    assert browser.find_element(By.TAG_NAME, "h1").text == "llama-base"
    assert console_errors(browser) == []
    panels = browser.find_elements(By.CSS_SELECTOR, "[data-seed-panel]")
    assert [p.is_displayed() for p in panels] == [True, False, False]
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-seeds]")).select_by_value("1")
    assert [p.is_displayed() for p in panels] == [False, True, False]
    panel = panels[1]
    rows = panel.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.get_attribute("data-sample") for r in rows] == SAMPLE_IDS
    assert EVIL_CAPTION in panel.text  # the hostile caption, shown as text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    images = panel.find_elements(By.CSS_SELECTOR, "img")
    assert len(images) == len(SAMPLE_IDS)
    loaded = browser.execute_script(
        "return arguments[0].map((img) => img.complete && img.naturalWidth > 0)", images
    )
    assert all(loaded)  # thumbnails load from file:// under the page's policy
    # Sort the samples by a score, best first.
    panel.find_element(By.CSS_SELECTOR, 'th[data-label="BLEU-4"] > button').click()
    rows = panel.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert rows[0].get_attribute("data-sample") == SAMPLE_IDS[-1]
    search = browser.find_element(By.CSS_SELECTOR, "input[data-sample-filter]")
    search.send_keys("000002")
    assert [r.get_attribute("data-sample") for r in rows if r.is_displayed()] == [SAMPLE_IDS[1]]
    keep_screenshot(browser, "variant")
    assert console_errors(browser) == []
