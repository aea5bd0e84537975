"""The scheduler install files say what the README promises."""
import os
import xml.etree.ElementTree as ET

ROOT = os.path.join(os.path.dirname(__file__), "..")
NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


def test_windows_task_is_utf16_with_bom_and_repeats_every_5_minutes_ignoring_overlaps():
    raw = open(os.path.join(ROOT, "windows_tasks.xml"), "rb").read()
    assert raw.startswith(b"\xff\xfe")  # UTF-16 LE BOM, what schtasks /Create /XML accepts
    root = ET.fromstring(raw.decode("utf-16").encode("utf-8").replace(b'encoding="UTF-16"', b'encoding="UTF-8"'))
    settings = root.find("t:Settings", NS)
    assert root.find("t:Triggers/t:TimeTrigger/t:Repetition/t:Interval", NS).text == "PT5M"
    assert root.find("t:Triggers/t:TimeTrigger/t:Repetition/t:Duration", NS) is None  # indefinitely
    assert settings.find("t:MultipleInstancesPolicy", NS).text == "IgnoreNew"
    assert settings.find("t:StartWhenAvailable", NS).text == "true"
    assert settings.find("t:DisallowStartIfOnBatteries", NS).text == "false"
    assert settings.find("t:StopIfGoingOnBatteries", NS).text == "false"
    assert settings.find("t:ExecutionTimeLimit", NS).text == "PT30M"
    assert root.find("t:Actions/t:Exec/t:Arguments", NS).text == "bin\\tick"


def test_crontab_runs_every_5_minutes_in_utc_with_flock_and_absolute_paths():
    lines = [line for line in open(os.path.join(ROOT, "crontab.example")) if line.strip()
             and not line.startswith("#")]
    assert "CRON_TZ=UTC\n" in lines
    entry = [line for line in lines if line.startswith("*/5 ")]
    assert len(entry) == 1
    fields = entry[0].split()
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    assert "flock -n" in entry[0] and "/bin/tick" in entry[0] and ">> /" in entry[0]
