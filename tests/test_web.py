"""`play --web`: the protocol's validation, the link between the page and the generation side, the server's
refusals and its behaviour with a stalled page, and (with Chromium, Playwright and a JACK server) the page in a real
browser playing into `live-synth play`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time

import numpy as np
import pytest

from live_synth.web import protocol
from live_synth.web.protocol import ProtocolError

# -- protocol ---------------------------------------------------------------------------------------------------------


def _msg(data, **extra) -> str:
    return json.dumps({"v": 1, "type": "midi", "data": data, **extra})


@pytest.mark.parametrize("data", [[0x90, 60, 100], [0x80, 60, 0], [0x9F, 0, 127], [0xB0, 64, 127], [0xC5, 48],
                                  [0xD0, 3], [0xE0, 0, 64]])
def test_protocol_accepts_channel_voice_messages(data):
    assert protocol.parse(_msg(data)) == ("midi", data)


@pytest.mark.parametrize("text, reason", [
    (b"\x90\x3c\x64", "binary"),
    ("x" * (protocol.MAX_MESSAGE_BYTES + 1), "too_long"),
    (_msg([0x90, 60, 100], pad="y" * 300), "too_long"),
    ("{not json", "not_json"),
    ("[" * 120 + "]" * 120, "not_object"),
    ("[1, 2]", "not_object"),
    (json.dumps({"v": 2, "type": "midi", "data": [0x90, 60, 100]}), "version"),
    (json.dumps({"v": "1", "type": "midi", "data": [0x90, 60, 100]}), "version"),
    (json.dumps({"v": True, "type": "midi", "data": [0x90, 60, 100]}), "version"),
    (json.dumps({"type": "midi", "data": [0x90, 60, 100]}), "version"),
    (json.dumps({"v": 1, "type": "sysex", "data": [0xF0]}), "type"),
    (json.dumps({"v": 1, "data": [0x90, 60, 100]}), "type"),
    (_msg([0xF0, 1, 2]), "status"),
    (_msg([0xFF]), "status"),
    (_msg([0x3C, 100]), "status"),
    (_msg([0x90, 128, 100]), "range"),
    (_msg([0x90, 60, -1]), "range"),
    (_msg([0x90, 60, 100.0]), "range"),
    (_msg([0x90, True, 100]), "range"),
    (_msg([0x90, "60", 100]), "range"),
    (_msg([0x90, 60]), "length"),
    (_msg([0xC0, 1, 2]), "length"),
    (_msg([]), "length"),
    (_msg("90 3c 64"), "length"),
    (json.dumps({"v": 1, "type": "ping", "id": -1}), "range"),
])
def test_protocol_refuses_malformed_oversized_and_out_of_range_messages(text, reason):
    with pytest.raises(ProtocolError) as caught:
        protocol.parse(text)
    assert caught.value.reason == reason


def test_frame_batches_round_trip():
    rng = np.random.default_rng(0)
    mel = rng.integers(0, 256, (5, 128), dtype=np.uint8)
    masks = rng.integers(0, 256, (5, 16), dtype=np.uint8)
    flags = np.array([0, 1, 2, 4, 3], np.uint8)
    payload = protocol.pack_frames(1000, mel, masks, flags)
    assert len(payload) == protocol.HEADER.size + 5 * protocol.FRAME_BYTES
    first, m, k, f = protocol.unpack_frames(payload)
    assert first == 1000 and (m == mel).all() and (k == masks).all() and (f == flags).all()


# -- the link: frames down, events up ----------------------------------------------------------------------------------


@pytest.fixture
def link():
    from live_synth.web.link import PageLink

    link = PageLink.create()
    yield link
    link.close()


class _Stream:
    """A live stream's surface (`synth.LiveStream`) with frames that say which frame and which try they are."""

    can_rewind, max_steps = True, 2

    def __init__(self):
        self.frame, self.steps, self.tries = 0, 2, 0

    def generate(self, notes):
        self.frame += 1
        return np.full((1, 128), -8.0 + 2.0 * self.tries, np.float32)

    def rewind(self, frame):
        self.frame, self.tries = frame, self.tries + 1

    def lookahead_frames(self):
        return 1


