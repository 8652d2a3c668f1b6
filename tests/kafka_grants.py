"""Tests own their topics, and the stack's Kafka principals may use only the topics their ACLs name:
a test that runs a service as its own principal (an Airflow task, a service process)
on topics of its own grants that principal the same ACLs there, from the stack's one table
(`ops/stack/kafka_security.acl_table`), and takes them away afterwards (deleting a topic keeps its
ACLs)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from ops.stack import kafka_security
from tickhouse.config import Settings


@contextlib.contextmanager
def granted(settings: Settings, drain_group: str | None = None, **topics: str) -> Iterator[Settings]:
    """The ACL table applied with `topics` (Settings field names: trades_topic=..., ...) in place of
    the configured ones, and `drain_group` (set DRAIN_GROUP for the same) for the drain's group;
    yields those settings."""
    mine = dataclasses.replace(settings, **topics)  # type: ignore[arg-type]
    admin = kafka_security.admin_client(settings)
    kafka_security.apply_acls(mine, admin)
    try:
        yield mine
    finally:
        def on(resource: ResourceType, name: str, pattern: ResourcePatternType) -> AclBindingFilter:
            return AclBindingFilter(resource, name, pattern, None, None,  # type: ignore[arg-type]
                                    AclOperation.ANY, AclPermissionType.ANY)

        filters = [on(ResourceType.TOPIC, name, ResourcePatternType.LITERAL) for name in topics.values()]
        if "alerts_topic" in topics:
            filters.append(on(ResourceType.TOPIC, f"{topics['alerts_topic']}.", ResourcePatternType.PREFIXED))
        if drain_group is not None:
            filters.append(on(ResourceType.GROUP, drain_group, ResourcePatternType.LITERAL))
        for future in admin.delete_acls(filters, request_timeout=15).values():
            with contextlib.suppress(Exception):
                future.result(20)
