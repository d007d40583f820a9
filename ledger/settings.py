"""Service configuration (SPEC §7): flags or ``PLEDGELEDGER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEV_CONFIRMATIONS", "RPC_CONFIRMATIONS", "Settings", "normalise_db_url"]

#: Default confirmations where the node has no ``finalized`` tag: a JSON-RPC chain, and the
#: instant-mining dev chains (managed anvil, embedded py-evm) where nothing reorganises.
RPC_CONFIRMATIONS = 12
DEV_CONFIRMATIONS = 1


def normalise_db_url(url: str) -> str:
    """Let a plain ``postgresql://`` URL work without naming a driver (we ship psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLEDGELEDGER_", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Where SQLite, the managed chain's state and deployments live")
    db_url: str | None = Field(None, description="Any SQLAlchemy URL; default SQLite in the data dir")
    chain: str = Field("managed", description="managed | embedded | http(s):// JSON-RPC URL")
    relayer_key: str | None = Field(None, description="0x private key that signs transactions (needed for an RPC chain)")
    public_rpc_url: str | None = Field(
        None,
        description="The JSON-RPC URL /healthz publishes for third-party tools; default: the managed node's URL, or the "
        "chain URL if it carries no credentials (user:password, a query or a path, where hosted providers put API keys)",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    mqtt_url: str | None = Field(None, description="mqtt://host:1883 (or mqtts://, user:pass@); unset: no MQTT bridge")
    mqtt_client_id: str = Field("pledgeledger-bridge", description="Stable MQTT client id: the broker keeps its session (QoS 1)")
    batch_interval_s: float = Field(5.0, gt=0, description="Seal and anchor a batch this often")
    batch_max_size: int = Field(65536, gt=0, le=1_000_000, description="Most readings in one batch")
    confirmations: int | None = Field(
        None,
        ge=1,
        description="Blocks (the including one counted) after which an anchor is final, on a chain whose node has "
        "no 'finalized' block tag; default 12 on a JSON-RPC chain, 1 (final once included) on managed/embedded",
    )
    replace_after_s: float = Field(
        90.0, gt=0, description="Replace a checkpoint transaction not mined after this long (same nonce, fees +12.5%)"
    )
    max_batch_request: int = Field(1000, gt=0, description="Most readings in one POST /v1/readings")
    ingest_processes: int = Field(
        1, ge=1, le=256,
        description="Worker processes that decode, verify and store POST /v1/readings batches (ledger.ingest_pool); "
        "1 keeps ingestion in the serving process. Set it to the number of cores to ingest on all of them",
    )  # fmt: skip
    max_future_skew_s: float = Field(300.0, ge=0, description="Refuse readings stamped further in the future")
    device_rate_per_s: float = Field(20.0, gt=0, description="Average readings per second one device may send")
    device_burst: int = Field(2000, gt=0, description="Readings one device may send at once (a gateway's backlog)")
    price_max_age_s: float = Field(
        86400.0, gt=0, description="Refuse price points observed longer ago, and value no lot at a latest price older than this"
    )
    valuation_interval_s: float = Field(60.0, gt=0, description="Value every pledged lot this often (and whenever a price arrives)")
    supervision_poll_s: float | None = Field(
        None, gt=0, le=60, description="How often the supervision loop looks for new readings; default a quarter of "
        "batch_interval_s, at most 0.5 s, so an alert's freeze is sent within one anchoring interval"
    )
    supervision_sweep_s: float = Field(
        5.0, gt=0, le=3600, description="How often silent devices, look-ahead checks and unfrozen lots are looked at"
    )
    log_format: Literal["text", "json"] = Field("text", description="Log lines as text (default) or one JSON object each")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Least severe level logged")

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _case(cls, v: object, info: object) -> object:
        if not isinstance(v, str):
            return v
        return v.lower() if getattr(info, "field_name", "") == "log_format" else v.upper()

    @field_validator("chain")
    @classmethod
    def _chain(cls, v: str) -> str:
        if v in ("managed", "embedded") or v.startswith(("http://", "https://")):
            return v
        raise ValueError("PLEDGELEDGER_CHAIN must be managed, embedded or an http(s):// JSON-RPC URL")

    def published_rpc_url(self, rpc_url: str | None) -> str | None:
        """The chain URL third-party tools may be told (``/healthz``): :attr:`public_rpc_url` if set; else
        ``rpc_url`` unless it is the configured JSON-RPC URL and carries what may be a secret."""
        if self.public_rpc_url:
            return self.public_rpc_url
        if rpc_url is None or rpc_url != self.chain:
            return rpc_url  # the managed node's loopback URL, or none (embedded)
        parts = urlsplit(rpc_url)
        if parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"):
            return None
        return rpc_url

    @property
    def supervision_poll(self) -> float:
        return self.supervision_poll_s or min(0.5, self.batch_interval_s / 4)

    @property
    def database_url(self) -> str:
        if self.db_url:
            return normalise_db_url(self.db_url)
        return f"sqlite:///{(self.data_dir / 'pledgeledger.sqlite3').resolve()}"
