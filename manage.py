#!/usr/bin/env python
"""Django's command-line utility for Chorus."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from project.config import ConfigError, exit_on_config_error

    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - load settings now to report config errors cleanly
    except ConfigError as exc:
        exit_on_config_error(exc)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
