"""`manage.py demo_scenario`: the demo's trigger scenario, sent as signed webhooks to a running engine."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser

from emulators.demo import demo_acts, demo_scenario
from events.webhook_client import (
    EngineUnreachable,
    SigningKeyMissing,
    provisioning_signing_key,
    signed_headers,
    webhook_post,
    webhook_url,
)

EXPECTED = {"accepted", "duplicate"}


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a client of the engine, like simulate_provisioning
    help = (
        "Send the demo's trigger scenario to a running engine (`make demo` does, at start): three trials on "
        "accounts the demo's reps own, then three failed exports (a threshold -> a ticket), five days of "
        "one-feature use (a cohort entry -> an in-app message) and a failed integration run (a stall -> an email, "
        "then, with no activity, an escalation to the account's CSM and a ticket). The triggers must be the demo's "
        "(emulators/demo_triggers.json); the reps and accounts `demo_seed`'s. Signed with the first key of "
        "PROVISIONING_WEBHOOK_SECRET. Prints the workspaces to watch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The engine's base URL.")
        parser.add_argument(
            "--run", default=None, help="Names this run's workspaces (default: the time, so each run is new)."
        )
        parser.add_argument(
            "--pause",
            type=float,
            default=2.0,
            help="Seconds between the trials and the usage, so the workspaces exist and are linked (default 2).",
        )

    def handle(self, *args, url: str, run: str | None, pause: float, **options) -> None:
        try:
            key = provisioning_signing_key()
        except SigningKeyMissing as exc:
            raise CommandError(str(exc)) from exc
        now = datetime.now(UTC)
        run = run or now.strftime("%H%M%S")
        messages = demo_scenario(now=now, run=run)
        endpoint = webhook_url(url)
        for act in demo_acts(run):
            self.stdout.write(f"  {act.what:<12} {act.workspace_id:<22} {act.trigger}: {act.expect}")
        refused = []
        for index, message in enumerate(messages):
            if index and message.type != "trial.started" and messages[index - 1].type == "trial.started":
                time.sleep(pause)
            body = message.body_json()
            try:
                answer = webhook_post(
                    url=endpoint, body=body, headers=signed_headers(key=key, msg_id=message.msg_id, body=body)
                )
            except EngineUnreachable as exc:
                raise CommandError(f"{exc}. Is the engine running (`make run` or `make demo`)?") from exc
            if answer.outcome not in EXPECTED:
                refused.append(f"{message.type} for {message.workspace_id}: {answer.status} {answer.outcome}")
        if refused:
            raise CommandError("Not accepted: " + "; ".join(refused))
        self.stdout.write(f"Scenario sent: {len(messages)} webhooks for run {run}.")
