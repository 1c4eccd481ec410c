// evoq dashboard: swaps the HTML fragments the server pushes (server-sent events) and draws the
// charts with Plotly (served from the plotly Python package). No page reloads, nothing fetched
// from anywhere but this server.
(() => {
  "use strict";

  const bootEl = document.getElementById("boot");
  const boot = bootEl ? JSON.parse(bootEl.textContent || "{}") : {};
  const liveEl = () => document.getElementById("live");

  function setLive(ok) {
    const el = liveEl();
    if (!el) return;
    el.className = ok ? "live on" : "live off";
    el.textContent = ok ? "live" : "reconnecting";
    el.title = ok ? "server push: connected" : "server push: reconnecting";
  }

  // Replace the inner HTML of the elements named by the keys of `html`, keeping open
  // <details> (failure messages) open.
  const shown = new Map();
  function swap(html) {
    for (const [id, frag] of Object.entries(html || {})) {
      if (shown.get(id) === frag) continue;
      const el = document.getElementById(id);
      if (!el) continue;
      const open = new Set(Array.from(el.querySelectorAll("details[open]"), (d) => d.dataset.key));
      el.innerHTML = frag;
      shown.set(id, frag);
      if (open.size) {
        el.querySelectorAll("details").forEach((d) => {
          if (open.has(d.dataset.key)) d.open = true;
        });
      }
    }
  }

  // Follow a server-sent event stream; `query()` gives the cursor to resume from after a
  // reconnection (the browser's own retry would resend a stale one).
  function follow(url, query, onUpdate) {
    let source = null;
    const open = () => {
      const q = new URLSearchParams(query()).toString();
      source = new EventSource(url + (q ? "?" + q : ""));
      source.addEventListener("open", () => setLive(true));
      source.addEventListener("update", (ev) => {
        setLive(true);
        onUpdate(JSON.parse(ev.data));
      });
      source.addEventListener("error", () => {
        setLive(false);
        source.close();
        setTimeout(open, 1000);
      });
    };
    open();
  }

  const esc = (s) => String(s).replace(/[<>&]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;" })[c]);
  // Times go to Plotly as Date objects: it shows them in the browser's time zone.
  const local = (ms) => new Date(ms);
  // WebGL draws tens of thousands of points in a blink; without it, fall back to SVG.
  const hasWebGL = (() => {
    try {
      return Boolean(document.createElement("canvas").getContext("webgl"));
    } catch (e) {
      return false;
    }
  })();
  const MANY = hasWebGL ? "scattergl" : "scatter";

  // The two charts of an experiment: every result by trial number and by wall clock, the
  // current population, the best so far, failed runs along the edge.
  class Charts {
    constructor(trialUrl, maximize) {
      this.trialUrl = trialUrl;
      this.maximize = maximize;
      this.done = { trial: [], time: [], metric: [] }; // completions, in log order
      this.failed = { trial: [], time: [], text: [] };
      this.population = [];
      this.drawn = false;
      this.drawing = Promise.resolve();
      this.logScale = false;
    }

    add(points) {
      const fresh = { done: { trial: [], time: [], metric: [] }, failed: { trial: [], time: [], text: [] } };
      for (const [trial, ms, metric, kind, attempt] of points) {
        if (metric !== null && kind === "") {
          for (const part of [this.done, fresh.done]) {
            part.trial.push(trial);
            part.time.push(local(ms));
            part.metric.push(metric);
          }
        } else {
          for (const part of [this.failed, fresh.failed]) {
            part.trial.push(trial);
            part.time.push(local(ms));
            part.text.push(esc(`attempt ${attempt} ${kind || "failed"}`));
          }
        }
      }
      return fresh;
    }

    reset() {
      this.done = { trial: [], time: [], metric: [] };
      this.failed = { trial: [], time: [], text: [] };
    }

    // Best so far as steps: [xs, ys] over the completions ordered by `key` ("trial" or "time").
    best(key) {
      const n = this.done.metric.length;
      const order = Array.from({ length: n }, (_, i) => i);
      if (key === "trial") order.sort((a, b) => this.done.trial[a] - this.done.trial[b]);
      const xs = [];
      const ys = [];
      let best = null;
      for (const i of order) {
        const m = this.done.metric[i];
        if (best === null || (this.maximize ? m > best : m < best)) {
          best = m;
          xs.push(this.done[key][i]);
          ys.push(m);
        }
      }
      if (n) {
        const last = order[n - 1];
        xs.push(this.done[key][last]);
        ys.push(best);
      }
      return [xs, ys];
    }

    wantsLog() {
      const m = this.done.metric;
      if (!m.length) return false;
      let lo = Infinity;
      let hi = -Infinity;
      for (const v of m) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      return lo > 0 && hi / lo > 100;
    }

    popXY(key) {
      const xs = [];
      const ys = [];
      const ids = [];
      for (const [trial, ms, metric] of this.population) {
        if (metric === null || (key === "time" && ms === null)) continue;
        xs.push(key === "trial" ? trial : local(ms));
        ys.push(metric);
        ids.push(trial);
      }
      return [xs, ys, ids];
    }

    traces(key) {
      const [bx, by] = this.best(key);
      const [px, py, pid] = this.popXY(key);
      const edge = this.maximize ? 0.03 : 0.97;
      return [
        {
          name: "result", type: MANY, mode: "markers", x: this.done[key].slice(), y: this.done.metric.slice(),
          customdata: this.done.trial.slice(), marker: { size: 5, color: "rgba(120,120,120,0.55)" },
          hovertemplate: "trial %{customdata}<br>metric %{y:.6g}<extra></extra>",
        },
        {
          name: "population", type: MANY, mode: "markers", x: px, y: py, customdata: pid,
          marker: { size: 8, color: "#f28e2b", line: { width: 1, color: "#a05a12" } },
          hovertemplate: "trial %{customdata} (in the population)<br>metric %{y:.6g}<extra></extra>",
        },
        {
          name: "best so far", type: "scatter", mode: "lines", x: bx, y: by, line: { shape: "hv", width: 2, color: "#1f77b4" },
          hoverinfo: "skip",
        },
        {
          name: "failed run", type: MANY, mode: "markers", x: this.failed[key].slice(),
          y: this.failed.trial.map(() => edge), yaxis: "y2", customdata: this.failed.trial.slice(),
          text: this.failed.text.slice(), marker: { symbol: "x", size: 7, color: "#d62728" },
          hovertemplate: "trial %{customdata}: %{text}<extra></extra>",
        },
      ];
    }

    layout(key) {
      return {
        margin: { l: 55, r: 15, t: 10, b: 45 },
        height: 330,
        showlegend: true,
        legend: { orientation: "h", y: 1.12, x: 0 },
        xaxis: key === "trial" ? { title: { text: "trial number" }, zeroline: false } : { title: { text: "wall clock" }, type: "date" },
        yaxis: { title: { text: "metric" }, type: this.logScale ? "log" : "linear", zeroline: false },
        yaxis2: { overlaying: "y", range: [0, 1], visible: false, fixedrange: true },
        hovermode: "closest",
        uirevision: key, // keep the user's zoom across updates
      };
    }

    draw() {
      if (!window.Plotly) return;
      this.logScale = this.wantsLog();
      this.drawn = true;
      const config = {
        displaylogo: false,
        responsive: true,
        // WebGL at the screen's pixel ratio: Plotly's default of 2 draws four times the pixels
        // on a plain screen (twice the time of a frame with software WebGL)
        plotGlPixelRatio: Math.min(4, Math.max(1, window.devicePixelRatio || 1)),
        modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines", "hoverClosestGl2d", "hoverClosestCartesian", "hoverCompareCartesian"],
      };
      const drawOne = (key) => {
        const el = document.getElementById(`chart-${key}`);
        if (!el) return null;
        return Plotly.newPlot(el, this.traces(key), this.layout(key), config).then(() => {
          el.removeAllListeners && el.removeAllListeners("plotly_click");
          el.on("plotly_click", (ev) => {
            const p = ev.points && ev.points[0];
            if (p && p.customdata !== undefined && p.customdata !== null) window.location.href = this.trialUrl + p.customdata;
          });
        });
      };
      const nextFrame = () => new Promise((resolve) => requestAnimationFrame(resolve));
      // the page's numbers paint first; then both charts, shown together in one frame (each
      // frame with WebGL content costs a paint)
      this.drawing = nextFrame()
        .then(() => drawOne("trial"))
        .then(() => drawOne("time"))
        .then(() => {
          document.body.dataset.charts = String(this.done.metric.length + this.failed.trial.length);
          if (document.body.dataset.chartsMs) return;
          // when the charts were first on screen (the frame after drawing them was painted), in
          // ms since navigation; read by scripts/bench_dashboard.py
          nextFrame().then(() =>
            setTimeout(() => (document.body.dataset.chartsMs = String(Math.round(performance.now()))), 0),
          );
        });
    }

    update(fresh, populationChanged) {
      if (!this.drawn || !window.Plotly) return;
      // updates wait for the first drawing (they only extend what is drawn)
      this.drawing = this.drawing.then(() => this.apply(fresh, populationChanged));
    }

    apply(fresh, populationChanged) {
      if (this.wantsLog() !== this.logScale) {
        this.draw();
        return this.drawing;
      }
      const jobs = [];
      for (const key of ["trial", "time"]) {
        const el = document.getElementById(`chart-${key}`);
        if (!el) continue;
        if (fresh.done.metric.length) {
          jobs.push(Plotly.extendTraces(el, { x: [fresh.done[key]], y: [fresh.done.metric], customdata: [fresh.done.trial] }, [0]));
        }
        if (fresh.failed.trial.length) {
          const edge = this.maximize ? 0.03 : 0.97;
          jobs.push(
            Plotly.extendTraces(
              el,
              { x: [fresh.failed[key]], y: [fresh.failed.trial.map(() => edge)], customdata: [fresh.failed.trial], text: [fresh.failed.text] },
              [3],
            ),
          );
        }
        if (fresh.done.metric.length || populationChanged) {
          const [bx, by] = this.best(key);
          const [px, py, pid] = this.popXY(key);
          jobs.push(Plotly.restyle(el, { x: [px, bx], y: [py, by], customdata: [pid, null] }, [1, 2]));
        }
      }
      return Promise.all(jobs).then(() => {
        document.body.dataset.charts = String(this.done.metric.length + this.failed.trial.length);
      });
    }
  }

  function experimentPage(b) {
    const cursor = { v: b.v, g: b.g, n: b.n };
    const charts = new Charts(b.trial_url, b.maximize);
    charts.add(b.points);
    charts.population = b.population || [];
    document.body.dataset.n = String(cursor.n);
    charts.draw();
    follow(b.stream, () => cursor, (m) => {
      swap(m.html);
      if (m.reset) charts.reset();
      if (m.maximize !== undefined) charts.maximize = m.maximize;
      const fresh = charts.add(m.points || []);
      if (m.population) charts.population = m.population;
      if (m.reset) charts.draw();
      else charts.update(fresh, Boolean(m.population));
      cursor.v = m.v;
      cursor.g = m.g;
      cursor.n = m.n;
      document.body.dataset.n = String(m.n);
      document.body.dataset.v = String(m.v);
    });
  }

  function start() {
    const clock = document.getElementById("clock");
    if (clock) setInterval(() => (clock.textContent = new Date().toLocaleString()), 1000);
    if (boot.page === "experiment") experimentPage(boot);
    else if (boot.page === "overview" || boot.page === "trial") follow(boot.stream, () => ({}), (m) => swap(m.html));
  }

  // Deferred scripts (this one, then Plotly's) run before DOMContentLoaded: start after all of them.
  if (document.readyState === "complete") start();
  else document.addEventListener("DOMContentLoaded", start);
})();
