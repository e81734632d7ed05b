import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create the `admin` superuser with a random password, printed once, if no superuser "
        "exists yet. Does nothing afterwards."
    )
    # It runs no graph: no need for the checks that build them all (and import LangGraph).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, **options):
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        try:
            users.model._meta.get_field(users.model.USERNAME_FIELD).clean(options["username"], None)
        except ValidationError as error:
            raise CommandError(f"--username: {' '.join(error.messages)}") from None
        password = secrets.token_urlsafe(15)
        users.create_superuser(options["username"], email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created superuser {options['username']!r} with password: {password}\n"
                "This is the only time it is shown; change it in admin or with "
                "`manage.py changepassword`."
            )
        )
