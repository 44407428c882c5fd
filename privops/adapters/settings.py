"""Frozen, typed settings from the environment (``PRIVOPS_*``), validated at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from privops import contract
from privops.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Every knob privops reads. Defaults are the embedded local runtime."""

    model_config = SettingsConfigDict(env_prefix="PRIVOPS_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_controller_port: int = Field(default=19093, ge=1, le=65535)
    registry_url: str = "http://127.0.0.1:18081/apis/ccompat/v7"
    registry_port: int = Field(default=18081, ge=1, le=65535)
    registry_management_port: int = Field(default=19001, ge=1, le=65535)
    home: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "privops",
        description="Runtime state: broker and registry data, logs, pid files, worker tables",
    )
    cache: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "privops",
        description="Downloaded jars (Kafka, Apicurio); shared by every home",
    )
    schema_dir: Path = Field(default_factory=contract.schema_dir)
    datamap: Path = Field(default_factory=contract.default_datamap)
    app_id: str = "privops"
    web_port: int = Field(default=6066, ge=1, le=65535)
    web_host: str = "127.0.0.1"
    store: str = "rocksdb://"
    data_dir: Path | None = None
    pseudonym_key: str = Field(
        default="local-dev-pseudonym-key-change-me",
        min_length=16,
        description="HMAC key for subject refs and the suppression list",
    )
    topic_partitions: int = Field(default=4, ge=1, le=256)
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    alert_days_before: tuple[int, ...] = (7, 3, 1)
    complaint_ack_days: int = Field(default=30, ge=1)
    actor: str = "dpo"
    consumer_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a new consumer group starts (the demo starts at the end)",
    )
    clock_offset_days: float = Field(
        default=0.0, description="Shift the worker's clock (demos and deadline tests only)"
    )

    @property
    def worker_data_dir(self) -> Path:
        return self.data_dir or (self.home / "worker")

    @property
    def app_data_dir(self) -> Path:
        """This app id's table state: two app ids on one machine never share a store."""
        return self.worker_data_dir / self.app_id


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PRIVOPS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