def test_mel_tap_writes_every_frame_and_marks_what_a_rollback_regenerated(link):
    from live_synth.live.notes import NoteState
    from live_synth.web.link import MelTap

    notes = NoteState()
    notes.apply(0.1, [0x90, 60, 100])  # sounds from frame 5
    tap = MelTap(_Stream(), link)
    tap.steps = 1
    assert tap.inner.steps == 1 and tap.max_steps == 2  # the worker's degradation reaches the real stream
    for _ in range(20):
        tap.generate(notes)
    tap.rewind(12)
    for _ in range(8):
        tap.generate(notes)
    first, mel, masks, flags = link.read_frames(0, 24)
    assert first == 0
    assert (flags[:12] == 0).all() and (flags[12:20] == protocol.ROLLED_BACK).all()
    assert (flags[20:] == protocol.MISSING).all()  # not generated yet
    pitches = np.unpackbits(masks, axis=1, bitorder="little")
    assert not pitches[:4, 60].any() and pitches[5:20, 60].all() and pitches[:20].sum() == pitches[:20, 60].sum()
    assert mel[12, 0] > mel[11, 0]  # row 12 holds the regenerated frame (a louder try), not the first one


class _Source:
    wake_fd = None

    def __init__(self, events):
        self.events = events
        self.received = len(events)

    def drain(self):
        out, self.events = self.events, []
        return out

    def next_due(self):
        return None


def test_page_events_join_the_midi_source_in_arrival_order(link):
    from live_synth.web.link import PageSource

    source = PageSource(_Source([(1.0, [0x90, 60, 100]), (3.0, [0x80, 60, 0])]), link)
    try:
        assert link.send_event(2.0, [0x90, 64, 90])
        deadline = time.monotonic() + 5
        while source.page.pending() < 1 and time.monotonic() < deadline:  # the inbox thread takes it
            time.sleep(0.01)
        merged = source.drain()
        assert merged == [(1.0, [0x90, 60, 100]), (2.0, [0x90, 64, 90]), (3.0, [0x80, 60, 0])]
        assert source.received == 3
    finally:
        source.close()


def test_a_page_flood_is_bounded_and_keeps_its_releases_like_a_midi_flood(link):
    """The page's queue is a MidiQueue: a flood of note-ons is dropped (counted) while the note-offs that end them are
    kept (the reserve), and whatever is lost between the processes is counted too."""
    from live_synth.web.link import MAX_IN_FLIGHT, PageSource

    source = PageSource(_Source([]), link)
    page = source.page
    sent = attempts = 0

    def burst(count: int, message: list[int], t0: float) -> None:
        """Send `count` events as fast as possible, then wait until the inbox thread has taken all it accepted."""
        nonlocal sent, attempts
        for i in range(count):
            attempts += 1
            sent += link.send_event(t0 + i, message)
        deadline = time.monotonic() + 10
        while page.received + page.dropped < sent and time.monotonic() < deadline:
            time.sleep(0.02)

    try:
        # Two floods of note-ons: the first fills the link (what the inbox has not taken is dropped in flight) and
        # the page queue up to its note-on share; the second, sent once the inbox has taken the first, meets a full
        # queue whatever the threads' timing was (the first alone left no drop in the queue when the inbox thread
        # was not scheduled during it: all of it then stayed in flight).
        burst(MAX_IN_FLIGHT + 2000, [0x90, 60, 100], 0.0)
        burst(2000, [0x90, 60, 100], 1e5)
        before = sent
        burst(3, [0x80, 60, 0], 1e6)
        offs = sent - before
        assert page.received + page.dropped == sent
        assert link.dropped_in_flight == attempts - sent
        assert page.dropped > 0 and page.received <= page.capacity
        drained = source.drain()
        assert [m for _, m in drained if m[0] == 0x80] == [[0x80, 60, 0]] * offs  # no release lost
        assert offs == 3
    finally:
        source.close()


