"""Server-Sent Events of a run: every event in order, resumable with Last-Event-ID."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import Permission
from django.test import AsyncClient, Client
from django.utils import timezone

from observability import events
from observability.events import EventId
from pipeline.models import PipelineRun, RunStatus, StageExecution, StageStatus
from pipeline.services import retry_run, start_run
from tests.api.conftest import ApiClient, make_user, recorded_run
from tests.conftest import wait_for_runs

FAILING = {
    "question": "Label the parts of a plant cell",
    "faults": {"scene_generator": "fail_once"},
}


def parse(text: str) -> list[dict]:
    """SSE text -> events ({"id", "event", "data"}) and comments ({"comment"})."""
    parsed = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        item: dict = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                item["comment"] = line[1:].strip()
            else:
                field, _, value = line.partition(": ")
                item[field] = value
        parsed.append(item)
    return parsed


def stream(api, run_id, last_event_id: str | None = None):
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    response = api.get(f"/runs/{run_id}/events", headers=headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    return [e for e in parse(b"".join(response.streaming_content).decode()) if "id" in e]


@pytest.mark.usefixtures("sync_queue")
def test_a_whole_run_streams_in_order_and_then_closes(api):
    run = start_run(graph="gamed", input=FAILING)

    received = stream(api, run.pk)

    assert [e["event"] for e in received[:3]] == ["run.started", "stage.started", "stage.finished"]
    assert received[-1]["event"] == "run.ended" and '"status": "failed"' in received[-1]["data"]
    assert "stage.failed" in [e["event"] for e in received]
    ids = [EventId.parse(e["id"]) for e in received]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # Each stage's start comes right before its end: stage rows 1..5, the 5th failed.
    assert [str(i) for i in ids] == ["0.0"] + [f"{k}.{n}" for k in range(1, 6) for n in (0, 1)] + [
        "5.3"
    ]


@pytest.mark.usefixtures("sync_queue")
def test_reconnecting_with_last_event_id_misses_nothing_and_repeats_nothing(api):
    run = start_run(graph="gamed", input=FAILING)
    everything = stream(api, run.pk)

    for cut in (0, 3, 6, len(everything) - 1):
        rest = stream(api, run.pk, last_event_id=everything[cut]["id"])
        assert rest == everything[cut + 1 :], cut


@pytest.mark.usefixtures("sync_queue")
def test_a_retry_streams_its_reused_stages_then_what_it_ran(api):
    failed = start_run(graph="gamed", input=FAILING)
    failed.refresh_from_db()
    retry = retry_run(run=failed, from_stage="scene_generator")

    received = stream(api, retry.pk)

    kinds = [e["event"] for e in received]
    assert kinds[0] == "run.started" and kinds[1:5] == ["stage.reused"] * 4
    assert kinds[5:7] == ["stage.started", "stage.finished"]
    assert kinds[-1] == "run.ended" and '"status": "succeeded"' in received[-1]["data"]


def test_derived_events_wait_for_a_stage_that_is_still_running(db):
    run = recorded_run(
        ("input_enhancer", "succeeded"), ("router", "running"), ("game_planner", "succeeded"),
        status=RunStatus.RUNNING,
    )  # fmt: skip
    PipelineRun.objects.filter(pk=run.pk).update(started_at=run.created_at)
    run.refresh_from_db()

    derived, ended = events.derive_events(run, list(run.stages.order_by("stage_order")))

    assert not ended
    assert [str(e.id) for e in derived] == ["0.0", "1.0", "1.1", "2.0"]


def test_a_pending_run_sends_heartbeats_and_the_stream_ends_at_its_lifetime(db, api, monkeypatch):
    monkeypatch.setattr(events, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.02)
    monkeypatch.setattr(events, "MAX_STREAM_SECONDS", 0.2)
    run = recorded_run(status=RunStatus.PENDING)

    response = api.get(f"/runs/{run.pk}/events")
    items = parse(b"".join(response.streaming_content).decode())

    assert items[0] == {"retry": "2000"}
    assert {"comment": "heartbeat"} in items
    assert items[-1]["comment"].startswith("stream lifetime reached")
    assert not [e for e in items if "id" in e]


def test_events_need_auth_and_an_existing_run(api, db):
    run = recorded_run()
    assert Client().get(f"/api/runs/{run.pk}/events").status_code == 401
    missing = api.get("/runs/00000000-0000-0000-0000-000000000000/events")
    assert missing.status_code == 404 and missing.json()["code"] == "run_not_found"


@pytest.mark.worker
def test_events_follow_a_run_live_on_a_real_worker(workers, api):
    workers.start()
    run = start_run(
        graph="gamed",
        input={"question": "Label the parts of a plant cell", "faults": {"router": "sleep:1"}},
    )

    received = stream(api, run.pk)

    wait_for_runs([run], workers=workers)
    kinds = [e["event"] for e in received]
    assert kinds[0] == "run.started" and kinds[-1] == "run.ended"
    assert kinds.count("stage.started") == kinds.count("stage.finished") == 8
    ids = [EventId.parse(e["id"]) for e in received]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def revoke_key(key, owner):
    key.revoke()


def deactivate_owner(key, owner):
    owner.is_active = False
    owner.save()


def remove_view_permission(key, owner):
    owner.user_permissions.remove(Permission.objects.get(codename="view_pipelinerun"))


@pytest.mark.parametrize("take_away", [revoke_key, deactivate_owner, remove_view_permission])
def test_an_open_stream_ends_once_its_caller_may_no_longer_see_runs(
    db, write_key, operator, monkeypatch, take_away
):
    monkeypatch.setattr(events, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(events, "ACCESS_CHECK_SECONDS", 0.02)
    monkeypatch.setattr(events, "MAX_STREAM_SECONDS", 5.0)
    key, full = write_key
    run = recorded_run(status=RunStatus.PENDING)  # a stream that would otherwise go on
    response = ApiClient(full).get(f"/runs/{run.pk}/events")
    chunks = iter(response.streaming_content)
    assert next(chunks) == b"retry: 2000\n\n"

    take_away(key, operator)

    rest = parse(b"".join(chunks).decode())
    assert rest[-1] == {"comment": "access revoked; reconnect to authenticate again"}


def test_a_staff_session_stream_ends_once_the_user_is_no_longer_staff(db, monkeypatch):
    monkeypatch.setattr(events, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(events, "ACCESS_CHECK_SECONDS", 0.02)
    monkeypatch.setattr(events, "MAX_STREAM_SECONDS", 5.0)
    staff = make_user("watcher", "view", is_staff=True)
    client = Client()
    client.force_login(staff)
    run = recorded_run(status=RunStatus.PENDING)
    chunks = iter(client.get(f"/api/runs/{run.pk}/events").streaming_content)
    assert next(chunks) == b"retry: 2000\n\n"

    staff.is_staff = False
    staff.save()

    rest = parse(b"".join(chunks).decode())
    assert rest[-1] == {"comment": "access revoked; reconnect to authenticate again"}


# Served by the ASGI app: the same events, from an async stream ------------------------------


def read_async(path: str, headers: dict, after_first=None) -> str:
    """The whole body of an event stream read through Django's ASGI handler; `after_first`
    runs (on this thread) once the stream's first chunk has arrived."""

    async def read() -> str:
        response = await AsyncClient().get(path, headers=headers)
        assert response.status_code == 200 and response.is_async
        chunks = []
        async for chunk in response.streaming_content:
            chunks.append(chunk.decode())
            if after_first is not None and len(chunks) == 1:
                await sync_to_async(after_first)()
        return "".join(chunks)

    return async_to_sync(read)()


