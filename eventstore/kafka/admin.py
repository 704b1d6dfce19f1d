"""Topic administration: the topics entityflow needs exist, with leaders, before use.

Apart from the clients that read and write, because only setup (the API, the relay,
the tests and benchmarks) creates, describes or deletes topics.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from eventstore.kafka.io import BrokerUnavailableError, KafkaSettings, connect


class Admin:
    """Topic administration: create what is missing, describe, delete."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._admin: KafkaAdminClient = connect(
            "admin client", settings, lambda: KafkaAdminClient(**settings.common())
        )

    def ensure_topics(
        self,
        topics: Mapping[str, int],
        *,
        replication_factor: int = 1,
        configs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Create the topics that do not exist yet; existing ones are left as they are."""
        try:
            existing = set(self._admin.list_topics())
            missing = [
                NewTopic(
                    name,
                    num_partitions=n,
                    replication_factor=replication_factor,
                    topic_configs=dict((configs or {}).get(name, {})),
                )
                for name, n in topics.items()
                if name not in existing
            ]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    self._admin.create_topics(missing)
                self._wait_usable(t.name for t in missing)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot create topics {list(topics)}: {exc}") from exc

    def _wait_usable(self, topics: Iterable[str], timeout: float = 30.0) -> None:
        """Wait until every partition of new topics has a leader.

        Creation is asynchronous: a group leader that assigns partitions before the
        metadata shows them assigns none, and may not notice later that they appeared.
        (A topic someone else created at the same moment counts with its own partitions.)
        """
        deadline = time.monotonic() + timeout
        waiting = set(topics)
        while waiting:
            for desc in self._admin.describe_topics(sorted(waiting)):
                parts = desc.get("partitions") or []
                led = all(not p.get("error_code") and p.get("leader_id", -1) >= 0 for p in parts)
                if not desc.get("error_code") and parts and led:
                    waiting.discard(desc.get("name"))
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(
                    f"topics {sorted(waiting)} were created but have no leaders after "
                    f"{timeout:.0f}s; is the broker healthy?"
                )
            time.sleep(0.05)

    def topic_id(self, topic: str) -> str | None:
        """The cluster's id of the topic's current incarnation (None if the broker has none)."""
        try:
            (desc,) = self._admin.describe_topics([topic])
        except (KafkaError, ValueError) as exc:
            raise BrokerUnavailableError(f"cannot describe topic {topic}: {exc}") from exc
        if desc.get("error_code"):
            return None
        tid = desc.get("topic_id")
        if not tid or set(str(tid)) <= {"0", "-"}:
            return None
        return str(tid)

    def partitions(self, topic: str) -> int:
        try:
            (desc,) = self._admin.describe_topics([topic])
        except (KafkaError, ValueError) as exc:
            raise BrokerUnavailableError(f"cannot describe topic {topic}: {exc}") from exc
        return len(desc.get("partitions") or [])

    def delete_topics(self, topics: Iterable[str]) -> None:
        try:
            with contextlib.suppress(UnknownTopicOrPartitionError):  # gone already: fine
                self._admin.delete_topics(list(topics))
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot delete topics: {exc}") from exc

    def close(self) -> None:
        self._admin.close()
