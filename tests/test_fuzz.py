"""Fuzzing the two parsers that read what the target (or its operator) wrote: logs and target profiles.

Whatever bytes a log holds, the reader counts them and never raises; whatever a
targets file says, the loader gives a Profile or one line of ProfileError.
"""

from __future__ import annotations

import json
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

from hostile_servers import write_targets
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from observe import logs as logs_module
from observe.logs import Logs, parse_line, zone_of
from observe.profile import SCHEMA, Profile, ProfileError, resolve, toml_value

FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ZONES = ["UTC", "local", "Europe/Berlin", "Pacific/Kiritimati", "Etc/GMT+12", "Not/AZone", ""]

# -- log lines -------------------------------------------------------------------------------------

offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda m: "Z" if m == 0 else f"{'+' if m > 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
)
moments = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.datetimes(min_value=datetime(2026, 11, 27), max_value=datetime(2026, 11, 30)),  # around NOW
)
stamps = st.one_of(
    st.builds(lambda m, z: m.isoformat() + z, moments, offsets),
    moments.map(lambda m: m.isoformat(sep=" ")),  # no zone
    st.text(max_size=30),
    st.integers(),
    st.none(),
)
json_lines = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": stamps,
        "level": st.one_of(st.sampled_from(["ERROR", "INFO", "critical", ""]), st.integers(), st.lists(st.text())),
        "message": st.one_of(st.text(max_size=80), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
        "status": st.sampled_from(["failed", "completed", None]),
        "type": st.sampled_from(["automation", None, 3]),
    },
).map(lambda d: json.dumps(d).encode())
text_lines = st.builds(
    lambda m, level, msg: f"{m.isoformat(sep=' ')} | {level} | app.logger | f:1 | {msg}".encode("utf-8", "replace"),
    moments,
    st.sampled_from(["ERROR", "INFO", "WARNING"]),
    st.text(max_size=60),
)
other_lines = st.one_of(
    st.binary(max_size=200),
    st.just(b"[1, 2, 3]"),
    st.just(b'"a string"'),
    st.integers(1, 3000).map(lambda n: b'{"a": ' + b"[" * n + b"}"),  # nesting deep enough to recurse
    st.just(b"Traceback (most recent call last):"),
    st.binary(min_size=1, max_size=4).map(lambda b: b * 100),  # a longer line made of garbage
)
log_files = st.lists(st.one_of(json_lines, text_lines, other_lines), max_size=40).map(b"\n".join)


@FUZZ
@example(raw=b'{"timestamp": "0001-01-01T00:00:00+01:00"}', zone="UTC")  # moved across UTC: before year 1
@example(raw=b"9999-12-31 23:59:59 | ERROR | x | f:1 | m", zone="Etc/GMT+12")  # after year 9999
@example(raw=b'{"a": ' + b"[" * 5000 + b"}", zone="UTC")
@given(raw=st.one_of(st.binary(max_size=300), json_lines, text_lines, other_lines), zone=st.sampled_from(ZONES))
def test_parse_line_never_raises(raw, zone):
    entry = parse_line(raw, zone_of(zone))
    assert entry is None or entry.timestamp is None or entry.timestamp.tzinfo is UTC


@FUZZ
@given(
    data=st.one_of(log_files, st.binary(max_size=3000)),
    tail_bytes=st.sampled_from([1024, 1500, 4096, 1 << 20]),
    window=st.sampled_from([timedelta(minutes=1), timedelta(hours=1), timedelta(days=400 * 365)]),
    zone=st.sampled_from(ZONES),
)
def test_the_log_reader_counts_any_bytes_and_never_raises(data, tail_bytes, window, zone):
    # Small blocks and a small line limit, so a few KB of input cross every boundary the reader has.
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(logs_module, "BLOCK", 97),
        mock.patch.object(logs_module, "MAX_LINE", 300),
    ):
        root = Path(tmp, "logs")
        (root / "errors").mkdir(parents=True)
        (root / "errors" / "fuzz.jsonl").write_bytes(data)
        targets = write_targets(
            Path(tmp, "t.toml"), "f", {"log_dir": str(root), "log_timezone": zone, "logs": {"tail_bytes": tail_bytes}}
        )
        tail = Logs(resolve(targets, "f", environ={})).since("errors", window, now=NOW)
    lines = data.count(b"\n") + 1
    counted = len(tail.entries) + tail.malformed + tail.undated + tail.future
    assert counted <= lines, (counted, lines)
    assert tail.bytes_read <= len(data) and tail.bytes_read <= tail_bytes + logs_module.BLOCK
    assert all(NOW - window <= e.timestamp <= NOW + logs_module.FUTURE_SLACK for e in tail.entries)
    assert "\n" not in tail.evidence()


