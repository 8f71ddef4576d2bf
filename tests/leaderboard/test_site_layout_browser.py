"""The page as its readers see it, in headless Chromium at a laptop and a phone viewport, in light
and dark mode: no horizontal page scroll, a sticky variant column, readable interval text, and
plots that follow the table's filters. Screenshots go to $ROCOBENCH_TEST_ARTIFACTS (default: a
temporary folder) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.board_records import write_board

from leaderboard import render_site

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
VIEWPORTS = {"desktop": (1440, 900, False), "phone": (390, 844, True)}
AA = 4.5  # WCAG 2.x AA contrast for normal text

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium: run `make install`")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("Debian's chromium and chromium-driver are not installed", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("board")
    write_board(root / "results")
    return render_site(root / "results", root / "site", images=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rocobench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def show(driver: webdriver.Chrome, page: Path, viewport: str, dark: bool = False) -> None:
    """Open `page` at a viewport (CSS pixels, as a phone or a laptop reports them) and theme."""
    width, height, mobile = VIEWPORTS[viewport]
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    scheme = "dark" if dark else "light"
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    driver.get(page.resolve().as_uri())


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    folder = Path(os.environ.get("ROCOBENCH_TEST_ARTIFACTS", tempfile.gettempdir()))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


# Relative luminance and contrast ratio (WCAG 2.x), of computed colours composited over the
# nearest opaque background up the tree.
CONTRAST_JS = """
function parse(c) {
  const m = c.match(/rgba?\\(([^)]+)\\)/);
  const p = m[1].split(",").map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function over(top, below) {
  const a = top[3];
  return [0, 1, 2].map((i) => top[i] * a + below[i] * (1 - a)).concat([1]);
}
function background(el) {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] === 1) break;
  }
  let bg = [255, 255, 255, 1];
  for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
  return bg;
}
function lum(c) {
  const f = (v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
}
const el = arguments[0];
const bg = background(el);
const fg = over(parse(getComputedStyle(el).color), bg);
const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
return (a + 0.05) / (b + 0.05);
"""


@pytest.mark.parametrize("page", ["index.html", "v/rocov2_sample--tiny-llava-qlora.html"])
@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_no_horizontal_page_scroll(
    board: Path, browser: webdriver.Chrome, viewport: str, page: str
) -> None:
    show(browser, board.parent / page, viewport)
    width = browser.execute_script("return document.documentElement.clientWidth")
    scroll = browser.execute_script("return document.documentElement.scrollWidth")
    assert VIEWPORTS[viewport][0] - 20 <= width <= VIEWPORTS[viewport][0]  # less a scroll bar
    assert scroll <= width, f"page is {scroll} px wide in a {width} px viewport"
    # Tables may scroll, inside their own boxes.
    for box in browser.find_elements(By.CSS_SELECTOR, ".scroll"):
        assert browser.execute_script("return arguments[0].clientWidth", box) <= width


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_interval_text_meets_aa_contrast(
    board: Path, browser: webdriver.Chrome, dark: bool
) -> None:
    show(browser, board, "desktop", dark)
    for selector in ("td .ci", "td.best .ci", "td.tied .ci", "td.eff", ".est", "th .sub"):
        elements = browser.find_elements(By.CSS_SELECTOR, selector)
        for el in elements[:3]:
            ratio = browser.execute_script(CONTRAST_JS, el)
            assert ratio >= AA, f"{selector}: contrast {ratio:.2f}:1 below {AA}:1"


def test_variant_column_stays_in_view_when_the_table_scrolls(
    board: Path, browser: webdriver.Chrome
) -> None:
    show(browser, board, "phone")
    box = browser.find_element(By.CSS_SELECTOR, ".scroll")
    cell = browser.find_element(By.CSS_SELECTOR, "table.board tbody th.variant-cell")
    left = browser.execute_script("return arguments[0].getBoundingClientRect().left", cell)
    browser.execute_script("arguments[0].scrollLeft = 600", box)
    assert browser.execute_script("return arguments[0].scrollLeft", box) > 0  # it did scroll
    after = browser.execute_script("return arguments[0].getBoundingClientRect().left", cell)
    assert after == pytest.approx(left, abs=1)
    # and the cell is opaque: the scrolled figures do not show through it
    bg = browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor", cell)
    assert bg not in ("rgba(0, 0, 0, 0)", "transparent")


def test_plots_follow_the_table_filter(board: Path, browser: webdriver.Chrome) -> None:
    show(browser, board, "desktop")

    def visible_points() -> set[str]:
        points = browser.find_elements(By.CSS_SELECTOR, ".plot-grid figure:not([hidden]) a.point")
        return {p.get_attribute("data-variant") for p in points if p.is_displayed()}

    assert len(visible_points()) == 10
    Select(browser.find_element(By.CSS_SELECTOR, "form.filters select[name=base]")).select_by_value(
        "twin:llava"
    )
    assert visible_points() == {
        "tiny-llava",
        "tiny-llava-qlora",
        "tiny-llava-kd",
        "tiny-llava-kd-qlora-pruned",
    }
    technique = Select(browser.find_element(By.CSS_SELECTOR, "form.filters select[name=technique]"))
    technique.select_by_value("qlora")
    assert visible_points() == {"tiny-llava-qlora", "tiny-llava-kd-qlora-pruned"}


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_screenshots(board: Path, browser: webdriver.Chrome, viewport: str, dark: bool) -> None:
    """Kept for a person to look at: the index at each viewport and theme, top of the page."""
    show(browser, board, viewport, dark)
    name = f"index-{viewport}-{'dark' if dark else 'light'}"
    assert screenshot(browser, name).stat().st_size > 0
    if viewport == "phone" and not dark:
        show(browser, board.parent / "v" / "rocov2_sample--tiny-llava-qlora.html", viewport)
        screenshot(browser, "variant-phone-light")
        show(browser, board, viewport, dark)
    plots = browser.find_elements(By.CSS_SELECTOR, ".plots")
    if plots:
        browser.execute_script("arguments[0].scrollIntoView()", plots[0])
        screenshot(browser, f"plots-{viewport}-{'dark' if dark else 'light'}")
