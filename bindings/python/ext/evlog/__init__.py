"""evlog: log analytics events at the cost of a function call.

``evlog.log(namespace, type, event)`` converts the event to JSON in Rust, checks the envelope and
queues it; a background thread validates events against BigQuery JSON schemas and delivers them
to the configured sink. See ``__init__.pyi`` for the API and its contracts.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import threading
import time
import weakref

from . import _evlog
from ._evlog import (
    ConfigError,
    EvlogError,
    InvalidEvent,
    SchemaError,
    SinkError,
    __version__,
    flush,
    get_client,
    log,
    shutdown,
    stats,
    to_json,
)

__all__ = [
    "Client",
    "ConfigError",
    "EvlogError",
    "InvalidEvent",
    "SchemaError",
    "SinkError",
    "__version__",
    "configure",
    "flush",
    "get_client",
    "log",
    "shutdown",
    "stats",
    "to_json",
]

_logger = logging.getLogger("evlog")

#: Seconds the interpreter-exit hook waits for delivery; set by ``configure(atexit_timeout=...)``.
_atexit_timeout = 5.0

# Every live client, so the at-fork and at-exit hooks reach them all.
_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()
_clients_lock = threading.Lock()

# This process's on_error dispatcher threads, joined at exit.
_dispatchers: "list[threading.Thread]" = []


class Client(_evlog.Client):
    """A client with its own pipeline (queue, flush thread, sink); see ``__init__.pyi``."""

    def __init__(self, path=None, *, on_error=None, **settings) -> None:
        # The pipeline was built by the Rust constructor; only register for the fork/exit hooks.
        with _clients_lock:
            _clients.add(self)


def configure(path=None, *, on_error=None, atexit_timeout=None, **settings) -> Client:
    """Builds a client from ``path`` or ``settings`` and makes it the module default.

    The previous default client (if any) is shut down, delivering what it holds.
    """
    global _atexit_timeout
    client = Client(path, on_error=on_error, **settings)
    if atexit_timeout is not None:
        _atexit_timeout = float(atexit_timeout)
    old = _evlog.swap_client(client)
    if old is not None and old is not client:
        old.shutdown(_atexit_timeout)
    return client


def _start_dispatcher(client: Client) -> None:
    """Starts this process's thread that calls ``client.on_error`` (called by the first log())."""
    t = threading.Thread(
        target=_dispatch_loop,
        args=(weakref.ref(client), client._error_feed()),
        name="evlog-on-error",
        daemon=True,
    )
    with _clients_lock:
        _dispatchers[:] = [d for d in _dispatchers if d.is_alive()]
        _dispatchers.append(t)
    t.start()


def _dispatch_loop(ref, feed) -> None:
    # The wait is select() here in Python, never inside Rust: every feed method returns at once
    # and keeps the GIL. A daemon thread that retakes the GIL inside a pyo3 call while the
    # interpreter finalizes is ended by a forced unwind that pyo3's catch_unwind swallows, and
    # glibc aborts the process ("FATAL: exception not rethrown"). The exit hook also stops and
    # joins this thread before finalization.
    try:
        while True:
            # Read before take(): a summary queued before the stop is then surely taken.
            stopping = feed.stopping
            summaries = feed.take()
            if summaries:
                client = ref()
                if client is None:
                    return
                callback = client.on_error
                del client
                for summary in summaries:
                    try:
                        callback(summary)
                    except Exception:  # never propagate into our threads
                        _logger.exception("evlog on_error callback raised")
                continue
            if stopping:
                return
            select.select([feed], [], [])
    finally:
        # Whatever arrives from now on is counted in evlog_on_error_missed_total.
        feed.close()


def _after_fork_child() -> None:
    # The parent's dispatcher thread does not exist here; the child's first log() starts one.
    # The pipeline itself notices the fork on its own (fresh queue and flush thread).
    # A lock or list held by a thread of the parent would never be released here.
    global _dispatchers, _clients_lock
    _dispatchers = []
    _clients_lock = threading.Lock()
    for c in list(_clients):
        c._after_fork_child()


os.register_at_fork(after_in_child=_after_fork_child)


def _at_exit() -> None:
    # Delivers what is queued before the interpreter goes away, bounded by _atexit_timeout.
    # The default client may have been created from the environment by a first log().
    # Each shutdown stops that client's on_error dispatcher, which then delivers the summaries
    # still queued and exits; joining it here means no evlog thread is left when finalization
    # ends daemon threads.
    deadline = time.monotonic() + _atexit_timeout
    try:
        shutdown(_atexit_timeout)
    except Exception:
        _logger.exception("evlog: shutdown at exit failed")
    for c in list(_clients):
        try:
            if not c.closed:
                c.shutdown(_atexit_timeout)
        except Exception:
            _logger.exception("evlog: shutdown at exit failed")
    _join_dispatchers(max(deadline - time.monotonic(), 1.0))


def _join_dispatchers(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for t in list(_dispatchers):
        t.join(max(deadline - time.monotonic(), 0.0))
        if t.is_alive():
            _logger.warning(
                "evlog: the on_error callback did not return within %.1fs at exit; "
                "the summaries it has not taken are not delivered",
                timeout,
            )


atexit.register(_at_exit)
