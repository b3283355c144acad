"""evlog: log analytics events at the cost of a function call.

``evlog.log(namespace, type, event)`` converts the event to JSON in Rust, checks the envelope and
queues it; a background thread validates events against BigQuery JSON schemas and delivers them
to the configured sink. See ``__init__.pyi`` for the API and its contracts.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref

from . import _evlog
from ._evlog import (
    ConfigError,
    EvlogError,
    InvalidEvent,
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
        target=_dispatch_loop, args=(weakref.ref(client),), name="evlog-on-error", daemon=True
    )
    t.start()


def _dispatch_loop(ref) -> None:
    pid = os.getpid()
    while True:
        client = ref()
        if client is None or os.getpid() != pid or not client._dispatcher_current():
            return
        summary = client._next_error(0.2)
        if summary is None:
            if client.closed:
                return
            continue
        callback = client.on_error
        del client
        try:
            callback(summary)
        except Exception:  # never propagate into our threads
            _logger.exception("evlog on_error callback raised")


def _after_fork_child() -> None:
    # The parent's dispatcher thread does not exist here; the child's first log() starts one.
    # The pipeline itself notices the fork on its own (fresh queue and flush thread).
    for c in list(_clients):
        c._after_fork_child()


os.register_at_fork(after_in_child=_after_fork_child)


def _at_exit() -> None:
    # Delivers what is queued before the interpreter goes away, bounded by _atexit_timeout.
    # The default client may have been created from the environment by a first log().
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


atexit.register(_at_exit)
