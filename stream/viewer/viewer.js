// vst viewer: one WebRTC session to vst-stream, controls, and getStats numbers on screen.
// No build step. State the tests read lives on window.vst.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const STAMP_BITS = 24, STAMP_BLOCKS = 26, STAMP_HEIGHT = 12; // must match vst/stream/pipeline.py

const vst = {
  config: null, pc: null, sessionId: null, state: "idle", error: "",
  stats: {}, latencies: [], retries: 0, camera: null,
};
window.vst = vst;

function show(text, kind = "info") {
  const el = $("message");
  el.hidden = !text;
  el.textContent = text || "";
  el.className = "message " + kind;
  if (kind === "error") vst.error = text;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = "Bearer " + token;
  let resp;
  try {
    resp = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new ApiError(0, `Server unreachable at ${location.origin}: is vst-stream still running?`);
  }
  if (!resp.ok) {
    let text = resp.statusText;
    try { text = (await resp.json()).error || text; } catch (e) { /* not JSON */ }
    if (resp.status === 401) text = "Wrong or missing token. Open the exact URL vst-stream printed (it ends in ?token=...).";
    if (resp.status === 503) text = "The server is full (--max-viewers reached). Try again later. " + text;
    throw new ApiError(resp.status, text);
  }
  return resp.json();
}

function iceServers(urls) {
  return (urls || []).map((u) => {
    const m = u.match(/^(stuns?|turns?):(?:([^:@/]+):([^@/]+)@)?(.+)$/);
    return m && m[2] ? { urls: `${m[1]}:${m[4]}`, username: m[2], credential: m[3] } : { urls: u };
  });
}

async function loadConfig() {
  try {
    vst.config = await api("/config");
  } catch (e) {
    show(e.message, "error");
    vst.state = e.status === 401 ? "unauthorized" : "unreachable";
    if (e.status !== 401) setTimeout(loadConfig, 3000); // the server may be starting
    return;
  }
  const c = vst.config;
  const sel = $("style");
  sel.innerHTML = "";
  for (const name of c.styles) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = name;
    opt.selected = name === c.style;
    sel.appendChild(opt);
  }
  sel.disabled = false;
  $("blend").value = c.blend;
  $("blend-value").value = Number(c.blend).toFixed(2);
  $("blend").disabled = false;
  $("connect").disabled = false;
  $("original-caption").textContent = c.source === "browser" ? "your camera (sent to the server)" : "original";
  show("");
  connect();
}

async function waitForIce(pc, timeoutMs = 3000) {
  // aiortc does not trickle ICE: send the offer with all candidates in it.
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function connect() {
  disconnect(false);
  const c = vst.config;
  const original = $("original").checked;
  const publish = c.source === "browser";
  const pc = new RTCPeerConnection({ iceServers: iceServers(c.ice_servers) });
  vst.pc = pc;
  vst.state = "connecting";
  $("connect").textContent = "Disconnect";
  show("Connecting…");
  const stylizedTr = publish ? null : pc.addTransceiver("video", { direction: "recvonly" });
  let cameraTr = null;
  if (publish) {
    try {
      vst.camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360, frameRate: 30 }, audio: false });
    } catch (e) {
      show(`This server takes your camera as input, but the camera is unavailable: ${e.message}`, "error");
      vst.state = "failed";
      return;
    }
    cameraTr = pc.addTransceiver(vst.camera.getVideoTracks()[0], { direction: "sendrecv" });
    $("original-video").srcObject = vst.camera;
  }
  const originalTr = !publish && original ? pc.addTransceiver("video", { direction: "recvonly" }) : null;
  vst.stylizedTr = stylizedTr || cameraTr;  // the overlay's stats follow this stream only
  $("original-box").hidden = !(original || publish);
  pc.ontrack = (ev) => {
    const stream = new MediaStream([ev.track]);
    if (ev.transceiver === originalTr) $("original-video").srcObject = stream;
    else $("stylized").srcObject = stream;
  };
  pc.onconnectionstatechange = () => {
    const s = pc.connectionState;
    if (vst.pc !== pc) return;
    vst.state = s;
    if (s === "connected") { show(""); vst.retries = 0; }
    // "closed" while still ours: the server ended the session (timeout, restart); reconnect too
    if (s === "failed" || s === "disconnected" || s === "closed") {
      const wait = Math.min(10, 2 ** vst.retries++);
      show(`Connection ${s}; reconnecting in ${wait}s…`, "error");
      setTimeout(() => { if (vst.pc === pc) connect(); }, wait * 1000);
    }
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    const answer = await api("/offer", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", original, publish }),
    });
    vst.sessionId = answer.id;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    if (cameraTr) {
      // keep the camera's resolution under bandwidth pressure (Chrome halves it otherwise)
      const p = cameraTr.sender.getParameters();
      p.degradationPreference = "maintain-resolution";
      try { await cameraTr.sender.setParameters(p); } catch (e) { console.warn("setParameters", e); }
    }
  } catch (e) {
    vst.state = "failed";
    show(e.message || String(e), "error");
    if (e.status === 0 || e.status === 503) {
      const wait = Math.min(10, 2 ** vst.retries++);
      setTimeout(() => { if (vst.pc === pc) connect(); }, wait * 1000);
    }
  }
  void stylizedTr;
}

