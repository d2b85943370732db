"""Create a platform operator (superadmin): an account with no org that crosses orgs where allowed."""

import getpass
import sys

from django.core.management.base import BaseCommand, CommandError

from keyward.accounts import services
from keyward.core.exceptions import ServiceError


def _read_password(from_stdin: bool) -> str:
    """One line of stdin without its line ending (\\n or \\r\\n), or typed twice at a prompt."""
    try:
        if from_stdin:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        password.encode()  # a C-locale stdin passes bad bytes on as lone surrogates
    except EOFError:
        raise CommandError("No terminal to prompt on: pipe the password in with --password-stdin.") from None
    except UnicodeError:
        raise CommandError("The password is not UTF-8 text.") from None
    return password


class Command(BaseCommand):
    help = "Create a superadmin account. The password is read from stdin (--password-stdin) or prompted."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    def handle(self, *args, email: str, password_stdin: bool, **options):
        password = _read_password(password_stdin)
        try:
            account = services.create_superadmin(email=email, password=password)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"Created superadmin {account.email} (id {account.pk})."))
