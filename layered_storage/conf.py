"""Settings: the only module that reads ``django.conf.settings``.

Global choices live in one dict, ``settings.LAYERED_STORAGE``; per-storage choices in
that storage's ``OPTIONS`` in ``settings.STORAGES``. Everything is read when first
needed, never at import time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from layered_storage.exceptions import ConfigurationError

#: Keys accepted in ``settings.LAYERED_STORAGE`` and their defaults.
DEFAULTS: dict[str, Any] = {
    "KEYS": None,
    "INNER": "default",
    "LAYERS": ["zstd", "aes-gcm"],
    "NAMESPACE": "",
    "WORKERS": None,
}


def layered_settings() -> dict[str, Any]:
    """Return ``settings.LAYERED_STORAGE`` merged over the defaults.

    Raises:
        ConfigurationError: the setting is not a dict or has an unknown key.
    """
    given = getattr(settings, "LAYERED_STORAGE", {})
    if not isinstance(given, dict):
        raise ConfigurationError(
            f"LAYERED_STORAGE must be a dict, got {type(given).__name__}."
        )
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(
            f"LAYERED_STORAGE has unknown keys {unknown}; allowed: {sorted(DEFAULTS)}."
        )
    merged = {**DEFAULTS, **given}
    namespace = merged["NAMESPACE"]
    if not isinstance(namespace, str):
        raise ConfigurationError(
            f"LAYERED_STORAGE['NAMESPACE'] must be a string, got {namespace!r}."
        )
    workers = merged["WORKERS"]
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
    ):
        raise ConfigurationError(
            "LAYERED_STORAGE['WORKERS'] is a number of threads (0 for none) or None "
            f"(one per core), got {workers!r}."
        )
    return merged


def get_setting(name: str) -> Any:
    """Return one entry of ``LAYERED_STORAGE`` (or its default)."""
    return layered_settings()[name]


def named_setting(name: str) -> Any:
    """Return the top-level Django setting ``name``.

    Raises:
        ConfigurationError: no such setting.
    """
    try:
        return getattr(settings, name)
    except AttributeError:
        raise ConfigurationError(
            f"There is no setting named {name!r}.", check_id="layered_storage.E005"
        ) from None


def storages_config() -> dict[str, Any]:
    """Return ``settings.STORAGES`` (Django fills in its defaults)."""
    return dict(settings.STORAGES)


def configured_namespaces() -> set[str]:
    """Return every namespace the settings name: the global default and each
    ``OPTIONS["namespace"]`` in ``settings.STORAGES``."""
    namespaces = {str(get_setting("NAMESPACE"))}
    for config in storages_config().values():
        namespace = (config.get("OPTIONS") or {}).get("namespace")
        if isinstance(namespace, str):
            namespaces.add(namespace)
    return namespaces