# -- the server ----------------------------------------------------------------------------------------------------


class _View:
    """A session's counters as the server reads them; `speed` frames heard per pump."""

    def __init__(self, speed=1):
        self.start, self.speed = time.monotonic(), speed

    def heard_frame(self):
        return int((time.monotonic() - self.start) * 50 * self.speed)

    def underruns(self):
        return 0

    def status(self):
        return {"latency": {"total": 1.0}, "frame": self.heard_frame()}


@pytest.fixture
def server(link):
    pytest.importorskip("aiohttp")
    from live_synth.web.server import WebPage

    page = WebPage("127.0.0.1:0", token="s3cret", link=link, log=lambda line: None)
    page.start()
    page.attach(_View())
    yield page
    page.stop()


def _events(link, timeout=2.0):
    import queue

    out = []
    try:
        while True:
            out.append(link.events.get(timeout=timeout))
            timeout = 0.2
    except queue.Empty:
        return out


def test_server_refuses_other_origins_hosts_and_missing_tokens(server):
    import aiohttp

    base = f"http://127.0.0.1:{server.port}"
    own = {"Origin": base}

    async def run():
        async with aiohttp.ClientSession() as http:
            assert (await http.get(f"{base}/")).status == 403  # no token
            page = await http.get(f"{base}/?token=s3cret")
            assert page.status == 200 and "spec" in await page.text()
            assert (await http.get(f"{base}/static/app.js")).status == 200
            assert (await http.get(f"{base}/static/..%2Fserver.py")).status == 404
            refusals = [({"Origin": "http://evil.example"}, "s3cret"), ({}, "s3cret"), (own, "wrong"),
                        ({**own, "Host": f"evil.example:{server.port}"}, "s3cret")]
            for headers, token in refusals:
                with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                    await http.ws_connect(f"{base}/ws?token={token}", headers=headers)
                assert caught.value.status == 403
            async with http.ws_connect(f"{base}/ws?token=s3cret", headers=own) as ws:
                assert json.loads((await ws.receive()).data)["type"] == "hello"
                await ws.send_str(_msg([0x90, 60, 100]))
                for bad in ["nope", _msg([0x90, 128, 1]), _msg([0xF0, 1, 2]), json.dumps({"v": 9, "type": "midi"})]:
                    await ws.send_str(bad)
                await ws.send_bytes(b"\x90\x3c\x64")
                await ws.send_str(_msg([0x80, 60, 0]))
                await ws.send_str(json.dumps({"v": 1, "type": "ping", "id": 7}))
                while True:
                    message = await ws.receive()
                    if message.type == aiohttp.WSMsgType.TEXT and json.loads(message.data)["type"] == "pong":
                        break
            async with http.ws_connect(f"{base}/ws?token=s3cret", headers=own) as ws:
                await ws.send_str("x" * 5000)  # over the socket's limit: the server closes it
                closing = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
                while (await asyncio.wait_for(ws.receive(), 5)).type not in closing:  # hello, frames, stats
                    pass

    asyncio.run(run())
    events = _events(server.link)
    assert [m for _, m in events] == [[0x90, 60, 100], [0x80, 60, 0]]  # only the valid ones reach the model's side
    assert all(abs(t - time.monotonic()) < 10 for t, _ in events)  # stamped on the monotonic clock at arrival
    assert server.refused == {"token": 2, "origin": 2, "host": 1}
    assert server.bad == {"not_json": 1, "range": 1, "status": 1, "version": 1, "binary": 1, "too_long": 1}


