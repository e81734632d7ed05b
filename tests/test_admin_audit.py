"""The audit trail in admin is read-only for everyone; Django-Q2's admin stays reachable."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from pipeline.models import AuditAction, AuditRecord, Surface
from tests.console import make_run

AUDIT = "/admin/pipeline/auditrecord/"


@pytest.fixture
def superuser_client(db):
    user = User.objects.create_superuser("root", "root@example.org", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def records(db):
    alice = User.objects.create_user("alice")
    run = make_run(stages=1)
    return [
        AuditRecord.objects.create(
            action=AuditAction.START, via=Surface.ADMIN, actor=alice, run=run, result_run=run
        ),
        AuditRecord.objects.create(
            action=AuditAction.CANCEL,
            via=Surface.API,
            actor_label="key:ci",
            run=run,
            reason="pipeline stuck on a model timeout",
        ),
    ]


def shown(client, **params) -> set[int]:
    response = client.get(AUDIT, params)
    assert response.status_code == 200
    return {record.pk for record in response.context["cl"].result_list}


def test_audit_list_shows_and_filters_records(superuser_client, records):
    start, cancel = records
    page = superuser_client.get(AUDIT)
    assert "key:ci" in page.text and "alice" in page.text
    assert "pipeline stuck on a model timeout" in page.text
    assert shown(superuser_client, action__exact="cancel") == {cancel.pk}
    assert shown(superuser_client, via__exact="admin") == {start.pk}
    assert shown(superuser_client, actor__id__exact=start.actor_id) == {start.pk}
    assert shown(superuser_client, q="timeout") == {cancel.pk}
    assert shown(superuser_client, q=str(cancel.run_id)) == {start.pk, cancel.pk}
    assert shown(superuser_client, at__gte="2000-01-01 00:00:00+00:00") == {start.pk, cancel.pk}


def test_audit_records_cannot_be_added_changed_or_deleted_even_by_a_superuser(
    superuser_client, records
):
    record = records[0]
    page = superuser_client.get(AUDIT)
    assert f"{AUDIT}add/" not in page.text
    assert 'name="action"' not in page.text  # no bulk actions, so no "delete selected"
    assert superuser_client.get(f"{AUDIT}add/").status_code == 403
    detail = superuser_client.get(f"{AUDIT}{record.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.text
    assert superuser_client.post(f"{AUDIT}{record.pk}/change/", {"reason": "x"}).status_code == 403
    assert superuser_client.get(f"{AUDIT}{record.pk}/delete/").status_code == 403
    assert superuser_client.post(f"{AUDIT}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditRecord.objects.count() == 2
    record.refresh_from_db()
    assert record.reason == ""


def test_run_page_lists_the_operator_actions_on_the_run(superuser_client, records):
    page = superuser_client.get(records[0].run.admin_path)
    assert 'id="audit-module"' in page.text
    assert "pipeline stuck on a model timeout" in page.text


@pytest.mark.parametrize("model", ["ormq", "failure", "schedule", "success"])
def test_django_q_task_lists_stay_reachable(superuser_client, model):
    assert superuser_client.get(f"/admin/django_q/{model}/").status_code == 200
