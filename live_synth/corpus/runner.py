"""Run one job over many items on Ray: one actor per worker holds the loaded job; the driver only schedules.

    with Pool(SynthJob.factory(settings), PoolOptions(workers=2)) as pool:
        info = pool.start()                          # every worker loaded; what they loaded (fingerprints)
        for outcome in pool.run(items):              # items: (key, payload); outcomes in completion order
            ...

- Local by default: `address=None` starts a Ray instance in this process (`address="local"`, so that a cluster
  someone started with `ray start` on this machine is not joined by surprise) and stops it at the end; an address
  (`auto`, `HOST:PORT`, `ray://HOST:PORT`) joins an existing cluster and leaves it running.
- A job's own error (a bad file: `LiveSynthError`; a bug: any other exception) is that item's outcome, one line,
  and the worker goes on. A worker that dies (killed, out of memory, a crash in native code) loses only the item
  it held: the item goes back to the front of the queue for another worker, at most `retries` times, and the dead
  worker is replaced. Each worker holds one item at a time, so a death is charged to exactly one item.
- A `LiveSynthError` while loading (a wrong model folder) stops the whole run with that line.
- Leaving the `with` block (normally, on an error, or on KeyboardInterrupt) kills the actors and, if this pool
  started Ray, shuts it down: nothing is left running.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from live_synth.errors import LiveSynthError, MissingDependencyError
from live_synth.files import one_line

INSTALL_HINT = "pip install 'live-synth[cluster]'"
MAX_REPLACEMENTS = 4  # per worker slot, over a run: past that, the workers die of something other than their files
POLL_S = 0.5  # how often the scheduling loop wakes up with nothing finished (to notice Ctrl-C promptly)


def import_ray():
    """Ray, or the one-line install hint."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(f"running on Ray needs the cluster extra: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class PoolOptions:
    address: str | None = None  # None: a local Ray started here; else an existing cluster's address
    workers: int = 0  # actors; 0: one per `cpus_per_worker` CPUs of the cluster
    cpus_per_worker: float = 1.0
    retries: int = 2  # times an item is given to another worker after its worker died
    local_cpus: int | None = None  # CPUs of a local Ray (None: all of this machine's)


@dataclass
class Outcome:
    key: object
    ok: bool
    value: object = None  # the job's return value when ok
    error: str = ""  # one line when not ok
    kind: str = ""  # "input" (the job's LiveSynthError), "exception" (a bug), "worker" (its worker died too often)
    attempts: int = 1
    node: str = ""  # Ray node id and worker process id of the attempt that finished
    pid: int = 0


class _Worker:
    """The actor: builds the job once (`setup`), then calls it per item. Never raises for an item's failure."""

    def __init__(self, factory: Callable):
        self.factory, self.job = factory, None

    def setup(self) -> tuple[str, dict, str, int]:
        try:
            self.job = self.factory()
            return "ok", self.job.describe(), *_where()
        except LiveSynthError as error:
            return "error", {"error": one_line(error)}, *_where()

    def run(self, payload) -> tuple[str, object, str, int]:
        try:
            return "ok", self.job(payload), *_where()
        except LiveSynthError as error:
            return "input", one_line(error), *_where()
        except Exception as error:  # noqa: BLE001 - one item's bug must not stop a corpus; it is reported by type
            return "exception", f"{type(error).__name__}: {one_line(error)}", *_where()