def test_a_stalled_page_has_its_frames_dropped_and_blocks_nobody(link):
    """A page that never reads: its frames are dropped once its socket and its small queue are full; another page is
    still served, and the server's memory for it stays bounded."""
    pytest.importorskip("aiohttp")
    import aiohttp

    from live_synth.web.server import SEND_QUEUE, WebPage

    page = WebPage("127.0.0.1:0", link=link, log=lambda line: None)
    page.start()
    page.attach(_View(speed=400))  # 20 000 frames/s: 2.9 MB/s of frame batches
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stalled.connect(("127.0.0.1", page.port))
        key = base64.b64encode(os.urandom(16)).decode()
        stalled.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{page.port}\r\nOrigin: http://127.0.0.1:{page.port}\r\n"
                         f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        assert b" 101 " in stalled.recv(4096).split(b"\r\n")[0] + b" "
        deadline = time.monotonic() + 20
        while page.frames_dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert page.frames_dropped > 0

        async def other():
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(f"http://127.0.0.1:{page.port}/ws",
                                           headers={"Origin": f"http://127.0.0.1:{page.port}"}) as ws:
                    kinds = set()
                    while "binary" not in kinds or "stats" not in kinds:
                        message = await asyncio.wait_for(ws.receive(), 5)
                        kinds.add("binary" if message.type == aiohttp.WSMsgType.BINARY
                                  else json.loads(message.data)["type"])

        asyncio.run(other())
        stalled_ws = [ws for ws in page.clients if ws.outbox.qsize() == SEND_QUEUE]
        assert stalled_ws, "the stalled page's queue should be full (and bounded)"
    finally:
        stalled.close()
        page.stop()


# -- a real browser on a real session ---------------------------------------------------------------------------------

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser_or_skip():
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the page's browser test needs it")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    pytest.importorskip("aiohttp", reason="aiohttp is not installed (pip install 'live-synth[web]')")
    from live_synth.live.midi_in import jack_server_running

    if not jack_server_running():
        pytest.skip("no JACK server runs (.ci/run starts a dummy one): the page's browser test plays through it")
    return chromium


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _level_db(audio: np.ndarray, rate: int, start_s: float, stop_s: float) -> float:
    span = audio[max(0, int(start_s * rate)): int(stop_s * rate)]
    return 20 * np.log10(np.sqrt(np.mean(np.square(span, dtype=np.float64))) + 1e-9)


# The container has no ALSA sequencer (/dev/snd), so Chromium's own Web MIDI finds no device here. This stands in
# for one: navigator.requestMIDIAccess resolves to an access object with one input, "Fake Keys", whose messages the
# test fires. What is tested is the page's side (the device is listed, its channel messages go up the socket, other
# messages do not), not Chromium's MIDI backend.
FAKE_WEB_MIDI = """(() => {
  const input = { name: "Fake Keys", onmidimessage: null };
  const access = { inputs: new Map([["fake", input]]), outputs: new Map(), onstatechange: null };
  navigator.requestMIDIAccess = () => Promise.resolve(access);
  window.__fakeMidi = { fire: (data) => input.onmidimessage && input.onmidimessage({ data: new Uint8Array(data) }) };
})();"""


