"""What a consumer group looks like from outside: its members and the partitions each was assigned, as
``kafka-consumer-groups --describe`` shows them."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

Assignment = frozenset[tuple[str, int]]


async def group_members(bootstrap: str, group: str) -> dict[str, Assignment]:
    """Each member id of ``group`` and the (topic, partition) pairs it reads; empty while the group has no
    member or is between two generations."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [described] = response.groups
    state = described[2]
    if state != "Stable":
        return {}
    members: dict[str, Assignment] = {}
    for member in described[5]:
        member_id, assignment = member[0], member[-1]
        topics = ConsumerProtocolMemberAssignment.decode(assignment).assignment if assignment else []
        members[member_id] = frozenset((topic, partition) for topic, partitions in topics for partition in partitions)
    return members
