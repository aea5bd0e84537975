"""The dashboard's JSON API through Flask's test client, over a real seeded SQLite file."""
import hashlib
import os
from datetime import datetime, timezone
from urllib.parse import quote

import pytest

from dashboard import create_app
from dashboard.app import plotly_js_path
from spxlib import models
from spxlib.config import load_config
from tests import seed_dashboard as seed

# TODAY's last poll was at 11:15 ET (16:15Z): five minutes later the data is fresh ...
FRESH_NOW = datetime(2025, 12, 4, 16, 20, tzinfo=timezone.utc)
# ... at 14:00 ET, with polls due every 30 minutes and none since 11:15, it is stale.
STALE_NOW = datetime(2025, 12, 4, 19, 0, tzinfo=timezone.utc)
TOP = seed.ticker_for("SPX", seed.DEC, 6000)


@pytest.fixture(scope="module")
def seeded_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("dashboard-api") / "spx.db")
    seed.seed(path)
    return path


def make_client(db_path, now=FRESH_NOW):
    config = load_config({}, DB_PATH=db_path, LOG_TO_FILE=False)
    return create_app(db_path, config=config, now=lambda: now).test_client()


@pytest.fixture(scope="module")
def client(seeded_path):
    return make_client(seeded_path)


def by_ticker(rows):
    return {row["ticker"]: row for row in rows}


# --- /api/enriched ---------------------------------------------------------------------------

def test_enriched_defaults_to_the_latest_session_with_every_watched_contract(client):
    body = client.get("/api/enriched").get_json()
    assert body["date"] == seed.TODAY
    assert body["count"] == len(seed.contracts()) == 35
    top = by_ticker(body["contracts"])[TOP]
    assert top == {
        "ticker": TOP, "root": "SPX", "expiration_date": seed.DEC, "strike": 6000.0,
        "captured_at": seed.LAST_POLL_TODAY, "volume": 4810, "baseline_volume": 600,
        "baseline_source": "aligned", "volume_change": 4210, "ratio": 8.0167, "price": 6.0,
        "premium": 2886000.0, "underlying_price": 6850.0, "moneyness": 0.8759, "dte": 15,
        "implied_volatility": 0.25, "delta": -0.1, "open_interest": 1060, "flags": ["delta", "multiplier"],
    }


def test_enriched_takes_each_contracts_latest_snapshot_even_when_it_left_the_last_poll(client):
    rows = by_ticker(client.get("/api/enriched").get_json()["contracts"])
    dropped = rows[seed.DROPPED_TICKER]
    assert dropped["captured_at"] == seed.TODAY + "T15:45:00Z"
    assert dropped["volume"] == seed.volume_at({"ticker": seed.DROPPED_TICKER, "strike": 4900.0}, seed.TODAY, 2)


def test_enriched_premium_falls_back_from_vwap_to_close_to_last_price(client):
    rows = by_ticker(client.get("/api/enriched?expiration=" + seed.DEC).get_json()["contracts"])
    with_close = rows[seed.ticker_for("SPX", seed.DEC, 5100)]
    with_last = rows[seed.ticker_for("SPX", seed.DEC, 5200)]
    assert with_close["price"] == 5.1 and with_close["premium"] == round(with_close["volume"] * 5.1 * 100, 2)
    assert with_last["price"] == 5.2 and with_last["premium"] == round(with_last["volume"] * 5.2 * 100, 2)


def test_enriched_ratio_is_null_without_a_baseline_and_change_counts_all_volume(client):
    row = by_ticker(client.get("/api/enriched").get_json()["contracts"])["O:SPX260116P06500000"]
    assert row["baseline_source"] == "none" and row["baseline_volume"] is None
    assert row["ratio"] is None
    assert row["volume_change"] == row["volume"] == 660
    assert row["flags"] == ["dormancy"]


def test_enriched_filters_by_expiration_in_ticker_order(client):
    body = client.get("/api/enriched?expiration=%s" % seed.JAN).get_json()
    assert body["expiration"] == seed.JAN and body["count"] == 17
    tickers = [row["ticker"] for row in body["contracts"]]
    assert tickers == sorted(tickers)  # OCC tickers: root, expiration, then strike
    strikes = [row["strike"] for row in body["contracts"] if row["ticker"] != seed.HOSTILE_TICKER]
    assert strikes == sorted(strikes)
    assert {row["expiration_date"] for row in body["contracts"]} == {seed.JAN}
    assert {row["dte"] for row in body["contracts"]} == {43}


def test_enriched_of_the_previous_session_has_no_baselines(client):
    body = client.get("/api/enriched?date=" + seed.PREVIOUS).get_json()
    assert body["date"] == seed.PREVIOUS and body["count"] == 35
    assert {row["baseline_source"] for row in body["contracts"]} == {None}
    assert by_ticker(body["contracts"])[TOP]["flags"] == []


def test_a_date_without_data_answers_empty_with_a_message(client):
    body = client.get("/api/enriched?date=2025-12-06").get_json()
    assert body["contracts"] == [] and body["date"] == "2025-12-06"
    assert "2025-12-06" in body["message"]