def test_the_page_plays_notes_into_play_and_shows_them(tmp_path):
    """`play --web` on the JACK server, Chromium on its page: a key clicked with the mouse, a key typed on the
    computer keyboard (vmpk's Q = C5), a note from a Web MIDI input and a key tapped on a phone-sized page are heard
    in the recording (a level rise just after each, from the silence before), the spectrogram canvas lights up and the piano roll shows the pitch;
    a bad-origin socket is refused, and malformed messages sent from the page are counted and never reach the
    model. Screenshots go to $LIVE_SYNTH_WEB_SCREENSHOTS when set (README)."""
    import signal
    import subprocess
    import sys

    import soundfile as sf
    from playwright.sync_api import sync_playwright

    chromium = _browser_or_skip()
    port = _free_port()
    wav = tmp_path / "played.wav"
    log = open(tmp_path / "play.log", "w+")
    play = subprocess.Popen([sys.executable, "-m", "live_synth", "play", "--midi-api", "jack", "--web", str(port),
                             "--web-token", "t0k", "--record", str(wav), "--seconds", "90"],
                            stderr=log, stdout=log, text=True)
    shots = os.environ.get("LIVE_SYNTH_WEB_SCREENSHOTS")
    try:
        deadline = time.monotonic() + 60
        while "expected latency" not in (text := open(tmp_path / "play.log").read()):
            assert play.poll() is None and time.monotonic() < deadline, f"play never came up:\n{text}"
            time.sleep(0.2)
        url = re.search(r"page: (\S+)", text).group(1)
        assert url == f"http://127.0.0.1:{port}/?token=t0k"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.add_init_script(FAKE_WEB_MIDI)
            page.goto(url)
            page.wait_for_function("window.liveSynth.framesReceived > 100", timeout=15000)
            bright = "(id) => { const c = document.getElementById(id), d = c.getContext('2d')" \
                     ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4)" \
                     " n += d[i] + d[i + 1] + d[i + 2] > 200; return n; }"
            before = page.evaluate(bright, "spec")
            heard = []  # the heard frame when each note was played: where it lands in the recording
            key = page.locator('#keyboard .key[data-pitch="60"]')  # C4 on screen
            box = key.bounding_box()
            heard.append(page.evaluate("window.liveSynth.lastFrame"))
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 0.9 * box["height"])  # low on the key: loud
            page.mouse.down()
            time.sleep(0.6)
            page.mouse.up()
            time.sleep(1.4)
            heard.append(page.evaluate("window.liveSynth.lastFrame"))
            page.keyboard.down("q")  # vmpk: Q-row starts an octave up (C5)
            time.sleep(0.6)
            page.keyboard.up("q")
            time.sleep(1.4)
            # Web MIDI: a keyboard plugged into the browser's machine (the fake device of FAKE_WEB_MIDI) plays G4
            assert page.inner_text("#midiin") == "Web MIDI: Fake Keys"
            heard.append(page.evaluate("window.liveSynth.lastFrame"))
            page.evaluate("window.__fakeMidi.fire([0x90, 67, 100])")
            time.sleep(0.6)
            page.evaluate("window.__fakeMidi.fire([0x80, 67, 0])")
            page.evaluate("window.__fakeMidi.fire([0xF8])")  # a clock tick: not a channel message, not sent
            time.sleep(1.4)
            page.wait_for_function("window.liveSynth.eventsSent >= 7")  # program change + three notes on and off
            after = page.evaluate(bright, "spec")
            roll_c5 = page.evaluate("() => { const c = document.getElementById('roll'), row = 108 - 72;"
                                    " const d = c.getContext('2d').getImageData(0, row, c.width, 1).data;"
                                    " let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i + 2] > 200;"
                                    " return n; }")
            if shots:
                page.screenshot(path=os.path.join(shots, "web-1280x720.png"))
            # malformed and out-of-range messages from the page itself: counted, never forwarded
            page.evaluate("""() => { const ws = window.liveSynth.ws; ws.send('garbage');
                ws.send(JSON.stringify({v: 1, type: 'midi', data: [0x90, 200, 100]}));
                ws.send(JSON.stringify({v: 1, type: 'midi', data: [0xF0, 1, 2]}));
                ws.send(JSON.stringify({v: 7, type: 'midi', data: [0x90, 60, 100]})); }""")
            stats = page.wait_for_function("""() => { const m = window.liveSynth.lastStats;
                return m && Object.values(m.page.bad).reduce((a, b) => a + b, 0) >= 4 ? m : null; }""",
                                           timeout=5000).json_value()
            # a phone-sized page: a key tapped (touch)
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            phone.goto(url)
            phone.wait_for_function("window.liveSynth.framesReceived > 100", timeout=15000)
            phone.locator('#keyboard .key[data-pitch="64"]').scroll_into_view_if_needed()
            tap = phone.locator('#keyboard .key[data-pitch="64"]').bounding_box()
            time.sleep(1.0)
            heard.append(phone.evaluate("window.liveSynth.lastFrame"))
            phone.touchscreen.tap(tap["x"] + tap["width"] / 2, tap["y"] + 0.9 * tap["height"])
            time.sleep(1.5)
            if shots:
                phone.screenshot(path=os.path.join(shots, "web-phone.png"))
            browser.close()
        # a socket from another origin is refused by the running session's server
        import aiohttp

        async def foreign():
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                    await http.ws_connect(f"http://127.0.0.1:{port}/ws?token=t0k",
                                          headers={"Origin": "http://evil.example"})
                return caught.value.status

        assert asyncio.run(foreign()) == 403
    finally:
        if play.poll() is None:
            play.send_signal(signal.SIGTERM)
        try:
            play.wait(timeout=20)
        except subprocess.TimeoutExpired:
            play.kill()
        log.seek(0)
        text = log.read()
        log.close()
    assert play.returncode == 0, text[-3000:]
    assert after > before + 50, f"the spectrogram did not light up ({before} -> {after} bright pixels)"
    assert roll_c5 > 5, "the piano roll does not show the typed C5"
    assert sum(stats["page"]["bad"].values()) == 4 and stats["page"]["refused"] == {}
    played = re.search(r"MIDI received (\d+)", text)
    # program change, 3 × (on, off) from the big page (mouse, computer keyboard, Web MIDI), program change + on + off
    # from the phone: 10, nothing else
    assert played and int(played.group(1)) == 10, text[-2000:]
    audio, rate = sf.read(wav, dtype="float32")
    for frame in heard:
        t = frame / 50
        quiet, loud = _level_db(audio, rate, t - 0.8, t), _level_db(audio, rate, t + 0.05, t + 0.6)
        assert loud > quiet + 15, f"no note heard after {t:.2f} s in the recording ({quiet:.1f} -> {loud:.1f} dB)"


