"""`play --web`: the page's server (aiohttp), in its own thread of the control process.

It never runs in the audio callback or the generation loop: it reads counters and the shared frame table, and hands
the page's events to the generation side through `PageLink` (the same queue policy as rtmidi's input). Everything
the page needs is served from the package (`live_synth/web/static/`): no build step, no CDN.

Security: the page and its socket answer only requests whose Host is this server's own address when it listens on
loopback (no DNS rebinding), the socket only same-origin connections (the Origin header must name the Host), and,
with a token, only requests that carry it (`?token=`, printed in the URL). Each refusal is counted; a refused
socket gets HTTP 403 before any upgrade.

Slow pages: each connection has a send queue of `SEND_QUEUE` messages; a frame batch or status message that does not
fit is dropped and counted (`frames_dropped`), so a stalled or closed tab costs nothing but the drop.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import threading
import time
from collections import Counter
from importlib import resources

from live_synth.errors import LiveSynthError
from live_synth.web import protocol
from live_synth.web.protocol import ProtocolError

DEFAULT_ADDRESS = "127.0.0.1:8765"
SEND_QUEUE = 8
MAX_SOCKET_MESSAGE = 4096  # aiohttp closes a socket on a larger message (counted as too_long)
PUMP_S = 0.02  # frames go out every 20 ms; status every STATUS_S
STATUS_S = 0.25
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}


def parse_address(text: str) -> tuple[str, int]:
    """"[HOST:]PORT" -> (host, port); the host defaults to loopback. A bad value is a LiveSynthError."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise LiveSynthError(f"--web {text!r}: expected [HOST:]PORT, e.g. 8765 or 127.0.0.1:8765") from None
    if not 0 <= number <= 65535:
        raise LiveSynthError(f"--web {text!r}: port must be 0..65535")
    return host, number


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebPage:
    """The server. `start` binds (a taken port is one LiveSynthError line) and serves from its own thread;
    `attach(view)` gives it the session to show (`SessionView`); `stop` closes every connection and the thread.
    Threads: start / attach / stop from the control thread; everything else runs in the server's thread."""

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None, link=None, log=print,
                 morph: dict | None = None):
        """`morph`: {"from": A, "to": B, "cc": N} when `play --morph` runs: the page shows a slider sending CC N."""
        self.host, self.port = parse_address(address)
        self.token, self.link, self.log, self.morph = token, link, log, morph
        self.view = None
        self.bad: Counter = Counter()  # refused messages by reason (protocol.REASONS)
        self.refused: Counter = Counter()  # refused requests: host, origin, token
        self.frames_dropped = 0  # frames (and status messages) not sent to a slow page
        self.events_sent = 0
        self.clients: set = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._view_lock = threading.Lock()  # the view's shared memory goes away at detach: never read it after
        self._error: BaseException | None = None
        self._stopping = None

    # -- control thread -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
        return f"http://{shown}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> str:
        self._thread = threading.Thread(target=self._serve, name="live-synth-web", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise LiveSynthError(f"--web: cannot listen on {self.host}:{self.port}: {self._error}")
        return self.url

    def attach(self, view) -> None:
        with self._view_lock:
            self.view = view

    def detach(self) -> None:
        """Stop reading the session (call before its shared memory is closed); returns once no read is under way."""
        with self._view_lock:
            self.view = None

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=3.0)

    def counters(self) -> dict:
        return {"bad": dict(self.bad), "refused": dict(self.refused), "frames_dropped": self.frames_dropped,
                "events_sent": self.events_sent, "clients": len(self.clients),
                "events_dropped": self.link.dropped_in_flight if self.link is not None else 0}

    # -- the server's thread --------------------------------------------------------------------------------------
    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as error:  # noqa: BLE001 - reported to the control thread
            self._error = error
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/ws", self._socket)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        self._stopping = asyncio.Event()
        try:
            await site.start()
        except OSError as error:
            self._error = error
            await runner.cleanup()
            return
        if self.port == 0:
            self.port = runner.addresses[0][1]
        self._ready.set()
        pump = asyncio.create_task(self._pump())
        await self._stopping.wait()
        pump.cancel()
        for ws in list(self.clients):
            await ws.close()
        await runner.cleanup()

    def _allowed(self, request, need_origin: bool) -> str | None:
        """None if the request may proceed, else why not (counted)."""
        host = request.headers.get("Host", "")
        if _loopback(self.host) and host not in self._own_hosts():
            return "host"
        if need_origin:
            origin = request.headers.get("Origin", "")
            if origin not in (f"http://{host}", f"https://{host}"):
                return "origin"
        if self.token is not None:
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return "token"
        return None

    def _own_hosts(self) -> set[str]:
        return {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]", self.host)}

    async def _index(self, request):
        from aiohttp import web

        why = self._allowed(request, need_origin=False)
        if why:
            self.refused[why] += 1
            return web.Response(status=403, text=f"refused ({why})")
        return self._file("index.html")

    async def _static(self, request):
        from aiohttp import web

        name = request.match_info["name"]
        if name not in STATIC:
            return web.Response(status=404, text="not found")
        return self._file(name)

    def _file(self, name: str):
        from aiohttp import web

        body = resources.files("live_synth.web").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC[name], headers={"Cache-Control": "no-store"})

    async def _socket(self, request):
        from aiohttp import WSMsgType, web

        why = self._allowed(request, need_origin=True)
        if why:
            self.refused[why] += 1
            return web.Response(status=403, text=f"refused ({why})")
        ws = web.WebSocketResponse(max_msg_size=MAX_SOCKET_MESSAGE, compress=False, heartbeat=None)
        await ws.prepare(request)
        outbox: asyncio.Queue = asyncio.Queue(SEND_QUEUE)
        ws.outbox = outbox
        self.clients.add(ws)
        sender = asyncio.create_task(self._send(ws, outbox))
        await ws.send_str(protocol.dumps("hello", frame_rate=50, mels=protocol.N_MELS,
                                         frame_bytes=protocol.FRAME_BYTES, max_message=protocol.MAX_MESSAGE_BYTES,
                                         morph=self.morph))
        try:
            async for message in ws:
                stamp = time.monotonic()  # the arrival stamp, as rtmidi's input takes it
                if message.type == WSMsgType.TEXT:
                    self._receive(ws, message.data, stamp)
                elif message.type == WSMsgType.BINARY:
                    self.bad["binary"] += 1
                elif message.type == WSMsgType.ERROR:
                    self.bad["too_long"] += 1  # aiohttp's only error here: a message over max_msg_size
        finally:
            self.clients.discard(ws)
            sender.cancel()
        return ws

    def _receive(self, ws, text: str, stamp: float) -> None:
        try:
            kind, value = protocol.parse(text)
        except ProtocolError as error:
            self.bad[error.reason] += 1
            return
        if kind == "ping":
            self._offer(ws, protocol.dumps("pong", id=value, t=round(stamp * 1e3, 3)), frames=0)
        elif self.link is not None:
            if self.link.send_event(stamp, value):
                self.events_sent += 1

    def _offer(self, ws, message, frames: int) -> None:
        try:
            ws.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.frames_dropped += frames

    async def _send(self, ws, outbox: asyncio.Queue) -> None:
        try:
            while True:
                message = await outbox.get()
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_str(message)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return

    async def _pump(self) -> None:
        """Every 20 ms: the newly heard frames to every page; every 250 ms the status."""
        sent_to = None
        underruns = 0
        last_status = 0.0
        while True:
            await asyncio.sleep(PUMP_S)
            payload = status = None
            with self._view_lock:  # no await inside: the control thread's detach waits at most this long
                view = self.view
                if view is None or not self.clients:
                    sent_to = None
                    continue
                heard = view.heard_frame()
                if sent_to is None:
                    sent_to = max(0, heard - 250)  # a new page starts with the last 5 s
                    underruns = view.underruns()  # and marks the underruns from now on
                if heard > sent_to and self.link is not None:
                    first, mel, masks, flags = self.link.read_frames(sent_to, heard)
                    now_underruns = view.underruns()
                    if now_underruns > underruns:
                        flags[-1] |= protocol.UNDERRUN
                    underruns = now_underruns
                    payload = protocol.pack_frames(first, mel, masks, flags)
                    sent_to = heard
                now = time.monotonic()
                if now - last_status >= STATUS_S:
                    last_status = now
                    status = protocol.dumps("stats", **view.status(), page=self.counters())
            for message, frames in ((payload, 0 if payload is None else (len(payload) - 8) // protocol.FRAME_BYTES),
                                    (status, 0)):
                if message is not None:
                    for ws in list(self.clients):
                        self._offer(ws, message, frames=frames)


class SessionView:
    """What the page shows of a running session, read from the control process: counters only.
    Thread: the server's (reads shared counters; writes nothing)."""

    def __init__(self, stats, names, ring, audio, latency: dict, link):
        self.stats, self.names, self.ring, self.audio, self.latency, self.link = \
            stats, names, ring, audio, latency, link
        self.rate = audio.samplerate

    def _get(self, name: str) -> float:
        return float(self.stats[self.names.index(name)])

    def heard_frame(self) -> int:
        from live_synth.web.link import heard_frame

        return heard_frame(self.ring.read_index, self.rate, self._get("resampler_ms"), self._get("vocoder_ms"))

    def underruns(self) -> int:
        return int(self.ring.underruns)

    def status(self) -> dict:
        p50, p99 = self.link.tick_percentiles_ms() if self.link is not None else (0.0, 0.0)
        latency = dict(self.latency)
        if "delay" in latency:  # D may grow while playing (live/delay.py): the total follows it
            delay = round(self._get("delay_ms"), 1)
            latency["total"] = round(latency["total"] - latency["delay"] + delay, 1)
            latency["delay"] = delay
        return {"latency": latency, "tick_ms_p50": round(p50, 2), "tick_ms_p99": round(p99, 2),
                "ring_ms": round(1000 * self.ring.available() / self.rate, 1), "underruns": self.underruns(),
                "xruns": int(getattr(self.audio, "underflows", 0)), "rollbacks": int(self._get("rollbacks")),
                "late_events": int(self._get("late_events")), "steps": int(self._get("steps")),
                "active_notes": int(self._get("active_notes")), "midi_received": int(self._get("midi_received")),
                "midi_dropped": int(self._get("midi_dropped")), "frame": self.heard_frame()}


def start_page(settings, address: str, token: str | None, log=print):
    """`play --web`: make the link, bind and start the server (a missing aiohttp or a taken port: one line);
    returns (settings carrying the link, the WebPage). Control thread."""
    from dataclasses import replace

    from live_synth.errors import MissingDependencyError
    from live_synth.web.link import PageLink

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise MissingDependencyError("play --web needs aiohttp: pip install 'live-synth[web]'") from None
    if token is not None and not token:
        raise LiveSynthError("--web-token: the token is empty")
    link = PageLink.create()
    morph = None
    if getattr(settings, "morph", None):
        a, _, b = settings.morph.partition(">")
        morph = {"from": int(a), "to": int(b), "cc": settings.morph_cc}
    page = WebPage(address, token, link, log, morph=morph)
    try:
        url = page.start()
    except BaseException:
        link.close()
        raise
    log(f"page: {url} (keyboard, spectrogram, stats)")
    if not _loopback(page.host) and token is None:
        log(f"warning: the page listens on {page.host}, beyond this machine, without --web-token: whoever reaches "
            f"port {page.port} can play")
    return replace(settings, page=link), page


def stop_page(page: WebPage) -> None:
    """Close every connection, stop the server's thread, remove the link. Control thread; safe to call twice."""
    page.detach()
    page.stop()
    if page.link is not None and not (page._thread is not None and page._thread.is_alive()):
        page.link.close()  # a server thread that did not stop may still read it: then it is unmapped at exit
