"""A long-running Python process picks up a changed schema file without a restart
(`schemas.reload_interval`, checked on the flush thread): a field that landed in `other` gets
its own column for the events that follow; a change that is not additive is refused, told to
on_error (outcome `reload_refused`) and counted, and the schemas in use stay."""

from __future__ import annotations

import json
import os

from conftest import SCHEMA, settled, wait_for

import evlog


def write_schema(env, fields) -> None:
    """Replaces events/t.json whole (a new file renamed over the old one, as a deploy does)."""
    tmp = env.schemas / "events" / ".t.json.tmp"
    tmp.write_text(json.dumps(fields))
    os.replace(tmp, env.schemas / "events" / "t.json")


def reloads(c, result: str) -> float:
    return c.stats()[f'evlog_config_reloads_total{{result="{result}"}}']


def test_a_column_added_to_the_schema_file_is_used_without_a_restart(env):
    summaries = []
    c = evlog.Client(on_error=summaries.append, **env.settings(schemas={"reload_interval": "20ms"}))
    assert reloads(c, "ok") == 0 and reloads(c, "error") == 0
    seq = 0

    def log_one():
        nonlocal seq
        assert c.log("events", "t", {"seq": seq, "coupon": f"C{seq}"})
        seq += 1

    for _ in range(20):
        log_one()
    assert c.flush(10)
    with_coupon = SCHEMA + [{"name": "coupon", "type": "STRING"}]
    write_schema(env, with_coupon)

    def reloaded():
        log_one()
        return reloads(c, "ok") == 1

    wait_for(reloaded, what="the changed schema file to be picked up")
    first_after = seq
    for _ in range(20):
        log_one()
    assert c.flush(10)

    # Not additive: `seq` becomes a STRING. Refused, told, counted; the old schema stays.
    write_schema(env, [f if f["name"] != "seq" else {**f, "type": "STRING"} for f in with_coupon])

    def refused():
        log_one()
        return reloads(c, "error") == 1

    wait_for(refused, what="the incompatible change to be refused")
    assert c.flush(10)
    s = c.stats()
    assert settled(s) and s["evlog_events_delivered_total"] == seq, s

    rows = env.rows()
    assert sorted(int(r["seq"]) for r in rows) == list(range(seq))
    for r in rows:
        n = int(r["seq"])
        other = json.loads(r.get("other") or "{}")
        if n < 20:
            assert other["coupon"] == f"C{n}" and "coupon" not in r, r
        elif n >= first_after:
            assert r["coupon"] == f"C{n}" and "coupon" not in other, r
    wait_for(
        lambda: any(x["outcome"] == "reload_refused" for x in summaries),
        what="on_error to hear of the refusal",
    )
    told = [x for x in summaries if x["outcome"] == "reload_refused"]
    assert len(told) == 1 and told[0]["reason"] == "schema_reload" and told[0]["count"] == 0
    assert 'events.t: column "seq"' in told[0]["message"], told[0]
    c.shutdown(5)
