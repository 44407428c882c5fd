"""Settings: development secrets are refused outside PRIVOPS_ENV=dev, naming the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from privops.adapters.settings import DEV_SECRETS, Settings, get_settings, unknown_names
from privops.core.errors import ConfigError

OWN = {
    "PRIVOPS_PSEUDONYM_KEY": "a-real-pseudonym-key-0001",
    "PRIVOPS_AUDIT_KEY": "a-real-audit-key-0002",
}
RETIRED = ("PRIVOPS_PSEUDONYM_PREVIOUS_KEYS", "PRIVOPS_AUDIT_PREVIOUS_KEYS")


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("PRIVOPS_ENV", *OWN, *RETIRED, *(f"{n}_FILE" for n in (*OWN, *RETIRED))):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_dev_accepts_the_development_secrets() -> None:
    settings = get_settings()
    assert settings.env == "dev"
    assert settings.pseudonym_key == DEV_SECRETS["pseudonym_key"]


@pytest.mark.parametrize("kept", ["PRIVOPS_PSEUDONYM_KEY", "PRIVOPS_AUDIT_KEY"])
def test_prod_refuses_each_development_secret_by_name(
    monkeypatch: pytest.MonkeyPatch, kept: str
) -> None:
    """Set to its development value on purpose: refused as the settings load. Left
    unset: refused by whatever hashes or signs with it (the worker, the audit CLI)."""
    monkeypatch.setenv("PRIVOPS_ENV", "prod")
    for name, value in OWN.items():
        if name != kept:
            monkeypatch.setenv(name, value)
    unset = get_settings()
    with pytest.raises(ConfigError) as info:
        unset.require_secrets()
    assert kept in str(info.value)
    assert "PRIVOPS_ENV=prod" in str(info.value)
    get_settings.cache_clear()
    monkeypatch.setenv(kept, DEV_SECRETS[kept.removeprefix("PRIVOPS_").lower()])
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert kept in str(info.value)


def test_a_connector_in_prod_is_not_asked_for_privops_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A business system's connector holds neither the pseudonym key nor the audit key
    (only the worker and the DPO may): before, its settings were refused without them,
    so a team was handed privops' audit key or made values up (review, session 25)."""
    monkeypatch.setenv("PRIVOPS_ENV", "prod")
    for name in OWN:
        monkeypatch.delenv(name, raising=False)
    assert get_settings().env == "prod"


def test_prod_with_own_secrets_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVOPS_ENV", "prod")
    for name, value in OWN.items():
        monkeypatch.setenv(name, value)
    assert get_settings().env == "prod"


def test_unknown_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVOPS_ENV", "production")
    with pytest.raises(ConfigError, match="PRIVOPS_ENV"):
        get_settings()


def test_a_misspelt_setting_is_named_with_the_nearest_real_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PRIVOPS_BOOTSTRAP was ignored without a word, and the worker went to the default
    broker (ops review, session 33)."""
    assert unknown_names(
        {
            "PRIVOPS_BOOTSTRAP": "10.0.0.5:9092",
            "PRIVOPS_KAFKA_BOOTSTRAP": "10.0.0.5:9092",  # real
            "PRIVOPS_COMMAND_WAIT": "5",  # read by the CLI, not a setting
            "PRIVOPS_ZZZ": "1",
            "HOME": "/root",
        }
    ) == [
        "PRIVOPS_BOOTSTRAP is not a privops setting and is ignored "
        "(did you mean PRIVOPS_KAFKA_BOOTSTRAP?)",
        "PRIVOPS_ZZZ is not a privops setting and is ignored",
    ]
    monkeypatch.setenv("PRIVOPS_WEBPORT", "6066")
    with caplog.at_level("WARNING"):
        get_settings()
    assert "PRIVOPS_WEBPORT is not a privops setting" in caplog.text
    assert "PRIVOPS_WEB_PORT" in caplog.text
    assert "6066" not in caplog.text  # names only: a value may be a secret


def test_the_log_level_is_a_setting_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's log level was fixed at info, with no way to ask for debug (ops review)."""
    assert get_settings().log_level == "info"
    get_settings.cache_clear()
    monkeypatch.setenv("PRIVOPS_LOG_LEVEL", "debug")
    assert get_settings().log_level == "debug"
    get_settings.cache_clear()
    monkeypatch.setenv("PRIVOPS_LOG_LEVEL", "verbose")
    with pytest.raises(ConfigError, match="PRIVOPS_LOG_LEVEL"):
        get_settings()


def test_a_shifted_clock_is_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    """It moves every legal deadline while Prometheus keeps the wall clock (ops review)."""
    monkeypatch.setenv("PRIVOPS_CLOCK_OFFSET_DAYS", "20")
    assert get_settings().clock_offset_days == 20  # dev: demos and tests
    get_settings.cache_clear()
    monkeypatch.setenv("PRIVOPS_ENV", "prod")
    with pytest.raises(ConfigError, match="PRIVOPS_CLOCK_OFFSET_DAYS"):
        get_settings()


