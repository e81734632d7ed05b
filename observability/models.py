import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

KEY_PREFIX = "gmd"
PREFIX_PATTERN = re.compile(r"[0-9a-f]{8}")
# Recording every request would turn each read into a write; a minute is precise enough.
LAST_USED_PRECISION = timedelta(minutes=1)


class ApiKeyScope(models.TextChoices):
    READ = "read", "read-only"
    WRITE = "write", "read-write"


def _digest(salt: str, secret: str) -> str:
    # Keys are 256-bit random tokens, not passwords: one salted SHA-256 is enough and keeps
    # authentication cheap on every request.
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> "ApiKeyQuerySet":
        return self.filter(revoked_at__isnull=True)


class ApiKeyManager(models.Manager.from_queryset(ApiKeyQuerySet)):
    def create_key(self, *, name: str, owner, scope: str = ApiKeyScope.READ) -> tuple:
        """Create a key; returns (ApiKey, the full key). The full key is never stored."""
        key = self.model(name=name, owner=owner, scope=scope)
        full = key.set_new_secret()
        key.save()
        return key, full

    def authenticate(self, raw: str) -> "ApiKey | None":
        """The active key `raw` belongs to, with its owner; None for a bad or revoked key."""
        brand, _, rest = raw.strip().partition("_")
        prefix, _, secret = rest.partition("_")
        if brand != KEY_PREFIX or not PREFIX_PATTERN.fullmatch(prefix) or not secret:
            return None
        key = self.active().select_related("owner").filter(prefix=prefix).first()
        if key is None or not key.matches(secret) or not key.owner.is_active:
            return None
        return key


class ApiKey(models.Model):
    """A credential for integrations. It acts as its owner, limited to its scope."""

    name = models.CharField(max_length=100, help_text="What uses the key, e.g. 'CI pipeline'.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text="The key acts as this user: it has this user's permissions.",
    )
    prefix = models.CharField(
        max_length=16, unique=True, editable=False, help_text="Shown to tell keys apart."
    )
    hashed_key = models.CharField(max_length=128, editable=False)
    scope = models.CharField(max_length=10, choices=ApiKeyScope.choices, default=ApiKeyScope.READ)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyManager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix})"

    @property
    def display_prefix(self) -> str:
        return f"{KEY_PREFIX}_{self.prefix}_…"

    @property
    def label(self) -> str:
        """How audit records name the key."""
        return f"api key {self.prefix} ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def can_write(self) -> bool:
        return self.scope == ApiKeyScope.WRITE

    def set_new_secret(self) -> str:
        """Give an unsaved key its prefix and hashed secret; returns the full key, which is
        shown once and never stored."""
        while True:
            prefix = secrets.token_hex(4)
            if not ApiKey.objects.filter(prefix=prefix).exists():
                break
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(8)
        self.prefix = prefix
        self.hashed_key = f"sha256${salt}${_digest(salt, secret)}"
        return f"{KEY_PREFIX}_{prefix}_{secret}"

    def matches(self, secret: str) -> bool:
        _, salt, digest = self.hashed_key.split("$", 2)
        return hmac.compare_digest(digest, _digest(salt, secret))

    def revoke(self) -> None:
        now = timezone.now()
        ApiKey.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now)
        self.revoked_at = self.revoked_at or now

    def touch(self) -> None:
        """Record use, at most once per LAST_USED_PRECISION."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < LAST_USED_PRECISION:
            return
        ApiKey.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_PRECISION),
            pk=self.pk,
        ).update(last_used_at=now)
        self.last_used_at = now


class IdempotentRequest(models.Model):
    """The first response to a request sent with an `Idempotency-Key` header, for replay.

    Keys are scoped per caller (an API key, or a user's session). A row without a status is a
    request still in progress.
    """

    caller = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["caller", "key"], name="idempotency_key_per_caller")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.caller})"
