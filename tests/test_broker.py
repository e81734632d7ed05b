"""The ORM broker hands tasks out oldest first, once each, and polls an empty queue read-only."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ

from pipeline.broker import OrmBroker


@pytest.fixture
def broker(monkeypatch):
    monkeypatch.setattr(Conf, "POLL", 0.01)
    return OrmBroker(list_key="test-broker")


def handed_out(broker) -> list[str]:
    return [payload for _, payload in broker.dequeue() or []]


def test_the_console_uses_this_broker_without_redis(db, settings):
    assert not settings.REDIS_URL
    assert isinstance(get_broker(), OrmBroker)


def test_ready_tasks_are_handed_out_oldest_first_even_after_a_redelivery(db, broker):
    for payload in ("a", "b", "c"):
        broker.enqueue(payload)
    assert handed_out(broker) == ["a"]
    # Its worker died: once the lock expires, "a" is due again, and it is still the oldest.
    OrmQ.objects.filter(payload="a").update(lock=timezone.now() - timedelta(seconds=1))

    assert [handed_out(broker) for _ in range(4)] == [["a"], ["b"], ["c"], []]


def test_a_task_locked_by_a_cluster_is_not_handed_out_again_until_its_lock_expires(db, broker):
    broker.enqueue("a")
    [(task_id, _)] = broker.dequeue()

    assert broker.dequeue() is None
    lock = OrmQ.objects.get(pk=task_id).lock
    assert lock > timezone.now() + timedelta(seconds=Conf.RETRY - 5)


def test_bulk_hands_out_that_many_oldest_tasks(db, broker, monkeypatch):
    monkeypatch.setattr(Conf, "BULK", 2)
    for payload in ("a", "b", "c"):
        broker.enqueue(payload)

    assert [handed_out(broker) for _ in range(3)] == [["a", "b"], ["c"], []]


def test_other_queues_tasks_are_left_alone(db, broker):
    OrmBroker(list_key="another-cluster").enqueue("theirs")

    assert broker.dequeue() is None
    assert OrmQ.objects.get(payload="theirs").lock <= timezone.now()


def test_an_acknowledged_task_is_gone(db, broker):
    broker.enqueue("a")
    [(task_id, payload)] = broker.dequeue()
    broker.acknowledge(task_id)

    assert payload == "a"
    assert not OrmQ.objects.filter(pk=task_id).exists()


def test_an_empty_queue_is_polled_without_writing(db, broker):
    with CaptureQueriesContext(connection) as polled:
        assert broker.dequeue() is None

    # SQLite locks the whole database for a write: an empty poll only reads.
    assert [query["sql"].split()[0] for query in polled] == ["SELECT"]


def test_clusters_dequeuing_at_once_never_get_the_same_task(transactional_db, broker):
    for i in range(60):
        broker.enqueue(f"task-{i}")
    got: list[list[str]] = [[], [], []]

    def pusher(mine: list[str]) -> None:
        other = OrmBroker(list_key="test-broker")
        try:
            while tasks := other.dequeue():
                mine.extend(payload for _, payload in tasks)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=pusher, args=(mine,)) for mine in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    everything = [payload for mine in got for payload in mine]
    assert sorted(everything) == sorted(f"task-{i}" for i in range(60))  # each exactly once
