// Chorus room player: clock sync, scheduled start, drift correction, reconnect.
// Protocol: docs/protocol.md ("Rooms websocket"). Exposes window.chorusRoom for tests.
(function () {
  "use strict";
  const configNode = document.getElementById("room-config");
  if (!configNode) return;
  const cfg = JSON.parse(configNode.textContent);
  // Leaving the room is a real page load, so that its socket and audio stop with it.
  document.body.setAttribute("hx-boost", "false");
  const $ = (sel) => document.querySelector(sel);
  const clientNow = () => performance.timeOrigin + performance.now();

  // --- clock: NTP-style, keep the sample with the smallest round trip of the last 8 ---
  const clock = {
    samples: [], offset: 0, rtt: null, synced: false,
    add(t0, t1, t2, t3) {
      const rtt = (t3 - t0) - (t2 - t1);
      const offset = ((t1 - t0) + (t2 - t3)) / 2;
      this.samples.push({ rtt, offset });
      if (this.samples.length > 8) this.samples.shift();
      const best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
      this.offset = best.offset; this.rtt = best.rtt; this.synced = true;
    },
    now() { return clientNow() + this.offset; },
  };

  // --- engines: Web Audio (sample-accurate start) or the audio element --------------
  const AudioCtx = window.AudioContext || window.webkitAudioContext;
  let ctx = null;
  function audioContext() {
    if (!ctx && AudioCtx) ctx = new AudioCtx({ latencyHint: "interactive" });
    return ctx;
  }

  class WebAudioEngine {
    constructor() { this.kind = "webaudio"; this.buffer = null; this.source = null; this.gain = null; this.mark = null; }
    async load(url) {
      const context = audioContext();
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error((await response.json().catch(() => ({}))).message || `HTTP ${response.status}`);
      this.buffer = await context.decodeAudioData(await response.arrayBuffer());
      if (!this.gain) { this.gain = context.createGain(); this.gain.connect(context.destination); }
    }
    // The audio clock now, interpolated between render quanta via getOutputTimestamp.
    ctxNow() {
      const stamp = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : null;
      if (stamp && stamp.performanceTime) return stamp.contextTime + (performance.now() - stamp.performanceTime) / 1000;
      return ctx.currentTime;
    }
    ctxTimeFor(serverMs) {
      return this.ctxNow() + (serverMs - clock.now()) / 1000;
    }
    start(atServerMs, offsetS) {
      this.stop();
      const now = this.ctxNow();
      let when = this.ctxTimeFor(atServerMs);
      let offset = offsetS;
      if (when < now + 0.02) { offset += now + 0.02 - when; when = now + 0.02; }
      if (offset >= this.buffer.duration) return;
      const source = ctx.createBufferSource();
      source.buffer = this.buffer;
      source.connect(this.gain);
      source.start(when, offset);
      this.source = source;
      // Position bookkeeping: from audio-clock time `at` the track is at `pos`, moving at `rate`.
      this.mark = { at: when, pos: offset, rate: 1 };
    }
    stop() {
      if (this.source) { try { this.source.stop(); } catch (e) { /* already stopped */ } this.source.disconnect(); }
      this.source = null; this.mark = null;
    }
    position() {
      if (!this.mark) return null;
      const now = this.ctxNow();
      if (now <= this.mark.at) return this.mark.pos;
      return this.mark.pos + (now - this.mark.at) * this.mark.rate;
    }
    setRate(rate) {
      if (!this.source || this.mark.rate === rate) return;
      const now = Math.max(this.ctxNow(), this.mark.at);
      this.mark = { at: now, pos: this.position(), rate };
      this.source.playbackRate.setValueAtTime(rate, now);
    }
    correct(expectedS) {
      const actual = this.position();
      if (actual === null || this.ctxNow() < this.mark.at) return 0;
      const drift = actual - expectedS;
      if (Math.abs(drift) * 1000 >= cfg.seekThresholdMs) {
        this.start(clock.now() + 150, expectedS + 0.15);
      } else {
        // Close the gap over ~4 s, never faster than maxRateNudge (0.5 %: inaudible on music).
        this.setRate(1 + Math.max(-cfg.maxRateNudge, Math.min(cfg.maxRateNudge, -drift / 4)));
      }
      return drift;
    }
    setVolume(v) { if (this.gain) this.gain.gain.value = v; }
    get paused() { return !this.source; }
  }

  // The audio element's play() was refused until the user interacts with the page.
  let elementBlocked = false;
  function blocked(err) {
    if (err && err.name === "NotAllowedError") { elementBlocked = true; checkAutoplay(); }
  }
  function played() { if (elementBlocked) { elementBlocked = false; checkAutoplay(); } }

  class ElementEngine {
    constructor(audio) { this.kind = "element"; this.audio = audio; this.timer = null; }
    load(url) {
      return new Promise((resolve, reject) => {
        const audio = this.audio;
        const done = () => { cleanup(); resolve(); };
        const fail = () => { cleanup(); reject(new Error("The track could not be loaded.")); };
        const cleanup = () => { audio.removeEventListener("canplaythrough", done); audio.removeEventListener("error", fail); };
        audio.addEventListener("canplaythrough", done);
        audio.addEventListener("error", fail);
        audio.src = url; audio.load();
      });
    }
    start(atServerMs, offsetS) {
      clearTimeout(this.timer);
      const delay = atServerMs - clock.now();
      const audio = this.audio;
      audio.playbackRate = 1;
      if (delay > 0) {
        audio.pause(); audio.currentTime = offsetS;
        this.timer = setTimeout(() => audio.play().then(played, blocked), delay);
      } else {
        audio.currentTime = offsetS - delay / 1000;
        audio.play().then(played, blocked);
      }
    }
    stop() { clearTimeout(this.timer); this.audio.pause(); }
    position() { return this.audio.paused ? null : this.audio.currentTime; }
    correct(expectedS) {
      const actual = this.position();
      if (actual === null) return 0;
      const drift = actual - expectedS;
      if (Math.abs(drift) * 1000 >= cfg.seekThresholdMs) {
        this.audio.currentTime = expectedS; this.audio.playbackRate = 1;
      } else {
        // Gentle: close the gap over ~4 s, never more than maxRateNudge (0.5 %: inaudible).
        const nudge = Math.max(-cfg.maxRateNudge, Math.min(cfg.maxRateNudge, -drift / 4));
        this.audio.playbackRate = 1 + nudge;
      }
      return drift;
    }
    setVolume(v) { this.audio.volume = v; }
    get paused() { return this.audio.paused; }
  }

  const audioElement = $("#room-audio");
  let engine = AudioCtx ? new WebAudioEngine() : new ElementEngine(audioElement);

  // --- room state -----------------------------------------------------------------
  let membersListed = false;  // whether this socket has sent its full member list yet
  const room = { state: null, queue: [], members: [], settings: {}, loadedEntry: null, loading: null,
                 appliedVersion: null, lastDrift: 0, localVolume: 1, soundBlocked: false };

  function expectedPosition(state, serverMs) {
    if (!state || state.status !== "playing") return state ? state.position_s : 0;
    if (serverMs <= state.anchor_ms) return state.position_s;
    return state.position_s + (serverMs - state.anchor_ms) / 1000 * state.rate;
  }

  function onState(state) {
    if (room.state && state.version < room.state.version) return;
    const changed = !room.state || state.version !== room.state.version;
    room.state = state;
    renderState();
    if (state.entry_id !== room.loadedEntry) {
      loadEntry(state);
    } else if (changed && room.loading === null) {
      apply(state);
    }
  }

  async function loadEntry(state) {
    engine.stop();
    room.loadedEntry = state.entry_id;
    room.appliedVersion = null;
    if (!state.track) { room.loading = null; return; }
    const entryId = state.entry_id;
    room.loading = entryId;
    showError("");
    try {
      await engine.load(state.track.stream_url);
    } catch (err) {
      if (engine.kind === "webaudio") {  // fall back to the audio element
        engine = new ElementEngine(audioElement);
        try { await engine.load(state.track.stream_url); } catch (err2) { room.loading = null; showError(err2.message); return; }
      } else { room.loading = null; showError(err.message); return; }
    }
    if (room.loadedEntry !== entryId) return;  // another track was chosen meanwhile
    room.loading = null;
    engine.setVolume(room.state.volume * room.localVolume);
    apply(room.state);
  }

  function apply(state) {
    room.appliedVersion = state.version;
    engine.setVolume(state.volume * room.localVolume);
    if (state.status === "playing") {
      engine.start(state.anchor_ms, state.position_s);
    } else {
      engine.stop();
      if (state.status === "waiting" && state.entry_id === room.loadedEntry && room.loading === null) {
        send({ type: "ready", entry_id: state.entry_id });
      }
    }
  }

  function correctDrift() {
    const state = room.state;
    if (!state || state.status !== "playing" || room.loading !== null || room.appliedVersion !== state.version) return;
    const now = clock.now();
    if (now < state.anchor_ms + 300) return;  // just started: let it settle
    const expected = expectedPosition(state, now);
    if (state.track && expected >= state.track.duration_s) return;
    room.lastDrift = engine.correct(expected);
  }

  // --- socket: reconnect with backoff and jitter ----------------------------------
  let socket = null; let attempts = 0; let pingTimer = null; let reportTimer = null;
  const pending = new Map();

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${cfg.websocket}`);
    setConnection("connecting");
    membersListed = false;  // this socket's deltas build on the list it sends first
    socket.onopen = () => {
      attempts = 0; setConnection("connected");
      clock.samples = [];
      for (let i = 0; i < 6; i++) setTimeout(ping, i * 120);  // a burst, then every 3 s
      clearInterval(pingTimer); pingTimer = setInterval(ping, 3000);
      clearInterval(reportTimer); reportTimer = setInterval(report, 3000);
    };
    socket.onmessage = (event) => handle(JSON.parse(event.data));
    socket.onclose = (event) => {
      clearInterval(pingTimer); clearInterval(reportTimer);
      if ([4401, 4403, 4404].includes(event.code)) {
        setConnection("closed"); showError(closeReason(event.code)); return;
      }
      attempts += 1;
      const delay = Math.min(10000, 500 * 2 ** Math.min(attempts - 1, 5)) * (0.5 + Math.random());
      setConnection("reconnecting", delay);
      setTimeout(connect, delay);
    };
  }

  function closeReason(code) {
    return { 4401: "Log in again to listen.", 4403: "You are not allowed in this room.", 4404: "This room no longer exists." }[code];
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }
  function ping() { send({ type: "time.ping", t0: clientNow() }); }
  function report() {
    if (!clock.synced) return;
    send({ type: "report", offset_ms: Math.round(clock.offset * 10) / 10, rtt_ms: Math.round(clock.rtt * 10) / 10,
           drift_ms: Math.round(room.lastDrift * 10000) / 10, sound_blocked: room.soundBlocked });
  }

  function handle(msg) {
    switch (msg.type) {
      case "time.pong": clock.add(msg.t0, msg.t1, msg.t2, clientNow()); break;
      case "room.state": onState(msg); break;
      case "room.queue": room.queue = msg.entries; room.settings.repeat = msg.repeat; room.settings.shuffle = msg.shuffle; renderQueue(); break;
      case "room.members": room.members = msg.members.map(memberEntry); membersListed = true; renderMembers(); break;
      case "room.members_delta": if (membersListed) { applyMembersDelta(msg); renderMembers(); } break;
      case "room.settings": Object.assign(room.settings, msg); renderSettings(); break;
      case "ack": pending.delete(msg.request_id); break;
      case "error":
        showError(msg.message);
        if (msg.state) onState(msg.state);
        break;
      default: break;
    }
  }

  let requestCounter = 0;
  function control(action, extra) {
    const requestId = `c${++requestCounter}`;
    pending.set(requestId, action);
    audioContext() && ctx.state === "suspended" && ctx.resume();
    send(Object.assign({ type: "control", action, request_id: requestId, version: room.state ? room.state.version : undefined }, extra || {}));
  }

  // --- rendering ---------------------------------------------------------------------
  function fmt(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "0:00";
    const s = Math.max(0, Math.floor(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }
  function setText(sel, text) { const node = $(sel); if (node) node.textContent = text; }

  function renderState() {
    const state = room.state;
    const track = state.track;
    setText("#now-title", track ? track.title : "Nothing playing");
    setText("#now-artist", track ? [track.artist, track.album].filter(Boolean).join(" · ") : "Add tracks to the queue, then press play.");
    for (const sel of ["#now-title", "#now-artist"]) { const node = $(sel); if (node) node.title = node.textContent; }
    setText("#now-status", { playing: "Playing", paused: "Paused", stopped: "Stopped", waiting: "Getting everyone ready…" }[state.status]);
    $("#room").dataset.status = state.status;
    const playButton = $("#btn-play");
    if (playButton) playButton.textContent = state.status === "playing" ? "❚❚" : "▶";
    if (playButton) playButton.setAttribute("aria-label", state.status === "playing" ? "Pause" : "Play");
    const volume = $("#room-volume");
    if (volume && document.activeElement !== volume) volume.value = state.volume;
    renderQueue();
  }

  function renderProgress() {
    const state = room.state;
    if (state && state.track) {
      const position = Math.min(expectedPosition(state, clock.now()), state.track.duration_s);
      setText("#pos", fmt(position));
      setText("#dur", fmt(state.track.duration_s));
      const bar = $("#progress-fill");
      if (bar) bar.style.width = `${(100 * position / state.track.duration_s).toFixed(2)}%`;
    }
    requestAnimationFrame(renderProgress);
  }

  function renderQueue() {
    const list = $("#queue-list");
    if (!list) return;
    const current = room.state ? room.state.entry_id : null;
    list.innerHTML = "";
    if (!room.queue.length) {
      list.innerHTML = '<li class="empty small">The queue is empty. Search the library below to add tracks.</li>';
      return;
    }
    room.queue.forEach((entry, index) => {
      const li = document.createElement("li");
      li.className = "queue-item" + (entry.id === current ? " current" : "");
      li.dataset.entryId = entry.id;
      const title = document.createElement("span");
      title.className = "q-title";
      title.innerHTML = `<strong></strong><span class="muted"></span>`;
      title.querySelector("strong").textContent = entry.track.title;
      title.querySelector("span").textContent = ` ${entry.track.artist} · ${fmt(entry.track.duration_s)}`;
      title.title = `${entry.track.title} · ${entry.track.artist}`;
      li.appendChild(title);
      if (cfg.canControl) {
        const tools = document.createElement("span");
        tools.className = "q-tools";
        tools.append(
          button("▶", `Play ${entry.track.title} now`, () => control("select", { entry_id: entry.id })),
          button("↑", "Move up", () => queueEdit({ op: "move", entry_id: entry.id, to_index: Math.max(0, index - 1) }), index === 0),
          button("↓", "Move down", () => queueEdit({ op: "move", entry_id: entry.id, to_index: index + 1 }), index === room.queue.length - 1),
          button("✕", "Remove from the queue", () => queueEdit({ op: "remove", entry_id: entry.id })),
        );
        li.appendChild(tools);
      }
      list.appendChild(li);
    });
  }

  function button(label, title, onClick, disabled) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "icon small"; b.textContent = label; b.title = title;
    b.setAttribute("aria-label", title); b.disabled = !!disabled; b.addEventListener("click", onClick);
    return b;
  }

  function syncClass(member) {
    if (member.online && member.sound_blocked) return "blocked";
    if (!member.online || member.drift_ms === null || member.drift_ms === undefined) return "unknown";
    const drift = Math.abs(member.drift_ms);
    return drift < 30 ? "good" : drift < 100 ? "fair" : "poor";
  }

  // A member entry leaves out the fields that hold their default (docs/protocol.md): a
  // listener offline with no sync figures is only its name and id. Filled in once here, so
  // that the rest of the page reads every field.
  const MEMBER_DEFAULTS = { role: "listener", online: false, offset_ms: null, rtt_ms: null, drift_ms: null,
    sound_blocked: false };
  function memberEntry(entry) { return Object.assign({}, MEMBER_DEFAULTS, entry); }

  // A delta carries whole entries of the members that changed, the ids of those who are no
  // longer members, and the ids of those who only came online or went offline; the list
  // keeps the server's order (online, hosts, then by name).
  function applyMembersDelta(msg) {
    const byId = new Map(room.members.map((m) => [m.user_id, m]));
    msg.changed.forEach((m) => byId.set(m.user_id, memberEntry(m)));
    msg.removed.forEach((id) => byId.delete(id));
    [["online", true], ["offline", false]].forEach(([key, online]) => (msg[key] || []).forEach((id) => {
      if (byId.has(id)) byId.set(id, Object.assign({}, byId.get(id), { online }));
    }));
    room.members = [...byId.values()].sort((a, b) =>
      (b.online - a.online) || ((a.role !== "host") - (b.role !== "host"))
      || (a.user.toLowerCase() < b.user.toLowerCase() ? -1 : a.user.toLowerCase() > b.user.toLowerCase() ? 1 : 0));
  }

  function renderMembers() {
    const list = $("#member-list");
    if (!list) return;
    list.innerHTML = "";
    room.members.forEach((m) => {
      const li = document.createElement("li");
      li.className = `member ${m.online ? "online" : "offline"}`;
      const quality = syncClass(m);
      li.innerHTML = '<span class="dot"></span><span class="m-name"></span><span class="badge"></span><span class="sync"></span>';
      li.querySelector(".m-name").textContent = m.user;
      li.querySelector(".m-name").title = m.user;
      li.querySelector(".badge").textContent = m.role;
      const sync = li.querySelector(".sync");
      sync.classList.add(quality);
      sync.textContent = !m.online ? "offline"
        : m.sound_blocked ? "sound blocked: click to listen"
        : m.drift_ms === null || m.drift_ms === undefined ? "syncing…"
        : `drift ${Math.round(m.drift_ms)} ms · rtt ${Math.round(m.rtt_ms || 0)} ms`;
      sync.title = m.offset_ms === null || m.offset_ms === undefined ? "" : `clock offset ${Math.round(m.offset_ms)} ms`;
      list.appendChild(li);
    });
    setText("#online-count", `${room.members.filter((m) => m.online).length} online`);
  }

  function renderSettings() {
    setText("#policy-label", { host_only: "Only the host controls playback", djs: "The host and DJs control playback", everyone: "Everyone controls playback" }[room.settings.control_policy] || "");
    const repeat = $("#repeat-mode"); if (repeat && room.settings.repeat) repeat.value = room.settings.repeat;
    const shuffle = $("#shuffle"); if (shuffle) shuffle.checked = !!room.settings.shuffle;
  }

  function setConnection(status, delay) {
    const node = $("#connection");
    if (!node) return;
    node.dataset.status = status;
    node.textContent = { connecting: "Connecting…", connected: "Live", reconnecting: `Reconnecting in ${Math.round((delay || 0) / 1000)} s…`, closed: "Disconnected" }[status];
  }

  let errorTimer = null;
  function showError(message) {
    const box = $("#room-error");
    if (!box) return;
    box.textContent = message || ""; box.hidden = !message;
    clearTimeout(errorTimer);
    if (message) errorTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  async function queueEdit(fields) {
    const body = new URLSearchParams(fields);
    const response = await fetch(cfg.queueUrl, { method: "POST", body, headers: { "X-CSRFToken": cfg.csrfToken, "HX-Request": "true" }, credentials: "same-origin" });
    if (!response.ok) showError((await response.json().catch(() => ({}))).message || "That did not work.");
  }

  // --- wiring ------------------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-control]");
    if (target) {
      const action = target.dataset.control;
      if (action === "toggle") control(room.state && room.state.status === "playing" ? "pause" : "play");
      else control(action);
    }
    const add = event.target.closest("[data-add-track]");
    if (add) queueEdit({ op: "add", track_id: add.dataset.addTrack, play_next: add.dataset.playNext || "0" });
    // Any click lets the browser play sound: the "click to listen" button, or anything else.
    if (room.soundBlocked || event.target.closest("#unlock-audio")) unlockAudio();
  });
  const progress = $("#progress");
  if (progress && cfg.canControl) {
    progress.addEventListener("click", (event) => {
      const state = room.state;
      if (!state || !state.track) return;
      const rect = progress.getBoundingClientRect();
      const fraction = Math.min(0.999, Math.max(0, (event.clientX - rect.left) / rect.width));
      control("seek", { position_s: Math.round(fraction * state.track.duration_s * 10) / 10 });
    });
  }
  const volume = $("#room-volume");
  let volumeTimer = null;
  if (volume) volume.addEventListener("input", () => {
    clearTimeout(volumeTimer);
    volumeTimer = setTimeout(() => control("volume", { volume: parseFloat(volume.value) }), 150);
  });
  const localVolume = $("#local-volume");
  if (localVolume) {
    const saved = parseFloat(localStorage.getItem("chorus.localVolume"));
    if (!isNaN(saved)) { localVolume.value = saved; room.localVolume = saved; }
    localVolume.addEventListener("input", () => {
      room.localVolume = parseFloat(localVolume.value);
      localStorage.setItem("chorus.localVolume", String(room.localVolume));
      if (room.state) engine.setVolume(room.state.volume * room.localVolume);
    });
  }
  const repeat = $("#repeat-mode");
  if (repeat) repeat.addEventListener("change", () => queueEdit({ op: "mode", repeat: repeat.value }));
  const shuffle = $("#shuffle");
  if (shuffle) shuffle.addEventListener("change", () => queueEdit({ op: "mode", shuffle: shuffle.checked ? "1" : "0" }));
  audioElement.addEventListener("waiting", () => {
    if (engine.kind === "element" && room.state && room.state.status === "playing") send({ type: "buffering" });
  });
  function unlockAudio() {
    const unlock = $("#unlock-audio");
    if (unlock) unlock.hidden = true;
    Promise.resolve(audioContext() && ctx.resume()).then(checkAutoplay, checkAutoplay);
    if (room.state && room.loading === null) apply(room.state);  // the element engine plays again here
  }

  // Sound blocked (autoplay policy): this member hears nothing, so the others see that
  // instead of a drift; told at once when it starts or ends, not at the next report.
  function checkAutoplay() {
    const c = audioContext();
    const isBlocked = engine.kind === "webaudio" ? !!(c && c.state === "suspended") : elementBlocked;
    const unlock = $("#unlock-audio");
    if (unlock) unlock.hidden = !isBlocked;
    if (isBlocked !== room.soundBlocked) { room.soundBlocked = isBlocked; report(); }
  }

  setInterval(correctDrift, 500);
  setInterval(checkAutoplay, 1000);
  requestAnimationFrame(renderProgress);
  connect();

  window.chorusRoom = {
    get state() { return room.state; },
    get members() { return room.members; },
    get engine() { return engine.kind; },
    clock,
    /** The local player's position and the server time it was read at. */
    sample() { return { position_s: engine.position(), server_ms: clock.now(), drift_s: room.lastDrift }; },
    control,
  };
})();