def test_no_read_of_the_session_after_detach(link):
    """`play` closes the ring's shared memory after the session; the server must not read it after `detach` (a read
    of unmapped memory killed play with SIGSEGV at the end of a --midi-file session with the page open)."""
    pytest.importorskip("aiohttp")
    import aiohttp

    from live_synth.web.server import WebPage

    class Closing(_View):
        closed = False
        late_reads = 0

        def heard_frame(self):
            if self.closed:
                Closing.late_reads += 1
            time.sleep(0.002)  # a read takes a moment: detach must wait for it
            return super().heard_frame()

    page = WebPage("127.0.0.1:0", link=link, log=lambda line: None)
    page.start()
    view = Closing()
    page.attach(view)

    async def watch():
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"http://127.0.0.1:{page.port}/ws",
                                       headers={"Origin": f"http://127.0.0.1:{page.port}"}) as ws:
                while (await asyncio.wait_for(ws.receive(), 5)).type != aiohttp.WSMsgType.BINARY:
                    pass
                for _ in range(20):
                    page.detach()
                    view.closed = True  # what side.close() does to the shared memory
                    await asyncio.sleep(0.03)
                    view.closed = False
                    page.attach(view)
                    await asyncio.sleep(0.01)

    try:
        asyncio.run(watch())
    finally:
        page.stop()
    assert Closing.late_reads == 0


@pytest.mark.parametrize("argv, says", [
    (["--web", "notaport"], "expected [HOST:]PORT"),
    (["--web", "70000"], "port must be 0..65535"),
    (["--web-token", "abc"], "--web-token needs --web"),
    (["--web", "8765", "--web-token", ""], "the token is empty"),
])
def test_play_refuses_bad_web_options_in_one_line(argv, says, capsys):
    pytest.importorskip("aiohttp")
    from live_synth.cli import main

    assert main(["play", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err


def test_play_says_in_one_line_when_the_page_port_is_taken(capsys):
    pytest.importorskip("aiohttp")
    from live_synth.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["play", "--web", f"127.0.0.1:{taken.getsockname()[1]}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot listen on 127.0.0.1" in err[0], err
