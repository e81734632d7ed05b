"""Settings for gamed-console. Everything comes from the environment; see docs/settings.md."""

import json
from importlib.util import find_spec
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from gamed_console.env import (
    env_bool,
    env_duration,
    env_float,
    env_header,
    env_int,
    env_list,
    env_prices,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GAMED_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)


def _local_secret_key() -> str:
    # A random key kept in var/ so local sessions survive restarts; production sets SECRET_KEY.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") or _local_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# HTTPS in production (docs/settings.md): all off by default, for `make run` on plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# Behind a proxy that terminates TLS: the header it sets on HTTPS requests, e.g.
# "X-Forwarded-Proto: https". Only set it when the proxy always sets (or strips) that header.
SECURE_PROXY_SSL_HEADER = env_header("SECURE_PROXY_SSL_HEADER")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before django_q: its `qcluster` command is pipeline's, which stops gracefully.
    "pipeline",
    "django_q",
    "observability",
]

MIDDLEWARE = [
    "observability.middleware.ApiErrorShapeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

CSRF_FAILURE_VIEW = "observability.middleware.csrf_failure"

ROOT_URLCONF = "gamed_console.urls"
WSGI_APPLICATION = "gamed_console.wsgi.application"
ASGI_APPLICATION = "gamed_console.asgi.application"

# django-ninja's templates and static files, so /api/docs serves Swagger UI itself, not from a
# CDN. Found without importing django-ninja, as "ninja" in INSTALLED_APPS would in every
# manage.py command (with pydantic: a tenth of `manage.py runs`).
NINJA_DIR = Path(find_spec("ninja").origin).parent

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates", NINJA_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Databases ------------------------------------------------------------------------------------

SQLITE_BUSY_TIMEOUT_SECONDS = env_int("GAMED_SQLITE_BUSY_TIMEOUT", 30, minimum=1)
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'gamed.sqlite3'}"
# libpq TCP keepalives for every Postgres connection (Django's and the checkpoint pool's): a
# peer that vanished without closing (a NAT or load balancer dropping an idle connection, a
# failover) is noticed by the kernel within about a minute, so the idle-connection health
# checks see it like a closed session instead of a query hanging on a dead socket.
POSTGRES_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


# The web process (gamed_console.asgi sets GAMED_PROCESS=web) takes its Postgres connections
# from a pool of at most this many, whatever the load; a request waits for a free one (up to
# GAMED_DB_POOL_TIMEOUT seconds) rather than opening another.
WEB_PROCESS = env_str("GAMED_PROCESS") == "web"
GAMED_DB_POOL_SIZE = env_int("GAMED_DB_POOL_SIZE", 8, minimum=2)
GAMED_DB_POOL_TIMEOUT = env_float("GAMED_DB_POOL_TIMEOUT", 10.0)


