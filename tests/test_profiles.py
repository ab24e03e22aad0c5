"""Target profiles: every configuration error stops the run with exit 4 and one line naming the problem."""

from pathlib import Path

import pytest

from observe import profile

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_with(pytester):
    """Run an inner pytest with the target plugin and a given targets file; return (exit code, stderr lines)."""
    pytester.makepyfile(test_inner="def test_nothing():\n    pass\n")

    def run(toml: str | None, *args: str, env: dict | None = None):
        if toml is not None:
            pytester.path.joinpath("targets.toml").write_text(toml)
        for key, value in (env or {}).items():
            pytester._monkeypatch.setenv(key, value)
        result = pytester.runpytest_subprocess(
            "-p", "fixtures.target", "-p", "no:cacheprovider", "--target-file", "targets.toml", *args
        )
        errors = [line for line in result.errlines if line.strip()]
        return result.ret, errors

    pytester._monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return run


CASES = {
    "missing file": (None, [], "targets.toml: targets file not found"),
    "not TOML": ("[local\n", [], "targets.toml: not valid TOML"),
    "unknown profile": ("[local]\n", ["--target", "prod"], "no profile 'prod' (profiles in this file: local)"),
    "unknown key": ("[local]\napi_ur = 'x'\n", [], "[local]: unknown key 'api_ur'"),
    "unknown nested key": ("[local.thresholds]\ncpu = 3\n", [], "unknown key 'thresholds.cpu'"),
    "wrong type": ("[local]\nverify_tls = 'yes'\n", [], "[local] verify_tls: expected true or false, got 'yes'"),
    "wrong number": ("[local.timeouts]\nread = 'slow'\n", [], "timeouts.read: expected a number, got 'slow'"),
    "below minimum": ("[local.timeouts]\nread = 0\n", [], "timeouts.read: expected a value >= 0.01, got 0"),
    "bad choice": ("[local]\nhost = 'mars'\n", [], "host: expected one of 'local', 'remote', got 'mars'"),
    "extends loop": ("[a]\nextends='b'\n[b]\nextends='a'\n", ["--target", "a"], "extends: loop through a -> b -> a"),
    "table not a profile": ("local = 3\n", [], "top-level key 'local' must be a profile table"),
    # Before these were refused, tomllib's RecursionError and ValueError ended the run as INTERNALERROR (exit 3).
    "arrays 10,000 deep": (
        "[local]\ndb_tables = " + "[" * 10_000 + "]" * 10_000 + "\n",
        [],
        "arrays or inline tables nested too deeply to read",
    ),
    "inline tables 10,000 deep": (
        "[local]\nlogs = " + "{a = " * 10_000 + "1" + "}" * 10_000 + "\n",
        [],
        "arrays or inline tables nested too deeply to read",
    ),
    "integer of 5,000 digits": ("[local]\nbackend_workers = " + "9" * 5000 + "\n", [], "an integer of more than"),
    "integer above its maximum": ("[local]\nbackend_workers = 100000\n", [], "expected a value <= 1024, got 100000"),
    "timeout above its maximum": ("[local.timeouts]\nread = 1e18\n", [], "timeouts.read: expected a value <= 60"),
    "float beyond any range": ("[local.thresholds]\ncpu_percent = 1e999\n", [], "expected a finite number, got inf"),
    "threshold above its maximum": ("[local.thresholds]\ndisk_percent = 900\n", [], "expected a value <= 100"),
    "url without a host": ("[local]\napi_url = 'localhost:8000'\n", [], "api_url: expected an http:// or https://"),
    "url with a bad port": ("[local]\napi_url = 'http://h:99999'\n", [], "api_url: not a URL (Port out of range"),
    "wrong-password probe without consent": (
        "[local]\nwrong_password_probe = true\n",
        [],
        "wrong_password_probe: FossaWork V2 forwards a login's password to WorkFossa",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_it_rejects_a_bad_targets_file_with_exit_4_and_one_line(run_with, case):
    toml, args, message = CASES[case]
    code, errors = run_with(toml, *args)
    assert code == 4
    assert len(errors) == 1, errors
    assert message in errors[0]
    assert "Traceback" not in errors[0]


def test_it_rejects_a_bad_environment_override_naming_the_variable(run_with):
    code, errors = run_with("[local]\n", env={"FOSSAWORK_THRESHOLDS_CPU_PERCENT": "lots"})
    assert code == 4
    assert errors == ["ERROR: environment variable FOSSAWORK_THRESHOLDS_CPU_PERCENT: expected a number, got 'lots'"]


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        # Accepted before, then seven checks failed on a healthy API: "timestamp out of range for platform time_t".
        ("FOSSAWORK_TIMEOUTS_READ", "1e18", "expected a value <= 60, got 1e+18"),
        ("FOSSAWORK_LOGS_TAIL_BYTES", "9" * 5000, "expected an integer"),
        ("FOSSAWORK_THRESHOLDS_LOG_MAX_BYTES", str(10**30), "expected a value <= 1125899906842624"),
    ],
)
def test_an_environment_override_out_of_range_is_exit_4_with_one_line(run_with, var, value, message):
    code, errors = run_with("[local]\n", env={var: value})
    assert code == 4
    assert len(errors) == 1 and var in errors[0] and message in errors[0], errors


