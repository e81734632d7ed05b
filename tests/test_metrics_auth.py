"""/metrics is refused without credentials: the metrics token, an API key or a staff session."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from observability.models import ApiKey, ApiKeyScope

TOKEN = "s3cret-scrape-token"


@pytest.fixture
def metrics_token(settings):
    settings.GAMED_METRICS_TOKEN = TOKEN
    return TOKEN


def get(client: Client | None = None, **headers):
    return (client or Client()).get("/metrics", headers=headers)


@pytest.mark.django_db
def test_unauthenticated_scrape_is_refused(metrics_token):
    response = get()

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"gamed_" not in response.content


@pytest.mark.django_db
def test_wrong_token_is_refused(metrics_token):
    assert get(authorization="Bearer not-the-token").status_code == 401
    assert get(authorization=f"Basic {TOKEN}").status_code == 401


@pytest.mark.django_db
def test_metrics_token_allows_a_scrape(metrics_token):
    response = get(authorization=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert b"# TYPE gamed_queue_depth gauge" in response.content


@pytest.mark.django_db
def test_empty_token_setting_disables_token_auth(settings):
    settings.GAMED_METRICS_TOKEN = ""

    assert get().status_code == 401
    assert get(authorization="Bearer ").status_code == 401
    assert get(authorization="Bearer").status_code == 401


@pytest.mark.django_db
def test_read_scope_api_key_allows_a_scrape_and_a_revoked_one_does_not():
    owner = User.objects.create_user("dashboard")
    key, full = ApiKey.objects.create_key(name="prometheus", owner=owner, scope=ApiKeyScope.READ)

    assert get(authorization=f"Bearer {full}").status_code == 200
    assert get(x_api_key=full).status_code == 200
    key.revoke()
    assert get(authorization=f"Bearer {full}").status_code == 401


@pytest.mark.django_db
def test_staff_session_allows_a_scrape_and_a_non_staff_one_is_forbidden():
    staff = Client()
    staff.force_login(User.objects.create_user("ops", is_staff=True))
    viewer = Client()
    viewer.force_login(User.objects.create_user("viewer"))

    assert get(staff).status_code == 200
    assert get(viewer).status_code == 403


@pytest.mark.django_db
def test_only_get_is_allowed(metrics_token):
    response = Client().post("/metrics", headers={"authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 405
