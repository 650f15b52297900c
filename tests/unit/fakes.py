"""Stand-ins the unit tests share: settings without a database, and a plpy
that only keeps its NOTICEs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from admmgt_plpy._settings import Settings

_BASE = Settings(
    max_parallel=4,
    lock_timeout_ms=500,
    wait_timeout_ms=1000,
    lock_retries=2,
    retry_backoff_ms=10,
    failure_limit=0,
    template_busy_timeout_s=5,
    create_strategy="wal_log",
    tenant_owner="",
    tenant_login_role=False,
    sync_schemas=(),
)


def settings(**changes: Any) -> Settings:
    """Settings as load_settings would give them, with ``changes``."""
    return replace(_BASE, **changes)


class NoticePlpy:
    """A plpy whose only use is notice()."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    def notice(self, text: str) -> None:
        self.notices.append(text)