@pytest.mark.parametrize(
    "reach",
    [
        {"PRIVOPS_KAFKA_BOOTSTRAP": "127.0.0.1:19092,kafka-2.internal:9092"},
        {"PRIVOPS_REGISTRY_URL": "http://10.1.2.3:8081/apis/ccompat/v7"},
        {"PRIVOPS_WEB_URL": "http://privops.internal:6066"},
        # Listened on or advertised beyond this machine (ops review, session 44).
        {"PRIVOPS_WEB_HOST": "0.0.0.0"},
        {"PRIVOPS_WEB_HOST": "::"},
        {"PRIVOPS_WEB_HOST": "privops.internal"},
        {"PRIVOPS_WEB_ADVERTISED_URL": "http://10.1.2.4:6066"},
    ],
)
def test_the_default_dev_is_refused_beyond_this_machine(
    monkeypatch: pytest.MonkeyPatch, reach: dict[str, str]
) -> None:
    """dev takes the published secrets, makes its own KEK and allows plain HTTP and
    Kafka without a proven principal: a host installed without PRIVOPS_ENV ran so
    against a remote cluster, a connector sending its password over plain HTTP (ops and
    connector reviews, session 33). Said on purpose, dev is taken; on loopback, the
    default stands."""
    for name, value in reach.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="PRIVOPS_ENV is not set") as info:
        get_settings()
    assert "127.0.0.1" not in str(info.value)  # only what is beyond this machine
    get_settings.cache_clear()
    monkeypatch.setenv("PRIVOPS_ENV", "dev")
    assert get_settings().env == "dev"
    get_settings.cache_clear()
    monkeypatch.delenv("PRIVOPS_ENV")
    for name in reach:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PRIVOPS_KAFKA_BOOTSTRAP", "localhost:19092,[::1]:19192")
    monkeypatch.setenv("PRIVOPS_WEB_HOST", "::1")
    assert get_settings().env == "dev"


def test_app_data_dir_is_per_app_id() -> None:
    a = Settings(app_id="one", data_dir="/tmp/x")
    b = Settings(app_id="two", data_dir="/tmp/x")
    assert a.app_data_dir != b.app_data_dir
    assert a.app_data_dir.parent == b.app_data_dir.parent


def test_plaintext_personal_fields_are_accepted_until_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PRIVOPS_PERSONAL_PLAINTEXT", raising=False)
    assert get_settings().personal_plaintext == "accept"
    get_settings.cache_clear()
    monkeypatch.setenv("PRIVOPS_PERSONAL_PLAINTEXT", "refuse")
    assert get_settings().personal_plaintext == "refuse"
    get_settings.cache_clear()
    monkeypatch.setenv("PRIVOPS_PERSONAL_PLAINTEXT", "ignore")
    with pytest.raises(ConfigError, match="PRIVOPS_PERSONAL_PLAINTEXT"):
        get_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRIVOPS_AUDIT_PREVIOUS_KEYS", '{1: "an-old-secret"}'),
        ("PRIVOPS_ALERT_DAYS_BEFORE", "an-old-secret"),
    ],
)
def test_a_setting_that_is_not_json_is_named_without_its_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as exc:
        get_settings()
    assert f"{name}: not valid JSON" in str(exc.value)
    assert "an-old-secret" not in str(exc.value)
    assert exc.value.__cause__ is None  # the parse error would quote the text


