"""Admin for API keys: a key is shown once, in a message, when it is created."""

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from observability.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "owner", "scope", "created_at", "last_used_at", "state"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "owner__username"]
    actions = ["revoke_keys"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "owner", "scope"]
        return ["name", "prefix", "owner", "scope", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["prefix", "owner", "created_at", "last_used_at", "revoked_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # A key acts as its owner: only a superuser may make one that acts as someone else.
        if db_field.name == "owner" and not request.user.is_superuser:
            kwargs["queryset"] = db_field.remote_field.model.objects.filter(pk=request.user.pk)
            kwargs["initial"] = request.user.pk
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        full = obj.set_new_secret()
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            format_html(
                "API key for {}: <code>{}</code> — copy it now, it will not be shown again.",
                obj.name,
                full,
            ),
            messages.WARNING,
        )

    @admin.display(description="state")
    def state(self, key: ApiKey) -> str:
        return "active" if key.is_active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} API key{'' if count == 1 else 's'}.")