function disconnect(user = true) {
  const pc = vst.pc;
  vst.pc = null;
  if (pc) pc.close();
  if (vst.sessionId) {
    // keepalive: the DELETE must outlive a closing tab, or the server waits ~30 s for ICE consent to lapse
    api(`/session/${vst.sessionId}`, { method: "DELETE", keepalive: true }).catch(() => {});
    vst.sessionId = null;
  }
  if (vst.camera) { vst.camera.getTracks().forEach((t) => t.stop()); vst.camera = null; }
  if (user) { vst.state = "closed"; $("connect").textContent = "Connect"; show("Disconnected."); }
}

// ---------------------------------------------------------------- stats overlay

let prev = null;
async function pollStats() {
  const pc = vst.pc;
  if (pc) {
    const report = await pc.getStats().catch(() => null);
    // With the original shown there are two inbound videos: pick the stylized one by its mid, so
    // fps/bitrate deltas never mix the two streams.
    const mid = vst.stylizedTr && vst.stylizedTr.mid;
    let inbound = null;
    if (report) report.forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "video") return;
      if (mid != null ? s.mid === mid : (!inbound || s.framesDecoded > inbound.framesDecoded)) inbound = s;
    });
    if (inbound) {
      const now = inbound.timestamp;
      const st = {
        framesDecoded: inbound.framesDecoded || 0,
        width: inbound.frameWidth || 0, height: inbound.frameHeight || 0,
        jitterMs: (inbound.jitter || 0) * 1000,
        bufferMs: inbound.jitterBufferEmittedCount ? 1000 * inbound.jitterBufferDelay / inbound.jitterBufferEmittedCount : 0,
        fps: 0, kbps: 0, codec: "",
      };
      if (prev && prev.id === inbound.id && now > prev.t) {
        st.fps = (st.framesDecoded - prev.frames) * 1000 / (now - prev.t);
        st.kbps = (inbound.bytesReceived - prev.bytes) * 8 / (now - prev.t);
      }
      const codec = inbound.codecId && report.get(inbound.codecId);
      st.codec = codec ? codec.mimeType.replace("video/", "") : "";
      prev = { id: inbound.id, t: now, frames: st.framesDecoded, bytes: inbound.bytesReceived };
      const lat = vst.latencies.slice(-30).sort((a, b) => a - b);
      st.glassMs = lat.length ? lat[Math.floor(lat.length / 2)] : null;
      vst.stats = st;
      const sv = vst.server;
      $("overlay").textContent =
        `${st.fps.toFixed(1)} fps  ${st.width}x${st.height}  ${st.codec}\n` +
        `${Math.round(st.kbps)} kbit/s  jitter ${st.jitterMs.toFixed(1)} ms\n` +
        `buffer ${st.bufferMs.toFixed(0)} ms` + (st.glassMs !== null ? `  glass-to-glass ${st.glassMs.toFixed(0)} ms` : "") +
        (sv ? `\nserver: source ${sv.source_fps} fps, style ${sv.inference_ms} ms, ${sv.viewers} viewer(s)` +
              (sv.processing_size ? `\nprocessing ${sv.processing_size.join("x")} (${sv.size_mode})` : "") +
              (sv.state !== "running" ? `\n${sv.state}` : "") : "");
    }
  }
  setTimeout(pollStats, 1000);
}

