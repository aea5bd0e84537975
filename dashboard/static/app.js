/* SPX put watch dashboard. Every string from the API reaches the page as text (textContent,
 * createTextNode, new Option); nothing from the API goes through innerHTML. */
(function () {
  "use strict";

  var body = document.body;
  var POLL_MINUTES = Number(body.dataset.pollMinutes) || 30;
  var TZ = body.dataset.timezone || "America/New_York";
  var MOVERS_LIMIT = Number(body.dataset.moversLimit) || 20;
  var SUMMARY_SESSIONS = 120;
  var FLAG_ORDER = ["multiplier", "delta", "dormancy"]; // the row's colour: the first it has
  var FLAG_COLORS = { delta: "#e3b341", multiplier: "#ff7b72", dormancy: "#bc8cff" };
  var THIN_SOURCES = {
    latest: "Thin baseline: the previous session had no snapshot near this time of day, so its latest snapshot is used.",
    eod: "Thin baseline: the previous session's end-of-day volume, not its volume at this time of day.",
    none: "No baseline: the previous session has no data for this contract; all of today's volume counts as new."
  };
  var ALIGNED_NOTE = "The previous session's volume at the same time of day.";

  var state = {
    date: "",          // "" = the latest session with data
    shownDate: null,   // the date the API answered for
    expiration: "",
    movers: [],
    expirations: [],
    sortKey: "volume_change",
    sortDir: -1,
    selected: null,
    health: null,
    healthFetchedAt: 0,
    lastRefresh: 0,
    refreshing: false,
    refreshDue: false
  };

  var $ = function (id) { return document.getElementById(id); };
  var numberFormat = new Intl.NumberFormat("en-US");
  var timeFormat = new Intl.DateTimeFormat("en-US", {
    timeZone: TZ, hour: "2-digit", minute: "2-digit", hour12: false
  });
  var dateTimeFormat = new Intl.DateTimeFormat("en-US", {
    timeZone: TZ, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false
  });

  // --- small helpers ------------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function clear(node) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
  }

  function showText(node, text) {
    // A banner or note: hidden when there is nothing to say.
    node.textContent = text || "";
    node.hidden = !text;
  }

  function fmtInt(value) { return value === null || value === undefined ? "–" : numberFormat.format(value); }
  function fmtFixed(value, digits) { return value === null || value === undefined ? "–" : Number(value).toFixed(digits); }
  function fmtRatio(value) { return value === null || value === undefined ? "–" : Number(value).toFixed(2) + "×"; }
  function fmtPct(value) { return value === null || value === undefined ? "–" : (Number(value) * 100).toFixed(1) + "%"; }
  function fmtMoney(value) {
    if (value === null || value === undefined) { return "–"; }
    var abs = Math.abs(value);
    if (abs >= 1e9) { return "$" + (value / 1e9).toFixed(2) + "B"; }
    if (abs >= 1e6) { return "$" + (value / 1e6).toFixed(2) + "M"; }
    if (abs >= 1e3) { return "$" + (value / 1e3).toFixed(1) + "K"; }
    return "$" + Number(value).toFixed(0);
  }
  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) { return "no snapshots yet"; }
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 90) { return seconds + " s"; }
    var minutes = Math.round(seconds / 60);
    if (minutes < 90) { return minutes + " min"; }
    var hours = minutes / 60;
    if (hours < 48) { return hours.toFixed(1) + " h"; }
    return (hours / 24).toFixed(1) + " days";
  }
  function fmtTime(iso) {
    if (!iso) { return "–"; }
    var moment = new Date(iso);
    return isNaN(moment) ? String(iso) : dateTimeFormat.format(moment) + " ET";
  }
  function fmtClock(iso) {
    if (!iso) { return "–"; }
    var moment = new Date(iso);
    return isNaN(moment) ? String(iso) : timeFormat.format(moment);
  }

  // Plotly reads a little HTML in titles and labels; entities keep data strings literal.
  function plotlyText(value) {
    return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (key) {
      var value = params[key];
      if (value !== "" && value !== null && value !== undefined) {
        parts.push(encodeURIComponent(key) + "=" + encodeURIComponent(value));
      }
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  function getJSON(url) {
    return fetch(url, { cache: "no-store", headers: { Accept: "application/json" } }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    }, function (error) {
      return { ok: false, status: 0, data: { error: "The dashboard server did not answer (" + error.message + "). Is bin/serve still running?" } };
    });
  }

  function errorOf(result) {
    return (result.data && result.data.error) || ("HTTP " + result.status);
  }

  // A panel's words for a failed request: a database problem is explained once, at the top.
  function panelError(result) {
    return result.status === 503 ? "Nothing to show: see the message at the top." : errorOf(result);
  }

  // --- Plotly -------------------------------------------------------------------------------

  var PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

  function baseLayout(extra) {
    var layout = {
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: "#c9d1d9", size: 12 },
      margin: { l: 60, r: 20, t: 34, b: 44 },
      legend: { orientation: "h", x: 0, y: 1.14, bgcolor: "rgba(0,0,0,0)" },
      hoverlabel: { bgcolor: "#1c2330", bordercolor: "#30363d", font: { color: "#c9d1d9" } },
      xaxis: { gridcolor: "#21262d", zerolinecolor: "#30363d", linecolor: "#30363d" },
      yaxis: { gridcolor: "#21262d", zerolinecolor: "#30363d", linecolor: "#30363d", rangemode: "tozero" }
    };
    Object.keys(extra || {}).forEach(function (key) {
      if (layout[key] && typeof layout[key] === "object" && typeof extra[key] === "object") {
        layout[key] = Object.assign({}, layout[key], extra[key]);
      } else {
        layout[key] = extra[key];
      }
    });
    return layout;
  }

  function chartMessage(node, text) {
    if (window.Plotly && node.classList.contains("js-plotly-plot")) { window.Plotly.purge(node); }
    clear(node);
    node.appendChild(el("p", "empty", text));
  }

  function plot(node, traces, layout) {
    if (!window.Plotly) {
      chartMessage(node, "Charts are unavailable: /vendor/plotly.min.js did not load (is the plotly package installed?).");
      return;
    }
    if (!node.classList.contains("js-plotly-plot")) { clear(node); }
    window.Plotly.react(node, traces, layout, PLOT_CONFIG);
  }

  // --- status bar ---------------------------------------------------------------------------

  function renderHealth(result, dataProblemShown) {
    var report = result.data || {};
    state.health = report;
    state.healthFetchedAt = Date.now();
    var chip = $("status-state");
    var level = report.level || (result.ok ? "ok" : "critical");
    chip.className = "chip level-" + level;
    chip.textContent = report.state ? report.state.replace(/_/g, " ").toLowerCase() : level;
    chip.title = "Monitor state; level " + level;
    var lastPoll = report.last_ok_poll;
    $("status-last-poll").textContent = lastPoll ? fmtTime(lastPoll.finished_at || lastPoll.slot) : "never";
    $("status-next").textContent = report.next_action
      ? report.next_action + " at " + fmtTime(report.next_action_at) : "–";
    renderAge();

    var problems = (report.problems || []).slice();
    if (!result.ok && !problems.length) { problems.push(errorOf(result)); }
    if (problems.length && !dataProblemShown) {
      var prefix = level === "critical" ? "Data is stale or unreadable: " : "Data may be stale: ";
      showText($("stale"), prefix + problems.join("; ") + ". Check the cron job and bin/status.");
    } else {
      showText($("stale"), "");
    }
  }

  function renderAge() {
    var report = state.health;
    if (!report) { return; }
    var age = report.data_age_seconds;
    if (age !== null && age !== undefined) {
      // The server's age at fetch time, plus the time since: the browser's clock is not trusted.
      age += (Date.now() - state.healthFetchedAt) / 1000;
    }
    $("status-age").textContent = fmtAge(age);
  }

  // --- expirations and movers -----------------------------------------------------------------

  function renderExpirations(list) {
    state.expirations = list;
    var select = $("expiration");
    var keep = state.expiration;
    while (select.options.length > 1) { select.remove(1); }
    var found = false;
    list.forEach(function (item) {
      var label = item.expiration_date + " · " + (item.roots || []).join("/") + " · " +
        fmtInt(item.contracts) + " contracts · vol " + fmtInt(item.volume);
      select.add(new Option(label, item.expiration_date));
      if (item.expiration_date === keep) { found = true; }
    });
    if (keep && !found) {
      select.add(new Option(keep + " (nothing on this date)", keep));
    }
    select.value = keep;
  }

  function sortValue(row, key) {
    var value = row[key];
    if (key === "flags") { return (value || []).join(","); }
    return value;
  }

  function sortedMovers() {
    var key = state.sortKey, dir = state.sortDir;
    return state.movers.slice().sort(function (a, b) {
      var x = sortValue(a, key), y = sortValue(b, key);
      if (x === y) { return 0; }
      if (x === null || x === undefined) { return 1; }   // missing values last either way
      if (y === null || y === undefined) { return -1; }
      return (x < y ? -1 : 1) * dir;
    });
  }

  function cell(row, text, className) {
    var td = el("td", className, text);
    row.appendChild(td);
    return td;
  }

  function renderMovers() {
    var tbody = $("movers").tBodies[0];
    clear(tbody);
    Array.prototype.forEach.call($("movers").tHead.rows[0].cells, function (th) {
      if (th.dataset.key === state.sortKey) {
        th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
      } else {
        th.removeAttribute("aria-sort");
      }
    });
    sortedMovers().forEach(function (mover) {
      var tr = el("tr");
      tr.tabIndex = 0;
      tr.dataset.ticker = mover.ticker;
      var flags = mover.flags || [];
      var main = FLAG_ORDER.filter(function (flag) { return flags.indexOf(flag) >= 0; })[0];
      if (main) { tr.classList.add("flag-" + main); }
      if (state.selected === mover.ticker) { tr.classList.add("selected"); }

      var ticker = cell(tr, mover.ticker, "ticker");
      ticker.title = mover.ticker;
      cell(tr, mover.expiration_date + (mover.root && mover.root !== "SPX" ? " " + mover.root : ""));
      cell(tr, fmtInt(mover.dte), "num");
      cell(tr, fmtInt(mover.strike), "num");
      cell(tr, fmtFixed(mover.moneyness, 3), "num");
      cell(tr, fmtInt(mover.volume), "num");

      var baseline = cell(tr, fmtInt(mover.baseline_volume), "num");
      var source = mover.baseline_source || "none";
      baseline.appendChild(el("span", "source", source));
      if (THIN_SOURCES[source]) {
        baseline.classList.add("thin");
        baseline.title = THIN_SOURCES[source];
      } else {
        baseline.title = ALIGNED_NOTE;
      }

      var change = cell(tr, (mover.volume_change > 0 ? "+" : "") + fmtInt(mover.volume_change), "num");
      change.classList.add(mover.volume_change > 0 ? "up" : (mover.volume_change < 0 ? "down" : "flat"));
      cell(tr, fmtRatio(mover.ratio), "num");
      cell(tr, fmtMoney(mover.premium), "num");
      cell(tr, fmtPct(mover.implied_volatility), "num");
      cell(tr, fmtFixed(mover.delta, 3), "num");
      cell(tr, fmtInt(mover.open_interest), "num");
      var flagCell = cell(tr, null, "flags");
      flags.forEach(function (flag) { flagCell.appendChild(el("span", "flag flag-" + flag, flag)); });

      tr.addEventListener("click", function () { selectContract(mover.ticker); });
      tr.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); selectContract(mover.ticker); }
      });
      tbody.appendChild(tr);
    });
  }

  function renderAlerts(result) {
    var tbody = $("alerts").tBodies[0];
    clear(tbody);
    var alerts = (result.ok && result.data && result.data.alerts) || [];
    alerts.forEach(function (alert) {
      var tr = el("tr");
      var flagCell = cell(tr, null);
      flagCell.appendChild(el("span", "flag flag-" + alert.flag, alert.flag));
      var ticker = cell(tr, alert.ticker, "ticker");
      ticker.title = alert.ticker;
      cell(tr, fmtInt(alert.volume), "num");
      var baseline = cell(tr, fmtInt(alert.baseline_volume), "num");
      if (THIN_SOURCES[alert.baseline_source]) {
        baseline.classList.add("thin");
        baseline.title = THIN_SOURCES[alert.baseline_source];
      }
      cell(tr, fmtMoney(alert.premium), "num");
      cell(tr, fmtClock(alert.first_seen_at));
      tbody.appendChild(tr);
    });
    var empty = "";
    if (!result.ok) { empty = panelError(result); }
    else if (!alerts.length) { empty = state.shownDate ? "No alerts on " + state.shownDate + "." : "No alerts yet."; }
    showText($("alerts-empty"), empty);
  }

  // --- charts -------------------------------------------------------------------------------

  function busiestExpiration() {
    var best = null;
    state.expirations.forEach(function (item) {
      if (!best || item.volume > best.volume) { best = item; }
    });
    return best ? best.expiration_date : "";
  }

  function drawStrikes() {
    var node = $("chart-strikes");
    var expiration = state.expiration || busiestExpiration();
    if (!state.shownDate || !expiration) {
      $("strikes-title").textContent = "Volume by strike";
      chartMessage(node, "No contracts to chart for this session.");
      return Promise.resolve();
    }
    var url = "/api/enriched" + query({ date: state.shownDate, expiration: expiration });
    return getJSON(url).then(function (result) {
      var title = "Volume by strike · " + expiration + (state.expiration ? "" : " (busiest expiration)");
      $("strikes-title").textContent = title;
      if (!result.ok) { chartMessage(node, panelError(result)); return; }
      var contracts = result.data.contracts || [];
      if (!contracts.length) { chartMessage(node, "No contracts of " + expiration + " on " + state.shownDate + "."); return; }
      // One bar per strike: SPX and SPXW can share an expiration date and a strike.
      var byStrike = {};
      contracts.forEach(function (c) {
        var bar = byStrike[c.strike] || (byStrike[c.strike] = { strike: c.strike, volume: 0, baseline: 0, flags: [] });
        bar.volume += c.volume || 0;
        bar.baseline += c.baseline_volume || 0;
        bar.flags = bar.flags.concat(c.flags || []);
      });
      var bars = Object.keys(byStrike).map(function (key) { return byStrike[key]; })
        .sort(function (a, b) { return a.strike - b.strike; });
      var strikes = bars.map(function (bar) { return bar.strike; });
      var colors = bars.map(function (bar) {
        var main = FLAG_ORDER.filter(function (flag) { return bar.flags.indexOf(flag) >= 0; })[0];
        return main ? FLAG_COLORS[main] : "#58a6ff";
      });
      plot(node, [
        {
          type: "bar", name: "Baseline (previous session)", x: strikes,
          y: bars.map(function (bar) { return bar.baseline; }),
          marker: { color: "#6e7681" },
          hovertemplate: "Strike %{x}<br>Baseline %{y:,}<extra></extra>"
        },
        {
          type: "bar", name: "Today", x: strikes,
          y: bars.map(function (bar) { return bar.volume; }),
          marker: { color: colors },
          hovertemplate: "Strike %{x}<br>Volume %{y:,}<extra></extra>"
        }
      ], baseLayout({
        barmode: "group", bargap: 0.15,
        xaxis: { title: { text: "Strike" } },
        yaxis: { title: { text: "Contracts" } }
      }));
    });
  }

  var ALIGN_DAY = "2000-01-03 "; // any fixed date: both sessions are drawn on the same Eastern clock

  function drawContract() {
    var node = $("chart-contract");
    var ticker = state.selected;
    if (!ticker) { return Promise.resolve(); }
    var url = "/api/history/" + encodeURIComponent(ticker) + query({ date: state.shownDate || state.date, days: 30 });
    return getJSON(url).then(function (result) {
      if (state.selected !== ticker) { return; }  // another row was clicked meanwhile
      $("contract-title").textContent = "Selected contract · " + ticker;
      if (!result.ok) { chartMessage(node, errorOf(result)); return; }
      var data = result.data;
      var today = data.intraday.today || [], previous = data.intraday.previous || [];
      var traces = [];
      if (previous.length) {
        traces.push({
          type: "scatter", mode: "lines+markers", name: plotlyText(data.previous_date + " (previous)"),
          x: previous.map(function (p) { return ALIGN_DAY + p.time_et; }),
          y: previous.map(function (p) { return p.volume; }),
          line: { color: "#8b949e", dash: "dot" },
          hovertemplate: "%{x|%H:%M} ET<br>Volume %{y:,}<extra>previous</extra>"
        });
      }
      if (today.length) {
        traces.push({
          type: "scatter", mode: "lines+markers", name: plotlyText(data.date + " (this session)"),
          x: today.map(function (p) { return ALIGN_DAY + p.time_et; }),
          y: today.map(function (p) { return p.volume; }),
          line: { color: "#58a6ff", width: 3 },
          hovertemplate: "%{x|%H:%M} ET<br>Volume %{y:,}<extra>this session</extra>"
        });
      }
      if (data.daily && data.daily.length) {
        traces.push({
          type: "bar", name: "Daily volume", xaxis: "x2", yaxis: "y2",
          x: data.daily.map(function (d) { return d.trade_date; }),
          y: data.daily.map(function (d) { return d.volume; }),
          marker: { color: "#3fb95099" },
          hovertemplate: "%{x}<br>Volume %{y:,}<extra>daily</extra>"
        });
      }
      if (!traces.length) { chartMessage(node, "No volume recorded for this contract yet."); return; }
      var contract = data.contract || {};
      plot(node, traces, baseLayout({
        title: {
          text: plotlyText((contract.root || "") + " " + (contract.expiration_date || "") + " " +
            (contract.strike || "") + "P" + ((data.flags || []).length ? " · " + data.flags.join(", ") : "")),
          font: { size: 12, color: "#8b949e" }, x: 0.01, y: 0.98
        },
        margin: { l: 60, r: 20, t: 50, b: 44 },
        xaxis: {
          type: "date", domain: [0, 0.6], tickformat: "%H:%M",
          range: [ALIGN_DAY + "09:30", ALIGN_DAY + "16:15"], title: { text: "Eastern time (cumulative)" }
        },
        yaxis: { title: { text: "Contracts" } },
        xaxis2: { domain: [0.7, 1], anchor: "y2", type: "category", showticklabels: false,
                  gridcolor: "#21262d", linecolor: "#30363d", title: { text: "Daily, last sessions" } },
        yaxis2: { anchor: "x2", gridcolor: "#21262d", rangemode: "tozero" }
      }));
    });
  }

  function drawSessions(result) {
    var node = $("chart-sessions");
    if (!result.ok) { chartMessage(node, panelError(result)); return; }
    var sessions = result.data.sessions || [];
    if (!sessions.length) { chartMessage(node, result.data.message || "No session totals yet."); return; }
    var days = sessions.map(function (s) { return s.trade_date; });
    plot(node, [
      {
        type: "bar", name: "Volume", x: days, y: sessions.map(function (s) { return s.volume; }),
        customdata: sessions.map(function (s) { return s.alerts; }),
        marker: { color: "#58a6ff" },
        hovertemplate: "%{x}<br>Volume %{y:,}<br>Alerts %{customdata}<extra></extra>"
      },
      {
        type: "scatter", mode: "lines", name: "Premium", yaxis: "y2", x: days,
        y: sessions.map(function (s) { return s.premium; }),
        line: { color: "#e3b341", width: 2 },
        hovertemplate: "%{x}<br>Premium $%{y:,.0f}<extra></extra>"
      }
    ], baseLayout({
      // Weekends are not sessions: leave no gaps for them.
      xaxis: { type: "date", rangebreaks: [{ bounds: ["sat", "mon"] }] },
      yaxis: { title: { text: "Contracts" } },
      yaxis2: { title: { text: "Premium ($)" }, overlaying: "y", side: "right", showgrid: false,
                rangemode: "tozero", tickprefix: "$" },
      margin: { l: 60, r: 70, t: 34, b: 44 }
    }));
  }

  // --- loading ------------------------------------------------------------------------------

  function selectContract(ticker) {
    state.selected = ticker;
    Array.prototype.forEach.call($("movers").tBodies[0].rows, function (tr) {
      tr.classList.toggle("selected", tr.dataset.ticker === ticker);
    });
    return drawContract();
  }

  function refresh() {
    if (state.refreshing) { return Promise.resolve(); }
    state.refreshing = true;
    state.refreshDue = false;
    state.lastRefresh = Date.now();
    body.classList.add("loading");
    var dateParams = { date: state.date };
    var filterParams = { date: state.date, expiration: state.expiration };
    var requests = [
      getJSON("/api/health"),
      getJSON("/api/expirations" + query(dateParams)),
      getJSON("/api/movers" + query(Object.assign({ limit: MOVERS_LIMIT }, filterParams))),
      getJSON("/api/alerts" + query(filterParams)),
      getJSON("/api/summary" + query({ date: state.date, days: SUMMARY_SESSIONS }))
    ];
    return Promise.all(requests).then(function (results) {
      var expirations = results[1], movers = results[2];
      var problem = !movers.ok ? errorOf(movers) : (!expirations.ok ? errorOf(expirations) : "");
      var serverProblem = $("problem");  // the page's own explanation, written when it was served
      if (serverProblem && !problem) { serverProblem.remove(); serverProblem = null; }
      renderHealth(results[0], Boolean(problem || serverProblem));
      var data = movers.ok ? movers.data : {};
      state.shownDate = data.date || null;
      if (state.shownDate) { $("date").value = state.shownDate; }
      renderExpirations(expirations.ok ? expirations.data.expirations || [] : []);
      state.movers = movers.ok ? data.movers || [] : [];
      renderMovers();
      showText($("movers-empty"), !movers.ok ? panelError(movers) : (data.message || ""));
      showText($("message"), serverProblem ? "" : (problem || (data.date ? "" : data.message || "")));
      $("message").className = "banner " + (problem ? "banner-error" : "banner-info");
      $("movers-subtitle").textContent = state.shownDate
        ? state.shownDate + " · volume change against the previous session" : "no session yet";
      renderAlerts(results[3]);
      drawSessions(results[4]);
      return Promise.all([drawStrikes(), drawContract()]);
    }).catch(function (error) {
      showText($("message"), "The page failed to update: " + error.message);
      $("message").className = "banner banner-error";
    }).then(function () {
      state.refreshing = false;
      body.classList.remove("loading");
      body.dataset.loaded = String(state.lastRefresh);  // lets tests wait for a finished refresh
    });
  }

  // --- wiring -------------------------------------------------------------------------------

  Array.prototype.forEach.call($("movers").tHead.rows[0].cells, function (th) {
    th.tabIndex = 0;
    var sortBy = function () {
      var key = th.dataset.key;
      if (state.sortKey === key) {
        state.sortDir = -state.sortDir;
      } else {
        state.sortKey = key;
        state.sortDir = th.dataset.type === "text" ? 1 : -1;  // numbers: largest first
      }
      renderMovers();
    };
    th.addEventListener("click", sortBy);
    th.addEventListener("keydown", function (event) { if (event.key === "Enter") { sortBy(); } });
  });

  $("expiration").addEventListener("change", function (event) {
    state.expiration = event.target.value;
    refresh();
  });
  $("date").addEventListener("change", function (event) {
    state.date = event.target.value;
    state.selected = null;
    $("contract-title").textContent = "Selected contract";
    chartMessage($("chart-contract"), "Click a row in Top movers to compare its cumulative volume with the previous session at the same times.");
    refresh();
  });
  $("latest").addEventListener("click", function () {
    state.date = "";
    refresh();
  });
  $("refresh").addEventListener("click", function () { refresh(); });

  // Auto-refresh on the poll cadence, paused while the tab is hidden and caught up on return.
  $("refresh-note").textContent = "Refreshes every " + POLL_MINUTES + " min (paused while the tab is hidden).";
  setInterval(function () {
    renderAge();
    if (Date.now() - state.lastRefresh >= POLL_MINUTES * 60 * 1000) {
      if (document.hidden) { state.refreshDue = true; } else { refresh(); }
    }
  }, 15 * 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && (state.refreshDue || Date.now() - state.lastRefresh >= POLL_MINUTES * 60 * 1000)) {
      refresh();
    }
  });

  refresh();
}());
