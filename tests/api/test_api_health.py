"""GET /api/health: what a load balancer reads. No credentials, no secrets."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_q.models import Schedule

from observability.endpoints import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_schedules():
    Schedule.objects.all().delete()


def test_health_is_200_when_everything_answers():
    response = Client().get("/api/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "checkpointer", "queue"}
    assert all(check["ok"] for check in body["checks"].values())


def overdue_schedule(**fields) -> Schedule:
    return Schedule.objects.create(
        func="pipeline.tasks.reap_runs",
        schedule_type=Schedule.MINUTES,
        minutes=1,
        repeats=-1,
        next_run=timezone.now() - timedelta(minutes=10),
        **fields,
    )


def test_health_is_503_when_the_workers_stopped_running_the_schedules():
    overdue_schedule(task="a1b2c3")  # a cluster ran it once, then none did

    response = Client().get("/api/health")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "no worker seen" in response.json()["checks"]["queue"]["detail"]
    assert Client().get("/api/health", {"queue": "false"}).status_code == 200


def test_schedules_no_worker_ever_ran_do_not_make_health_depend_on_the_clock():
    # As `migrate` leaves them: due since the database was made, never run.
    overdue_schedule()

    response = Client().get("/api/health")

    assert response.status_code == 200
    assert response.json()["checks"]["queue"]["ok"]


def test_health_is_503_and_reveals_nothing_when_a_check_fails(monkeypatch):
    def broken():
        raise ConnectionError("password authentication failed for user gamed at db.internal")

    monkeypatch.setitem(health.CHECKS, "checkpointer", broken)

    response = Client().get("/api/health")

    assert response.status_code == 503
    assert response.json()["checks"]["checkpointer"] == {
        "ok": False,
        "detail": "failed: ConnectionError",
    }
    assert "db.internal" not in response.content.decode()
