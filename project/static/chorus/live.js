// Chorus live channel page: the message stream, the fetcher's state and live statistics.
// Protocol: docs/protocol.md ("Live feed websocket"). Exposes window.chorusLive for tests.
(function () {
  "use strict";
  const configNode = document.getElementById("live-config");
  if (!configNode) return;
  const cfg = JSON.parse(configNode.textContent);
  document.body.setAttribute("hx-boost", "false"); // the socket lives as long as the page
  const $ = (sel) => document.querySelector(sel);
  const list = $("#live-messages");
  const MAX_ROWS = cfg.maxRows || 300;
  const SEEN_MAX = 5000;

  const state = {
    seen: new Set(), seenOrder: [], pending: [], paused: false, missed: 0,
    filters: new Set(), received: 0, sessionTotal: cfg.sessionTotal || 0, rendered: 0, socket: null, retries: 0,
    following: false,
  };

  // --- rendering: batched into one animation frame, at most MAX_ROWS rows in the DOM ----
  const typeLabel = { chat: "", emoji_chat: "", gift: "🎁", super_chat: "💬", guard: "⚓", like: "❤", member: "→",
                      follow: "＋", share: "↗", fansclub: "♥", viewers: "👁", room_stats: "≡", rank: "#",
                      control: "■", unknown: "?" };

  function text(el, value) { el.textContent = value == null ? "" : String(value); return el; }
  function make(tag, cls, value) { const el = document.createElement(tag); if (cls) el.className = cls; if (value !== undefined) text(el, value); return el; }

  function describe(m) {
    const x = m.extra || {};
    switch (m.type) {
      case "gift": return `${x.gift_name || "gift"} ×${x.count || 1}` + (x.total_value ? ` (${x.total_value} ${x.value_unit || ""})` : "");
      case "super_chat": return m.content + (x.total_value ? ` (${x.total_value} ${x.value_unit || ""})` : "");
      case "like": return `liked ×${x.count || 1}`;
      case "member": return "entered";
      case "follow": return "followed";
      case "share": return "shared the room";
      case "viewers": return `${x.current ?? "?"} watching` + (x.total ? ` · ${x.total} in all` : "");
      case "control": return `broadcast ${x.status || ""}`;
      case "unknown": return `${x.method || "unknown message"} (${x.size || 0} bytes)`;
      default: return m.content;
    }
  }

  function row(m) {
    const li = make("li", `msg type-${m.type}`);
    li.dataset.id = m.id; li.dataset.type = m.type;
    const time = new Date(m.ts_ms || m.received_ms);
    li.append(make("time", "muted", time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })));
    if (typeLabel[m.type]) li.append(make("span", "badge", typeLabel[m.type]));
    if (m.user) li.append(make("b", "who", m.user.name || m.user.id));
    li.append(make("span", "what", describe(m)));
    return li;
  }

  function showTotal() { text($("#live-total"), state.sessionTotal.toLocaleString()); }

  function accept(messages, history = false) {
    for (const m of messages) {
      const key = m.id != null ? m.id : `${m.type}:${m.platform_msg_id}`;
      if (state.seen.has(key)) {
        if (m.type === "gift") updateGift(m); // a combo's count grew
        continue;
      }
      state.seen.add(key); state.seenOrder.push(key);
      if (!history) state.sessionTotal += 1;
      if (state.seenOrder.length > SEEN_MAX) state.seen.delete(state.seenOrder.shift());
      state.received += 1;
      if (!state.filters.has(m.type)) continue;
      if (state.paused) { state.missed += 1; continue; }
      state.pending.push(m);
    }
    if (state.pending.length > MAX_ROWS) state.pending.splice(0, state.pending.length - MAX_ROWS);
    schedule();
    showMissed();
    if (!history) showTotal();
  }

  function updateGift(m) {
    const el = list.querySelector(`li[data-id="${CSS.escape(String(m.id))}"] .what`);
    if (el) text(el, describe(m));
  }

  let scheduled = false;
  function schedule() {
    if (scheduled || !state.pending.length) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      const fragment = document.createDocumentFragment();
      for (const m of state.pending) fragment.append(row(m));
      state.rendered += state.pending.length;
      state.pending = [];
      const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
      list.append(fragment);
      while (list.childElementCount > MAX_ROWS) list.firstElementChild.remove();
      if (atBottom || !state.userScrolled) list.scrollTop = list.scrollHeight;
      $("#live-empty")?.remove();
    });
  }

  list.addEventListener("scroll", () => {
    state.userScrolled = list.scrollHeight - list.scrollTop - list.clientHeight >= 40;
  }, { passive: true });

  function showMissed() {
    const btn = $("#live-pause");
    if (!btn) return;
    btn.textContent = state.paused ? (state.missed ? `Resume (${state.missed} new)` : "Resume") : "Pause";
    btn.setAttribute("aria-pressed", state.paused ? "true" : "false");
  }

  $("#live-pause")?.addEventListener("click", () => {
    state.paused = !state.paused;
    if (!state.paused) { state.missed = 0; state.userScrolled = false; }
    showMissed();
  });

  for (const box of document.querySelectorAll("[data-live-filter]")) {
    if (box.checked) state.filters.add(box.dataset.liveFilter);
    box.addEventListener("change", () => {
      const type = box.dataset.liveFilter;
      if (box.checked) state.filters.add(type); else state.filters.delete(type);
      for (const li of list.querySelectorAll(`li[data-type="${CSS.escape(type)}"]`)) li.hidden = !box.checked;
    });
  }

  // --- status and statistics ------------------------------------------------------------
  const stateNames = cfg.stateNames || {};
  function showStatus(s) {
    const badge = $("#live-state");
    if (badge) { text(badge, stateNames[s.state] || s.state); badge.className = `state state-${s.state}`; }
    text($("#live-error"), s.last_error || "");
    $("#live-error-box")?.toggleAttribute("hidden", !(s.last_error && (s.state === "error" || s.state === "reconnecting" || s.state === "waiting")));
    text($("#live-reconnects"), s.reconnects ?? 0);
    for (const form of document.querySelectorAll("[data-live-action]")) {
      const following = s.desired === "follow";
      form.hidden = (form.dataset.liveAction === "start") === following;
    }
  }

  // One bar per minute (the last 60), scaled to the busiest; the label says the figures.
  function bars(svg, points) {
    if (!svg) return;
    const shown = points.slice(-60);
    const values = shown.map((p) => p[1] || 0);
    if (!values.some((v) => v > 0)) { svg.replaceChildren(); return; }
    const w = 300, h = 60, max = Math.max(...values, 1), slot = w / Math.max(shown.length, 12);
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren(...values.map((v, i) => {
      const bar = document.createElementNS(ns, "rect");
      const height = Math.max(1, (v / max) * (h - 2));
      bar.setAttribute("x", String(i * slot + slot * 0.1)); bar.setAttribute("width", String(slot * 0.8));
      bar.setAttribute("y", String(h - height)); bar.setAttribute("height", String(height));
      bar.setAttribute("class", "bar");
      const title = document.createElementNS(ns, "title");
      title.textContent = `${new Date(shown[i][0]).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${v}`;
      bar.append(title);
      return bar;
    }));
    svg.setAttribute("aria-label", `${svg.dataset.label}: latest ${values[values.length - 1]}, highest ${max}`);
  }

  function ranking(el, rows, valueKey) {
    if (!el) return;
    el.replaceChildren(...rows.slice(0, 10).map((r) => {
      const li = make("li");
      li.append(make("span", "truncate", r.user_name || r.user_id), make("b", "num", (r[valueKey] ?? 0).toLocaleString()));
      return li;
    }));
    if (!rows.length) el.replaceChildren(make("li", "muted", "Nobody yet."));
  }

  function showStats(s) {
    const minutes = s.per_minute || [];
    bars($("#live-chart-messages"), minutes.map((m) => [m.minute_ms, m.messages]));
    bars($("#live-chart-viewers"), minutes.map((m) => [m.minute_ms, m.viewers]));
    if (s.totals) { state.sessionTotal = s.totals.messages; showTotal(); }
    ranking($("#live-top-chatters"), s.top_chatters || [], "chats");
    ranking($("#live-top-gifters"), s.top_gifters || [], "gift_value");
    const words = $("#live-hot-words");
    if (words) {
      const window = (s.hot_words || {})[words.dataset.window || "5m"] || [];
      words.replaceChildren(...window.slice(0, 20).map((w) => make("li", "word", `${w.word} ${w.count}`)));
      if (!window.length) words.replaceChildren(make("li", "muted", "No words yet."));
    }
  }

  // --- socket, reconnecting with back-off ----------------------------------------------
  function connect() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${cfg.websocket}`;
    const socket = new WebSocket(url);
    state.socket = socket;
    state.following = false;
    socket.addEventListener("open", () => { state.retries = 0; $("#live-offline")?.setAttribute("hidden", ""); });
    socket.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (_) { return; }
      if (frame.type === "live.messages") {
        // The history comes once the server follows the channel: from here on nothing is missed.
        if (frame.history === true) state.following = true;
        accept(frame.messages || [], frame.history === true);
      }
      else if (frame.type === "live.status") showStatus(frame);
      else if (frame.type === "live.stats") showStats(frame);
      // The recording part of the page (live_record.js) reads its own frames.
      else if (frame.type === "live.recording" || frame.type === "live.record_log") {
        document.dispatchEvent(new CustomEvent("chorus:live-recording", { detail: frame }));
      }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401 || event.code === 4403 || event.code === 4404) {
        text($("#live-offline"), "This page can no longer follow the channel; reload it.");
        $("#live-offline")?.removeAttribute("hidden");
        return;
      }
      $("#live-offline")?.removeAttribute("hidden");
      const delay = Math.min(15000, 500 * 2 ** state.retries) * (0.5 + Math.random() / 2);
      state.retries += 1;
      setTimeout(connect, delay);
    });
  }

  if (cfg.initialStats) showStats(cfg.initialStats);
  connect();
  window.chorusLive = { state, accept, rows: () => list.childElementCount };
})();
