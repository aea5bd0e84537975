"""What every benchmark shares: timing and percentiles, figures with their baselines, the fake API in a
process of its own, recorded chain pages replayed without a network, and the child-process protocol.

Each benchmark module runs in a child process (``python -m bench.<name> --json``) so its peak memory is
its own; it prints progress on stderr and one JSON object, its figures, as the last line of stdout.
"""
import argparse
import gzip
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence
from urllib.parse import parse_qsl, urlsplit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_KEY = "bench-key"

# Watch everything the chain offers: both roots, every expiration, every out-of-the-money strike.
WATCH_EVERYTHING = dict(EXPIRATION_ROOTS="SPX,SPXW", MIN_DTE=0, MAX_DTE=3650, MIN_MONEYNESS=0.01, MAX_MONEYNESS=1.0)


def say(text: str) -> None:
    """Progress on stderr, so stdout stays the child's JSON."""
    print("  " + text, file=sys.stderr, flush=True)


# --- Statistics --------------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_measured(command: Sequence[str], env=None, cwd=None) -> Dict[str, Any]:
    """Wall time, exit code, output and peak resident memory (MB) of a command. The memory is measured by
    GNU time (None without /usr/bin/time): a child forked from this process would report this process's
    memory at the fork as its own peak."""
    timed = os.path.exists("/usr/bin/time")
    prefix = ["/usr/bin/time", "-f", "@maxrss %M"] if timed else []
    started = time.perf_counter()
    completed = subprocess.run(prefix + list(command), env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    lines = completed.stderr.splitlines()
    found = [line for line in lines if line.startswith("@maxrss ")]
    rss = int(found[-1].split()[1]) / 1024.0 if found else None
    output = completed.stdout + "\n".join(line for line in lines if not line.startswith("@maxrss "))
    return {"wall": wall, "rss_mb": rss, "returncode": completed.returncode, "output": output}


def peak_rss_of(command: Sequence[str], env=None, cwd=None) -> Optional[float]:
    """Peak resident memory (MB) of a command (see run_measured)."""
    return run_measured(command, env, cwd)["rss_mb"]


def figure(section: str, name: str, value: float, unit: str, baseline: Optional[float] = None,
           baseline_name: str = "", target: str = "", met: Optional[bool] = None, note: str = "") -> Dict[str, Any]:
    """One measured figure with the baseline measured in the same run, and whether its target is met."""
    ratio = value / baseline if baseline else None
    return {"section": section, "name": name, "value": value, "unit": unit, "baseline": baseline,
            "baseline_name": baseline_name, "ratio": ratio, "target": target, "met": met, "note": note}


class Stopwatch:
    """Wall and CPU time of a block: ``with Stopwatch() as watch: ...; watch.wall, watch.cpu``."""

    def __enter__(self) -> "Stopwatch":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


# --- Files -------------------------------------------------------------------------------------------

def copy_database(source: str, target: str) -> str:
    """A copy of a closed SQLite file (no -wal left behind: the last connection checkpointed it)."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(target + suffix):
            os.remove(target + suffix)
    if os.path.exists(source + "-wal"):
        raise RuntimeError("%s still has a write-ahead log: close every connection first" % source)
    shutil.copyfile(source, target)
    return target


def bench_config(folder: str, base_url: str = "http://127.0.0.1:9", **overrides):
    """Settings for a benchmark: its own database and log, the fake API, no real waiting on retries."""
    from spxlib.config import load_config

    values = dict(DB_PATH=os.path.join(folder, "spx.db"), API_BASE_URL=base_url, LOG_TO_FILE=False,
                  RETRY_DELAY_SECONDS=0)
    values.update(overrides)
    return load_config({}, **values)


# --- The fake API in its own process -----------------------------------------------------------------

class SimServer:
    """``python -m bench.simserver`` in a child process: its CPU (building pages, JSON, gzip) is not ours."""

    def __init__(self, size: str, now: datetime):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.simserver", "--size", size, "--now", now.isoformat()],
            cwd=REPO, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError("the simulated server did not start (said %r)" % line)
        self.base_url = line

    def _call(self, path: str, payload: Optional[dict] = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method="POST" if data else "GET",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def set_now(self, moment: datetime) -> None:
        self._call("/_sim/now", {"now": moment.isoformat()})

    def requests(self) -> List[dict]:
        """The server's request log: method, path, query, gzip, status, page."""
        return self._call("/_sim/requests")["requests"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "SimServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- Recorded pages, replayed without a network ------------------------------------------------------

def _url_key(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.path, tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))


def record_pages(base_url: str, path: str, params: Dict[str, str]) -> List[dict]:
    """Every page of a listing as the server sent it (gzip bytes as on the wire), following next_url."""
    import requests

    pages = []
    session = requests.Session()
    url, query = base_url + path, params
    try:
        while url:
            response = session.get(url, params=query, stream=True, timeout=120, headers={
                "Accept-Encoding": "gzip", "Authorization": "Bearer " + API_KEY, "Accept": "application/json"})
            raw = response.raw.read(decode_content=False)
            if response.status_code != 200:
                raise RuntimeError("recording %s: HTTP %d" % (response.url, response.status_code))
            gzipped = response.headers.get("Content-Encoding") == "gzip"
            body = gzip.decompress(raw) if gzipped else raw
            pages.append({"url": response.url, "wire": raw, "gzip": gzipped, "json_bytes": len(body)})
            next_url = json.loads(body).get("next_url")
            if next_url:
                parts = urlsplit(next_url)
                url, query = base_url + parts.path + "?" + parts.query, None
            else:
                url = None
    finally:
        session.close()
    return pages


class ReplaySession:
    """Stands in for requests.Session in MarketDataClient: answers each GET with its recorded page, so a
    poll can be timed from the bytes (gzip decompression, JSON decoding, parsing, storing, detection)."""

    def __init__(self, pages: Sequence[dict]):
        self._pages = {_url_key(page["url"]): page for page in pages}
        self.gets = 0

    def get(self, url, params=None, headers=None, auth=None, timeout=None):
        import requests
        from requests.structures import CaseInsensitiveDict

        prepared = requests.Request("GET", url, params=params).prepare().url
        page = self._pages[_url_key(prepared)]
        self.gets += 1
        response = requests.Response()
        response.status_code = 200
        response.url = prepared
        response._content = gzip.decompress(page["wire"]) if page["gzip"] else page["wire"]
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


# --- The child-process protocol ----------------------------------------------------------------------

def child_main(run: Callable[[bool], Dict[str, Any]]) -> None:
    """Entry point of a benchmark module: run it, add its peak memory, print its JSON as the last line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    result = run(args.quick)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(result, default=str))


def run_child(name: str, quick: bool) -> Dict[str, Any]:
    """Run bench.<name> in a child process and return its JSON."""
    command = [sys.executable, "-m", "bench." + name] + (["--quick"] if quick else [])
    completed = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if completed.returncode != 0 or not lines:
        raise RuntimeError("bench.%s failed with exit code %d" % (name, completed.returncode))
    return json.loads(lines[-1])