def _database(url: str) -> dict:
    # Workers are long-lived: reconnecting for every task costs more than the task's queries.
    # The web process gives a connection back (to the pool) at the end of each request.
    conn_max_age = 0 if WEB_PROCESS else env_int("GAMED_CONN_MAX_AGE", 60)
    config = dj_database_url.parse(url, conn_max_age=conn_max_age)
    config["CONN_HEALTH_CHECKS"] = True
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # The web server, the workers and the checkpointer share one file: WAL lets readers
        # proceed beside a writer, IMMEDIATE makes writers queue on the busy timeout instead of
        # failing with "database is locked" when a read transaction tries to upgrade.
        config["OPTIONS"] = {
            "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        config["TEST"] = {"NAME": str(VAR_DIR / f"test-{Path(config['NAME']).stem}.sqlite3")}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, with a health check that needs no round trip on an idle connection.
        config["ENGINE"] = "gamed_console.postgresql"
        config["OPTIONS"] = {**POSTGRES_KEEPALIVES, **config.get("OPTIONS", {})}
        if WEB_PROCESS:
            config["OPTIONS"]["pool"] = {
                "min_size": 1,
                "max_size": GAMED_DB_POOL_SIZE,
                "timeout": GAMED_DB_POOL_TIMEOUT,
            }
    else:
        raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL")
    return config


DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Empty means "the same database as Django" (resolved at run time, so tests use the test DB).
CHECKPOINT_DATABASE_URL = env_str("CHECKPOINT_DATABASE_URL")
CHECKPOINT_POOL_SIZE = env_int("GAMED_CHECKPOINT_POOL_SIZE", 4, minimum=1)

# Queue -----------------------------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
GAMED_WORKERS = env_int("GAMED_WORKERS", 2, minimum=1)
GAMED_TASK_TIMEOUT = env_int("GAMED_TASK_TIMEOUT", 3600, minimum=10)
# After SIGTERM, a qcluster has exited within this many seconds (docs/operating.md, "Stopping
# a worker host").
GAMED_SHUTDOWN_SECONDS = env_int("GAMED_SHUTDOWN_SECONDS", 10, minimum=3)

Q_CLUSTER = {
    "name": env_str("GAMED_CLUSTER_NAME", "gamed"),
    "workers": GAMED_WORKERS,
    "recycle": 500,
    "timeout": GAMED_TASK_TIMEOUT,
    # django-q2 redelivers an unacknowledged ORM task after `retry` seconds; it must exceed the
    # timeout or a slow run would be handed to a second worker while the first still works.
    "retry": GAMED_TASK_TIMEOUT + 60,
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    # Runs are recorded in PipelineRun; keeping every successful task too would cost a write
    # (and a prune) per run. Failed tasks are always kept.
    "save_limit": env_int("GAMED_QUEUE_SAVE_LIMIT", -1),
    "label": "Task queue",
    "poll": env_float("GAMED_QUEUE_POLL", 0.2),
    "queue_limit": env_int("GAMED_QUEUE_LIMIT", GAMED_WORKERS, minimum=1),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    # The ORM broker with one statement per task handed out and per task acknowledged, oldest
    # task first (pipeline/broker.py).
    Q_CLUSTER["broker_class"] = "pipeline.broker.OrmBroker"

# Pipelines -------------------------------------------------------------------------------------

GAMED_GRAPHS = {"gamed": "pipeline.graphs.gamed:build_graph"}
_extra_graphs = env_str("GAMED_EXTRA_GRAPHS")
if _extra_graphs:
    try:
        GAMED_GRAPHS.update(json.loads(_extra_graphs))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ImproperlyConfigured(
            'GAMED_EXTRA_GRAPHS must be a JSON object like {"name": "module:builder"}'
        ) from exc

# Demo and test instrumentation: runs' `faults` input and the node execution ledger.
GAMED_FAULT_INJECTION = env_bool("GAMED_FAULT_INJECTION", False)
GAMED_MAX_RETRY_DEPTH = env_int("GAMED_MAX_RETRY_DEPTH", 3, minimum=1)
# Where people open the console, for the links commands print and the API returns. Unset, it is
# the address `make run` (`manage.py console --addr`) last served on, recorded in VAR_DIR.
CONSOLE_URL_FILE = VAR_DIR / "console_url"
GAMED_BASE_URL = (
    env_str("GAMED_BASE_URL")
    or (CONSOLE_URL_FILE.read_text().strip() if CONSOLE_URL_FILE.exists() else "")
    or "http://127.0.0.1:8000"
).rstrip("/")
GAMED_SNAPSHOT_MAX_BYTES = env_int("GAMED_SNAPSHOT_MAX_BYTES", 65536, minimum=1024)
# A run's final state as shown in admin and the API; the checkpoint endpoints have all of it.
GAMED_OUTPUT_MAX_BYTES = env_int("GAMED_OUTPUT_MAX_BYTES", 262144, minimum=1024)
GAMED_RECURSION_LIMIT = env_int("GAMED_RECURSION_LIMIT", 50, minimum=5)
# How long the stage-row writer lets events gather before a batch (seconds).
GAMED_STAGE_WRITE_DELAY = env_float("GAMED_STAGE_WRITE_DELAY", 0.05)
GAMED_HEARTBEAT_SECONDS = env_float("GAMED_HEARTBEAT_SECONDS", 10.0)
GAMED_LEASE_SECONDS = env_int("GAMED_LEASE_SECONDS", 60, minimum=2)
GAMED_CANCEL_POLL_SECONDS = env_float("GAMED_CANCEL_POLL_SECONDS", 1.0)
GAMED_AUTO_RESUME = env_bool("GAMED_AUTO_RESUME", True)
GAMED_MAX_AUTO_RESUMES = env_int("GAMED_MAX_AUTO_RESUMES", 3, minimum=0)
GAMED_REQUEUE_AFTER_SECONDS = env_int("GAMED_REQUEUE_AFTER_SECONDS", 600, minimum=1)
GAMED_WORKER_NAME = env_str("GAMED_WORKER_NAME")
GAMED_STAGE_LOG_LIMIT = env_int("GAMED_STAGE_LOG_LIMIT", 1000, minimum=0)
GAMED_STAGE_LOG_LEVEL = env_str("GAMED_STAGE_LOG_LEVEL", "INFO").upper()
GAMED_CHECKPOINT_RETENTION_SECONDS = env_duration("GAMED_CHECKPOINT_RETENTION", "30d")
# How long a run may wait for an operator's answer (0: for ever); a graph's own
# `interrupt_timeout` wins.
GAMED_INTERRUPT_TIMEOUT = env_duration("GAMED_INTERRUPT_TIMEOUT", "0")

# Chat models (docs/models.md). GamED's generating stages call GAMED_CHAT_MODEL through
# init_chat_model ("openai:gpt-4o-mini"); empty: the built-in offline model. The provider's key
# comes from its own environment variable (OPENAI_API_KEY, ...), never from settings.
GAMED_CHAT_MODEL = env_str("GAMED_CHAT_MODEL").strip()
GAMED_CHAT_MODEL_BASE_URL = env_str("GAMED_CHAT_MODEL_BASE_URL").strip()
GAMED_MODEL_TIMEOUT_SECONDS = env_float("GAMED_MODEL_TIMEOUT_SECONDS", 120.0)
# Rate limits, timeouts and server errors: tries of a stage, the first wait (doubling after).
GAMED_MODEL_MAX_ATTEMPTS = env_int("GAMED_MODEL_MAX_ATTEMPTS", 4, minimum=1)
GAMED_MODEL_RETRY_SECONDS = env_float("GAMED_MODEL_RETRY_SECONDS", 2.0)
# $ per million tokens by model name: {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}.
GAMED_MODEL_PRICES = env_prices("GAMED_MODEL_PRICES")

# Static, i18n, logging -------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["gamed_console.formats"]
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [NINJA_DIR / "static"]
# The ASGI app serves STATIC_URL itself (`make run`); in production the proxy serves STATIC_ROOT.
GAMED_SERVE_STATIC = env_bool("GAMED_SERVE_STATIC", False)

LOGIN_URL = "admin:login"

# Bearer token Prometheus scrapes /metrics with; empty: only API keys and staff sessions.
GAMED_METRICS_TOKEN = env_str("GAMED_METRICS_TOKEN")

GAMED_LOG_FORMAT = env_str("GAMED_LOG_FORMAT", "plain").strip().lower()
if GAMED_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"GAMED_LOG_FORMAT must be plain or json, got {GAMED_LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"run_context": {"()": "gamed_console.logging.RunContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "gamed_console.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": GAMED_LOG_FORMAT,
            "filters": ["run_context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("GAMED_LOG_LEVEL", "INFO")},
    # django-q2 logs to "django-q": INFO has a line per task it hands out and one per result.
    "loggers": {"django-q": {"level": env_str("GAMED_QUEUE_LOG_LEVEL", "INFO")}},
}
