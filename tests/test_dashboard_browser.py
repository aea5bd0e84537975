"""The dashboard page in a real headless Chromium, against the app served by waitress on 127.0.0.1.

One browser for the module (starting Chromium is most of the cost); skipped only when Debian's
chromium or chromium-driver is not installed.
"""
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests import seed_dashboard as seed

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
# Five minutes after TODAY's last poll: the monitor is healthy, so the page has nothing to warn about.
FRESH_NOW = datetime(2025, 12, 4, 16, 20, tzinfo=timezone.utc)

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (%s, %s)" % (CHROMIUM, CHROMEDRIVER),
                allow_module_level=True)

from selenium import webdriver  # noqa: E402  (a dev dependency: missing it is an error, not a skip)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from dashboard.serve import make_server  # noqa: E402
from spxlib.config import load_config  # noqa: E402


def start_server(db_path, now):
    config = load_config({}, DB_PATH=db_path, LOG_TO_FILE=False)
    server = make_server(db_path, host="127.0.0.1", port=0, config=config, now=lambda: now)
    thread = threading.Thread(target=server.run, name="dashboard-waitress", daemon=True)
    thread.start()
    return server, thread


def stop_server(server, thread):
    """Close every socket from waitress's own loop thread, so run() returns at once."""
    def close_all():
        for channel in list(server._map.values()):
            channel.close()

    server.trigger.pull_trigger(close_all)
    thread.join(timeout=5)
    server.task_dispatcher.shutdown()


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    db_path = str(tmp_path_factory.mktemp("dashboard-browser") / "spx.db")
    seed.seed(db_path)
    server, thread = start_server(db_path, FRESH_NOW)
    yield "http://127.0.0.1:%s" % server.effective_port
    stop_server(server, thread)


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1440,1500"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(20)
    yield browser
    browser.quit()


def wait(driver, condition, timeout=10):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))


def loaded_marker(driver):
    return driver.execute_script("return document.body.dataset.loaded || null")


def wait_for_refresh(driver, previous):
    """Until the page finished a refresh that started after `previous` was read."""
    wait(driver, lambda d: loaded_marker(d) not in (None, previous)
         and not d.execute_script("return document.body.classList.contains('loading')"))


def mover_tickers(driver):
    return [row.get_attribute("data-ticker") for row in driver.find_elements(By.CSS_SELECTOR, "#movers tbody tr")]


def svg_drawn(driver, chart_id):
    return bool(driver.find_elements(By.CSS_SELECTOR, "#%s svg.main-svg" % chart_id))


def test_dashboard_page_end_to_end(server_url, driver):
    driver.get(server_url + "/")
    wait_for_refresh(driver, None)
    wait(driver, lambda d: svg_drawn(d, "chart-sessions") and svg_drawn(d, "chart-strikes"))

    # The movers: top 20 of the session by volume change, the hostile ticker shown as plain text.
    tickers = mover_tickers(driver)
    assert len(tickers) == 20
    assert tickers[:3] == [seed.ticker_for("SPX", seed.DEC, 6000), seed.HOSTILE_TICKER,
                           seed.ticker_for("SPX", seed.JAN, 5200)]
    first_cells = driver.find_elements(By.CSS_SELECTOR, "#movers tbody tr td.ticker")
    assert first_cells[1].text == seed.HOSTILE_TICKER
    assert driver.execute_script("return window.__xss === undefined")
    assert driver.find_elements(By.CSS_SELECTOR, "main img, main script") == []
    # Color-coded by flag: the top mover has multiplier (and delta), the hostile one delta.
    rows = driver.find_elements(By.CSS_SELECTOR, "#movers tbody tr")
    assert "flag-multiplier" in rows[0].get_attribute("class")
    assert "flag-delta" in rows[1].get_attribute("class")
    # A thin baseline is dimmed with a tooltip.
    thin_row = driver.find_element(By.CSS_SELECTOR, '#movers tbody tr[data-ticker="%s"]' % "O:SPX260116P06500000")
    thin_cell = thin_row.find_element(By.CSS_SELECTOR, "td.thin")
    assert "No baseline" in thin_cell.get_attribute("title")
    assert "flag-dormancy" in thin_row.get_attribute("class")

    # The status bar shows the last poll (11:15 ET finished 11:15:40) and no stale warning.
    assert driver.find_element(By.ID, "status-last-poll").text.endswith("11:15 ET")
    assert not driver.find_element(By.ID, "stale").is_displayed()
    assert driver.find_element(By.ID, "date").get_attribute("value") == seed.TODAY

    # Sorting by a header click: strike, largest first, then smallest first.
    driver.find_element(By.CSS_SELECTOR, '#movers th[data-key="strike"]').click()
    strikes = [float(cell.text.replace(",", "")) for cell in
               driver.find_elements(By.CSS_SELECTOR, "#movers tbody tr td:nth-child(4)")]
    assert strikes == sorted(strikes, reverse=True)
    driver.find_element(By.CSS_SELECTOR, '#movers th[data-key="strike"]').click()
    strikes = [float(cell.text.replace(",", "")) for cell in
               driver.find_elements(By.CSS_SELECTOR, "#movers tbody tr td:nth-child(4)")]
    assert strikes == sorted(strikes)
    driver.find_element(By.CSS_SELECTOR, '#movers th[data-key="volume_change"]').click()

    # The expiration filter changes the rows.
    before = loaded_marker(driver)
    Select(driver.find_element(By.ID, "expiration")).select_by_value(seed.WEEKLY)
    wait_for_refresh(driver, before)
    assert mover_tickers(driver) == [seed.ticker_for("SPXW", seed.WEEKLY, 6200)]
    before = loaded_marker(driver)
    Select(driver.find_element(By.ID, "expiration")).select_by_value(seed.JAN)
    wait_for_refresh(driver, before)
    tickers = mover_tickers(driver)
    assert len(tickers) == 17 and all("260116" in t or t == seed.HOSTILE_TICKER for t in tickers)
    assert seed.JAN in driver.find_element(By.ID, "strikes-title").text

    # Clicking a row draws that contract's intraday chart (today against the previous session).
    assert not svg_drawn(driver, "chart-contract")
    hostile_row = driver.find_element(By.CSS_SELECTOR, "#movers tbody tr:nth-child(1)")
    assert hostile_row.get_attribute("data-ticker") == seed.HOSTILE_TICKER
    hostile_row.click()
    wait(driver, lambda d: svg_drawn(d, "chart-contract"))
    assert driver.find_element(By.ID, "contract-title").text.endswith(seed.HOSTILE_TICKER)
    legend = driver.find_element(By.CSS_SELECTOR, "#chart-contract .legend").text
    assert "2025-12-03 (previous)" in legend and "2025-12-04 (this session)" in legend
    assert driver.execute_script("return window.__xss === undefined")

    # Back to all expirations, with the top mover selected, for the screenshot.
    before = loaded_marker(driver)
    Select(driver.find_element(By.ID, "expiration")).select_by_value("")
    wait_for_refresh(driver, before)
    driver.find_element(By.CSS_SELECTOR, "#movers tbody tr:nth-child(1)").click()
    wait(driver, lambda d: d.find_element(By.ID, "contract-title").text.endswith(
        seed.ticker_for("SPX", seed.DEC, 6000)))

    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    OUTPUT.mkdir(exist_ok=True)
    # Tall enough for the whole page: the window's own frame takes some of its height.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, height + 200)
    assert driver.save_screenshot(str(OUTPUT / "dashboard.png"))


