"""Fixtures of the JSON API tests: users with permissions, API keys, a client that uses them."""

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from observability.models import ApiKey, ApiKeyScope
from pipeline.models import PipelineRun, RunStatus, StageExecution, StageStatus

ALL_PERMS = ("view", "start", "retry", "cancel", "resume", "answer")


def make_user(username: str, *perms: str, is_staff: bool = False) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=is_staff)
    codenames = [f"{perm}_pipelinerun" for perm in perms]
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


class ApiClient:
    """Calls the API with an API key (or none), the way an integration would."""

    def __init__(self, key: str | None = None, header: str = "x-api-key"):
        self.client = Client()
        self.key = key
        self.header = header

    def _headers(self, headers: dict) -> dict:
        if self.key is None:
            return headers
        if self.header == "bearer":
            return {"authorization": f"Bearer {self.key}", **headers}
        return {self.header: self.key, **headers}

    def get(self, path: str, headers: dict | None = None, **params):
        return self.client.get(f"/api{path}", params, headers=self._headers(headers or {}))

    def post(self, path: str, body: dict | None = None, headers: dict | None = None):
        return self.client.post(
            f"/api{path}",
            json.dumps(body or {}),
            content_type="application/json",
            headers=self._headers(headers or {}),
        )


def integration_key() -> str:
    """A read-write API key (the full key) whose owner has every run permission."""
    owner = User.objects.create(username="integration")  # no password to hash
    owner.user_permissions.set(
        Permission.objects.filter(codename__in=[f"{perm}_pipelinerun" for perm in ALL_PERMS])
    )
    return ApiKey.objects.create_key(name="ci", owner=owner, scope=ApiKeyScope.WRITE)[1]


@pytest.fixture
def operator(db) -> User:
    return make_user("operator", *ALL_PERMS)


@pytest.fixture
def write_key(operator) -> tuple[ApiKey, str]:
    return ApiKey.objects.create_key(name="ci", owner=operator, scope=ApiKeyScope.WRITE)


@pytest.fixture
def read_key(operator) -> tuple[ApiKey, str]:
    return ApiKey.objects.create_key(name="dashboard", owner=operator, scope=ApiKeyScope.READ)


@pytest.fixture
def api(write_key) -> ApiClient:
    """A client with a read-write key whose owner has every run permission."""
    return ApiClient(write_key[1])


@pytest.fixture
def reader(read_key) -> ApiClient:
    return ApiClient(read_key[1])


def recorded_run(*stages: tuple[str, str], status: str = RunStatus.FAILED, **fields) -> PipelineRun:
    """A finished run written straight to the database (no graph execution)."""
    run = PipelineRun.objects.create(
        graph="gamed",
        input={"question": "Label the parts of a plant cell"},
        status=status,
        **fields,
    )
    StageExecution.objects.bulk_create(
        StageExecution(
            run=run,
            stage_name=name,
            stage_order=order,
            status=stage_status,
            duration_ms=10,
            error_message="boom" if stage_status == StageStatus.FAILED else "",
        )
        for order, (name, stage_status) in enumerate(stages, start=1)
    )
    return run
