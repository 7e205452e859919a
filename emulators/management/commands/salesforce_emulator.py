"""`manage.py salesforce_emulator`: the local Salesforce stand-in for the demo, until Ctrl-C."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from emulators.salesforce import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a standalone stand-in: the engine's checks are not its business
    help = (
        "Run the local Salesforce emulator over HTTPS on 127.0.0.1 (OAuth client credentials, REST sobjects, "
        "upserts, sObject Collections, SOQL subset, limits, SOAP convertLead). Prints the instance URL, the "
        "client id/secret it accepts and a CA bundle to point REQUESTS_CA_BUNDLE at. Ctrl-C stops it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8443, help="Port (default 8443; 0 picks a free one).")
        parser.add_argument(
            "--ca-bundle-out",
            default=None,
            help="Where to write the CA bundle (the current REQUESTS_CA_BUNDLE or certifi bundle plus the "
            "emulator's CA). Default: a temporary file.",
        )
        parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
        parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
        parser.add_argument("--api-version", default="62.0")
        parser.add_argument("--daily-api-max", type=int, default=100_000, help="DailyApiRequests Max.")
        parser.add_argument("--token-ttl", type=float, default=None, help="Seconds before a token expires.")
        parser.add_argument(
            "--chaos-rate",
            type=float,
            default=0.0,
            help="Fail this share of API calls at random (5xx, UNABLE_TO_LOCK_ROW, timeout, commit-then-timeout).",
        )
        parser.add_argument("--timeout-sleep", type=float, default=30.0, help="How long injected timeouts stall.")
        parser.add_argument("--seed", type=int, default=None, help="Seed for the chaos RNG.")
        parser.add_argument("--verbose", action="store_true", help="Log every request to stderr.")

    def handle(self, *args, **opts) -> None:
        emulator = Emulator(
            opts["host"],
            opts["port"],
            client_id=opts["client_id"],
            client_secret=opts["client_secret"],
            api_version=opts["api_version"],
            daily_api_max=opts["daily_api_max"],
            token_ttl=opts["token_ttl"],
            timeout_sleep=opts["timeout_sleep"],
            seed=opts["seed"],
            ca_bundle_path=opts["ca_bundle_out"],
            log_bodies=False,
            log_maxlen=10_000,
            verbose=opts["verbose"],
        )
        if opts["chaos_rate"] > 0:
            emulator.faults.random_mix(rate=opts["chaos_rate"], seed=opts["seed"])
        try:
            emulator.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {opts['host']}:{opts['port']}: {exc}") from exc
        env = emulator.env()
        self.stdout.write(f"Salesforce emulator on {emulator.instance_url}")
        self.stdout.write(f"  instance URL:  {emulator.instance_url}")
        self.stdout.write(f"  token URL:     {emulator.token_url} (grant_type=client_credentials)")
        self.stdout.write(f"  client id:     {emulator.client_id}")
        self.stdout.write(f"  client secret: {emulator.client_secret}")
        self.stdout.write(f"  CA bundle:     {emulator.ca_bundle_path}")
        self.stdout.write("Point the engine at it:")
        self.stdout.write("  export SALESFORCE_SYNC=live")
        for name, value in env.items():
            self.stdout.write(f"  export {name}={value}")

        stop = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.stdout.write("Ctrl-C stops it.")
        self.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            emulator.stop()
            self.stdout.write("Salesforce emulator stopped.")
