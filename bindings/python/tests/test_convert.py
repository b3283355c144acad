"""Every supported Python type → JSON, and a clear InvalidEvent for everything else."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import enum
import json
import uuid
from collections.abc import Mapping

import pytest

import evlog

UTC = dt.timezone.utc


class Color(enum.IntEnum):
    RED = 7


class Name(str, enum.Enum):
    ADA = "ada"


class Frozen(Mapping):
    def __init__(self, d):
        self._d = d

    def __getitem__(self, k):
        return self._d[k]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)


def conv(value):
    """The JSON value `value` becomes inside an event."""
    text = evlog.to_json({"v": value})
    return json.loads(text)["v"], text


@pytest.mark.parametrize(
    "value, expected",
    [
        ("plain", "plain"),
        ('quote " back \\ nl \n tab \t bell \x07', 'quote " back \\ nl \n tab \t bell \x07'),
        ("é ✓ 🎉 中文", "é ✓ 🎉 中文"),
        (Name.ADA, "ada"),
        (0, 0),
        (-42, -42),
        (2**63 - 1, 2**63 - 1),
        (-(2**63), -(2**63)),
        (2**64, 2**64),
        (-(2**64) - 1, -(2**64) - 1),
        (10**40 + 7, 10**40 + 7),
        (Color.RED, 7),
        (True, True),
        (False, False),
        (None, None),
        (1.5, 1.5),
        (0.1, 0.1),
        (-2.5e-300, -2.5e-300),
        (1e300, 1e300),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        ([1, "a", None], [1, "a", None]),
        ((1, 2), [1, 2]),
        (frozenset([3]), [3]),
        ({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 2}]}}),
        (collections.OrderedDict(z=1, a=2), {"z": 1, "a": 2}),
        (Frozen({"k": "v"}), {"k": "v"}),
        (dt.datetime(2024, 5, 6, 7, 8, 9, 123456), "2024-05-06T07:08:09.123456Z"),
        (
            dt.datetime(2024, 5, 6, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-05-05T23:00:00.000000Z",
        ),
        (
            dt.datetime(2024, 5, 6, 1, 0, tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30))),
            "2024-05-06T06:30:00.000000Z",
        ),
        (dt.datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000000Z"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.date(1, 1, 1), "0001-01-01"),
        (decimal.Decimal("9.99"), "9.99"),
        (decimal.Decimal("-0.000000001"), "-0.000000001"),
        (decimal.Decimal("1E+3"), "1000"),
        (decimal.Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (decimal.Decimal("NaN"), "NaN"),
        (b"", ""),
        (b"\x00\xff\x10", "AP8Q"),
        (bytearray(b"foob"), "Zm9vYg=="),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
    ],
    ids=repr,
)
def test_value_converts(value, expected):
    got, _ = conv(value)
    assert got == expected


def test_big_ints_are_exact_json_number_text():
    _, text = conv(2**100)
    assert text == '{"v":1267650600228229401496703205376}'


def test_set_becomes_array_of_its_members():
    got, _ = conv({1, 2, 3})
    assert sorted(got) == [1, 2, 3]


def test_float_text_round_trips_bit_exact():
    for f in [0.1 + 0.2, 1 / 3, 5e-324, 1.7976931348623157e308]:
        _, text = conv(f)
        assert float(text[len('{"v":') : -1]) == f


@pytest.mark.parametrize(
    "event, path, words",
    [
        ({"a": object()}, "event.a", "type object is not supported"),
        ({"a": {"b": [1, 2, 1j]}}, "event.a.b[2]", "type complex"),
        ({1: "x"}, "event", "key 1 is a int; keys must be str"),
        ({"a": {(1, 2): "x"}}, "event.a", "key (1, 2) is a tuple"),
        ({"a": dt.time(1, 2)}, "event.a", "type time"),
    ],
)
def test_unsupported_values_name_field_and_type(event, path, words):
    with pytest.raises(evlog.InvalidEvent) as e:
        evlog.to_json(event)
    msg = str(e.value)
    assert f'"{path}"' in msg and words in msg, msg


@pytest.mark.parametrize("event", [[1, 2], "text", 5, None])
def test_event_must_be_a_mapping(event):
    with pytest.raises(evlog.InvalidEvent, match='"event": must be a mapping'):
        evlog.to_json(event)


def test_depth_limit_and_cycles_are_refused():
    deep = {}
    cur = deep
    for _ in range(70):
        cur["x"] = {}
        cur = cur["x"]
    with pytest.raises(evlog.InvalidEvent, match="nested deeper than 64"):
        evlog.to_json(deep)
    loop = []
    loop.append(loop)
    with pytest.raises(evlog.InvalidEvent, match="nested deeper than 64"):
        evlog.to_json({"l": loop})
    ok = {}
    cur = ok
    for _ in range(60):
        cur["x"] = {}
        cur = cur["x"]
    assert evlog.to_json(ok).count("{") == 61


def test_exception_hierarchy():
    assert issubclass(evlog.InvalidEvent, evlog.EvlogError)
    assert issubclass(evlog.ConfigError, evlog.EvlogError)
    assert issubclass(evlog.EvlogError, Exception)
    assert evlog.InvalidEvent.__module__ == "evlog"
    # Schema and sink errors come from configure()/Client() and were ConfigError before.
    assert issubclass(evlog.SchemaError, evlog.ConfigError)
    assert issubclass(evlog.SinkError, evlog.ConfigError)
    assert not issubclass(evlog.InvalidEvent, evlog.ConfigError)
    for cls in (evlog.ConfigError, evlog.SchemaError, evlog.SinkError):
        assert cls.__module__ == "evlog"


# ---- the envelope, through a real client --------------------------------------------------


@pytest.fixture
def client(env):
    c = evlog.Client(**env.settings())
    yield c
    c.shutdown(5)


@pytest.mark.parametrize(
    "ns, ty, kw, field",
    [
        ("bad ns", "t", {}, "namespace"),
        ("", "t", {}, "namespace"),
        ("events", "a/b", {}, "type"),
        ("events", "t", {"id": "x" * 129}, "id"),
        ("events", "t", {"id": "a\nb"}, "id"),
        ("events", "t", {"time": True}, "time"),
        ("events", "t", {"time": "2024-01-01"}, "time"),
        ("events", "t", {"time": 10**20}, "time"),
        ("events", "t", {"time": 1e30}, "time"),
        ("events", "t", {"time": object()}, "time"),
        (5, "t", {}, "namespace"),
        ("events", None, {}, "type"),
        ("events", "t", {"id": 5}, "id"),
    ],
)
def test_bad_envelope_raises_invalid_event_naming_the_field(client, ns, ty, kw, field):
    with pytest.raises(evlog.InvalidEvent, match=f'"{field}"'):
        client.log(ns, ty, {"n": 1}, **kw)


def test_refused_events_are_counted_as_dropped(client):
    # Refused by core's envelope rules, by conversion, by the time and id arguments.
    for bad in [
        lambda: client.log("bad ns", "t", {}),
        lambda: client.log("events", "t", {"a": object()}),
        lambda: client.log("events", "t", {1: 1}),
        lambda: client.log("events", "t", {}, time="yesterday"),
        lambda: client.log("events", "t", {}, id=7),
    ]:
        with pytest.raises(evlog.InvalidEvent):
            bad()
    s = client.stats()
    assert s["evlog_events_accepted_total"] == 5
    assert s['evlog_events_dropped_total{reason="invalid_envelope"}'] == 5


def test_values_land_typed_in_the_file_sink(env, client):
    assert client.log(
        "events",
        "t",
        {
            "n": 2**40,
            "s": "héllo\n",
            "ts": dt.datetime(2024, 5, 6, 9, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "day": dt.date(2024, 1, 31),
            "amount": decimal.Decimal("9.99"),
            "raw": b"\x00\xff",
            "f": float("inf"),
            "u": uuid.UUID(int=5),
            "extra": {"k": [1, 2]},
        },
        time=dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
        id="row-1",
    )
    assert client.flush(10)
    (row,) = env.rows()
    assert row["n"] == 2**40
    assert row["s"] == "héllo\n"
    assert row["ts"] == "2024-05-06T07:08:09.000000Z"
    assert row["day"] == "2024-01-31"
    assert row["amount"] == "9.99"
    assert row["raw"] == "AP8="
    assert row["f"] == "Infinity"
    assert row["u"] == "00000000-0000-0000-0000-000000000005"
    assert json.loads(row["other"]) == {"extra": {"k": [1, 2]}}
    assert row["event_id"] == "row-1"
    assert row["event_time"] == "2024-01-01T12:00:00.000000Z"


@pytest.mark.parametrize(
    "time, expected",
    [
        (1704110400000, "2024-01-01T12:00:00.000000Z"),
        (1704110400000.5, "2024-01-01T12:00:00.000500Z"),
        (dt.datetime(2024, 1, 1, 12), "2024-01-01T12:00:00.000000Z"),
    ],
)
def test_time_accepts_epoch_millis_and_datetime(env, client, time, expected):
    assert client.log("events", "t", {"n": 1}, time=time)
    assert client.flush(10)
    (row,) = env.rows()
    assert row["event_time"] == expected


def test_big_int_beyond_int64_is_rejected_by_the_column_not_by_log(env, client):
    assert client.log("events", "t", {"n": 2**64}, id="big")
    assert client.flush(10)
    assert env.rows() == []
    (dead,) = env.rejected()
    assert "n" in json.dumps(dead) and "18446744073709551616" in json.dumps(dead)
    s = client.stats()
    assert sum(v for k, v in s.items() if k.startswith("evlog_events_rejected_total")) == 1


@pytest.mark.parametrize(
    "value",
    [
        2**64,
        -(2**63) - 1,
        10**40,
        -(10**40),
        123456789012345678901234567890,
        2**1000,
        [2**64, -(2**63) - 1, {"deep": [10**40, {"x": -(2**200)}]}],
        {"b": 2**70, "a": [1, 2**65], "n": None, "s": "caf\u00e9 \"q\" \\ \n"},
    ],
    ids=lambda v: repr(v)[:40],
)
def test_unknown_fields_keep_exact_digits_in_other(env, client, value):
    # The binding writes Python ints of any size as their decimal digits; core keeps the text of
    # fields the schema does not name, so `other` holds exactly what json.dumps writes.
    assert client.log("events", "t", {"n": 1, "big": value, "nested": {"v": value}})
    assert client.flush(10)
    (row,) = env.rows()
    want = json.dumps({"big": value, "nested": {"v": value}}, separators=(",", ":"), ensure_ascii=False)
    assert row["other"] == want
    assert json.loads(row["other"]) == {"big": value, "nested": {"v": value}}


def test_floats_in_other_read_back_as_the_same_float(env, client):
    values = [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -0.0, 1e16, 2.0**70]
    assert client.log("events", "t", {"n": 1, "fl": values})
    assert client.flush(10)
    (row,) = env.rows()
    back = json.loads(row["other"])["fl"]
    assert [float.hex(x) for x in back] == [float.hex(x) for x in values]
