"""At most one active retry per (run, stage), enforced by the database."""

import threading

import pytest
from django.db import connection
from django_q.conf import Conf

from pipeline.exceptions import Conflict
from pipeline.models import PipelineRun, RunStatus
from pipeline.services import retry_run, start_run


@pytest.fixture
def failed_run(monkeypatch, transactional_db):
    monkeypatch.setattr(Conf, "SYNC", True)
    run = start_run(
        graph="gamed",
        input={"question": "Label the parts of a plant cell", "faults": {"router": "fail_always"}},
    )
    # From here on retries stay queued (no worker), so each one stays active.
    monkeypatch.setattr(Conf, "SYNC", False)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    return run


def test_second_retry_of_same_stage_is_refused_with_the_active_run(failed_run):
    first = retry_run(run=failed_run, from_stage="router")
    with pytest.raises(Conflict) as refused:
        retry_run(run=failed_run, from_stage="router")

    assert refused.value.details["active_run_id"] == str(first.pk)
    assert str(first.pk) in refused.value.message
    assert failed_run.children.count() == 1


def test_retry_from_another_stage_is_allowed_meanwhile(failed_run):
    retry_run(run=failed_run, from_stage="router")
    retry_run(run=failed_run, from_stage="domain_knowledge_retriever")

    assert failed_run.children.count() == 2


def test_twenty_concurrent_retries_create_exactly_one_run(failed_run):
    barrier = threading.Barrier(20)
    created, refused, errors = [], [], []

    def attempt():
        try:
            barrier.wait(timeout=30)
            created.append(retry_run(run=failed_run, from_stage="router").pk)
        except Conflict as exc:
            refused.append(exc.details.get("active_run_id"))
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(created) == 1
    assert len(refused) == 19
    assert set(refused) == {str(created[0])}
    assert PipelineRun.objects.filter(parent_run=failed_run).count() == 1
