"""System checks: every misconfiguration is reported with its id and a hint."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks

from layered_storage.checks import check_layered_storages

LAYERED = "layered_storage.LayeredStorage"
FS = {"BACKEND": "django.core.files.storage.FileSystemStorage"}


def run(settings: Any, **storages: dict[str, Any]) -> list[checks.CheckMessage]:
    settings.STORAGES = {"default": FS, **storages}
    return [
        m
        for m in check_layered_storages()
        if (m.id or "").startswith("layered_storage")
    ]


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [message.id or "" for message in messages]


def test_good_configuration_is_silent(settings: Any) -> None:
    good = {"BACKEND": LAYERED, "OPTIONS": {"inner": "default"}}
    assert run(settings, private=good) == []


@pytest.mark.parametrize(
    ("options", "check_id"),
    [
        ({"inner": "nowhere"}, "layered_storage.E001"),
        ({"inner": 42}, "layered_storage.E001"),
        ({"inner": "private"}, "layered_storage.E002"),
        ({"inner": "default", "layers": ["brotli"]}, "layered_storage.E003"),
        ({"inner": "default", "layers": ["no.such.Layer"]}, "layered_storage.E003"),
        (
            {"inner": "default", "layers": [("zstd", {"level": 99})]},
            "layered_storage.E004",
        ),
        (
            {"inner": "default", "layers": [("zstd", {"speed": 1})]},
            "layered_storage.E004",
        ),
        ({"inner": "default", "layers": []}, "layered_storage.E004"),
        ({"inner": "default", "layers": "zstd"}, "layered_storage.E004"),
        (
            {"inner": "default", "layers": [("aes-gcm", {"keys": [b"x" * 32]})]},
            "layered_storage.E004",
        ),
        ({"inner": "default", "colour": "blue"}, "layered_storage.E008"),
    ],
)
def test_each_misconfiguration_has_its_id(
    settings: Any, options: dict[str, Any], check_id: str
) -> None:
    messages = run(settings, private={"BACKEND": LAYERED, "OPTIONS": options})
    assert ids(messages) == [check_id]
    assert messages[0].hint
    assert "private" in messages[0].msg


def test_loop_through_two_layered_storages(settings: Any) -> None:
    messages = run(
        settings,
        one={"BACKEND": LAYERED, "OPTIONS": {"inner": "two"}},
        two={"BACKEND": LAYERED, "OPTIONS": {"inner": "one"}},
    )
    assert ids(messages) == ["layered_storage.E002", "layered_storage.E002"]
    assert "two -> one -> two" in messages[0].msg


@pytest.mark.parametrize(
    ("keys", "check_id"),
    [
        (None, "layered_storage.E005"),
        ([], "layered_storage.E005"),
        (["bm90IGEga2V5"], "layered_storage.E006"),
        (["%%%"], "layered_storage.E006"),
        ([b"k" * 32, b"k" * 32], "layered_storage.E007"),
    ],
)
def test_key_problems(settings: Any, keys: Any, check_id: str) -> None:
    settings.LAYERED_STORAGE = {"KEYS": keys}
    messages = run(
        settings, private={"BACKEND": LAYERED, "OPTIONS": {"inner": "default"}}
    )
    assert ids(messages) == [check_id]
    assert "layered_keygen" in (messages[0].hint or "") + messages[
        0
    ].msg or check_id.endswith("7")


def test_compression_after_encryption_warns(settings: Any) -> None:
    options = {"inner": "default", "layers": ["aes-gcm", "zstd"]}
    messages = run(settings, private={"BACKEND": LAYERED, "OPTIONS": options})
    assert "layered_storage.W001" in ids(messages)
    assert all(isinstance(m, checks.Warning) for m in messages)


def test_reading_unencrypted_files_warns(settings: Any) -> None:
    options = {"inner": "default", "allow_plaintext": True}
    messages = run(settings, private={"BACKEND": LAYERED, "OPTIONS": options})
    assert ids(messages) == ["layered_storage.W002"]


def test_unknown_global_setting_is_reported(settings: Any) -> None:
    settings.LAYERED_STORAGE = {"KEYS": [b"k" * 32], "KEY": "typo"}
    assert ids(run(settings)) == ["layered_storage.E008"]


def test_checks_run_through_manage_py_check(settings: Any) -> None:
    settings.STORAGES = {
        "default": FS,
        "private": {"BACKEND": LAYERED, "OPTIONS": {"inner": "nowhere"}},
    }
    found = checks.run_checks()
    assert "layered_storage.E001" in ids(found)


@pytest.mark.parametrize(
    "options",
    [
        {"namespace": 3},
        {"allow_unencrypted": "yes"},
        {"allow_plaintext": None},
        {"require_name_binding": 1},
        {"max_file_size": 0},
        {"max_file_size": "10MB"},
        {"max_file_size": True},
    ],
)
def test_bad_storage_options_are_reported(
    settings: Any, options: dict[str, Any]
) -> None:
    messages = run(
        settings,
        private={"BACKEND": LAYERED, "OPTIONS": {"inner": "default", **options}},
    )
    assert ids(messages) == ["layered_storage.E008"]
    assert next(iter(options)) in messages[0].msg


def test_refusing_its_own_unbound_files_is_reported(settings: Any) -> None:
    options = {
        "inner": "default",
        "layers": [("aes-gcm", {"bind_name": False})],
        "require_name_binding": True,
    }
    messages = run(settings, private={"BACKEND": LAYERED, "OPTIONS": options})
    assert ids(messages) == ["layered_storage.E004"]
    unbound = {"inner": "default", "layers": [("aes-gcm", {"bind_name": False})]}
    assert run(settings, private={"BACKEND": LAYERED, "OPTIONS": unbound}) == []


@pytest.mark.parametrize(
    "global_settings", [{"WORKERS": -1}, {"WORKERS": "two"}, {"NAMESPACE": 5}]
)
def test_bad_global_settings_are_reported(
    settings: Any, global_settings: dict[str, Any]
) -> None:
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, **global_settings}
    assert ids(run(settings)) == ["layered_storage.E008"]


# -- serving ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["signed", "protected"])
def test_served_policy_without_the_include_is_an_error(
    settings: Any, policy: str
) -> None:
    options = {"inner": "default", "url_policy": policy}
    assert run(settings, private={"BACKEND": LAYERED, "OPTIONS": options}) == []
    settings.ROOT_URLCONF = "django.contrib.auth.urls"  # no layered_storage.urls
    messages = run(settings, private={"BACKEND": LAYERED, "OPTIONS": options})
    assert ids(messages) == ["layered_storage.E009"]
    assert "include" in (messages[0].hint or "")


@pytest.mark.parametrize("policy", ["inner", "refuse"])
def test_unserved_policy_needs_no_include(settings: Any, policy: str) -> None:
    settings.ROOT_URLCONF = "django.contrib.auth.urls"
    options = {"inner": "default", "url_policy": policy}
    assert run(settings, private={"BACKEND": LAYERED, "OPTIONS": options}) == []


def test_refuse_with_the_admin_warns(settings: Any) -> None:
    options = {"inner": "default", "url_policy": "refuse"}
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "django.contrib.admin"]
    messages = run(settings, private={"BACKEND": LAYERED, "OPTIONS": options})
    assert ids(messages) == ["layered_storage.W003"]
    assert isinstance(messages[0], checks.Warning)


def test_gzip_middleware_warns_when_files_are_served(settings: Any) -> None:
    settings.MIDDLEWARE = ["django.middleware.gzip.GZipMiddleware"]
    served = {"BACKEND": LAYERED, "OPTIONS": {"inner": "default"}}
    assert ids(run(settings, private=served)) == ["layered_storage.W004"]
    unserved = {
        "BACKEND": LAYERED,
        "OPTIONS": {"inner": "default", "url_policy": "inner"},
    }
    assert run(settings, private=unserved) == []


def test_unimportable_permission_is_an_error(settings: Any) -> None:
    options = {
        "inner": "default",
        "url_policy": "protected",
        "permission": "no.such.check",
    }
    messages = run(settings, private={"BACKEND": LAYERED, "OPTIONS": options})
    assert ids(messages) == ["layered_storage.E008"]


@pytest.mark.parametrize(
    "options",
    [{"url_policy": "public"}, {"url_expiry": -1}, {"permission": 3}],
)
def test_bad_url_options_are_e008(settings: Any, options: dict[str, Any]) -> None:
    messages = run(
        settings,
        private={"BACKEND": LAYERED, "OPTIONS": {"inner": "default", **options}},
    )
    assert ids(messages) == ["layered_storage.E008"]


def test_an_option_typo_gives_the_same_message_at_import_and_in_checks(
    settings: Any,
) -> None:
    from layered_storage import ConfigurationError, LayeredStorage

    # A model's FileField builds its storage when the models module is imported.
    with pytest.raises(ConfigurationError) as raised:
        LayeredStorage(inner="default", layer=["zstd"])
    message = str(raised.value)
    assert "no option 'layer' (did you mean 'layers'?)" in message
    assert raised.value.check_id == "layered_storage.E008"
    messages = run(
        settings,
        typo={
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {"inner": "default", "layer": ["zstd"]},
        },
    )
    assert ids(messages) == ["layered_storage.E008"]
    assert message in messages[0].msg