# --- /api/movers -----------------------------------------------------------------------------

def test_movers_are_the_largest_volume_changes_first(client):
    body = client.get("/api/movers").get_json()
    assert body["limit"] == 20 and len(body["movers"]) == 20
    tickers = [row["ticker"] for row in body["movers"]]
    assert tickers[:5] == [TOP, seed.HOSTILE_TICKER, seed.ticker_for("SPX", seed.JAN, 5200),
                           seed.ticker_for("SPXW", seed.WEEKLY, 6200), "O:SPX260116P06500000"]
    changes = [row["volume_change"] for row in body["movers"]]
    assert changes == sorted(changes, reverse=True)
    assert body["movers"][1]["flags"] == ["delta"]


def test_movers_limit_and_expiration_filter(client):
    body = client.get("/api/movers?limit=2&expiration=" + seed.JAN).get_json()
    assert [row["ticker"] for row in body["movers"]] == [seed.HOSTILE_TICKER, seed.ticker_for("SPX", seed.JAN, 5200)]
    weekly = client.get("/api/movers?expiration=" + seed.WEEKLY).get_json()["movers"]
    assert [row["root"] for row in weekly] == ["SPXW"]


@pytest.mark.parametrize("limit", ["-1", "abc", "0", "501", "2.5"])
def test_movers_reject_a_bad_limit(client, limit):
    response = client.get("/api/movers?limit=" + limit)
    assert response.status_code == 400
    assert "limit" in response.get_json()["error"]


# --- /api/alerts, /api/expirations --------------------------------------------------------------

def test_alerts_of_the_day_largest_premium_first(client):
    body = client.get("/api/alerts").get_json()
    assert body["date"] == seed.TODAY and body["count"] == 4
    assert [(row["ticker"], row["flag"]) for row in body["alerts"]] == [
        (TOP, "delta"), (TOP, "multiplier"), (seed.HOSTILE_TICKER, "delta"), ("O:SPX260116P06500000", "dormancy"),
    ]
    previous = client.get("/api/alerts?date=" + seed.PREVIOUS).get_json()
    assert [row["ticker"] for row in previous["alerts"]] == [seed.ticker_for("SPX", seed.JAN, 5200)]
    only_jan = client.get("/api/alerts?expiration=" + seed.JAN).get_json()
    assert {row["expiration_date"] for row in only_jan["alerts"]} == {seed.JAN}


def test_expirations_count_contracts_and_sum_volumes(client):
    body = client.get("/api/expirations").get_json()
    rows = {row["expiration_date"]: row for row in body["expirations"]}
    assert list(rows) == [seed.WEEKLY, seed.DEC, seed.JAN]
    assert rows[seed.WEEKLY]["roots"] == ["SPXW"] and rows[seed.WEEKLY]["contracts"] == 1
    assert rows[seed.DEC]["contracts"] == 17 and rows[seed.JAN]["contracts"] == 17
    enriched = client.get("/api/enriched?expiration=" + seed.DEC).get_json()["contracts"]
    assert rows[seed.DEC]["volume"] == sum(row["volume"] for row in enriched)
    assert rows[seed.DEC]["premium"] == pytest.approx(sum(row["premium"] for row in enriched))
    assert rows[seed.DEC]["alerted_contracts"] == 1 and rows[seed.JAN]["alerted_contracts"] == 2
    assert rows[seed.DEC]["dte"] == 15


# --- /api/history ----------------------------------------------------------------------------

def test_history_aligns_today_and_the_previous_session_on_eastern_times(client):
    body = client.get("/api/history/%s?days=5" % TOP).get_json()
    assert body["date"] == seed.TODAY and body["previous_date"] == seed.PREVIOUS
    assert body["contract"] == {"root": "SPX", "expiration_date": seed.DEC, "strike": 6000.0}
    assert body["flags"] == ["delta", "multiplier"]
    times = ["09:45", "10:15", "10:45", "11:15"]
    assert [point["time_et"] for point in body["intraday"]["today"]] == times
    assert [point["time_et"] for point in body["intraday"]["previous"]] == times
    assert [point["volume"] for point in body["intraday"]["previous"]] == [150, 300, 450, 600]
    assert [row["trade_date"] for row in body["daily"]] == seed.history_dates()[-5:]


def test_history_of_a_ticker_with_markup_in_it(client):
    body = client.get("/api/history/" + quote(seed.HOSTILE_TICKER, safe="")).get_json()
    assert body["ticker"] == seed.HOSTILE_TICKER
    assert len(body["intraday"]["today"]) == 4


def test_history_unknown_ticker_is_404(client):
    response = client.get("/api/history/O:SPX991231P00001000")
    assert response.status_code == 404
    assert "unknown ticker" in response.get_json()["error"]


@pytest.mark.parametrize("days", ["-3", "x", "0"])
def test_history_rejects_bad_days(client, days):
    assert client.get("/api/history/%s?days=%s" % (TOP, days)).status_code == 400


# --- /api/summary ----------------------------------------------------------------------------

