"""OpenAPI links: how one operation's response names what another operation takes, so that
clients (and stateful tests) can follow a run from its creation to its stages and checkpoints."""

API_ROOT = "/api"  # where gamed_console.urls mounts the API
RUN = f"{API_ROOT}/runs/{{run_id}}"
OPERATIONS = {
    "run_detail": ("get", RUN),
    "run_stages": ("get", f"{RUN}/stages"),
    "run_checkpoints": ("get", f"{RUN}/checkpoints"),
    "run_logs": ("get", f"{RUN}/logs"),
    "run_events": ("get", f"{RUN}/events"),
    "retry": ("post", f"{RUN}/retry"),
    "cancel": ("post", f"{RUN}/cancel"),
    "resume": ("post", f"{RUN}/resume"),
    "rerun": ("post", f"{RUN}/rerun"),
    "stage_detail": ("get", f"{RUN}/stages/{{stage_id}}"),
    "checkpoint_state": ("get", f"{RUN}/checkpoints/{{checkpoint_id}}"),
    "graph_detail": ("get", f"{API_ROOT}/graphs/{{name}}"),
}
RUN_OPERATIONS = [
    "run_detail",
    "run_stages",
    "run_checkpoints",
    "run_logs",
    "run_events",
    "retry",
    "cancel",
    "resume",
    "rerun",
]


def _ref(name: str) -> str:
    method, path = OPERATIONS[name]
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def links(status: int, **targets: dict[str, str]) -> dict:
    """`openapi_extra` linking the `status` response to operations, each with the runtime
    expressions of its parameters."""
    return {
        "responses": {
            status: {  # an int, as django-ninja keys the responses it merges these into
                "links": {
                    name: {"operationRef": _ref(name), "parameters": parameters}
                    for name, parameters in targets.items()
                }
            }
        }
    }


def run_links(status: int, run_id: str = "$response.body#/id") -> dict:
    """Links from a response that names a run (by default, the run it answers with) to what
    can be asked of that run."""
    return links(status, **{name: {"run_id": run_id} for name in RUN_OPERATIONS})