# -- target profiles -------------------------------------------------------------------------------

scalars = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(10**400), max_value=10**400),  # tomllib reads integers of any size
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(max_value=datetime(9999, 1, 1)),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5)


def _key_strategy(section: str | None):
    known = list(SCHEMA) if section is None else list(SCHEMA[section])
    return st.one_of(st.sampled_from(known), st.text(min_size=1, max_size=12))


sections = [name for name, spec in SCHEMA.items() if isinstance(spec, dict)]
profile_tables = st.fixed_dictionaries(
    {},
    optional={
        **{name: st.dictionaries(_key_strategy(name), values, max_size=4) for name in sections},
        "top": st.dictionaries(_key_strategy(None), values, max_size=6),
        "extends": st.sampled_from(["x", "y", "nope", ""]),
    },
)


def _toml(name: str, table: dict) -> str:
    """A TOML profile; keys are always quoted, so any text can be a key."""

    def value(v) -> str:
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if isinstance(v, datetime):
            return v.isoformat()
        if isinstance(v, list):
            return "[" + ", ".join(value(i) for i in v) + "]"
        return toml_value(v)

    def key(k: str) -> str:
        return json.dumps(k)  # a TOML basic string is JSON-compatible for what json.dumps writes

    lines = [f"[{key(name)}]"]
    for k, v in table.get("top", {}).items():
        lines.append(f"{key(k)} = {value(v)}")
    if "extends" in table:
        lines.append(f'"extends" = {value(table["extends"])}')
    for section in sections:
        if section in table:
            lines.append(f"[{key(name)}.{key(section)}]")
            lines += [f"{key(k)} = {value(v)}" for k, v in table[section].items()]
    return "\n".join(lines) + "\n"


def _load(text: str | bytes, name: str) -> Profile | ProfileError:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "targets.toml")
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            return resolve(path, name, environ={})
        except ProfileError as exc:
            return exc


@FUZZ
@example(tables={"x": {"timeouts": {"read": 10**400}}})
@example(tables={"x": {"thresholds": {"cpu_percent": math.nan}, "timeouts": {"connect": math.inf}}})
@example(tables={"a\nb": {"extends": "x"}})
@given(tables=st.dictionaries(st.sampled_from(["x", "y", "a\nb"]), profile_tables, min_size=1, max_size=2))
def test_any_toml_profile_loads_or_fails_with_one_line(tables):
    text = "".join(_toml(name, table) for name, table in tables.items())
    result = _load(text, next(iter(tables)))
    assert isinstance(result, (Profile, ProfileError))
    if isinstance(result, ProfileError):
        assert str(result) and "\n" not in str(result), str(result)
    else:
        numbers = [*result.timeouts.values.values(), *result.thresholds.values.values()]
        assert all(math.isfinite(v) for v in numbers if isinstance(v, float))


@FUZZ
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300)), name=st.sampled_from(["local", "x", ""]))
def test_any_targets_text_loads_or_fails_with_one_line(text, name):
    result = _load(text, name)
    assert isinstance(result, (Profile, ProfileError))
    assert isinstance(result, Profile) or (str(result) and "\n" not in str(result)), str(result)


@FUZZ
@given(
    raw=st.text(max_size=30),
    var=st.sampled_from(
        ["FOSSAWORK_TIMEOUTS_READ", "FOSSAWORK_VERIFY_TLS", "FOSSAWORK_DB_TABLES", "FOSSAWORK_LOGS_TAIL_BYTES"]
    ),
)
@example(raw="nan", var="FOSSAWORK_TIMEOUTS_READ")
@example(raw="1e999", var="FOSSAWORK_TIMEOUTS_READ")
def test_any_environment_override_loads_or_fails_with_one_line(raw, var):
    with tempfile.TemporaryDirectory() as tmp:
        targets = write_targets(Path(tmp, "t.toml"), "x", {})
        try:
            profile = resolve(targets, "x", environ={var: raw})
        except ProfileError as exc:
            assert "\n" not in str(exc) and var in str(exc)
        else:
            assert math.isfinite(profile.timeouts.read) and profile.timeouts.read >= 0.01
