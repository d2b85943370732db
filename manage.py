#!/usr/bin/env python
"""keyward's command line (Django's manage.py). Configuration errors print one line, no traceback."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keyward.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    from keyward.config import ConfigError

    try:
        settings.INSTALLED_APPS  # noqa: B018 - load settings now so bad env fails here, clearly
    except ConfigError as exc:
        sys.exit(f"keyward: configuration error: {exc}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
