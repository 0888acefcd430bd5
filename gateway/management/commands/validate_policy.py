"""Check a routing policy file without starting anything: exit 0 if valid, 1 if not.

    python manage.py validate_policy [PATH]      # default: settings.AICC_POLICY_PATH

Models are checked against the file's `models` list plus AICC_KNOWN_MODELS, as at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.policy import PolicyError, default_policy_path, load_policy


class Command(BaseCommand):
    help = "Validate a routing policy file (default: AICC_POLICY_PATH); exit 1 if invalid."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", type=Path, help="policy YAML file")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"] or default_policy_path()
        try:
            loaded = load_policy(path)
        except PolicyError as exc:
            for problem in exc.problems:
                self.stderr.write(f"{path}: {problem}")
            raise CommandError(f"{path} is not a valid routing policy", returncode=1) from exc
        policy = loaded.policy
        self.stdout.write(
            f"{path}: valid (version {loaded.version}); {len(policy.routing.rules)} rule(s), "
            f"declared models {', '.join(sorted(loaded.known_models))}"
        )