@pytest.fixture
def fast_events(monkeypatch):
    monkeypatch.setattr(events, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(events, "ACCESS_CHECK_SECONDS", 0.02)
    monkeypatch.setattr(events, "MAX_STREAM_SECONDS", 5.0)


@pytest.mark.usefixtures("sync_queue")
def test_an_async_stream_sends_what_a_threaded_one_does(api, write_key):
    run = start_run(graph="gamed", input=FAILING)
    path = f"/api/runs/{run.pk}/events"

    served = parse(read_async(path, {"X-API-Key": write_key[1]}))

    assert [e for e in served if "id" in e] == stream(api, run.pk)
    assert served[0] == {"retry": "2000"}


@pytest.mark.usefixtures("fast_events")
def test_an_async_stream_wakes_when_its_run_changes_and_ends_with_it(transactional_db, write_key):
    run = recorded_run(status=RunStatus.PENDING)

    def the_run_goes_on():
        # What a worker writes, while the stream waits on the watcher.
        now = timezone.now()
        PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=now)
        StageExecution.objects.create(
            run=run, stage_name="input_enhancer", stage_order=1, status=StageStatus.SUCCEEDED
        )
        PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=now)

    text = read_async(
        f"/api/runs/{run.pk}/events", {"X-API-Key": write_key[1]}, after_first=the_run_goes_on
    )

    received = [e for e in parse(text) if "id" in e]
    assert [(e["id"], e["event"]) for e in received] == [
        ("0.0", "run.started"),
        ("1.0", "stage.started"),
        ("1.1", "stage.finished"),
        ("1.3", "run.ended"),
    ]


@pytest.mark.usefixtures("fast_events")
def test_an_async_stream_sends_heartbeats_and_ends_when_access_is_revoked(
    transactional_db, write_key
):
    key, full = write_key
    run = recorded_run(status=RunStatus.PENDING)

    items = parse(read_async(f"/api/runs/{run.pk}/events", {"X-API-Key": full}, key.revoke))

    assert items[-1] == {"comment": "access revoked; reconnect to authenticate again"}
    assert not [e for e in items if "id" in e]


@pytest.mark.usefixtures("fast_events")
def test_an_idle_async_stream_heartbeats_until_its_lifetime(
    transactional_db, write_key, monkeypatch
):
    monkeypatch.setattr(events, "MAX_STREAM_SECONDS", 0.3)
    run = recorded_run(status=RunStatus.PENDING)

    items = parse(read_async(f"/api/runs/{run.pk}/events", {"X-API-Key": write_key[1]}))

    assert {"comment": "heartbeat"} in items
    assert items[-1]["comment"].startswith("stream lifetime reached")
