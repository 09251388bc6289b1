// live-synth's page: frames down (binary batches), events up (versioned JSON), see live_synth/web/protocol.py.
"use strict";
(() => {
  const VERSION = 1, MELS = 128, MASK = 16, FRAME_BYTES = MELS + MASK + 1;
  const ROLLED_BACK = 1, UNDERRUN = 2, MISSING = 4;
  const LOW = 21, HIGH = 108; // the piano roll's pitch range (88 rows)
  const state = { ws: null, octave: 4, velocity: 100, channel: 0, sustain: false, down: new Map(),
                  framesReceived: 0, eventsSent: 0, lastFrame: -1, pong: null,
                  noteLog: [] }; // [epoch ms of the input event, pitch] of recent note-ons (tools/web_latency.py)
  window.liveSynth = state; // read by tests and tools

  // ---- socket ----------------------------------------------------------------------------------------------
  const token = new URLSearchParams(location.search).get("token");
  const conn = document.getElementById("conn");
  function connect() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws` +
                (token ? `?token=${encodeURIComponent(token)}` : "");
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { conn.textContent = "connected"; conn.className = "ok"; sendProgram(); };
    ws.onclose = () => { conn.textContent = "disconnected (retrying)"; conn.className = "bad";
                         state.ws = null; setTimeout(connect, 1000); };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        const m = JSON.parse(e.data);
        if (m.type === "stats") { state.lastStats = m; showStats(m); }
        else if (m.type === "hello") showMorph(m.morph);
        else if (m.type === "pong" && state.pong) state.pong(m);
      } else frames(e.data);
    };
    state.ws = ws;
  }
  function send(obj) {
    if (!state.ws || state.ws.readyState !== 1) return false;
    state.ws.send(JSON.stringify(Object.assign({ v: VERSION }, obj)));
    return true;
  }
  function midi(data) { if (send({ type: "midi", data })) state.eventsSent++; }
  state.midi = midi;
  state.ping = (id) => new Promise((resolve) => { state.pong = resolve; send({ type: "ping", id }); });

  // ---- spectrogram and piano roll ----------------------------------------------------------------------------
  const spec = document.getElementById("spec"), roll = document.getElementById("roll");
  const sctx = spec.getContext("2d"), rctx = roll.getContext("2d");
  sctx.fillStyle = "#000"; sctx.fillRect(0, 0, spec.width, spec.height);
  rctx.fillStyle = "#000"; rctx.fillRect(0, 0, roll.width, roll.height);
  const LUT = (() => { // black -> purple -> orange -> yellow-white
    const stops = [[0, 0, 0, 4], [0.3, 80, 18, 123], [0.6, 205, 70, 70], [0.85, 251, 170, 30], [1, 252, 250, 190]];
    const lut = new Uint8ClampedArray(256 * 3);
    for (let i = 0; i < 256; i++) {
      const x = i / 255; let k = 0;
      while (k < stops.length - 2 && x > stops[k + 1][0]) k++;
      const [x0, ...a] = stops[k], [x1, ...b] = stops[k + 1], f = (x - x0) / (x1 - x0);
      for (let c = 0; c < 3; c++) lut[3 * i + c] = a[c] + f * (b[c] - a[c]);
    }
    return lut;
  })();
  function scroll(ctx, canvas, n) {
    if (n >= canvas.width) { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); return; }
    ctx.drawImage(canvas, -n, 0);
  }
  // Frames arrive 50 per second; they are queued as they come and drawn together at most every DRAW_MS (100 ms,
  // or ?draw=MS in the page's address, 20..1000), so the canvas is scrolled and rasterised 10 times a second
  // instead of once per message. On a small machine the browser shares the cores with the synth, and what it
  // spends drawing is taken from play (tools/page_cpu.py measures Chromium's share per interval; BENCHMARKS.md).
  const asked = Number(new URLSearchParams(location.search).get("draw"));
  const DRAW_MS = asked >= 20 && asked <= 1000 ? asked : 100, queued = [];
  let drawTimer = null, lastDraw = 0;
  function frames(buffer) {
    const view = new DataView(buffer);
    if (view.byteLength < 8 || view.getUint8(0) !== 70 || view.getUint8(1) !== VERSION) return;
    const n = view.getUint16(2, true), first = view.getUint32(4, true);
    if (view.byteLength < 8 + n * FRAME_BYTES) return;
    for (let j = 0; j < n; j++) queued.push(new Uint8Array(buffer, 8 + j * FRAME_BYTES, FRAME_BYTES));
    if (queued.length > spec.width) queued.splice(0, queued.length - spec.width);
    state.framesReceived += n; state.lastFrame = first + n - 1;
    if (drawTimer === null) drawTimer = setTimeout(draw, Math.max(0, lastDraw + DRAW_MS - performance.now()));
  }
  function draw() {
    drawTimer = null; lastDraw = performance.now();
    const shown = queued.length;
    if (!shown || state.drawingOff) { queued.length = 0; return; }
    scroll(sctx, spec, shown); scroll(rctx, roll, shown);
    const simg = sctx.createImageData(shown, MELS), rimg = rctx.createImageData(shown, HIGH - LOW + 1);
    for (let j = 0; j < shown; j++) {
      const row = queued[j], flags = row[MELS + MASK];
      for (let b = 0; b < MELS; b++) {
        const v = flags & MISSING ? 20 : row[b], p = 4 * ((MELS - 1 - b) * shown + j);
        simg.data[p] = LUT[3 * v]; simg.data[p + 1] = LUT[3 * v + 1]; simg.data[p + 2] = LUT[3 * v + 2];
        simg.data[p + 3] = 255;
        if (flags & UNDERRUN) { simg.data[p] = 255; simg.data[p + 1] = 40; simg.data[p + 2] = 40; }
      }
      for (let pitch = LOW; pitch <= HIGH; pitch++) {
        const on = row[MELS + (pitch >> 3)] & (1 << (pitch & 7)), p = 4 * ((HIGH - pitch) * shown + j);
        const rb = (flags & ROLLED_BACK) && pitch > HIGH - 3;
        rimg.data[p] = rb ? 255 : on ? 120 : 12; rimg.data[p + 1] = rb ? 150 : on ? 200 : 12;
        rimg.data[p + 2] = rb ? 0 : on ? 255 : 16; rimg.data[p + 3] = 255;
      }
    }
    queued.length = 0;
    sctx.putImageData(simg, spec.width - shown, 0);
    rctx.putImageData(rimg, roll.width - shown, 0);
    document.getElementById("clock").textContent = `frame ${state.lastFrame} (${(state.lastFrame / 50).toFixed(1)} s)`;
  }

  // ---- stats -------------------------------------------------------------------------------------------------
  function showStats(m) {
    const lat = m.latency || {};
    const rows = [
      ["latency total", `${lat.total ?? "–"} ms`],
      ...Object.entries(lat).filter(([k]) => k !== "total").map(([k, v]) => [`  ${k}`, `${v} ms`]),
      ["tick p50 / p99", `${m.tick_ms_p50} / ${m.tick_ms_p99} ms`], ["sampling steps", m.steps],
      ["ring fill", `${m.ring_ms} ms`], ["ring underruns", m.underruns], ["device xruns", m.xruns],
      ["rollbacks", m.rollbacks], ["late events", m.late_events], ["notes sounding", m.active_notes],
      ["MIDI received / dropped", `${m.midi_received} / ${m.midi_dropped}`],
      ["page: refused messages", Object.values(m.page.bad).reduce((a, b) => a + b, 0)],
      ["page: frames dropped", m.page.frames_dropped],
    ];
    document.getElementById("statrows").innerHTML =
      rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("");
  }

  // ---- instrument picker ------------------------------------------------------------------------------------
  const GM = ("Acoustic Grand Piano,Bright Acoustic Piano,Electric Grand Piano,Honky-tonk Piano,Electric Piano 1," +
    "Electric Piano 2,Harpsichord,Clavinet,Celesta,Glockenspiel,Music Box,Vibraphone,Marimba,Xylophone," +
    "Tubular Bells,Dulcimer,Drawbar Organ,Percussive Organ,Rock Organ,Church Organ,Reed Organ,Accordion," +
    "Harmonica,Tango Accordion,Nylon Guitar,Steel Guitar,Jazz Guitar,Clean Guitar,Muted Guitar,Overdriven Guitar," +
    "Distortion Guitar,Guitar Harmonics,Acoustic Bass,Finger Bass,Pick Bass,Fretless Bass,Slap Bass 1," +
    "Slap Bass 2,Synth Bass 1,Synth Bass 2,Violin,Viola,Cello,Contrabass,Tremolo Strings,Pizzicato Strings," +
    "Orchestral Harp,Timpani,String Ensemble 1,String Ensemble 2,Synth Strings 1,Synth Strings 2,Choir Aahs," +
    "Voice Oohs,Synth Voice,Orchestra Hit,Trumpet,Trombone,Tuba,Muted Trumpet,French Horn,Brass Section," +
    "Synth Brass 1,Synth Brass 2,Soprano Sax,Alto Sax,Tenor Sax,Baritone Sax,Oboe,English Horn,Bassoon," +
    "Clarinet,Piccolo,Flute,Recorder,Pan Flute,Blown Bottle,Shakuhachi,Whistle,Ocarina,Square Lead,Sawtooth Lead," +
    "Calliope Lead,Chiff Lead,Charang Lead,Voice Lead,Fifths Lead,Bass + Lead,New Age Pad,Warm Pad,Polysynth Pad," +
    "Choir Pad,Bowed Pad,Metallic Pad,Halo Pad,Sweep Pad,Rain,Soundtrack,Crystal,Atmosphere,Brightness,Goblins," +
    "Echoes,Sci-fi,Sitar,Banjo,Shamisen,Koto,Kalimba,Bagpipe,Fiddle,Shanai,Tinkle Bell,Agogo,Steel Drums," +
    "Woodblock,Taiko Drum,Melodic Tom,Synth Drum,Reverse Cymbal,Guitar Fret Noise,Breath Noise,Seashore," +
    "Bird Tweet,Telephone Ring,Helicopter,Applause,Gunshot").split(",");
  const picker = document.getElementById("program");
  picker.innerHTML = GM.map((name, i) => `<option value="${i}">${i + 1} ${name}</option>`).join("") +
                     '<option value="drums">Drums (channel 10)</option>';
  function sendProgram() {
    allOff();
    if (picker.value === "drums") { state.channel = 9; return; }
    state.channel = 0; midi([0xC0, Number(picker.value)]);
  }
  picker.onchange = () => { sendProgram(); picker.blur(); };

  // ---- timbre morph (play --morph A>B): the slider sends the morph's controller -----------------------------------
  const morph = document.getElementById("morph");
  function showMorph(m) {
    document.getElementById("morphbox").hidden = !m;
    if (!m) return;
    picker.value = String(m.from); sendProgram(); // the morph moves program A's timbre
    document.getElementById("morphfrom").textContent = GM[m.from];
    document.getElementById("morphto").textContent = GM[m.to];
    morph.oninput = () => midi([0xB0 | state.channel, m.cc, Number(morph.value)]);
    morph.onchange = () => morph.blur();
  }

  // ---- notes -------------------------------------------------------------------------------------------------
  function noteOn(pitch, velocity, event) {
    if (pitch < 0 || pitch > 127) return;
    state.noteLog.push([performance.timeOrigin + (event ? event.timeStamp : performance.now()), pitch]);
    if (state.noteLog.length > 256) state.noteLog.shift();
    midi([0x90 | state.channel, pitch, Math.max(1, Math.min(127, Math.round(velocity)))]);
    keyEl(pitch, true);
  }
  function noteOff(pitch, channel) {
    if (pitch < 0 || pitch > 127) return;
    midi([0x80 | channel, pitch, 0]);
    keyEl(pitch, false);
  }
  function allOff() {
    for (const [id, [pitch, ch]] of state.down) noteOff(pitch, ch);
    state.down.clear();
  }
  function setSustain(on) {
    if (on === state.sustain) return;
    state.sustain = on; midi([0xB0 | state.channel, 64, on ? 127 : 0]);
    document.getElementById("sustain").classList.toggle("on", on);
  }
  const sus = document.getElementById("sustain");
  sus.onclick = () => { setSustain(!state.sustain); sus.blur(); };

  // ---- on-screen keyboard: two octaves from the current octave's C ----------------------------------------------
  const kb = document.getElementById("keyboard");
  const WHITE = [0, 2, 4, 5, 7, 9, 11], NAMES = ["C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B"];
  function base() { return 12 * (state.octave + 1); } // MIDI 60 = C4
  function layout() {
    kb.innerHTML = "";
    const whites = 14, w = 100 / whites;
    let wi = 0;
    for (let s = 0; s < 24; s++) {
      const el = document.createElement("div"), white = WHITE.includes(s % 12);
      el.className = `key ${white ? "white" : "black"}`;
      el.dataset.pitch = base() + s;
      if (white) { el.style.left = `${wi * w}%`; el.style.width = `${w}%`; wi++; }
      else { el.style.left = `${(wi - 0.32) * w}%`; el.style.width = `${0.64 * w}%`; }
      if (s % 12 === 0) el.innerHTML = `<span>${NAMES[0]}${state.octave + s / 12}</span>`;
      kb.appendChild(el);
    }
    document.getElementById("octave").textContent = state.octave;
  }
  function keyEl(pitch, down) {
    const el = kb.querySelector(`[data-pitch="${pitch}"]`);
    if (el) el.classList.toggle("down", down);
  }
  kb.addEventListener("pointerdown", (e) => {
    const el = e.target.closest(".key"); if (!el) return;
    e.preventDefault(); kb.setPointerCapture(e.pointerId);
    const r = el.getBoundingClientRect(), y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    const pitch = Number(el.dataset.pitch);
    state.down.set(`p${e.pointerId}`, [pitch, state.channel]);
    noteOn(pitch, 20 + 107 * y, e); // the lower on the key, the louder
  });
  const release = (e) => {
    const held = state.down.get(`p${e.pointerId}`); if (!held) return;
    state.down.delete(`p${e.pointerId}`); noteOff(held[0], held[1]);
  };
  kb.addEventListener("pointerup", release); kb.addEventListener("pointercancel", release);

  // ---- computer keyboard, as vmpk: Z-row from the octave's C, Q-row an octave up ------------------------------
  const KEYS = {};
  ["KeyZ", "KeyS", "KeyX", "KeyD", "KeyC", "KeyV", "KeyG", "KeyB", "KeyH", "KeyN", "KeyJ", "KeyM", "Comma", "KeyL",
   "Period", "Semicolon", "Slash"].forEach((code, i) => { KEYS[code] = i; });
  ["KeyQ", "Digit2", "KeyW", "Digit3", "KeyE", "KeyR", "Digit5", "KeyT", "Digit6", "KeyY", "Digit7", "KeyU", "KeyI",
   "Digit9", "KeyO", "Digit0", "KeyP", "BracketLeft", "Equal", "BracketRight"].forEach((code, i) => { KEYS[code] = 12 + i; });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.tagName === "SELECT") return;
    if (e.code in KEYS) {
      e.preventDefault(); if (e.repeat || state.down.has(e.code)) return;
      const pitch = base() + KEYS[e.code];
      state.down.set(e.code, [pitch, state.channel]); noteOn(pitch, state.velocity, e);
    } else if (e.code === "Space") { e.preventDefault(); if (!e.repeat) setSustain(true); }
    else if (e.code === "ArrowLeft" || e.code === "ArrowRight") {
      e.preventDefault(); state.octave = Math.max(0, Math.min(8, state.octave + (e.code === "ArrowRight" ? 1 : -1)));
      layout();
    } else if (e.code === "ArrowUp" || e.code === "ArrowDown") {
      e.preventDefault(); state.velocity = Math.max(10, Math.min(127, state.velocity + (e.code === "ArrowUp" ? 10 : -10)));
      document.getElementById("velocity").textContent = state.velocity;
    }
  });
  document.addEventListener("keyup", (e) => {
    if (e.code === "Space") { setSustain(false); return; }
    const held = state.down.get(e.code); if (!held) return;
    state.down.delete(e.code); noteOff(held[0], held[1]);
  });
  window.addEventListener("blur", allOff);

  // ---- Web MIDI: a keyboard plugged into this machine plays too ------------------------------------------------
  if (navigator.requestMIDIAccess) {
    navigator.requestMIDIAccess({ sysex: false }).then((access) => {
      const hook = () => {
        const names = [];
        access.inputs.forEach((input) => {
          names.push(input.name);
          input.onmidimessage = (m) => {
            const d = Array.from(m.data);
            if (d.length && d[0] >= 0x80 && d[0] <= 0xEF) midi(d.slice(0, (d[0] & 0xF0) === 0xC0 || (d[0] & 0xF0) === 0xD0 ? 2 : 3));
          };
        });
        document.getElementById("midiin").textContent = names.length ? `Web MIDI: ${names.join(", ")}` : "";
      };
      access.onstatechange = hook; hook();
    }).catch(() => {});
  }

  layout();
  connect();
})();