def test_stale_data_shows_a_clear_warning(tmp_path, driver):
    """At 14:00 ET with the last poll at 11:15 ET the status bar turns and a banner says why."""
    db_path = str(tmp_path / "spx.db")
    seed.seed(db_path)
    server, thread = start_server(db_path, datetime(2025, 12, 4, 19, 0, tzinfo=timezone.utc))
    try:
        driver.get("http://127.0.0.1:%s/" % server.effective_port)
        wait_for_refresh(driver, None)
        banner = driver.find_element(By.ID, "stale")
        assert banner.is_displayed()
        assert "stale" in banner.text and "no successful poll" in banner.text
        assert "level-warning" in driver.find_element(By.ID, "status-state").get_attribute("class")
        assert driver.find_element(By.ID, "status-age").text == "2.8 h"
        assert len(mover_tickers(driver)) == 20  # the data is still shown
    finally:
        stop_server(server, thread)


def test_empty_database_explains_what_to_do(tmp_path, driver):
    """A database with the schema and no rows: the page says how to get data, without errors."""
    from spxlib import models

    db_path = str(tmp_path / "empty.db")
    models.open_database(db_path)
    models.close_database()
    # During a session with no poll ever, health answers 503 (which the console logs), so this
    # test checks the page's words and not the console.
    server, thread = start_server(db_path, FRESH_NOW)
    try:
        driver.get("http://127.0.0.1:%s/" % server.effective_port)
        wait_for_refresh(driver, None)
        message = driver.find_element(By.ID, "message")
        assert message.is_displayed() and "No data yet" in message.text and "bin/tick" in message.text
        assert mover_tickers(driver) == []
        assert "No data yet" in driver.find_element(By.ID, "movers-empty").text
        assert "No session totals yet" in driver.find_element(By.ID, "chart-sessions").text
    finally:
        stop_server(server, thread)


def test_missing_database_explains_what_to_do(tmp_path, driver):
    server, thread = start_server(str(tmp_path / "never-created.db"), FRESH_NOW)
    try:
        driver.get("http://127.0.0.1:%s/" % server.effective_port)
        wait_for_refresh(driver, None)
        problem = driver.find_element(By.ID, "problem")
        assert "does not exist" in problem.text and "bin/tick" in problem.text
        # Said once, at the top, not again in every panel.
        assert not driver.find_element(By.ID, "message").is_displayed()
        assert not driver.find_element(By.ID, "stale").is_displayed()
        assert "see the message at the top" in driver.find_element(By.ID, "movers-empty").text
        assert mover_tickers(driver) == []
        OUTPUT.mkdir(exist_ok=True)
        driver.save_screenshot(str(OUTPUT / "dashboard-missing-database.png"))
    finally:
        stop_server(server, thread)