@contextlib.contextmanager
def _signals_held():
    """SIGINT, SIGTERM and SIGHUP ignored for the block (main thread only), then as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = [n for n in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if n is not None]
    saved = {n: signal.signal(n, signal.SIG_IGN) for n in numbers}
    try:
        yield
    finally:
        for n, handler in saved.items():
            signal.signal(n, handler)


def _where() -> tuple[str, int]:
    import ray

    return ray.get_runtime_context().get_node_id(), os.getpid()


@dataclass
class _Slot:
    actor: object
    item: tuple | None = None  # (key, payload, attempts) while busy
    ref: object = None
    loading: object = None  # a replacement's setup() while it loads


@dataclass
class Pool:
    factory: Callable  # picklable, importable on every node; returns a job with describe() and __call__(payload)
    options: PoolOptions = field(default_factory=PoolOptions)
    started_ray: bool = False
    slots: list = field(default_factory=list)
    replaced: int = 0  # workers started to replace dead ones

    def __enter__(self) -> Pool:
        ray = import_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
        if not ray.is_initialized():
            o = self.options
            # A local Ray as big as asked for: --workers beyond this machine's CPUs share them rather than wait forever.
            cpus = o.local_cpus or max(os.cpu_count() or 1, int(o.workers * o.cpus_per_worker + 0.999))
            kwargs = ({"address": "local", "num_cpus": cpus, "include_dashboard": False}
                      if o.address is None else {"address": o.address})  # fmt: skip
            try:
                ray.init(log_to_driver=False, configure_logging=False, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise LiveSynthError(f"cannot start or join Ray at {o.address or 'local'}: {one_line(error)}") from None
            self.started_ray = True
        return self

    def __exit__(self, *exc) -> None:
        import ray

        with _signals_held():  # a second Ctrl-C must not leave workers or a local Ray behind
            for slot in self.slots:
                ray.kill(slot.actor, no_restart=True)
            self.slots = []
            if self.started_ray:
                ray.shutdown()

    def worker_count(self) -> int:
        import ray

        if self.options.workers:
            return self.options.workers
        return max(1, int(ray.cluster_resources().get("CPU", 1) // self.options.cpus_per_worker))

    def _actor(self):
        import ray

        remote = ray.remote(num_cpus=self.options.cpus_per_worker, max_restarts=0, max_task_retries=0)(_Worker)
        return remote.remote(self.factory)

    def start(self) -> dict:
        """Start the workers and wait until each has loaded its job; what they loaded (they must agree)."""
        self.slots = [_Slot(self._actor()) for _ in range(self.worker_count())]
        infos = [self._setup(slot) for slot in self.slots]
        for info in infos[1:]:
            if info != infos[0]:
                raise LiveSynthError(f"workers loaded different jobs: {infos[0]} vs {info} (same version and "
                                     "model files on every node?)")
        return infos[0]

    def _setup(self, slot: _Slot, tries: int = 3) -> dict:
        import ray

        for _ in range(tries):
            try:
                status, info, _, _ = ray.get(slot.actor.setup.remote())
            except ray.exceptions.RayTaskError:  # a bug while loading: its traceback
                raise
            except ray.exceptions.RayError:  # the worker died while loading: another one
                slot.actor = self._actor()
                continue
            if status != "ok":
                raise LiveSynthError(info["error"])
            return info
        raise LiveSynthError(f"a worker died {tries} times while loading its job (out of memory?)")

    def run(self, items: Iterable[tuple[object, object]]) -> Iterator[Outcome]:
        """(key, payload) -> Outcome per item, as they finish; items are drawn lazily, one per idle worker. A
        replacement worker loads while the others go on working."""
        import ray

        source, retry = iter(items), collections.deque()
        exhausted = False
        while True:
            for slot in self.slots:
                if slot.item is None and slot.loading is None and (retry or not exhausted):
                    item = retry.popleft() if retry else next(source, None)
                    if item is None:
                        exhausted = True
                        continue
                    slot.item = item if len(item) == 3 else (*item, 1)
                    slot.ref = slot.actor.run.remote(slot.item[1])
            running = {slot.ref: slot for slot in self.slots if slot.item is not None}
            if not running and (exhausted and not retry):
                return
            loading = {slot.loading: slot for slot in self.slots if slot.loading is not None}
            done, _ = ray.wait([*running, *loading], num_returns=1, timeout=POLL_S)
            for ref in done:
                if ref in loading:
                    self._loaded(loading[ref])
                    continue
                outcome = self._finish(running[ref], ref, retry)
                if outcome is not None:
                    yield outcome

    def _finish(self, slot: _Slot, ref, retry: collections.deque) -> Outcome | None:
        import ray

        key, payload, attempts = slot.item
        slot.item = slot.ref = None
        try:
            status, value, node, pid = ray.get(ref)
        except ray.exceptions.RayTaskError:  # not the job's error (run() catches those): a bug of the pool
            raise
        except ray.exceptions.RayError as error:  # the worker died with the item: replace it, retry the item
            self._replace(slot)
            if attempts <= self.options.retries:
                retry.appendleft((key, payload, attempts + 1))
                return None
            return Outcome(key, False, error=f"its worker died {attempts} time{'s' * (attempts > 1)} (last: "
                           f"{type(error).__name__})", kind="worker", attempts=attempts)  # fmt: skip
        if status == "ok":
            return Outcome(key, True, value, attempts=attempts, node=node, pid=pid)
        return Outcome(key, False, error=value, kind=status, attempts=attempts, node=node, pid=pid)

    def _replace(self, slot: _Slot) -> None:
        slot.actor = self._actor()
        slot.loading = slot.actor.setup.remote()
        self.replaced += 1

    def _loaded(self, slot: _Slot) -> None:
        """A replacement worker finished loading (or died doing so: another one, a bounded number of times)."""
        import ray

        ref, slot.loading = slot.loading, None
        try:
            status, info, _, _ = ray.get(ref)
        except ray.exceptions.RayTaskError:
            raise
        except ray.exceptions.RayError:
            if self.replaced > MAX_REPLACEMENTS * len(self.slots):
                raise LiveSynthError(f"workers keep dying ({self.replaced} replaced): out of memory?") from None
            self._replace(slot)
            return
        if status != "ok":
            raise LiveSynthError(info["error"])
