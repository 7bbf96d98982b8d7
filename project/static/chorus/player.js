// The library player: one <audio> element in the page footer that survives
// htmx-boosted navigation (hx-preserve). Any button with data-play starts a track;
// the other play buttons in the same [data-queue] list become the queue.
(function () {
  "use strict";
  const state = { queue: [], index: -1 };

  function $(selector) { return document.querySelector(selector); }

  function trackFrom(button) {
    return {
      id: button.dataset.play,
      src: button.dataset.src,
      title: button.dataset.title || "Untitled",
      artist: button.dataset.artist || "",
      album: button.dataset.album || "",
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
    audio.addEventListener("playing", () => { player.dataset.state = "playing"; });
    // Chromium also fires "pause" after a failed load: keep the "error" state then.
    audio.addEventListener("pause", () => { if (!audio.error) player.dataset.state = "paused"; });
    audio.addEventListener("ended", () => {
      player.dataset.state = "ended";
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

  document.addEventListener("DOMContentLoaded", wire);
  document.addEventListener("htmx:afterSettle", (event) => {
    wire();
    markPlaying();
    if (event.detail && (event.detail.boosted || event.detail.target === document.body)) redrawControls();
  });
  document.addEventListener("htmx:historyRestore", redrawControls);
})();
