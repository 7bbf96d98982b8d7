// Chorus film player with its danmaku overlay (catalog/templates/catalog/films/_player.html).
// One piece for films, episodes and live recordings: plays a video, resumes from the saved
// progress and saves it every few seconds and on pause / leaving, draws the danmaku over the
// picture at their offsets (scroll, top, bottom; colours; on/off; density), keeps a side list
// that follows the playhead, posts a danmaku at the current time, and shows the ones others
// post as they arrive on /ws/catalog/titles/<id>/. Protocol: docs/protocol.md ("Film catalog").
// Exposes window.chorusFilmPlayer for tests.
(function () {
  "use strict";
  const root = document.getElementById("film-player");
  const configNode = document.getElementById("film-player-config");
  if (!root || !configNode || root.dataset.ready) return;
  root.dataset.ready = "1";
  const cfg = JSON.parse(configNode.textContent);
  // Leaving the page is a real page load, so that the socket and the video stop with it.
  document.body.setAttribute("hx-boost", "false");
  const $ = (sel) => root.querySelector(sel);
  const video = $("#fp-video");
  const overlay = $(".fp-overlay");
  const list = $(".fp-list");
  const status = $(".fp-status");
  const form = $(".fp-post");
  const errorBox = $(".fp-error");
  const toggle = $(".fp-toggle");
  const density = $(".fp-density");
  const WINDOW_MS = 60000; // danmaku are fetched a minute at a time, as the playhead gets there
  const SCROLL_S = 8;
  const FIXED_S = 4;
  const LIVE_REPLAY_GUARD_MS = 10000;

  const state = {
    index: 0, item: null, danmaku: new Map(), sorted: [], loaded: new Set(), lastMs: 0, lastSaved: -1,
    emitted: 0, lanes: { scroll: [], top: [], bottom: [] }, socket: null, retries: 0, live: new Map(),
  };

  function headers(extra) {
    return Object.assign({ "X-CSRFToken": cfg.csrfToken, Accept: "application/json" }, extra || {});
  }
  function setStatus(text) { status.textContent = text || ""; }
  function fmt(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  }
  function episodeQuery() { return state.item.episodeId ? `&episode_id=${state.item.episodeId}` : ""; }

  // --- the item: the film, or one episode ----------------------------------------------------
  function load(index) {
    state.index = index;
    state.item = cfg.items[index];
    state.danmaku.clear(); state.sorted = []; state.loaded.clear(); state.live.clear();
    clearOverlay(); renderList();
    const resume = state.item.positionS || 0;
    root.dataset.state = "loading";
    video.src = state.item.src;
    const item = state.item;
    video.addEventListener("loadedmetadata", function seek() {
      if (item !== state.item) return; // another item was chosen since: its own listener seeks
      if (resume > 0 && (!isFinite(video.duration) || resume < video.duration - 1)) video.currentTime = resume;
      state.lastMs = video.currentTime * 1000;
      fetchAround(state.lastMs);
      root.dataset.state = "ready";
    }, { once: true });
    const select = $(".fp-item");
    if (select) select.value = String(index);
    if (resume > 0) setStatus(`Resuming at ${fmt(resume * 1000)}`);
  }

  // --- progress ------------------------------------------------------------------------------
  function progressBody(finished) {
    const body = { position: Math.round(video.currentTime * 1000) / 1000, episode_id: state.item.episodeId };
    if (finished) body.finished = true;
    return JSON.stringify(body);
  }
  function saveProgress({ finished = false, leaving = false } = {}) {
    if (!state.item || !isFinite(video.currentTime) || video.readyState < 1) return;
    const position = Math.round(video.currentTime * 10) / 10;
    if (!finished && position === state.lastSaved) return;
    state.lastSaved = position;
    state.item.positionS = position;
    fetch(cfg.progressUrl, {
      method: "PUT", headers: headers({ "Content-Type": "application/json" }), body: progressBody(finished),
      credentials: "same-origin", keepalive: leaving,
    }).then((response) => {
      if (!response.ok) response.json().then((e) => setStatus(`Progress not saved: ${e.message}`)).catch(() => {});
    }).catch(() => {});
  }
  setInterval(() => { if (!video.paused && !video.ended) saveProgress(); }, (cfg.saveEveryS || 5) * 1000);
  video.addEventListener("pause", () => { if (!video.ended) saveProgress(); });
  video.addEventListener("ended", () => saveProgress({ finished: true }));
  window.addEventListener("pagehide", () => saveProgress({ leaving: true }));
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") saveProgress({ leaving: true }); });

  // --- danmaku store -------------------------------------------------------------------------
  function add(d) {
    if (state.danmaku.has(d.id) || (d.episode_id || null) !== (state.item.episodeId || null)) return false;
    state.danmaku.set(d.id, d);
    state.sorted.push(d);
    state.sorted.sort((a, b) => a.offset_ms - b.offset_ms || a.id - b.id);
    return true;
  }
  function fetchWindow(k) {
    if (k < 0 || state.loaded.has(k)) return;
    state.loaded.add(k);
    const item = state.item;
    const url = `${cfg.danmakuUrl}?from_ms=${k * WINDOW_MS}&to_ms=${(k + 1) * WINDOW_MS - 1}${episodeQuery()}`;
    fetch(url, { headers: headers(), credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((rows) => { if (item === state.item) { rows.forEach(add); renderList(); } })
      .catch(() => state.loaded.delete(k));
  }
  function fetchAround(ms) {
    const k = Math.floor(ms / WINDOW_MS);
    fetchWindow(k);
    if (ms % WINDOW_MS > WINDOW_MS - 15000) fetchWindow(k + 1); // the next minute before it starts
  }

  // --- the overlay ---------------------------------------------------------------------------
  function clearOverlay() {
    overlay.replaceChildren();
    state.lanes = { scroll: [], top: [], bottom: [] };
  }
  function laneCount() {
    const line = Math.max(20, overlay.clientHeight / 12);
    return Math.max(1, Math.floor((overlay.clientHeight / line) * Number(density.value || 0.67)));
  }
  function freeLane(mode, now, width, speed) {
    const lanes = state.lanes[mode];
    const count = laneCount();
    for (let i = 0; i < count; i++) {
      if (!lanes[i] || lanes[i] <= now) {
        lanes[i] = mode === "scroll" ? now + ((width + 24) / speed) * 1000 : now + FIXED_S * 1000;
        return i;
      }
    }
    return -1; // full: at this density the danmaku is not drawn (it stays in the list)
  }
  function emit(d) {
    if (!toggle.checked) return;
    const el = document.createElement("div");
    el.className = `fp-dm ${d.mode}`;
    el.textContent = d.text;
    el.dataset.id = d.id;
    el.style.color = /^#[0-9a-f]{6}$/i.test(d.color) ? d.color : "#ffffff";
    overlay.append(el);
    const width = el.offsetWidth, stage = overlay.clientWidth;
    const line = Math.max(20, overlay.clientHeight / 12);
    const speed = (stage + width) / SCROLL_S;
    const lane = freeLane(d.mode, performance.now(), width, speed);
    if (lane < 0) { el.remove(); return; }
    if (d.mode === "bottom") el.style.bottom = `${lane * line}px`;
    else el.style.top = `${lane * line}px`;
    if (d.mode === "scroll") {
      el.style.setProperty("--from", `${stage}px`);
      el.style.setProperty("--to", `${-width - 4}px`);
    }
    el.addEventListener("animationend", () => el.remove());
    state.emitted += 1;
  }
  function tick() {
    const now = video.currentTime * 1000;
    if (now < state.lastMs || now - state.lastMs > 1500) {
      state.lastMs = now; // a seek: start afresh from the new time
      clearOverlay();
    } else if (!video.paused) {
      for (const d of state.sorted) {
        if (d.offset_ms > now) break;
        if (d.offset_ms > state.lastMs) {
          const shownLive = state.live.get(d.id);
          if (!shownLive || performance.now() - shownLive > LIVE_REPLAY_GUARD_MS) emit(d);
        }
      }
      state.lastMs = now;
    }
    fetchAround(now);
    follow(now);
    requestAnimationFrame(tick);
  }
  video.addEventListener("play", () => {
    overlay.classList.remove("paused"); root.dataset.state = "playing";
    if (status.textContent.startsWith("Resuming")) setTimeout(() => setStatus(""), 3000);
  });
  video.addEventListener("pause", () => { overlay.classList.add("paused"); root.dataset.state = "paused"; });
  video.addEventListener("seeking", clearOverlay);
  video.addEventListener("error", () => { root.dataset.state = "error"; setStatus("The video cannot be played (the file may be missing or in a format this browser cannot play)."); });
  // The viewer's choices (overlay on or off, density) are kept for the next title.
  const saved = (() => { try { return JSON.parse(localStorage.getItem("chorus.danmaku") || "{}"); } catch (e) { return {}; } })();
  if (typeof saved.on === "boolean") { toggle.checked = saved.on; overlay.hidden = !saved.on; }
  if ([...density.options].some((o) => o.value === saved.density)) density.value = saved.density;
  function remember() {
    try { localStorage.setItem("chorus.danmaku", JSON.stringify({ on: toggle.checked, density: density.value })); } catch (e) { /* private mode */ }
  }
  toggle.addEventListener("change", () => { overlay.hidden = !toggle.checked; if (!toggle.checked) clearOverlay(); remember(); });
  density.addEventListener("change", remember);

  // --- the side list follows the playhead --------------------------------------------------
  function renderList() {
    list.replaceChildren();
    if (!state.sorted.length) {
      const none = document.createElement("li");
      none.className = "fp-none muted small"; none.textContent = "Nothing said yet at this point.";
      list.append(none);
    }
    for (const d of state.sorted) list.append(row(d));
    $(".fp-count").textContent = state.sorted.length ? String(state.sorted.length) : "";
    state.current = null;
  }
  function row(d) {
    const li = document.createElement("li");
    li.dataset.id = d.id; li.dataset.offset = d.offset_ms;
    const time = document.createElement("button");
    time.type = "button"; time.className = "link fp-time"; time.textContent = fmt(d.offset_ms);
    time.setAttribute("aria-label", `Go to ${fmt(d.offset_ms)}`);
    time.addEventListener("click", () => { video.currentTime = d.offset_ms / 1000; });
    const text = document.createElement("span");
    text.className = "fp-text"; text.textContent = d.text;
    const who = document.createElement("span");
    who.className = "muted small"; who.textContent = d.user ? ` · ${d.user}` : "";
    li.append(time, text, who);
    return li;
  }
  function follow(now) {
    let current = null;
    for (const li of list.children) {
      if (li.dataset.offset === undefined) continue;
      if (Number(li.dataset.offset) <= now) current = li; else break;
    }
    if (current === state.current) return;
    if (state.current) state.current.classList.remove("current");
    state.current = current;
    if (current) {
      current.classList.add("current");
      const top = current.offsetTop - list.clientHeight / 2; // the list is the rows' offsetParent
      list.scrollTop = Math.max(0, top); // scroll the list only, never the page
    }
  }

  // --- posting -------------------------------------------------------------------------------
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { text: String(data.get("text") || ""), offset_ms: Math.round(video.currentTime * 1000),
                   mode: data.get("mode"), color: data.get("color"), episode_id: state.item.episodeId };
    errorBox.hidden = true;
    const button = form.querySelector("button");
    button.disabled = true;
    fetch(cfg.danmakuUrl, { method: "POST", headers: headers({ "Content-Type": "application/json" }),
                            body: JSON.stringify(body), credentials: "same-origin" })
      .then((r) => r.json().then((json) => ({ ok: r.ok, json })))
      .then(({ ok, json }) => {
        if (!ok) { errorBox.textContent = json.message || "Not posted."; errorBox.hidden = false; return; }
        form.elements.text.value = "";
        showLive(json);
      })
      .catch(() => { errorBox.textContent = "Not posted: the server did not answer."; errorBox.hidden = false; })
      .finally(() => { button.disabled = false; });
  });
  function showLive(d) {
    if (!add(d)) return;
    state.live.set(d.id, performance.now());
    emit(d);
    renderList();
  }

  // --- the socket: danmaku that others post ------------------------------------------------
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${cfg.websocket}`);
    state.socket = socket;
    socket.addEventListener("open", () => { state.retries = 0; root.dataset.socket = "open"; });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "catalog.danmaku" && message.danmaku) showLive(message.danmaku);
    });
    socket.addEventListener("close", (event) => {
      root.dataset.socket = "closed";
      if (event.code === 4401 || event.code === 4403 || event.code === 4404) return;
      state.retries += 1;
      setTimeout(connect, Math.min(10000, 500 * 2 ** Math.min(state.retries, 5)) * (0.5 + Math.random()));
    });
  }

  // --- favourite button, without a page load ------------------------------------------------
  const favorite = document.querySelector(".favorite-form[data-favorite-url]");
  if (favorite) {
    favorite.addEventListener("submit", (event) => {
      event.preventDefault();
      const adding = favorite.elements.action.value === "add";
      fetch(favorite.dataset.favoriteUrl, { method: adding ? "PUT" : "DELETE", headers: headers(), credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : Promise.reject(r)))
        .then((json) => {
          const button = favorite.querySelector("button");
          favorite.elements.action.value = json.favorite ? "remove" : "add";
          button.textContent = json.favorite ? "♥ In your favourites" : "♡ Add to favourites";
          button.classList.toggle("secondary", json.favorite);
          button.setAttribute("aria-pressed", String(json.favorite));
        })
        .catch(() => favorite.submit());
    });
  }

  document.querySelectorAll("[data-play-episode]").forEach((button) => {
    button.addEventListener("click", () => {
      const index = cfg.items.findIndex((item) => String(item.episodeId) === button.dataset.playEpisode);
      if (index < 0) return;
      saveProgress();
      load(index);
      root.scrollIntoView({ behavior: "smooth", block: "start" });
      video.play().catch(() => {});
    });
  });
  const select = $(".fp-item");
  if (select) select.addEventListener("change", () => { saveProgress(); load(Number(select.value)); });

  // A series goes on with its next episode.
  video.addEventListener("ended", () => {
    if (state.index + 1 < cfg.items.length) { load(state.index + 1); video.play().catch(() => {}); }
  });

  load(Math.min(cfg.start || 0, cfg.items.length - 1));
  connect();
  requestAnimationFrame(tick);
  window.chorusFilmPlayer = { state, video, config: cfg, emit, load };
})();
