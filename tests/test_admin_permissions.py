"""Every admin URL, walked by users with different permissions: admin refuses what the API
refuses (an action needs the view permission too), and API keys stay with their owners."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import URLResolver, reverse

from observability.models import ApiKey, ApiKeyScope
from pipeline.models import AuditRecord, NodeInvocation, PipelineRun, RunStatus
from pipeline.services import Actor, cancel_run
from tests.console import OPERATOR_PERMS, VIEW_PERMS, make_run

pytestmark = pytest.mark.django_db

RUN_ACTIONS = ("start", "retry", "cancel", "resume", "answer")
KEY_PERMS = ("add_apikey", "change_apikey", "view_apikey", "delete_apikey")
USERS = {
    "nobody": (),
    "viewer": VIEW_PERMS,
    # Each action without the view permission on runs (the stage list they may see).
    **{f"{verb}_only": (f"{verb}_pipelinerun", "view_stageexecution") for verb in RUN_ACTIONS},
    "operator": OPERATOR_PERMS,
    "key_manager": KEY_PERMS,
}
# Runs, stages, the ledger and the audit trail are written by the engine only.
READ_ONLY = {"pipelinerun", "stageexecution", "nodeinvocation", "auditrecord"}
# The run pages' own views, and the permission each needs besides viewing runs.
RUN_VIEWS = {"start": "start", "retry": "retry", "cancel": "cancel", "resume": "resume",
             "rerun": "retry", "stats": None, "live": None, "inbox": None}  # fmt: skip
# Views that only take a POST: a GET is refused (403 or 405) to everyone.
POST_ONLY = {"answer"}
# Admin's pages about no model, and what a signed-in staff user gets from them.
SITE_URLS = {"index": 200, "password_change": 200, "password_change_done": 200,
             "jsi18n": 200, "login": 302, "logout": 405, "autocomplete": 403,
             "view_on_site": 404, "app_list": None}  # fmt: skip


def make_user(name: str, codenames, **flags) -> User:
    user = User.objects.create(username=name, is_staff=True, **flags)  # force_login: no password
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)


def admin_url_names() -> set[str]:
    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns)
            elif pattern.name:
                yield pattern.name

    return set(walk(admin.site.get_urls()))


def model_urls() -> dict[str, tuple[str, str, str]]:
    """Every admin URL about a model: name -> (app label, model, view)."""
    urls = {}
    for model in admin.site._registry:
        app, name = model._meta.app_label, model._meta.model_name
        for url_name in admin_url_names():
            if url_name.startswith(f"{app}_{name}_"):
                urls[url_name] = (app, name, url_name.removeprefix(f"{app}_{name}_"))
    return urls


@pytest.fixture
def world():
    """A failed run with its stages, a cancelled one, a ledger row, an audit record, a key of
    the superuser's and one of the key manager's."""
    root = make_user("root", (), is_superuser=True)
    users = {name: make_user(name, perms) for name, perms in USERS.items()}
    users["superuser"] = root
    failed = make_run(status=RunStatus.FAILED, stages=3, failed_at=3)
    cancel_run(run=make_run(status=RunStatus.PENDING, stages=0), actor=Actor(user=root))
    NodeInvocation.objects.create(run=failed, root_run_id=failed.pk, stage_name="router")
    their_key, _ = ApiKey.objects.create_key(name="root's", owner=root, scope=ApiKeyScope.READ)
    own_key, _ = ApiKey.objects.create_key(name="own", owner=users["key_manager"])
    objects = {
        "pipelinerun": failed.pk,
        "stageexecution": failed.stages.first().pk,
        "nodeinvocation": NodeInvocation.objects.get().pk,
        "auditrecord": AuditRecord.objects.get().pk,
        "apikey": their_key.pk,
        "user": root.pk,
    }
    return users, objects, own_key


def may_get(user: User, app: str, model: str, view: str, owns_it: bool) -> bool:
    """Who may open an admin page of a model, from the rules docs/operating.md states."""
    if app in {"auth", "django_q"}:
        return False  # nobody walked there has permissions there
    if model == "pipelinerun" and view in POST_ONLY:
        return False
    if model == "pipelinerun" and view in RUN_VIEWS:
        needs = RUN_VIEWS[view]
        may_view = user.has_perm("pipeline.view_pipelinerun")
        return may_view and (needs is None or user.has_perm(f"pipeline.{needs}_pipelinerun"))
    if model in READ_ONLY and view in {"add", "delete"}:
        return False
    if model == "apikey" and view not in {"changelist", "add"} and not owns_it:
        return user.is_superuser
    verbs = {"add": ["add"], "delete": ["delete"]}.get(view, ["view", "change"])
    return any(user.has_perm(f"{app}.{verb}_{model}") for verb in verbs)


def test_every_admin_url_is_in_the_walk():
    assert admin_url_names() == set(model_urls()) | set(SITE_URLS)


@pytest.mark.parametrize("username", [*USERS, "superuser"])
def test_each_user_opens_exactly_the_admin_pages_the_permissions_allow(world, username):
    users, objects, own_key = world
    user = users[username]
    client = Client()
    client.force_login(user)
    wrong = []
    for url_name, (app, model, view) in sorted(model_urls().items()):
        # Django's and django-q2's own pages: refused to everyone in the matrix but the
        # superuser, so the most trusted of them stand for the others.
        if app in {"auth", "django_q"} and username not in {"operator", "key_manager"}:
            continue
        no_args = {"changelist", "add", "start", "stats", "inbox"}
        args = [] if view in no_args else [objects.get(model, 1)]
        targets = [(reverse(f"admin:{url_name}", args=args), False)]
        if model == "apikey" and args:
            owns = user == own_key.owner
            targets.append((reverse(f"admin:{url_name}", args=[own_key.pk]), owns))
        for url, owns_it in targets:
            expected = may_get(user, app, model, view, owns_it)
            status = client.get(url).status_code
            if (status == 200) != expected:
                wrong.append((url, status, "expected" if expected else "refused"))
    for url_name, status in SITE_URLS.items():
        kwargs = {"app_label": "pipeline"} if url_name == "app_list" else {}
        if url_name == "view_on_site":
            kwargs = {"content_type_id": "1", "object_id": "1"}
        got = client.get(reverse(f"admin:{url_name}", kwargs=kwargs)).status_code
        if url_name == "app_list":  # an app's index: for users with a permission in it
            status = 200 if user.has_module_perms("pipeline") else 404
        if got != status:
            wrong.append((url_name, got, status))
    assert not wrong, wrong


def state_of_everything() -> tuple:
    return (
        sorted(PipelineRun.objects.values_list("pk", "status", "cancel_requested")),
        AuditRecord.objects.count(),
        sorted(ApiKey.objects.values_list("pk", "name", "scope", "revoked_at")),
    )


def test_forged_posts_without_the_view_permission_or_of_others_keys_change_nothing(world):
    users, objects, _ = world
    run = PipelineRun.objects.get(pk=objects["pipelinerun"])
    cancelled = PipelineRun.objects.get(status=RunStatus.CANCELLED)
    pending = make_run(status=RunStatus.PENDING, stages=0)
    stage = objects["stageexecution"]
    key = objects["apikey"]
    posts = [
        ("start_only", reverse("admin:pipeline_pipelinerun_start"),
         {"graph": "gamed", "input": '{"question": "Label the parts of a plant cell"}'}),
        ("retry_only", reverse("admin:pipeline_pipelinerun_retry", args=[run.pk]),
         {"stage": stage, "_confirm": "1"}),
        ("retry_only", reverse("admin:pipeline_pipelinerun_rerun", args=[run.pk]), {}),
        ("retry_only", reverse("admin:pipeline_stageexecution_changelist"),
         {"action": "retry_from_this_stage", "_selected_action": [stage]}),
        ("cancel_only", reverse("admin:pipeline_pipelinerun_cancel", args=[pending.pk]), {}),
        ("resume_only", reverse("admin:pipeline_pipelinerun_resume", args=[cancelled.pk]), {}),
        ("answer_only", reverse("admin:pipeline_pipelinerun_answer", args=[pending.pk]),
         {"interrupt_id": "x", "text": "approve"}),
        ("key_manager", reverse("admin:observability_apikey_change", args=[key]),
         {"name": "mine now", "scope": "write"}),
        ("key_manager", reverse("admin:observability_apikey_changelist"),
         {"action": "revoke_keys", "_selected_action": [key]}),
        ("key_manager", reverse("admin:observability_apikey_delete", args=[key]), {"post": "yes"}),
    ]  # fmt: skip
    before = state_of_everything()

    for username, url, data in posts:
        client = Client()
        client.force_login(users[username])
        response = client.post(url, data)
        assert response.status_code in (200, 302, 403), (username, url)

    assert state_of_everything() == before


def test_a_key_manager_manages_their_own_keys(world):
    users, objects, own_key = world
    their_key = ApiKey.objects.get(pk=objects["apikey"])
    client = Client()
    client.force_login(users["key_manager"])

    listed = client.get(reverse("admin:observability_apikey_changelist")).text
    client.post(
        reverse("admin:observability_apikey_change", args=[own_key.pk]),
        {"name": "renamed", "scope": "write"},
    )

    assert own_key.prefix in listed and their_key.prefix not in listed
    own_key.refresh_from_db()
    assert (own_key.name, own_key.scope) == ("renamed", ApiKeyScope.WRITE)
