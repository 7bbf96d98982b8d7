// Chorus catalog sync run page: progress, counts, current item, rate and errors, live.
// Protocol: docs/protocol.md ("Catalog sync websocket"). Exposes window.chorusSync for tests.
(function () {
  "use strict";
  const configNode = document.getElementById("sync-config");
  if (!configNode) return;
  const cfg = JSON.parse(configNode.textContent);
  document.body.setAttribute("hx-boost", "false"); // the socket lives as long as the page
  const $ = (sel) => document.querySelector(sel);
  const FINISHED = new Set(["done", "failed", "blocked"]);
  const LABELS = { queued: "queued", running: "running", done: "done", failed: "failed",
                   blocked: "Stopped: the source refused us" };
  const state = { run: cfg.run, frames: 0, socket: null, retries: 0 };

  function text(el, value) { if (el) el.textContent = value == null ? "" : String(value); }

  function show(run) {
    state.run = run;
    const badge = $("#sync-state");
    badge.className = `state state-${run.state}`;
    badge.dataset.state = run.state;
    text(badge, LABELS[run.state] || run.state);
    const bar = $("#sync-bar");
    bar.classList.toggle("indeterminate", run.state === "queued" || (run.state === "running" && !run.listed));
    bar.setAttribute("aria-valuenow", run.percent);
    bar.firstElementChild.style.width = `${run.percent}%`;
    for (const el of document.querySelectorAll("[data-count]")) text(el, run[el.dataset.count] ?? 0);
    text($("#sync-current"), run.current_item ? `Now: ${run.current_item}` : (run.state === "queued" ? "Waiting for a worker…" : ""));
    text($("#sync-rate"), run.rate_per_min ? `· ${run.rate_per_min} titles/min` : "");
    const error = $("#sync-error");
    error.hidden = !run.error;
    text(error, run.error ? run.error + (run.retry_at ? ` (continues after ${new Date(run.retry_at).toLocaleString()})` : "") : "");
    // The event carries the last 50 errors and how many the run has: the rows missing are added.
    const rows = $("#sync-errors tbody");
    const errors = run.errors || [];
    const missing = Math.min(errors.length, (run.errors_total ?? errors.length) - rows.childElementCount);
    for (const item of missing > 0 ? errors.slice(-missing) : []) {
      const tr = document.createElement("tr");
      const what = document.createElement("td"); text(what, item.item);
      const why = document.createElement("td"); text(why, item.reason);
      tr.append(what, why);
      rows.append(tr);
    }
    $("#sync-errors").hidden = rows.childElementCount === 0;
    $("#sync-no-errors").hidden = rows.childElementCount !== 0;
  }

  function connect() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${cfg.socket}`;
    const socket = new WebSocket(url);
    state.socket = socket;
    socket.addEventListener("open", () => { state.retries = 0; $("#sync-offline").hidden = true; });
    socket.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (_) { return; }
      if (frame.type === "catalog.sync_run" && frame.id === cfg.runId) { state.frames += 1; show(frame); }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401 || event.code === 4403 || event.code === 4404) {
        text($("#sync-offline"), "This page can no longer follow the run; reload it.");
        $("#sync-offline").hidden = false;
        return;
      }
      if (FINISHED.has(state.run.state) && event.code === 1000) return;
      $("#sync-offline").hidden = false;
      const delay = Math.min(15000, 500 * 2 ** state.retries) * (0.5 + Math.random() / 2);
      state.retries += 1;
      setTimeout(connect, delay);
    });
  }

  connect();
  window.chorusSync = { state, show };
})();
