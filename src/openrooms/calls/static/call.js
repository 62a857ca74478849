// The openrooms call page: openrooms' own signalling (docs/calls.md), media straight between this browser and
// the media server. No build step, no library. State is kept on `window.openrooms` for tests and debugging.
"use strict";
(() => {
  const API_VERSION = "2026-11-01-openrooms";
  const roomId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const params = new URLSearchParams(location.hash.slice(1));
  const $ = (id) => document.getElementById(id);
  const state = window.openrooms = {
    roomId, status: "connecting", capabilities: {}, participant: null, me: null,
    publishers: {}, subscribers: {}, feeds: {}, message: "",
    timing: { wsOpen: null, firstFrame: null },  // performance.now() of the WebSocket's open and the first remote frame
  };
  $("room").textContent = roomId;

  // Media statistics of every peer connection, sampled twice a second (for the page's tests and debugging):
  // bytes sent, bytes received, video frames decoded, and how many remote feeds decode video.
  state.stats = { outBytes: 0, inBytes: 0, framesDecoded: 0, inboundFeeds: 0, feeds: {} };
  async function sample() {
    const sum = { outBytes: 0, inBytes: 0, framesDecoded: 0, inboundFeeds: 0, feeds: {} };
    for (const { pc } of Object.values(state.publishers)) {
      (await pc.getStats()).forEach((r) => { if (r.type === "outbound-rtp") sum.outBytes += r.bytesSent || 0; });
    }
    for (const [feedId, sub] of Object.entries(state.subscribers)) {
      if (!sub.pc) continue;
      let frames = 0;
      (await sub.pc.getStats()).forEach((r) => {
        if (r.type !== "inbound-rtp") return;
        sum.inBytes += r.bytesReceived || 0;
        if (r.kind === "video") frames += r.framesDecoded || 0;
      });
      sum.framesDecoded += frames;
      sum.feeds[feedId] = frames;
      if (frames > 0) sum.inboundFeeds += 1;
    }
    state.stats = sum;
  }
  setInterval(() => { sample().catch(() => {}); }, 500);

  function setStatus(status, text, error = false) {
    state.status = status;
    state.message = text;
    $("status").textContent = text;
    $("status").className = error ? "error" : "";
  }

  // Trickle ICE: the offer or answer goes at once, its candidates after it as the browser finds them (the end of
  // gathering as a null candidate). Candidates found before the description has gone wait for it.
  function trickling(pc, where) {
    const waiting = [];
    let sent = false;
    pc.onicecandidate = ({ candidate }) => {
      const message = { type: "trickle", ...where, candidate: candidate ? candidate.toJSON() : null };
      if (sent) send(message); else waiting.push(message);
    };
    return () => { sent = true; waiting.splice(0).forEach(send); };
  }

  let ws = null;
  const send = (message) => ws && ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(message));

  function tile(key, label, role) {
    let element = document.querySelector(`[data-key="${key}"]`);
    if (!element) {
      element = document.createElement("section");
      element.className = "tile";
      element.dataset.key = key;
      element.innerHTML = '<video autoplay playsinline></video><div class="label"><span></span><span class="actions"></span></div>';
      $("tiles").appendChild(element);
    }
    element.querySelector(".label span").textContent = `${label} (${role})`;
    return element;
  }

  async function publish(kind, stream) {
    const pc = new RTCPeerConnection();
    state.publishers[kind] = { pc, stream };
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    const offered = trickling(pc, { feed: kind });
    await pc.setLocalDescription(await pc.createOffer());
    send({ type: "publish", feed: kind, jsep: { type: "offer", sdp: pc.localDescription.sdp } });
    offered();
  }

  async function subscribe(feed) {
    if (state.subscribers[feed.feedId] || (state.me && feed.rawId === state.me.rawId)) return;
    state.feeds[feed.feedId] = feed;
    state.subscribers[feed.feedId] = { pc: null };
    send({ type: "subscribe", feedId: feed.feedId });
  }

  async function answerOffer(feedId, jsep) {
    const feed = state.feeds[feedId];
    const pc = new RTCPeerConnection();
    state.subscribers[feedId] = { pc };
    const element = tile(`feed-${feedId}`, (feed.displayName || feed.rawId) + (feed.kind === "screen" ? " — screen" : ""), feed.role);
    const stream = new MediaStream();
    element.querySelector("video").srcObject = stream;
    element.querySelector("video").addEventListener("loadeddata", () => {
      if (state.timing.firstFrame === null) state.timing.firstFrame = performance.now();
    }, { once: true });
    pc.ontrack = (event) => stream.addTrack(event.track);
    if (state.capabilities.muteOthers && feed.kind === "camera") {
      const actions = element.querySelector(".actions");
      actions.innerHTML = "";
      for (const [request, text] of [["mute", "Mute"], ["remove", "Remove"]]) {
        const button = document.createElement("button");
        button.textContent = text;
        button.dataset.request = request;
        button.onclick = () => send({ type: request, target: feed.rawId });
        actions.appendChild(button);
      }
    }
    const answered = trickling(pc, { feedId });
    await pc.setRemoteDescription(jsep);
    await pc.setLocalDescription(await pc.createAnswer());
    send({ type: "start", feedId, jsep: { type: "answer", sdp: pc.localDescription.sdp } });
    answered();
  }

  function drop(feedId) {
    const sub = state.subscribers[feedId];
    if (sub && sub.pc) sub.pc.close();
    delete state.subscribers[feedId];
    const element = document.querySelector(`[data-key="feed-${feedId}"]`);
    if (element) element.remove();
  }

  function closeAll() {
    for (const { pc, stream } of Object.values(state.publishers)) { pc.close(); stream.getTracks().forEach((t) => t.stop()); }
    for (const feedId of Object.keys(state.subscribers)) drop(feedId);
  }

  async function onJoined(message) {
    state.capabilities = message.capabilities;
    state.me = message.participant;
    setStatus("joined", `In the call as ${message.participant.role}.`);
    $("controls").hidden = false;
    const caps = message.capabilities;
    $("screen").hidden = !caps.shareScreen;
    if (caps.unmuteMic || caps.turnVideoOn) {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: !!caps.unmuteMic, video: !!caps.turnVideoOn });
      const me = tile("me", "You", message.participant.role);
      me.querySelector("video").muted = true;
      me.querySelector("video").srcObject = stream;
      $("mic").hidden = !caps.unmuteMic;
      $("camera").hidden = !caps.turnVideoOn;
      await publish("camera", stream);
    }
    for (const feed of message.feeds) subscribe(feed);
  }

  async function onMessage(message) {
    switch (message.type) {
      case "joined": return onJoined(message);
      case "answer": return state.publishers[message.feed].pc.setRemoteDescription(message.jsep);
      case "feeds": for (const feed of message.feeds) subscribe(feed); return;
      case "offer": return answerOffer(message.feedId, message.jsep);
      case "left": return drop(message.feedId);
      case "done": state.lastDone = message; return;
      case "refused":
        if (state.status !== "joined") { setStatus("refused", `Refused: ${message.message}`, true); }
        else { state.lastRefusal = message; setStatus("joined", `Not allowed: ${message.message}`, true); }
        return;
      case "ended":
        closeAll();
        return setStatus("ended", `Disconnected: ${message.reason}`, true);
      default: return;
    }
  }

  function join(token, name) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${scheme}://${location.host}/rooms/${encodeURIComponent(roomId)}/call/ws?api-version=${API_VERSION}`);
    ws.onopen = () => (state.timing.wsOpen = performance.now()) && send({ type: "join", accessToken: token, displayName: name || undefined });
    ws.onmessage = (event) => onMessage(JSON.parse(event.data)).catch((error) => setStatus(state.status, String(error), true));
    ws.onclose = () => { if (state.status === "joined" || state.status === "connecting") { closeAll(); setStatus("ended", "Disconnected.", true); } };
  }

  $("mic").onclick = () => {
    const track = state.publishers.camera && state.publishers.camera.stream.getAudioTracks()[0];
    if (track) { track.enabled = !track.enabled; $("mic").textContent = track.enabled ? "Mute microphone" : "Unmute microphone"; }
  };
  $("camera").onclick = () => {
    const track = state.publishers.camera && state.publishers.camera.stream.getVideoTracks()[0];
    if (track) { track.enabled = !track.enabled; $("camera").textContent = track.enabled ? "Turn camera off" : "Turn camera on"; }
  };
  $("screen").onclick = async () => {
    if (state.publishers.screen) return;
    publish("screen", await navigator.mediaDevices.getDisplayMedia({ video: true }));
  };
  $("leave").onclick = () => { send({ type: "leave" }); closeAll(); setStatus("ended", "You left the call."); };

  const token = params.get("token");
  if (token) {
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar
    join(token, params.get("name"));
  } else {
    $("join").hidden = false;
    setStatus("idle", "Paste your ACS access token to join.");
    $("join").onsubmit = (event) => { event.preventDefault(); $("join").hidden = true; join($("token").value, $("name").value); };
  }
})();
