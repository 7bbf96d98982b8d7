// The library player: one <audio> element in the page footer that survives
// htmx-boosted navigation (hx-preserve). Any button with data-play starts a track;
// the other play buttons in the same [data-queue] list become the queue.
// Each play is reported as "now playing" and, once heard long enough, scrobbled once.
(function () {
  "use strict";
  const state = { queue: [], index: -1 };
  // When a play is scrobbled is the server's rule: see maybeScrobble.
  const PENDING_KEY = "chorus.pendingScrobbles"; // scrobbles the server did not get yet
  const PENDING_MAX = 1000;
  let play = null; // the play under way: see newPlay()

  function $(selector) { return document.querySelector(selector); }

  function trackFrom(button) {
    return {
      id: button.dataset.play,
      src: button.dataset.src,
      title: button.dataset.title || "Untitled",
      artist: button.dataset.artist || "",
      album: button.dataset.album || "",
      duration: Number(button.dataset.duration) || 0,
    };
  }

  function markPlaying() {
    const current = state.queue[state.index];
    document.querySelectorAll("[data-track-row]").forEach((row) => {
      row.classList.toggle("playing", !!current && row.dataset.trackRow === current.id);
    });
  }

  function showError(message) {
    const box = $("#player .player-error");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function load(index) {
    const audio = $("#player-audio");
    const player = $("#player");
    if (!audio || index < 0 || index >= state.queue.length) return;
    state.index = index;
    const track = state.queue[index];
    play = newPlay(track);
    showError("");
    audio.src = track.src;
    player.querySelector(".player-title").textContent = track.title;
    player.querySelector(".player-sub").textContent = [track.artist, track.album].filter(Boolean).join(" · ");
    player.dataset.state = "loading";
    player.dataset.trackId = track.id;
    player.querySelector('[data-player="prev"]').disabled = index <= 0;
    player.querySelector('[data-player="next"]').disabled = index >= state.queue.length - 1;
    if ("mediaSession" in navigator && window.MediaMetadata) {
      navigator.mediaSession.metadata = new MediaMetadata({ title: track.title, artist: track.artist, album: track.album });
    }
    audio.play().catch((err) => {
      // Only NotAllowedError means "blocked autoplay"; a track that cannot load also
      // rejects play(), and the audio "error" listener explains that one.
      if (err && err.name === "NotAllowedError") showError("Press play to start (the browser blocked autoplay).");
    });
    markPlaying();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-play]");
    if (button) {
      event.preventDefault();
      const list = button.closest("[data-queue]");
      const buttons = list ? Array.from(list.querySelectorAll("[data-play]")) : [button];
      state.queue = buttons.map(trackFrom);
      load(buttons.indexOf(button));
      return;
    }
    const control = event.target.closest("[data-player]");
    if (control) {
      load(state.index + (control.dataset.player === "next" ? 1 : -1));
    }
  });

  function wire() {
    const audio = $("#player-audio");
    if (!audio || audio.dataset.wired) return;
    audio.dataset.wired = "1";
    const player = $("#player");
    audio.addEventListener("playing", () => {
      player.dataset.state = "playing";
      playStarted(audio);
    });
    // Chromium also fires "pause" after a failed load: keep the "error" state then.
    audio.addEventListener("pause", () => {
      if (audio.error) return;
      player.dataset.state = "paused";
      playPaused(audio);
    });
    audio.addEventListener("timeupdate", () => countPlayed(audio));
    audio.addEventListener("seeking", () => { if (play) play.lastTime = null; });
    audio.addEventListener("ended", () => {
      player.dataset.state = "ended";
      if (play) play.finished = true;
      if (state.index < state.queue.length - 1) load(state.index + 1);
    });
    audio.addEventListener("error", async () => {
      player.dataset.state = "error";
      let message = "This track cannot be played.";
      try {
        const response = await fetch(audio.src, { headers: { Range: "bytes=0-0" } });
        if (!response.ok) message = (await response.json()).message || message;
      } catch (e) { /* keep the generic message */ }
      showError(message);
    });
    if ("mediaSession" in navigator) {
      navigator.mediaSession.setActionHandler("nexttrack", () => load(state.index + 1));
      navigator.mediaSession.setActionHandler("previoustrack", () => load(state.index - 1));
    }
  }

  // htmx keeps the footer (hx-preserve) by moving it with moveBefore(); the audio goes on
  // playing, but Chromium then draws its built-in controls blank. Rebuild them after a page swap.
  function redrawControls() {
    const audio = $("#player-audio");
    if (audio && audio.controls) {
      audio.controls = false;
      audio.controls = true;
    }
  }

  // --- Scrobbling -------------------------------------------------------------------

  function newPlay(track) {
    return {
      track: track,
      startedAt: null, // ISO time of the first "playing": the scrobble's played_at
      playedS: 0, // seconds actually heard (seeks do not count)
      lastTime: null, // audio.currentTime at the last count; null after a seek or pause
      lastWall: 0,
      sent: false,
      reported: "", // what the server was last told: "playing" or "paused"
      finished: false,
    };
  }

  function csrfToken() {
    // The cookie is always current (login rotates it); the page's hx-headers are a fallback.
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (e) {
      return "";
    }
  }

  function send(method, url, body) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  function tellNowPlaying(audio, paused) {
    const body = { track_id: Number(play.track.id), position_s: audio.currentTime || 0 };
    if (paused) body.paused = true;
    send("POST", "/api/scrobbling/now-playing", body).catch(() => { /* best effort */ });
  }

  function playStarted(audio) {
    if (!play) return;
    if (play.finished) play = newPlay(play.track); // played again after it ended: a new play
    if (!play.startedAt) {
      play.startedAt = new Date().toISOString();
      flushPending();
    }
    play.lastTime = audio.currentTime;
    play.lastWall = performance.now();
    if (play.reported !== "playing") {
      play.reported = "playing";
      tellNowPlaying(audio, false);
    }
  }

  function playPaused(audio) {
    if (!play || play.reported !== "playing") return;
    play.lastTime = null;
    if (audio.ended) {
      play.reported = "";
      // The next track of the queue says so itself; after the last one, nothing plays.
      if (state.index >= state.queue.length - 1) {
        send("DELETE", "/api/scrobbling/now-playing").catch(() => { /* it expires anyway */ });
      }
      return;
    }
    play.reported = "paused";
    tellNowPlaying(audio, true);
  }

  function countPlayed(audio) {
    if (!play || !play.startedAt) return;
    const now = performance.now();
    const time = audio.currentTime;
    if (audio.paused || audio.seeking || play.lastTime === null) {
      play.lastTime = audio.paused ? null : time;
      play.lastWall = now;
      return;
    }
    const delta = time - play.lastTime;
    const elapsedS = (now - play.lastWall) / 1000;
    // More media time than the wall clock allows (at this rate) is a seek, not listening.
    if (delta > 0 && delta <= elapsedS * Math.max(audio.playbackRate, 0.1) * 1.5 + 0.5) play.playedS += delta;
    play.lastTime = time;
    play.lastWall = now;
    maybeScrobble(audio);
  }

  function maybeScrobble(audio) {
    if (play.sent) return;
    const duration = play.track.duration || (isFinite(audio.duration) ? audio.duration : 0);
    // The server's rule, from the footer: a track over min-track-s, heard for half its
    // length or played-enough-s, whichever comes first.
    const rule = $("#player").dataset;
    const minTrackS = Number(rule.minTrackS);
    const playedEnoughS = Number(rule.playedEnoughS);
    if (!(minTrackS > 0 && playedEnoughS > 0)) return; // no rule on this page: the server decides
    if (duration <= minTrackS || play.playedS < Math.min(duration / 2, playedEnoughS)) return;
    play.sent = true;
    const scrobble = { track_id: Number(play.track.id), played_at: play.startedAt, played_s: play.playedS };
    submitScrobble(scrobble).then((done) => { if (!done) keepPending(scrobble); });
  }

  // true: the server has it, or refused it for good (409 duplicate, any 4xx); false: try later.
  async function submitScrobble(scrobble) {
    try {
      const response = await send("POST", "/api/scrobbling/scrobbles", scrobble);
      return response.status < 500;
    } catch (e) {
      return false; // offline, or the server is unreachable
    }
  }

  function readPending() {
    try {
      const list = JSON.parse(localStorage.getItem(PENDING_KEY) || "[]");
      return Array.isArray(list) ? list : [];
    } catch (e) {
      return [];
    }
  }

  function writePending(list) {
    try {
      if (list.length) localStorage.setItem(PENDING_KEY, JSON.stringify(list.slice(-PENDING_MAX)));
      else localStorage.removeItem(PENDING_KEY);
    } catch (e) { /* storage full or disabled: nothing more to do */ }
  }

  function pendingKey(scrobble) { return scrobble.track_id + "@" + scrobble.played_at; }

  function keepPending(scrobble) {
    const list = readPending().filter((item) => pendingKey(item) !== pendingKey(scrobble));
    list.push(scrobble);
    writePending(list);
  }

  let flushing = false;
  async function flushPending() {
    if (flushing || !$("#player")) return;
    flushing = true;
    try {
      const done = new Set();
      for (const scrobble of readPending()) {
        if (await submitScrobble(scrobble)) done.add(pendingKey(scrobble));
        else break; // still unreachable: keep the rest in order for next time
      }
      if (done.size) writePending(readPending().filter((item) => !done.has(pendingKey(item))));
    } finally {
      flushing = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire();
    flushPending();
  });
  document.addEventListener("htmx:afterSettle", (event) => {
    wire();
    markPlaying();
    if (event.detail && (event.detail.boosted || event.detail.target === document.body)) redrawControls();
  });
  document.addEventListener("htmx:historyRestore", redrawControls);
})();