@pytest.mark.parametrize("bad", ["prod/eu", "", "../x", "a b", "x" * 65])
def test_an_app_id_is_a_plain_name(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    """It namespaces the audit chains (``<app id>/<request>``): with a '/', one
    deployment's chains were a prefix of another's (review, session 25); it also names
    topics and a directory."""
    monkeypatch.setenv("PRIVOPS_APP_ID", bad)
    with pytest.raises(ConfigError, match=r"app_id|APP_ID"):
        get_settings()


@pytest.mark.parametrize("bad", ["worker-sealed-0750592810", "02079460000", "eu-07700900123"])
def test_an_app_id_the_audit_would_take_for_a_phone_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    """Every audit chain key starts with the app id, and the audit refuses text shaped
    like contact details: such an app id passed start-up and stopped the worker at its
    first audit step (a test's random suffix, CI session 31)."""
    monkeypatch.setenv("PRIVOPS_APP_ID", bad)
    with pytest.raises(ConfigError, match=r"(?s)(app_id|APP_ID).*phone number"):
        get_settings()
    monkeypatch.setenv("PRIVOPS_APP_ID", "worker-sealed-07a0592810")
    assert get_settings().app_id == "worker-sealed-07a0592810"


def test_secrets_may_come_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A mounted secret (Docker, Kubernetes) need not sit in the environment, which
    /proc/<pid>/environ shows (ops review, session 33)."""
    files = {}
    for name, value in (*OWN.items(), ("PRIVOPS_KAFKA_PASSWORD", "scram-pw")):
        path = tmp_path / name.lower()
        path.write_text(value + "\n")  # as `echo` and most secret stores write it
        monkeypatch.setenv(f"{name}_FILE", str(path))
        files[name] = path
    monkeypatch.setenv("PRIVOPS_ENV", "prod")
    monkeypatch.setenv("PRIVOPS_KAFKA_PRINCIPAL", "privops")
    settings = get_settings()
    assert settings.pseudonym_key == OWN["PRIVOPS_PSEUDONYM_KEY"]
    assert settings.audit_key == OWN["PRIVOPS_AUDIT_KEY"]
    assert settings.kafka_password is not None
    assert settings.kafka_password.get_secret_value() == "scram-pw"
    settings.require_secrets()  # not the development values: prod takes them
    assert not unknown_names({f"{n}_FILE": "x" for n in files})


@pytest.mark.parametrize(
    ("content", "also_set", "said"),
    [
        (None, False, "cannot read"),
        ("", False, "on one line"),
        ("two\nlines\n", False, "on one line"),
        ("a-real-audit-key-0002", True, "both set"),
        ("\ufeffa-real-audit-key-0002\r\n", False, "byte-order mark"),
        ("a-real-audit-key-0002 \n", False, "spaces around"),
    ],
    ids=["missing", "empty", "two-lines", "both", "bom", "trailing-space"],
)
def test_a_secret_file_that_cannot_be_used_is_named_never_its_content(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    content: str | None,
    also_set: bool,
    said: str,
) -> None:
    path = tmp_path / "audit"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("PRIVOPS_AUDIT_KEY_FILE", str(path))
    if also_set:
        monkeypatch.setenv("PRIVOPS_AUDIT_KEY", OWN["PRIVOPS_AUDIT_KEY"])
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert said in str(info.value)
    assert "PRIVOPS_AUDIT_KEY" in str(info.value)
    assert "lines" not in str(info.value).replace("on one line", "")
    assert OWN["PRIVOPS_AUDIT_KEY"] not in str(info.value)


def test_retired_keys_may_come_from_files_as_the_json_their_settings_take(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A rotation's retired keys are as secret as the current ones (session 34 left
    them environment-only)."""
    pseudonyms = tmp_path / "pseudonym-previous"
    pseudonyms.write_text('[\n  "an-old-pseudonym-key-01"\n]\n')  # as a secret store writes JSON
    audit = tmp_path / "audit-previous"
    audit.write_text('{"1": "an-old-audit-key-0001"}')
    monkeypatch.setenv("PRIVOPS_PSEUDONYM_PREVIOUS_KEYS_FILE", str(pseudonyms))
    monkeypatch.setenv("PRIVOPS_AUDIT_PREVIOUS_KEYS_FILE", str(audit))
    settings = get_settings()
    assert settings.pseudonym_previous_keys == ["an-old-pseudonym-key-01"]
    assert settings.audit_previous_keys == {1: "an-old-audit-key-0001"}
    assert not unknown_names({f"{n}_FILE": "x" for n in RETIRED})


@pytest.mark.parametrize(
    ("content", "also_set", "said"),
    [
        (None, False, "cannot read"),
        ('{"1": "an-old-audit-key-0001",}', False, "not valid JSON"),
        ('{"1": "an-old-audit-key-0001"}', True, "both set"),
    ],
    ids=["missing", "not-json", "both"],
)
def test_a_retired_keys_file_that_cannot_be_used_is_named_never_its_content(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    content: str | None,
    also_set: bool,
    said: str,
) -> None:
    path = tmp_path / "audit-previous"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("PRIVOPS_AUDIT_PREVIOUS_KEYS_FILE", str(path))
    if also_set:
        monkeypatch.setenv("PRIVOPS_AUDIT_PREVIOUS_KEYS", '{"2": "an-old-audit-key-0002"}')
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert said in str(info.value)
    assert "PRIVOPS_AUDIT_PREVIOUS_KEYS" in str(info.value)
    assert "an-old-audit-key" not in str(info.value)


def test_a_blank_value_beside_its_file_is_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "audit"
    path.write_text(OWN["PRIVOPS_AUDIT_KEY"] + "\r\n")  # saved on Windows
    monkeypatch.setenv("PRIVOPS_AUDIT_KEY_FILE", str(path))
    monkeypatch.setenv("PRIVOPS_AUDIT_KEY", "")
    assert get_settings().audit_key == OWN["PRIVOPS_AUDIT_KEY"]


def test_a_bad_item_of_a_list_setting_names_the_variable_and_the_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It named PRIVOPS_ALERT_DAYS_BEFORE_0, which no one can set (review, session 43)."""
    monkeypatch.setenv("PRIVOPS_ALERT_DAYS_BEFORE", "[7.5]")
    with pytest.raises(ConfigError) as exc:
        get_settings()
    assert "PRIVOPS_ALERT_DAYS_BEFORE (item 0): " in str(exc.value)
    assert "DAYS_BEFORE_0" not in str(exc.value)


def test_the_complaint_acknowledgement_may_not_be_set_past_the_laws_30_days(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DPA 2018 s. 164A: 45 made a complaint logged on day 40 on time (legal review,
    session 43)."""
    monkeypatch.setenv("PRIVOPS_COMPLAINT_ACK_DAYS", "31")
    with pytest.raises(ConfigError, match="PRIVOPS_COMPLAINT_ACK_DAYS"):
        get_settings()