def test_every_number_has_a_declared_range():
    keys = [spec for spec in profile.SCHEMA.values() if not isinstance(spec, dict)]
    keys += [spec for table in profile.SCHEMA.values() if isinstance(table, dict) for spec in table.values()]
    unbounded = [k.help for k in keys if k.type in (int, float) and (k.minimum is None or k.maximum is None)]
    assert unbounded == []


def test_environment_overrides_a_single_key(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("[prod]\napi_url = 'http://a:1'\n[prod.endpoints]\nhealth = '/health'\n")
    env = {"FOSSAWORK_API_URL": "http://b:2", "FOSSAWORK_TIMEOUTS_READ": "1.5", "FOSSAWORK_LOGS_ERRORS": "x/*.jsonl,y"}
    resolved = profile.resolve(path, "prod", environ=env)
    assert resolved.api_url == "http://b:2"
    assert resolved.timeouts.read == 1.5
    assert resolved.logs.errors == ("x/*.jsonl", "y")
    assert resolved.endpoints.health == "/health"
    assert resolved.thresholds.cpu_percent == 90.0  # the runbook's default


def test_extends_starts_from_the_parent_profile(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("[base]\napi_url = 'http://a:1'\n[child]\nextends = 'base'\ndb_path = '/x.db'\n")
    resolved = profile.resolve(path, "child", environ={})
    assert (resolved.api_url, resolved.db_path) == ("http://a:1", "/x.db")


def test_secrets_come_from_the_environment_or_env_file_never_the_profile(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY='s3cret-from-file'\nexport OTHER=1\n")
    path = tmp_path / "t.toml"
    path.write_text(f"[p]\nenv_file = '{env_file}'\n")
    resolved = profile.resolve(path, "p", environ={})
    assert resolved.secret("jwt_secret_env") == "s3cret-from-file"
    assert "s3cret" not in repr(resolved.as_dict())


def test_the_repo_targets_file_documents_every_key():
    text = (ROOT / "targets.toml").read_text()
    stale = "the reference block of targets.toml is out of date: run `python3 -m remediation.catalog --write`"
    assert text.endswith(profile.example()), stale
    for name in ("local", "local-v2", "sandbox", "sandbox-v2"):
        profile.resolve(ROOT / "targets.toml", name, environ={})


def test_a_usage_error_happens_before_any_check(run_with, pytester):
    pytester.makepyfile(test_marker="import pathlib\ndef test_touch():\n    pathlib.Path('touched').write_text('x')\n")
    code, _ = run_with("[local]\nbogus = 1\n")
    assert code == 4
    assert not (pytester.path / "touched").exists()
