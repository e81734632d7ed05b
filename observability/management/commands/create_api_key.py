from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from observability.models import ApiKey, ApiKeyScope


class Command(BaseCommand):
    help = "Create an API key for the JSON API and print it (it is shown only this once)."
    # It runs no graph: no need for the checks that build them all (and import LangGraph).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="What uses the key, e.g. 'CI'.")
        parser.add_argument(
            "--owner", required=True, help="Username the key acts as (its permissions apply)."
        )
        parser.add_argument(
            "--scope",
            choices=[ApiKeyScope.READ, ApiKeyScope.WRITE],
            default=ApiKeyScope.READ,
            help="read (default) or write (read-write)",
        )

    def handle(self, *args, name: str, owner: str, scope: str, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: owner})
        except User.DoesNotExist:
            raise CommandError(f"No user {owner!r}.") from None
        if not user.is_active:
            raise CommandError(f"User {owner!r} is inactive; its keys would not work.")
        if not name.strip():
            raise CommandError("--name must not be blank.")
        longest = ApiKey._meta.get_field("name").max_length
        if len(name.strip()) > longest:
            raise CommandError(f"--name must be at most {longest} characters.")
        key, full = ApiKey.objects.create_key(name=name.strip(), owner=user, scope=scope)
        self.stderr.write(
            f"Created {key.get_scope_display()} API key {key.prefix} ({key.name}) acting as "
            f"{owner}. Store it now: it is not shown again."
        )
        self.stdout.write(full)