def test_summary_totals_per_session_and_per_expiration(client):
    body = client.get("/api/summary?days=3").get_json()
    dates = seed.history_dates()
    assert [row["trade_date"] for row in body["sessions"]] == dates[-3:]
    last = body["sessions"][-1]
    assert len(last["expirations"]) == 3
    assert last["volume"] == sum(item["volume"] for item in last["expirations"]) == 3 * (10_000 + 100 * 29)
    assert last["alerts"] == 3 * (29 % 3)
    assert last["premium"] == pytest.approx(3 * (5_000_000.0 + 1000 * 29))


def test_summary_ends_at_the_requested_date(client):
    body = client.get("/api/summary?days=2&date=2025-11-20").get_json()
    assert [row["trade_date"] for row in body["sessions"]] == ["2025-11-19", "2025-11-20"]


def test_summary_rejects_bad_days(client):
    response = client.get("/api/summary?days=-1")
    assert response.status_code == 400 and "days" in response.get_json()["error"]


# --- parameters and errors -------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/enriched", "/api/movers", "/api/alerts", "/api/expirations",
                                  "/api/summary", "/api/history/" + TOP])
@pytest.mark.parametrize("bad", ["2025-13-01", "20251204", "yesterday", "2025-12-4"])
def test_a_malformed_date_is_400(client, path, bad):
    response = client.get("%s?date=%s" % (path, bad))
    assert response.status_code == 400
    assert "YYYY-MM-DD" in response.get_json()["error"]


def test_a_malformed_expiration_is_400(client):
    assert client.get("/api/movers?expiration=Dec-19").status_code == 400


def test_an_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404 and "error" in response.get_json()


def test_a_missing_database_gives_json_errors_and_an_explaining_page(tmp_path):
    client = make_client(str(tmp_path / "nowhere.db"))
    response = client.get("/api/movers")
    assert response.status_code == 503
    assert "does not exist" in response.get_json()["error"] and "bin/tick" in response.get_json()["error"]
    page = client.get("/")
    assert page.status_code == 200 and b"does not exist" in page.data
    health = client.get("/api/health")
    assert health.status_code == 503 and "no database yet" in health.get_json()["problems"][0]


def test_a_corrupt_database_gives_json_errors_and_an_explaining_page(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not an SQLite file at all" * 200)
    client = make_client(str(path))
    response = client.get("/api/enriched")
    assert response.status_code == 503 and "corrupt" in response.get_json()["error"]
    assert b"corrupt" in client.get("/").data
    health = client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["level"] == "critical"


def test_an_empty_database_says_how_to_get_data(tmp_path):
    path = str(tmp_path / "empty.db")
    models.open_database(path)
    models.close_database()
    client = make_client(path)
    for url in ("/api/movers", "/api/enriched", "/api/expirations"):
        body = client.get(url).get_json()
        assert body["date"] is None and "No data yet" in body["message"]
    assert client.get("/api/summary").get_json()["sessions"] == []
    assert client.get("/api/history/" + TOP).status_code == 404


# --- /api/health -----------------------------------------------------------------------------

def test_health_is_200_when_the_last_poll_is_fresh(seeded_path):
    response = make_client(seeded_path, FRESH_NOW).get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["level"] == "ok" and body["state"] == "MARKET_OPEN"
    assert body["last_ok_poll"]["slot"] == seed.LAST_POLL_TODAY
    assert body["data_age_seconds"] == 300
    assert body["next_action"] == "poll"


def test_health_is_503_when_polls_stopped_during_the_session(seeded_path):
    response = make_client(seeded_path, STALE_NOW).get("/api/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["level"] != "ok" and body["problems"]
    assert body["data_age_seconds"] == 2 * 3600 + 45 * 60


# --- the page and its assets -----------------------------------------------------------------

def test_the_page_loads_plotly_from_the_app_not_a_cdn(client):
    page = client.get("/").get_data(as_text=True)
    assert 'src="/vendor/plotly.min.js"' in page and "cdn" not in page.lower()
    assert 'data-poll-minutes="30"' in page
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and js.mimetype == "text/javascript"
    assert len(js.data) == os.path.getsize(plotly_js_path())
    assert client.get("/favicon.ico").status_code == 200
    assert client.get("/static/app.js").status_code == 200


def test_the_page_script_never_uses_innerhtml(client):
    script = client.get("/static/app.js").get_data(as_text=True)
    assert "innerHTML" not in script.split("*/", 1)[1]
    assert "insertAdjacentHTML" not in script and "document.write" not in script


def test_the_dashboard_never_writes_to_the_database(seeded_path):
    before = hashlib.sha256(open(seeded_path, "rb").read()).hexdigest()
    files_before = sorted(os.listdir(os.path.dirname(seeded_path)))
    client = make_client(seeded_path, STALE_NOW)
    for url in ("/", "/api/enriched", "/api/movers", "/api/alerts", "/api/expirations", "/api/summary",
                "/api/history/" + TOP, "/api/health"):
        assert client.get(url).status_code in (200, 503)
    assert hashlib.sha256(open(seeded_path, "rb").read()).hexdigest() == before
    assert sorted(os.listdir(os.path.dirname(seeded_path))) == files_before
