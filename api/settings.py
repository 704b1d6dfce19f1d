"""Configuration from ``ENTITYFLOW_*`` environment variables: the one place that reads them.

Everything below the API layer takes plain constructor arguments; this frozen model is
built once by the composition root (the CLI or ``create_app``) and passed down.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """entityflow's settings; each field is ``ENTITYFLOW_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ENTITYFLOW_", frozen=True, extra="ignore")

    store: str = Field(
        default="sqlite:///.entityflow/entityflow.db",
        description="sqlite:///path.db (default) or postgresql://user@host:5432/db?schema=name",
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description=(
            "host:port[,...]; unset under `entityflow dev` starts a local Apache Kafka "
            "(tansu where no Java is present)"
        ),
    )
    dev_kafka_dir: str = Field(
        default=".entityflow/kafka",
        min_length=1,
        description="where `entityflow dev` keeps its Apache Kafka's data (kept across restarts)",
    )
    dev_kafka_port: Annotated[
        int,
        Field(
            ge=1,
            le=65534,
            description="port of the broker `entityflow dev` starts (its controller: the next)",
        ),
    ] = 9092
    namespace: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
            description="prefix of every Kafka topic ({namespace}.commands, .events, ...)",
        ),
    ] = "entityflow"
    partitions: Annotated[
        int,
        Field(
            ge=1,
            le=10_000,
            description="partitions of the commands topic: the most workers that share the load",
        ),
    ] = 16
    replication_factor: Annotated[
        int, Field(ge=1, le=10, description="Kafka replication of the topics entityflow creates")
    ] = 1
    snapshot_every: Annotated[
        int, Field(ge=1, description="events between snapshots of an entity (default per type)")
    ] = 100
    actor_cache_size: Annotated[
        int, Field(ge=1, description="live actors a worker keeps in memory (LRU)")
    ] = 10_000
    actor_idle_seconds: Annotated[
        float, Field(gt=0, description="an actor idle this long is passivated")
    ] = 600.0
    worker_group: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Kafka consumer group of the workers (default: {namespace}.workers)",
    )
    worker_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$",
        description=(
            "this worker's stable identity in its group (e.g. the pod name of a "
            "StatefulSet): restarted under it, it takes its partitions back at once"
        ),
    )
    max_batch: Annotated[
        int, Field(ge=1, le=100_000, description="messages per worker batch (one transaction)")
    ] = 500
    local_delivery: bool = Field(
        default=True,
        description=(
            "a worker handles messages to actors of partitions it owns itself, in the "
            "batch that sent them when it can, not through the broker (a saga's hops "
            "share one commit)"
        ),
    )
    activity_concurrency: Annotated[
        int,
        Field(
            ge=0,
            le=1_000,
            description=(
                "activity attempts a worker runs at once, each in a thread; 0: this "
                "worker runs no activities (others in the group do)"
            ),
        ),
    ] = 16
    activities_only: bool = Field(
        default=False,
        description=(
            "this worker runs activities only: it joins no entity partitions, so slow "
            "activities scale apart from entities (other workers own the entities)"
        ),
    )
    reply_host: str = Field(
        default="auto",
        min_length=1,
        max_length=253,
        description=(
            "where workers also send this process's replies as UDP datagrams, besides its "
            "Kafka reply topic: auto (this host's address), a host or IP, or off"
        ),
    )
    update_timeout: Annotated[
        float, Field(gt=0, le=3600, description="seconds an update waits by default (504 after)")
    ] = 10.0
    max_payload_bytes: Annotated[
        int, Field(ge=1024, description="largest command body accepted")
    ] = 1_000_000
    idempotency_ttl_seconds: Annotated[
        float, Field(gt=0, description="how long an Idempotency-Key is remembered")
    ] = 24 * 3600.0
    command_retention_seconds: Annotated[
        float, Field(gt=0, description="how long command outcomes (for dedup and lookup) are kept")
    ] = 7 * 24 * 3600.0
    relay: bool = Field(
        default=True,
        description="run the event stream relay in workers (one is active per namespace)",
    )
    relay_per_type_topics: bool = Field(
        default=False, description="also publish each event to {namespace}.events.{EntityType}"
    )
    relay_workflow_events: bool = Field(
        default=False, description="also publish workflow history (wf.*) events"
    )
    worker_metrics_port: Annotated[
        int | None,
        Field(
            ge=0,
            le=65535,
            description=(
                "port where `entityflow worker` serves Prometheus /metrics (unset: none, so "
                "workers sharing a host do not collide; 0: any free port, printed); "
                "`entityflow dev` serves them on a free port unless set"
            ),
        ),
    ] = None
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="interface a worker's /metrics binds (0.0.0.0 in a container)",
    )
    api_host: str = Field(default="127.0.0.1", description="interface the API binds")
    api_port: Annotated[int, Field(ge=0, le=65535, description="port the API binds")] = 8000
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")

    def group(self) -> str:
        """The workers' consumer group: one per namespace unless set."""
        return self.worker_group or f"{self.namespace}.workers"
