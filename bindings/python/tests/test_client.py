"""Client lifecycle, configuration, counters, on_error, threads."""

from __future__ import annotations

import logging
import threading

import pytest
from conftest import settled, wait_for

import evlog


def test_configuration_errors_name_the_key(env, tmp_path):
    with pytest.raises(evlog.ConfigError, match="bogus"):
        evlog.Client(**env.settings(batch={"bogus": 1}))
    with pytest.raises(evlog.ConfigError, match="max_rows"):
        evlog.Client(**env.settings(batch={"max_rows": 0}))
    with pytest.raises(evlog.ConfigError, match="not both"):
        evlog.Client(str(tmp_path / "x.toml"), sink={"kind": "null"})
    with pytest.raises(evlog.ConfigError, match="cannot read config file"):
        evlog.Client(str(tmp_path / "missing.toml"))
    with pytest.raises(evlog.ConfigError, match="callable"):
        evlog.Client(on_error=42, **env.settings())


def test_missing_schema_directory_names_key_absolute_path_and_fix(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(evlog.ConfigError) as e:
        evlog.Client(**env.settings(schemas={"dir": "nowhere"}))
    msg = str(e.value)
    assert msg.startswith("schemas.dir: cannot read the schema directory "), msg
    assert f"{tmp_path / 'nowhere'}: No such file or directory" in msg, msg
    assert "EVLOG_SCHEMAS_DIR" in msg and 'evlog.configure(schemas={"dir"' in msg, msg
    assert "forward" not in msg, msg
    # Forward mode converts events to rows in this process too, so it needs the files: say so.
    with pytest.raises(evlog.ConfigError, match='sink.kind = "forward" the SDK still converts'):
        evlog.Client(
            **env.settings(
                sink={"kind": "forward", "forward": {"url": "http://127.0.0.1:9"}},
                schemas={"dir": "nowhere"},
            )
        )


# ---- one exception class per family of core errors ------------------------------------------


def test_a_configuration_that_breaks_a_rule_is_a_config_error_not_a_subclass(env, tmp_path):
    for settings in (
        env.settings(batch={"bogus": 1}),
        env.settings(batch={"max_rows": 0}),
        env.settings(schemas={"dir": str(tmp_path / "nowhere")}),
    ):
        with pytest.raises(evlog.ConfigError) as e:
            evlog.Client(**settings)
        # The missing schema directory too: no schema was read, the fix is the setting.
        assert type(e.value) is evlog.ConfigError, (type(e.value), e.value)


def test_a_malformed_schema_file_is_a_schema_error(env):
    bad = env.schemas / "events" / "bad.json"
    bad.write_text('[{"name": "x", "type": "NOPE"}]')
    with pytest.raises(evlog.SchemaError, match=r'bad\.json: field "x"') as e:
        evlog.Client(**env.settings())
    # Earlier versions raised ConfigError here: code that catches it keeps working.
    assert isinstance(e.value, evlog.ConfigError)
    bad.write_text("[{")
    with pytest.raises(evlog.SchemaError, match=r"bad\.json: invalid JSON"):
        evlog.Client(**env.settings())
    with pytest.raises(evlog.ConfigError, match=r"bad\.json"):
        evlog.configure(**env.settings())


def test_a_sink_that_cannot_be_set_up_is_a_sink_error(env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(evlog.SinkError, match="a-file") as e:
        evlog.Client(**env.settings(sink={"file": {"dir": str(blocker / "out")}}))
    assert isinstance(e.value, evlog.ConfigError)


def test_a_refused_event_is_invalid_event_and_transport_problems_raise_nothing(env):
    c = evlog.Client(**env.settings())
    with pytest.raises(evlog.InvalidEvent, match='"namespace"') as e:
        c.log("bad ns", "t", {})
    assert not isinstance(e.value, evlog.ConfigError)
    c.shutdown(5)
    assert c.log("events", "t", {"n": 1}) is False


DROP_REASONS = [
    "invalid_envelope",
    "queue_full",
    "shut_down",
    "shutdown_deadline",
    "sink_error",
    "spool_full",
    "dead_letter_failed",
    "unrouted",
]
REJECT_REASONS = [
    "bigquery_invalid",
    "duplicate_field",
    "invalid_json",
    "invalid_value",
    "missing_required",
    "not_an_object",
    "opensearch_refused",
    "out_of_range",
    "too_long",
    "unknown_field",
    "unknown_table",
    "wrong_destination",
]


TRANSFORM_SKIP_REASONS = [
    "index_out_of_range",
    "not_a_string",
    "not_an_array",
    "not_an_object",
]


def test_stats_hold_every_family_and_reason_from_the_start(env):
    with evlog.Client(**env.settings()) as c:
        s = c.stats()
        for name in (
            "evlog_events_accepted_total",
            "evlog_events_delivered_total",
            "evlog_events_retried_total",
            "evlog_events_spooled_total",
            "evlog_queue_events",
            "evlog_dead_letters_waiting",
            "evlog_on_error_missed_total",
        ):
            assert s[name] == 0, name
        for r in DROP_REASONS:
            assert s[f'evlog_events_dropped_total{{reason="{r}"}}'] == 0, r
        for r in REJECT_REASONS:
            assert s[f'evlog_events_rejected_total{{reason="{r}"}}'] == 0, r
        for r in TRANSFORM_SKIP_REASONS:
            assert s[f'evlog_transform_skipped_total{{reason="{r}"}}'] == 0, r
        for r in ("ok", "error"):
            assert s[f'evlog_config_reloads_total{{result="{r}"}}'] == 0, r
        # Sink errors are listed per (sink, kind) seen: none yet.
        assert not [k for k in s if k.startswith("evlog_sink_errors_total")], s
        assert len(s) == 7 + len(DROP_REASONS) + len(REJECT_REASONS) + len(
            TRANSFORM_SKIP_REASONS
        ) + 2, sorted(s)
        assert c.log("events", "nope", {})
        assert c.flush(10)
        s = c.stats()
        assert s['evlog_events_rejected_total{reason="unknown_table"}'] == 1
        assert s['evlog_events_dropped_total{reason="queue_full"}'] == 0


def test_config_file_path(env, tmp_path):
    cfg = tmp_path / "evlog.toml"
    cfg.write_text(
        f'[sink.file]\ndir = "{env.out}"\n[schemas]\ndir = "{env.schemas}"\n'
        '[batch]\nmax_age = "20ms"\n'
    )
    with evlog.Client(cfg) as c:
        assert c.log("events", "t", {"n": 1})
        assert c.flush(10)
    assert [r["n"] for r in env.rows()] == [1]
    assert c.closed


def test_shutdown_then_log_returns_false_and_counts(env):
    c = evlog.Client(**env.settings())
    assert c.log("events", "t", {"n": 1})
    assert c.shutdown(10)
    assert c.log("events", "t", {"n": 2}) is False
    s = c.stats()
    assert s['evlog_events_dropped_total{reason="shut_down"}'] == 1
    assert s["evlog_events_delivered_total"] == 1
    assert settled(s)
    assert [r["n"] for r in env.rows()] == [1]


def test_queue_full_returns_false_never_raises_and_reconciles(env):
    summaries = []
    c = evlog.Client(on_error=summaries.append, **env.settings(queue={"capacity": 2}))
    results = [c.log("events", "t", {"n": i}) for i in range(20_000)]
    assert c.flush(30)
    s = c.stats()
    refused = results.count(False)
    assert refused == s.get('evlog_events_dropped_total{reason="queue_full"}', 0)
    assert refused > 0, "a 2-slot queue under 20k back-to-back logs must overflow"
    assert s["evlog_events_delivered_total"] == results.count(True) == len(env.rows())
    assert settled(s)

    def reported():
        return sum(
            x["count"] for x in summaries if (x["outcome"], x["reason"]) == ("dropped", "queue_full")
        )

    wait_for(lambda: reported() == refused, what="on_error to report every queue_full drop")
    c.shutdown(5)


def test_stats_uses_design_counter_names(env):
    c = evlog.Client(**env.settings())
    c.log("events", "t", {"n": 1})
    c.flush(10)
    s = c.stats()
    for name in [
        "evlog_events_accepted_total",
        "evlog_events_delivered_total",
        "evlog_events_retried_total",
        "evlog_events_spooled_total",
        "evlog_queue_events",
    ]:
        assert isinstance(s[name], int)
    assert s["evlog_events_accepted_total"] == s["evlog_events_delivered_total"] == 1
    c.shutdown(5)


def test_on_error_gets_rejected_summaries_off_the_hot_path(env):
    got = []
    done = threading.Event()

    def on_error(summary):
        got.append((summary, threading.current_thread().name))
        done.set()

    c = evlog.Client(on_error=on_error, **env.settings())
    assert c.log("events", "no_such_table", {"n": 1})
    assert c.log("events", "no_such_table", {"n": 2})
    assert c.flush(10)
    assert done.wait(10)
    wait_for(lambda: sum(s["count"] for s, _ in got) == 2, what="both rejections reported")
    summary, thread = got[0]
    assert summary["outcome"] == "rejected"
    assert summary["reason"] == "unknown_table"
    assert "no_such_table" in summary["message"]
    assert thread == "evlog-on-error"
    c.shutdown(5)


def test_on_error_exceptions_are_logged_not_propagated(env, caplog):
    calls = []

    def on_error(summary):
        calls.append(summary)
        raise RuntimeError("callback bug")

    c = evlog.Client(on_error=on_error, **env.settings())
    with caplog.at_level(logging.ERROR, logger="evlog"):
        c.log("events", "nope", {"n": 1})
        assert c.flush(10)
        wait_for(lambda: calls, what="first callback")
        # The dispatcher survived the exception: a later rejection is still reported.
        c.log("events", "nope", {"n": 2})
        assert c.flush(10)
        wait_for(lambda: len(calls) >= 2, what="second callback")
        wait_for(
            lambda: any("on_error callback raised" in r.message for r in caplog.records),
            what="the exception logged",
        )
    assert c.log("events", "t", {"n": 3}), "logging keeps working"
    c.shutdown(5)


def test_eight_threads_times_20k_events_all_land_once(env):
    # The queue holds the whole burst, so "all land" does not depend on the flush thread's pace.
    c = evlog.Client(**env.settings(batch={"max_rows": 5000}, queue={"capacity": 200_000}))
    threads, per = 8, 20_000
    refused = []
    start = threading.Barrier(threads)

    def work(t):
        start.wait()
        bad = 0
        for i in range(per):
            if not c.log("events", "t", {"worker": t, "seq": i, "s": "x"}, id=f"{t}-{i}"):
                bad += 1
        refused.append(bad)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert c.flush(60)
    assert refused == [0] * threads
    rows = env.rows()
    ids = [r["event_id"] for r in rows]
    assert len(ids) == threads * per
    assert len(set(ids)) == threads * per
    s = c.stats()
    assert s["evlog_events_accepted_total"] == threads * per
    assert s["evlog_events_delivered_total"] == threads * per
    assert settled(s)
    c.shutdown(5)


def test_flush_releases_the_gil(env):
    # A flush waits on the flush thread; another Python thread must run meanwhile.
    c = evlog.Client(**env.settings(batch={"max_age": "10s", "max_rows": 50000}))
    for i in range(50_000):
        c.log("events", "t", {"n": i, "s": "y" * 200})
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)

    t = threading.Thread(target=spin)
    t.start()
    assert c.flush(60)
    stop.set()
    t.join()
    assert ticks, "the other thread never ran during flush()"
    c.shutdown(5)


def test_module_level_default_client(env):
    c = evlog.configure(**env.settings())
    assert evlog.get_client() is c
    assert evlog.log("events", "t", {"n": 11})
    assert evlog.flush(10)
    assert evlog.stats()["evlog_events_delivered_total"] == 1
    c2 = evlog.configure(**env.settings())
    assert c.closed, "the replaced default is shut down"
    assert evlog.log("events", "t", {"n": 12})
    assert evlog.shutdown(10)
    assert c2.closed
    assert sorted(r["n"] for r in env.rows()) == [11, 12]