// Server-side numbers, and the style another viewer may have switched to.
async function pollServer() {
  if (vst.pc && vst.config) {
    try {
      vst.server = await api("/stats");
      const sel = $("style");
      if (document.activeElement !== sel && sel.value !== vst.server.style) sel.value = vst.server.style;
    } catch (e) { vst.server = null; }
  }
  setTimeout(pollServer, 2000);
}

// ---------------------------------------------------------------- pixels: stamps and readback

const canvas = document.createElement("canvas");
const ctx = canvas.getContext("2d", { willReadFrequently: true });

function readStamp(video) {
  const w = video.videoWidth, h = video.videoHeight;
  const bw = Math.floor(w / (STAMP_BLOCKS + 2));
  if (bw < 4) return null;
  canvas.width = w; canvas.height = STAMP_HEIGHT;
  ctx.drawImage(video, 0, 0, w, STAMP_HEIGHT, 0, 0, w, STAMP_HEIGHT);
  const row = ctx.getImageData(0, STAMP_HEIGHT >> 1, w, 1).data;
  const lum = (i) => { const x = (i * bw + (bw >> 1)) * 4; return (row[x] + row[x + 1] + row[x + 2]) / 3; };
  if (lum(0) < 128 || lum(1) >= 128) return null;
  let v = 0;
  for (let i = 2; i < STAMP_BLOCKS; i++) v = v * 2 + (lum(i) >= 128 ? 1 : 0);
  return v;
}

function watchStamps() {
  const video = $("stylized");
  if (!video.requestVideoFrameCallback) return;
  const onFrame = (now, meta) => {
    if (vst.config && vst.config.stamp && video.videoWidth) {
      const stamp = readStamp(video);
      if (stamp !== null) {
        const mod = 1 << STAMP_BITS;
        const shown = Math.round(performance.timeOrigin + now) % mod;
        const lat = (shown - stamp + mod) % mod;
        if (lat < 10000) { vst.latencies.push(lat); if (vst.latencies.length > 20000) vst.latencies.shift(); }
      }
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

// Mean RGB over a coarse grid of the stylized video (tests compare these before/after a switch).
vst.grab = (cols = 32, rows = 18) => {
  const video = $("stylized");
  if (!video.videoWidth) return null;
  canvas.width = cols; canvas.height = rows;
  ctx.drawImage(video, 0, 0, cols, rows);
  return Array.from(ctx.getImageData(0, 0, cols, rows).data);
};
vst.setStyle = (name) => api("/style", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ style: name }) });
vst.connect = connect;
vst.disconnect = disconnect;

// ---------------------------------------------------------------- controls

$("style").addEventListener("change", async (ev) => {
  const name = ev.target.value;
  show(`Switching to ${name}…`);
  try { await vst.setStyle(name); show(`Style: ${name}`, "ok"); setTimeout(() => show(""), 1500); }
  catch (e) { show(e.message, "error"); }
});
let blendTimer = null;
$("blend").addEventListener("input", (ev) => {
  const alpha = Number(ev.target.value);
  $("blend-value").value = alpha.toFixed(2);
  clearTimeout(blendTimer);
  blendTimer = setTimeout(() => api("/blend", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ alpha }),
  }).catch((e) => show(e.message, "error")), 150);
});
$("original").addEventListener("change", () => { if (vst.pc) connect(); });
$("connect").addEventListener("click", () => (vst.pc ? disconnect() : connect()));
window.addEventListener("pagehide", () => disconnect(false));

watchStamps();
pollStats();
pollServer();
loadConfig();
