"""Detection rules and baselines, on a real SQLite file."""
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from spxlib import models
from spxlib.detection import Baseline, evaluate, find_baselines, premium_price, record_alerts
from spxlib.models import utc_iso

ET = ZoneInfo("America/New_York")
TICKER = "O:SPX251219P05000000"


def et(text):
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ET)


def store(trade_date, at, ticker=TICKER, volume=0):
    models.IntradaySnapshot.create(trade_date=trade_date, captured_at=utc_iso(et(at)), ticker=ticker, root="SPX",
                                   expiration_date="2025-12-19", strike=5000, volume=volume)


# volume, baseline, price, expected flags: values exactly at a threshold do not flag, one more does
@pytest.mark.parametrize("volume, base, price, flags", [
    (400, 200, 10.0, ()),                      # delta exactly 200
    (401, 200, 10.0, ("delta",)),              # delta 201
    (300, 3, 10.0, ("delta",)),                # 100 x 3 = 300: multiplier not exceeded
    (301, 3, 10.0, ("delta", "multiplier")),
    (150, 1, 10.0, ("multiplier",)),           # 150 > 100 x 1, delta 149
    (100, 0, 10.0, ()),                        # dormancy needs more than 100
    (101, 0, 10.0, ("dormancy",)),
    (99, 0, 1000.0, ()),                       # under the volume floor
    (500, 0, 1.99, ()),                        # premium 99,500 under the $100,000 floor
    (500, 0, 2.0, ("delta", "dormancy")),      # premium exactly 100,000 passes the floor
])
def test_thresholds_are_strict(config, volume, base, price, flags):
    result = evaluate(TICKER, volume, Baseline(base, "aligned"), price, config)
    assert result.flags == flags


def test_no_baseline_raises_no_flag(config):
    assert evaluate(TICKER, 50_000, Baseline(None, "none"), 20.0, config).flags == ()


def test_premium_uses_vwap_first_then_close_last_trade_midpoint():
    assert premium_price(vwap=2.5, close=3.0, last_price=4.0, midpoint=5.0) == 2.5
    assert premium_price(vwap=None, close=3.0, last_price=4.0, midpoint=5.0) == 3.0
    assert premium_price(None, None, 4.0, 5.0) == 4.0
    assert premium_price(None, None, None, 5.0) == 5.0
    assert premium_price(None, None, None, None) is None


def test_premium_floor_uses_vwap_not_close(config):
    # 400 contracts: at the VWAP of 2.0 premium is 80,000 (under the floor) though the close of 5.0 would pass
    price = premium_price(vwap=2.0, close=5.0)
    assert evaluate(TICKER, 400, Baseline(0, "aligned"), price, config).flags == ()


def test_monday_compares_with_friday_at_the_same_time(config, database):
    store("2025-12-05", "2025-12-05 10:45", volume=70)
    store("2025-12-05", "2025-12-05 11:15", volume=90)
    store("2025-12-04", "2025-12-04 10:45", volume=999)  # Thursday: not the previous session of Monday
    found = find_baselines([TICKER], et("2025-12-08 11:10"), date(2025, 12, 5), config)
    assert found[TICKER] == Baseline(90, "aligned")


def test_day_after_holiday_compares_with_the_session_before_it(config, calendar, database):
    # 2025-01-10 follows the national day of mourning (2025-01-09): its previous session is 2025-01-08
    assert calendar.previous_session(date(2025, 1, 10)).trade_date == date(2025, 1, 8)
    store("2025-01-08", "2025-01-08 14:15", volume=33)
    found = find_baselines([TICKER], et("2025-01-10 14:15"), date(2025, 1, 8), config)
    assert found[TICKER] == Baseline(33, "aligned")


def test_alignment_holds_across_daylight_saving_change(config, database):
    store("2025-03-07", "2025-03-07 10:15", volume=11)  # EST
    store("2025-03-07", "2025-03-07 11:15", volume=22)
    found = find_baselines([TICKER], et("2025-03-10 10:15"), date(2025, 3, 7), config)  # EDT
    assert found[TICKER] == Baseline(11, "aligned")


def test_poll_earlier_than_any_of_yesterdays_falls_back_to_latest(config, database):
    store("2025-12-05", "2025-12-05 12:15", volume=40)
    store("2025-12-05", "2025-12-05 16:15", volume=75)
    found = find_baselines([TICKER], et("2025-12-08 09:45"), date(2025, 12, 5), config)
    assert found[TICKER] == Baseline(75, "latest")


def test_eod_history_is_the_third_choice_and_none_the_last(config, database):
    other = "O:SPX251219P04900000"
    models.DailyHistory.create(trade_date="2025-12-05", ticker=TICKER, root="SPX", expiration_date="2025-12-19",
                               strike=5000, volume=321, source="aggregates")
    found = find_baselines([TICKER, other], et("2025-12-08 10:15"), date(2025, 12, 5), config)
    assert found[TICKER] == Baseline(321, "eod")
    assert found[other] == Baseline(None, "none")


def test_contract_missing_from_nearest_poll_takes_next_nearest_within_tolerance(config, database):
    other = "O:SPX251219P04900000"
    store("2025-12-05", "2025-12-05 10:15", volume=5)
    store("2025-12-05", "2025-12-05 10:45", ticker=other, volume=8)
    store("2025-12-05", "2025-12-05 10:15", ticker=other, volume=7)
    store("2025-12-05", "2025-12-05 10:45", volume=6)
    models.IntradaySnapshot.delete().where(
        (models.IntradaySnapshot.ticker == TICKER)
        & (models.IntradaySnapshot.captured_at == utc_iso(et("2025-12-05 10:15")))).execute()
    found = find_baselines([TICKER, other], et("2025-12-08 10:20"), date(2025, 12, 5), config)
    assert found[other] == Baseline(7, "aligned")
    assert found[TICKER] == Baseline(6, "aligned")


def test_alerts_keep_first_seen_and_update_the_rest(config, database):
    info = {TICKER: ("SPX", "2025-12-19", 5000.0)}
    first = evaluate(TICKER, 500, Baseline(0, "aligned"), 10.0, config)
    with models.db.atomic():
        assert record_alerts(date(2025, 12, 8), et("2025-12-08 10:15"), [first], info) == (1, 0)
    later = evaluate(TICKER, 900, Baseline(10, "aligned"), 10.0, config)
    with models.db.atomic():
        assert record_alerts(date(2025, 12, 8), et("2025-12-08 10:45"), [later], info) == (0, 1)
    rows = {a.flag: a for a in models.Alert.select()}
    assert set(rows) == {"delta", "dormancy"}  # dormancy kept from the first poll, delta updated
    assert rows["delta"].first_seen_at == utc_iso(et("2025-12-08 10:15"))
    assert rows["delta"].last_seen_at == utc_iso(et("2025-12-08 10:45"))
    assert rows["delta"].volume == 900 and rows["delta"].baseline_volume == 10
    assert rows["dormancy"].last_seen_at == utc_iso(et("2025-12-08 10:15"))
