"""Admin for API keys: a key is shown once, on the page that answers its creation."""

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils import timezone

from observability.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "owner", "scope", "created_at", "last_used_at", "state"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "owner__username"]
    actions = ["revoke_keys"]

    def get_queryset(self, request):
        # A key acts as its owner: only a superuser may see or change someone else's keys.
        keys = super().get_queryset(request).select_related("owner")
        return keys if request.user.is_superuser else keys.filter(owner=request.user)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "owner", "scope"]
        return ["name", "prefix", "owner", "scope", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["prefix", "owner", "created_at", "last_used_at", "revoked_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # Only a superuser may make a key that acts as someone else.
        if db_field.name == "owner" and not request.user.is_superuser:
            kwargs["queryset"] = db_field.remote_field.model.objects.filter(pk=request.user.pk)
            kwargs["initial"] = request.user.pk
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def render_change_form(self, request, context, *args, **kwargs):
        response = super().render_change_form(request, context, *args, **kwargs)
        if context["adminform"].form.errors:
            response.status_code = 400  # refused, as the console's other forms are
        return response

    def save_model(self, request, obj, form, change):
        if not change:
            obj.shown_once = obj.set_new_secret()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        # The full key is on this page only: a message would carry it in the messages cookie.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created",
            "key": obj,
            "full_key": obj.shown_once,
        }
        # Admin's views are never cached (no-store), this page included.
        return TemplateResponse(request, "admin/observability/apikey/created.html", context)

    @admin.display(description="state")
    def state(self, key: ApiKey) -> str:
        return "active" if key.is_active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} API key{'' if count == 1 else 's'}.")
