"""API keys: stored hashed, shown once, scoped, revocable; sessions work beside them."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from observability.api import api as ninja_api
from observability.models import ApiKey, ApiKeyScope
from pipeline.models import PipelineRun
from tests.api.conftest import ApiClient, make_user, recorded_run

pytestmark = pytest.mark.django_db


def test_create_api_key_prints_the_key_once_and_stores_only_its_hash(operator):
    out, err = StringIO(), StringIO()
    call_command(
        "create_api_key", "--name", "CI", "--owner", "operator", "--scope", "write",
        stdout=out, stderr=err,
    )  # fmt: skip

    full = out.getvalue().strip()
    key = ApiKey.objects.get()
    assert full.startswith(f"gmd_{key.prefix}_") and len(full) > 40
    assert key.scope == ApiKeyScope.WRITE and key.owner == operator and key.name == "CI"
    assert full.split("_", 2)[2] not in key.hashed_key
    assert "not shown again" in err.getvalue()
    assert ApiKey.objects.authenticate(full) == key


def test_create_api_key_defaults_to_read_only(operator):
    call_command("create_api_key", "--name", "x", "--owner", "operator", stdout=StringIO())
    assert ApiKey.objects.get().scope == ApiKeyScope.READ


def test_create_api_key_refuses_an_unknown_owner(db):
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("create_api_key", "--name", "x", "--owner", "nobody", stdout=StringIO())


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
def test_a_key_authenticates_in_either_header(write_key, header):
    run = recorded_run()
    response = ApiClient(write_key[1], header=header).get(f"/runs/{run.pk}")
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(
    "key",
    [None, "", "gmd_deadbeef_nope", "not-a-key", "Bearer"],
)
def test_missing_or_bad_key_is_401(write_key, key):
    run = recorded_run()
    response = ApiClient(key).get(f"/runs/{run.pk}")
    assert response.status_code == 401
    assert response.json()["code"] in {"unauthorized", "invalid_api_key"}


def test_a_tampered_secret_is_401(write_key):
    _, full = write_key
    response = ApiClient(full[:-2] + "xx").get("/graphs")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked API key.", "code": "invalid_api_key"}


def test_a_revoked_key_is_401(write_key):
    key, full = write_key
    key.revoke()
    response = ApiClient(full).get("/graphs")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


def test_a_key_of_an_inactive_owner_is_401(write_key, operator):
    operator.is_active = False
    operator.save()
    assert ApiClient(write_key[1]).get("/graphs").status_code == 401


def test_a_read_only_key_cannot_write(reader):
    response = reader.post("/runs", {"graph": "gamed", "input": {"question": "Why?"}})
    assert response.status_code == 403
    assert response.json()["code"] == "read_only_key"


def test_a_read_only_key_reads(reader):
    assert reader.get("/runs").status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/runs", {"graph": "gamed", "input": {"question": "Why?"}}),
        ("/runs/{id}/retry", {"from_stage": "router"}),
        ("/runs/{id}/cancel", {}),
        ("/runs/{id}/resume", {}),
        ("/runs/{id}/rerun", {}),
        ("/runs/bulk-retry", {}),
    ],
)
def test_a_key_whose_owner_lacks_the_permission_is_403(path, body):
    owner = make_user("viewer")
    _, full = ApiKey.objects.create_key(name="v", owner=owner, scope=ApiKeyScope.WRITE)
    run = recorded_run(("input_enhancer", "failed"))
    response = ApiClient(full).post(path.format(id=run.pk), body)
    assert response.status_code == 403, response.json()
    assert response.json()["code"] == "forbidden"


def test_last_used_is_recorded_at_most_once_a_minute(write_key, django_assert_num_queries):
    key, full = write_key
    client = ApiClient(full)
    client.get("/graphs")
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None

    client.get("/graphs")
    key.refresh_from_db()
    assert key.last_used_at == first

    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/graphs")
    key.refresh_from_db()
    assert key.last_used_at > first - timedelta(seconds=1)


def test_a_staff_session_works_without_a_key():
    client = Client()
    client.force_login(make_user("staffer", "view", is_staff=True))
    assert client.get("/api/runs").status_code == 200


# Operations that need no permission beyond a valid key (or none at all, for health).
OPEN_OPERATIONS = {("get", "/api/graphs"), ("get", "/api/graphs/{name}"), ("get", "/api/health")}
ACTION_BODIES = {
    "/api/runs": {"graph": "gamed", "input": {"question": "Why?"}},
    "/api/runs/{run_id}/retry": {"from_stage": "input_enhancer"},
    "/api/runs/{run_id}/answer": {"value": "approve"},
}


def run_operations() -> list[tuple[str, str]]:
    paths = ninja_api.get_openapi_schema()["paths"]
    return sorted(
        (method, path)
        for path, operations in paths.items()
        for method in operations
        if (method, path) not in OPEN_OPERATIONS
    )


def test_every_run_operation_needs_the_owners_view_permission():
    # As in admin, where nothing about runs is reachable without *Can view*: a key acts as its
    # owner, and an owner with every action permission but that one gets a 403 everywhere,
    # new endpoints included (the operations come from the schema).
    run = recorded_run(("input_enhancer", "failed"))
    owner = make_user("no-view", "start", "retry", "cancel", "resume")
    _, full = ApiKey.objects.create_key(name="n", owner=owner, scope=ApiKeyScope.WRITE)
    client = ApiClient(full)
    operations = run_operations()
    assert len(operations) >= 14, operations

    for method, path in operations:
        url = path.removeprefix("/api").format(run_id=run.pk, stage_id=1, checkpoint_id="c")
        if method == "get":
            response = client.get(url)
        else:
            response = client.post(url, ACTION_BODIES.get(path, {}))
        assert response.status_code == 403, (method, path, response.content)
        assert response.json() == {
            "detail": "You do not have permission to view runs.",
            "code": "forbidden",
        }
    assert PipelineRun.objects.count() == 1, "no action was carried out"


@pytest.mark.parametrize("perm", ["view", "change"])
def test_the_view_or_change_permission_lets_a_key_read_runs(perm):
    run = recorded_run(("input_enhancer", "failed"))
    _, full = ApiKey.objects.create_key(
        name="r", owner=make_user("reader", perm), scope=ApiKeyScope.READ
    )
    client = ApiClient(full)
    for url in ["/runs", f"/runs/{run.pk}", f"/runs/{run.pk}/stages", f"/runs/{run.pk}/logs"]:
        assert client.get(url).status_code == 200, url


def test_a_staff_session_without_the_view_permission_cannot_read_runs():
    client = Client()
    client.force_login(make_user("staffer", is_staff=True))
    assert client.get("/api/runs").status_code == 403


def test_the_graph_catalogue_needs_only_a_key():
    _, full = ApiKey.objects.create_key(
        name="s", owner=make_user("starter", "start"), scope=ApiKeyScope.WRITE
    )
    assert ApiClient(full).get("/graphs").status_code == 200


def test_a_non_staff_session_is_401():
    client = Client()
    client.force_login(make_user("someone"))
    assert client.get("/api/runs").status_code == 401


def test_session_writes_need_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("staffer", "start", is_staff=True))
    response = client.post(
        "/api/runs",
        {"graph": "gamed", "input": {"question": "Why?"}},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"


def test_key_writes_need_no_csrf_token(write_key):
    api = ApiClient(write_key[1])
    api.client = Client(enforce_csrf_checks=True)
    response = api.post("/runs", {"graph": "gamed", "input": {"question": "Why?"}})
    assert response.status_code == 201


def test_openapi_schema_is_readable_with_a_key_and_docs_need_staff(reader):
    assert reader.get("/openapi.json").status_code == 200
    assert reader.get("/docs").status_code == 302, "a key is for integrations, not the docs"
    anonymous = Client()
    assert anonymous.get("/api/openapi.json").status_code == 302
    assert anonymous.get("/api/docs").status_code == 302
    staff = Client()
    staff.force_login(make_user("staffer", is_staff=True))
    assert staff.get("/api/docs").status_code == 200


def test_admin_shows_a_new_key_once_and_revokes_keys(operator):
    admin_user = make_user("root", is_staff=True)
    admin_user.is_superuser = True
    admin_user.save()
    client = Client()
    client.force_login(admin_user)

    response = client.post(
        "/admin/observability/apikey/add/",
        {"name": "deploy bot", "owner": operator.pk, "scope": "write"},
    )

    key = ApiKey.objects.get()
    text = response.content.decode()
    start = text.index(f"gmd_{key.prefix}_")
    full = text[start : text.index("<", start)]
    assert ApiKey.objects.authenticate(full) == key
    # Shown on the page that answers the form, never kept: not in a cookie, not cached.
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert key.prefix not in str(response.cookies) and key.prefix not in str(client.cookies)
    page = client.get(f"/admin/observability/apikey/{key.pk}/change/").content.decode()
    assert full not in page and key.prefix in page

    client.post(
        "/admin/observability/apikey/",
        {"action": "revoke_keys", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_at <= timezone.now()
    assert ApiKey.objects.authenticate(full) is None


def test_a_staff_user_can_only_make_keys_that_act_as_themselves(operator):
    staff = make_user("staffer", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_apikey", "view_apikey"])
    )
    client = Client()
    client.force_login(staff)
    response = client.post(
        "/admin/observability/apikey/add/",
        {"name": "sneaky", "owner": operator.pk, "scope": "write"},
    )
    assert response.status_code == 400  # refused: the form is shown again with an error
    assert not ApiKey.objects.exists()
