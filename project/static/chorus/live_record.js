// Chorus live channel page, the recording part (livefeed/templates/livefeed/_recording.html):
// the recorder's state and current segment from `live.recording`, ffmpeg's progress and log
// lines from `live.record_log` (docs/protocol.md, "Live recording"), both received on the
// page's live socket (live.js hands them over as "chorus:live-recording" events). The last
// lines logged before the page opened come with the page. Exposes window.chorusLiveRecord.
(function () {
  "use strict";
  const configNode = document.getElementById("live-record-config");
  const box = document.getElementById("live-record");
  if (!configNode || !box || box.dataset.ready) return;
  box.dataset.ready = "1";
  const cfg = JSON.parse(configNode.textContent);
  const log = document.getElementById("record-log");
  const MAX_LINES = cfg.maxLines || 200;
  const state = { lines: 0, last: null, segmentIndex: cfg.segmentIndex || null, progress: {}, progressSegment: null };

  function text(el, value) { if (el) el.textContent = value == null ? "" : String(value); }
  function size(bytes) {
    if (bytes == null) return "";
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit ? `${value.toFixed(1)} ${units[unit]}` : `${value} bytes`;
  }
  function clock(seconds) {
    if (seconds == null || !isFinite(seconds)) return "";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  }

  function segmentText(index, sizeBytes, durationS) {
    return `${index ? `#${index} · ` : ""}${size(sizeBytes)} · ${clock(durationS)}`;
  }

  function addLines(lines) {
    if (!lines || !lines.length) return;
    if (!state.lines) log.replaceChildren();
    for (const line of lines) {
      const li = document.createElement("li");
      li.className = `log-${line.level || "info"}`;
      const at = document.createElement("time");
      at.className = "muted"; at.textContent = line.at || "";
      li.append(at, document.createTextNode(` ${line.text || ""}`));
      log.append(li);
      state.lines += 1;
    }
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    log.scrollTop = log.scrollHeight;
  }

  function showRecording(frame) {
    const stateEl = document.getElementById("record-state");
    stateEl.className = `state state-${frame.state}`;
    text(stateEl, (cfg.stateNames || {})[frame.state] || frame.state);
    const on = document.getElementById("record-on");
    on.classList.toggle("ok", !!frame.record);
    text(on, frame.record ? "on" : "off");
    const error = document.getElementById("record-error");
    text(error, frame.error || "");
    error.hidden = !frame.error;
    const segment = frame.segment;
    state.segmentIndex = segment && segment.state === "recording" ? segment.index : null;
    if (segment && segment.state === "recording") {
      // The row has its size and length only once it closes: until then, ffmpeg's progress says.
      const p = state.progressSegment === segment.id ? state.progress : {};
      text(document.getElementById("record-segment"),
           segmentText(segment.index, segment.size_bytes || p.segment_size_bytes || 0,
                       segment.duration_s || p.segment_duration_s || 0));
    } else {
      text(document.getElementById("record-segment"), "—");
    }
  }

  function showLog(frame) {
    const p = frame.progress || {};
    const parts = [];
    state.progress = p;
    state.progressSegment = frame.segment_id;
    if (p.segment_size_bytes != null || p.segment_duration_s != null) {
      text(document.getElementById("record-segment"),
           segmentText(state.segmentIndex, p.segment_size_bytes, p.segment_duration_s));
    }
    if (p.time_s != null) parts.push(`time ${clock(p.time_s)}`);
    if (p.size_bytes) parts.push(size(p.size_bytes));
    if (p.bitrate_kbps != null) parts.push(`${p.bitrate_kbps} kbit/s`);
    if (p.speed != null) parts.push(`speed ${p.speed}×`);
    if (parts.length) text(document.getElementById("record-progress"), parts.join(" · "));
    addLines(frame.lines);
  }

  document.addEventListener("chorus:live-recording", (event) => {
    const frame = event.detail || {};
    state.last = frame;
    if (frame.type === "live.recording") showRecording(frame);
    else if (frame.type === "live.record_log") showLog(frame);
  });
  addLines(cfg.recentLog || []);
  window.chorusLiveRecord = { state, showRecording, showLog };
})();
