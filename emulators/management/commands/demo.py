"""`manage.py demo` (what `make demo` runs): the whole engine with its stand-ins and live traffic.

One parent process owns everything: the Salesforce emulator, the product's webhook receiver (in-app
messages) and the Zendesk stand-in run in it; the mail sink, the web server, the task cluster, the timer
loop, the trigger scenario and the traffic generator are child processes on the demo's own SQLite file.
While it runs it tells what the scenario's triggers do, with their why (read from GET /api/firings/).
Ctrl-C (or SIGTERM) stops them all; if a long-running child dies, the rest are stopped too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.devenv import DEMO_DIR, demo_env_write
from emulators.demo import Act, act_of, demo_acts, demo_definitions_write, firing_why
from emulators.product_webhook import ProductWebhookSink
from emulators.salesforce import Emulator
from emulators.zendesk import ZendeskEmulator

STOP_SECONDS = 10


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: IO[str] | None = None
    keep_running: bool = True  # a long-running service: its exit ends the demo

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Ports:
    web: int
    smtp: int
    mail: int
    salesforce: int
    product: int = 8090
    zendesk: int = 8444
    host: str = "127.0.0.1"

    def check_free(self) -> None:
        options = {"--addr": self.web, "--smtp-port": self.smtp, "--mail-port": self.mail}
        options |= {"--salesforce-port": self.salesforce, "--product-port": self.product}
        for option, port in {**options, "--zendesk-port": self.zendesk}.items():
            with socket.socket() as probe:
                try:
                    probe.bind((self.host, port))
                except OSError as exc:
                    raise CommandError(
                        f"Port {port} on {self.host} is busy ({exc.strerror}): stop what uses it (`make run`? "
                        f"another demo?) or pick another with {option}."
                    ) from exc


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # the children run the engine's checks with the demo's settings
    help = (
        "Run the demo: the Salesforce emulator (HTTPS, live sync against it; its CA appended to "
        "REQUESTS_CA_BUNDLE), a mail sink whose mails you read in the browser, the product's webhook receiver "
        "(in-app messages) and a Zendesk stand-in, the web server, the task cluster and the timer loop on a "
        "separate SQLite database (.demo/demo.sqlite3, fresh each start unless --keep-data), demo users and "
        "accounts, the shipped triggers enabled with demo-scaled windows (emulators/demo_triggers.json), then "
        "the trigger scenario (`demo_scenario`: a threshold, a cohort entry, a stall and its escalation within "
        "about three minutes, each told with its why as it happens) and `simulate_provisioning --workspaces 300 "
        "--rate 20 --batch-size 200` against it (usage personas that give every cohort members). "
        "Prints the URLs and the logins; logs go to .demo/logs/. While it runs, manage.py commands started "
        "in another terminal use the demo's database and keys (.demo/running.env). Ctrl-C stops everything. "
        "Development only."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Web server address (default 127.0.0.1:8000).")
        parser.add_argument("--smtp-port", type=int, default=1025, help="Mail sink SMTP port (default 1025).")
        parser.add_argument("--mail-port", type=int, default=8025, help="Mail sink web port (default 8025).")
        parser.add_argument("--salesforce-port", type=int, default=8443, help="Emulator port (default 8443).")
        parser.add_argument(
            "--product-port", type=int, default=8090, help="The product's webhook receiver (default 8090)."
        )
        parser.add_argument("--zendesk-port", type=int, default=8444, help="The Zendesk stand-in (default 8444).")
        parser.add_argument("--workspaces", type=int, default=300, help="Simulated workspaces (default 300).")
        parser.add_argument("--rate", type=float, default=20.0, help="Simulated messages per second (default 20).")
        parser.add_argument("--seed", type=int, default=None, help="Seed of the simulated traffic (default random).")
        parser.add_argument("--no-traffic", action="store_true", help="Start everything but send no traffic.")
        parser.add_argument("--no-scenario", action="store_true", help="Do not send the trigger scenario.")
        parser.add_argument(
            "--data-dir",
            default=os.environ.get("DEMO_DATA_DIR", str(DEMO_DIR)),
            help="Folder of the demo's database, logs and CA bundle (default $DEMO_DATA_DIR or .demo/, git-ignored).",
        )
        parser.add_argument("--keep-data", action="store_true", help="Keep the demo database of the last run.")
        parser.add_argument("--startup-timeout", type=float, default=120.0, help="Seconds to wait for the services.")

    def handle(self, *args, **opts) -> None:
        host, _, web_port = opts["addr"].rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not web_port.isdigit():
            raise CommandError(f"--addr must be 127.0.0.1:<port> (the demo is loopback-only), got {opts['addr']!r}.")
        ports = Ports(
            int(web_port), opts["smtp_port"], opts["mail_port"], opts["salesforce_port"], opts["product_port"],
            opts["zendesk_port"],
        )  # fmt: skip
        ports.check_free()
        data = Path(opts["data_dir"]).resolve()
        self.logs = data / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        database = data / "demo.sqlite3"
        if not opts["keep_data"]:
            for path in data.glob("demo.sqlite3*"):
                path.unlink()
        self.children: list[Child] = []
        self.stopping = False
        running: Path | None = None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        emulator = Emulator(
            "127.0.0.1",
            ports.salesforce,
            ca_bundle_path=str(data / "salesforce-ca-bundle.pem"),
            log_bodies=False,
            log_maxlen=10_000,
        )
        self.stand_ins = StandIns(ports)
        try:
            try:
                emulator.start()
                self.stand_ins.start()
            except OSError as exc:
                raise CommandError(f"A stand-in cannot listen on its port: {exc}") from exc
            env = self._environment(ports, database, emulator, data)
            running = demo_env_write(data, self._overrides(env), pid=os.getpid())
            self._prepare(env, data)
            if not self.stopping:
                self._serve(env, ports, data, opts, emulator)
        finally:
            self._stop_children()
            emulator.stop()
            self.stand_ins.stop()
            if running is not None:
                running.unlink(missing_ok=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stdout.write("Demo stopped.")

    # ------------------------------------------------------------------ setup
    def _environment(self, ports: Ports, database: Path, emulator: Emulator, data: Path) -> dict[str, str]:
        """The children's settings: the developer's environment, overridden with the demo's."""
        key = settings.PROVISIONING_WEBHOOK_SECRET or "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
        return {
            **os.environ,
            "DEBUG": "on",
            "SECURE_SSL_REDIRECT": "off",
            "DATABASE_URL": f"sqlite:///{database}",
            "Q_BROKER": "orm",
            "PROVISIONING_WEBHOOK_SECRET": key,
            "EMAIL_URL": f"smtp://{ports.host}:{ports.smtp}",
            "PUBLIC_BASE_URL": f"http://{ports.host}:{ports.web}",
            "SALESFORCE_SYNC": "live",
            "SALESFORCE_ACCESS_TOKEN": "",
            **emulator.env(),  # REQUESTS_CA_BUNDLE: the bundle in use plus the emulator's CA
            **self.stand_ins.env(emulator, data),  # and the Zendesk stand-in's CA on top
            "DEMO_PASSWORD": self.password,
            "PYTHONUNBUFFERED": "1",
        }

    @staticmethod
    def _overrides(env: dict[str, str]) -> dict[str, str]:
        """What the demo sets on top of the developer's environment, for commands run beside it."""
        private = {"DEMO_PASSWORD", "PYTHONUNBUFFERED"}
        return {key: value for key, value in env.items() if key not in private and os.environ.get(key) != value}

    def _manage(self, *args: str) -> list[str]:
        return [sys.executable, str(settings.BASE_DIR / "manage.py"), *args]

    def _prepare(self, env: dict[str, str], data: Path) -> None:
        """Migrate, seed the people, load the demo's triggers, and make the admin an API token (the narration
        reads GET /api/firings/ with it)."""
        self.stdout.write(f"Preparing the demo database {env['DATABASE_URL'].removeprefix('sqlite:///')} …")
        definitions = str(demo_definitions_write(data / "demo-definitions.json"))
        steps = (
            ("migrate", "--no-input"), ("demo_seed",), ("behaviour_definitions", "load", definitions),
            ("api_token", "create", "admin"),
        )  # fmt: skip
        self.token = ""
        for step in steps:
            result = subprocess.run(self._manage(*step), env=env, capture_output=True, text=True, check=False)
            if self.stopping:
                return
            if result.returncode != 0:
                log = data / "logs" / f"{step[0]}.log"
                log.write_text(result.stdout + result.stderr)
                raise CommandError(f"`manage.py {' '.join(step)}` failed; its output is in {log}.")
            if step[0] == "api_token":
                self.token = result.stdout.strip()

    def _start(self, name: str, args: list[str], env: dict[str, str], data: Path, *, to_log: bool = True) -> Child:
        log = (data / "logs" / f"{name}.log").open("w") if to_log else None
        process = subprocess.Popen(
            self._manage(*args),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            cwd=settings.BASE_DIR,
            start_new_session=True,  # its own process group: stopped (workers included) by this command only
        )
        child = Child(name, process, log, keep_running=to_log)
        self.children.append(child)
        self.stdout.write(f"  started {name} (pid {process.pid})")
        return child

    # ------------------------------------------------------------------ running
    def _serve(self, env: dict[str, str], ports: Ports, data: Path, opts: dict, emulator: Emulator) -> None:
        web = f"http://{ports.host}:{ports.web}"
        mail = f"http://{ports.host}:{ports.mail}/"
        self._start(
            "mail_sink",
            ["mail_sink", "--smtp-port", str(ports.smtp), "--http-port", str(ports.mail)],
            env,
            data,
        )
        self._start("web", ["runserver", f"{ports.host}:{ports.web}", "--noreload"], env, data)
        self._start("qcluster", ["qcluster"], env, data)
        self._start("fire_timers", ["fire_timers"], env, data)
        deadline = time.monotonic() + opts["startup_timeout"]
        for url in (f"{web}/healthz", f"{mail}api/messages"):
            if not self._wait_for(url, deadline):
                if self.stopping:
                    return
                raise CommandError(f"{url} did not answer in time; see the logs in {data / 'logs'}.")
        self._banner(web, mail, env, data)
        narrator = None
        if not opts["no_scenario"]:
            run = time.strftime("%H%M%S")
            narrator = Narrator(self, web, self.token, demo_acts(run))
            scenario = self._start("scenario", ["demo_scenario", "--url", web, "--run", run], env, data, to_log=False)
            # The traffic waits: the scenario's trials are folded before its usage arrives (an idle engine
            # takes well under its pause), so each act has its workspace, its account and the account's CSM.
            deadline = time.monotonic() + 60
            while scenario.alive() and not self.stopping and time.monotonic() < deadline:
                time.sleep(0.2)
        traffic = None
        if not opts["no_traffic"]:
            args = [
                "simulate_provisioning",
                "--url",
                web,
                "--workspaces",
                str(opts["workspaces"]),
                "--batch-size",
                "200",
            ]
            args += ["--rate", str(opts["rate"])] + (["--seed", str(opts["seed"])] if opts["seed"] is not None else [])
            traffic = self._start("traffic", args, env, data, to_log=False)
        self._watch(traffic, web, mail, emulator, narrator)

    def _wait_for(self, url: str, deadline: float) -> bool:
        while time.monotonic() < deadline and not self.stopping:
            if any(not child.alive() for child in self.children if child.keep_running):
                dead = ", ".join(c.name for c in self.children if not c.alive())
                raise CommandError(f"{dead} exited during startup; see its log in {self.logs}.")
            try:
                with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback URL built here)
                    return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                time.sleep(0.3)
        return False

    def _banner(self, web: str, mail: str, env: dict[str, str], data: Path) -> None:
        lines = [
            "",
            "Lifecycle Engine demo is running (development settings, loopback only):",
            f"  Rep dashboard        {web}/reps/",
            f"  Admin                {web}/admin/",
            f"  API docs             {web}/api/docs/",
            f"  Mail sink            {mail}",
            f"  In-app messages      {self.stand_ins.product.url.rsplit('/', 2)[0]}/ (what the product received, JSON)",
            f"  Zendesk tickets      curl --cacert {env['REQUESTS_CA_BUNDLE']} -u '{self.stand_ins.desk.email}/token:"
            f"{self.stand_ins.desk.token}' {self.stand_ins.desk.url}/api/v2/tickets.json",
            f"  Firings and why      {web}/admin/triggers/firing/ ; curl -H 'Authorization: Token {self.token}' "
            f"{web}/api/firings/",
            f"  Salesforce emulator  {env['SALESFORCE_INSTANCE_URL']} (API only; CA in {env['REQUESTS_CA_BUNDLE']})",
            f"  Logins               admin / {self.password} (everything); reps ann, bo, cy / {self.password}",
            f"  Logs                 {data / 'logs'}",
            "Ctrl-C stops everything.",
            "",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    def _watch(self, traffic: Child | None, web: str, mail: str, emulator: Emulator, narrator: Narrator | None) -> None:
        reported = False
        next_look = 0.0
        while not self.stopping:
            if narrator is not None and time.monotonic() >= next_look:
                narrator.look()
                next_look = time.monotonic() + 2
            for child in self.children:
                if child.keep_running and not child.alive():
                    raise CommandError(f"{child.name} exited ({child.process.returncode}); see {self.logs}.")
            if traffic is not None and not traffic.alive() and not reported:
                reported = True
                outcome = "sent" if traffic.process.returncode == 0 else f"ended with {traffic.process.returncode}"
                self.stdout.write(f"Traffic {outcome}. {self._status(mail, emulator)}")
                self.stdout.write(f"Dashboard: {web}/reps/ — alerts keep coming as the engine works; Ctrl-C stops.")
                self.stdout.flush()
            time.sleep(0.2)

    def _status(self, mail: str, emulator: Emulator) -> str:
        try:
            with urllib.request.urlopen(f"{mail}api/messages", timeout=5) as response:  # noqa: S310
                mails = str(len(json.load(response)))
        except (OSError, ValueError):
            mails = "?"
        synced = ", ".join(
            f"{emulator.store.count(name)} {name}" for name in ("Workspace__c", "Lead", "Account", "Contact")
        )
        return f"So far: {mails} mails in the sink; in Salesforce {synced}."

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _stop_children(self) -> None:
        """SIGINT to every child's process group, then SIGKILL to whatever is left of each group.

        The task cluster finishes the tasks it has already fetched before it exits; the demo does not
        wait for that long: tasks it drops are redelivered by the ORM broker and the sweeper.
        """
        for child in reversed(self.children):
            self._signal_group(child, signal.SIGINT)
        deadline = time.monotonic() + STOP_SECONDS
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stdout.write(f"  {child.name} did not stop in {STOP_SECONDS} s: killed")
            self._signal_group(child, signal.SIGKILL)  # its own children too (the cluster's workers)
            child.process.wait()
            if child.log is not None:
                child.log.close()

    @staticmethod
    def _signal_group(child: Child, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, sig)


class StandIns:
    """The product's webhook receiver (in-app messages, plain HTTP on loopback) and the Zendesk stand-in
    (HTTPS with a throwaway CA), run in this process like the Salesforce emulator."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self.running: list[ProductWebhookSink | ZendeskEmulator] = []

    def start(self) -> None:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.product = ProductWebhookSink(secret=secret, host=self.ports.host, port=self.ports.product, tls=False)
        self.running.append(self.product.start())
        self.desk = ZendeskEmulator(email="engine@demo.lifecycle.test", host=self.ports.host, port=self.ports.zendesk)
        self.running.append(self.desk.start())

    def env(self, emulator: Emulator, data: Path) -> dict[str, str]:
        """Their settings, and one CA bundle trusting both emulators (each appends its CA to the bundle in use)."""
        bundle = data / "ca-bundle.pem"
        bundle.write_text(Path(emulator.ca_bundle_path).read_text() + Path(self.desk.ca_bundle_path).read_text())
        return {**self.product.env(), **self.desk.env(), "REQUESTS_CA_BUNDLE": str(bundle)}

    def stop(self) -> None:
        for stand_in in reversed(self.running):
            stand_in.stop()


class Narrator:
    """Tells each scenario act as it happens, with its why and where to look, from GET /api/firings/
    (CONTRACT §6, as the admin): the firing when it is decided, then its deliveries as they go out."""

    def __init__(self, command: Command, web: str, token: str, acts: tuple[Act, ...]) -> None:
        self.command, self.web, self.token, self.acts = command, web, token, acts
        self.told: dict[str, str] = {}  # firing id -> its deliveries as last told
        self.happened: set[str] = set()

    def look(self) -> None:
        for workspace_id in sorted({act.workspace_id for act in self.acts}):
            for firing in reversed(self._firings(workspace_id)):  # oldest first
                act = act_of(firing, self.acts)
                if act is not None:
                    self._tell(act, firing)
        if len(self.happened) == len(self.acts):
            self.happened.add("all")
            self.command.stdout.write(
                "Scenario: all four happened (threshold, cohort entry, stall, escalation). Their why: "
                f"{self.web}/admin/triggers/firing/ or the rep workspace pages; the messages: the mail sink, "
                "the in-app receiver and the Zendesk tickets above."
            )

    def _firings(self, workspace_id: str) -> list[dict]:
        url = f"{self.web}/api/firings/?workspace_id={quote(workspace_id)}"
        request = urllib.request.Request(url, headers={"Authorization": f"Token {self.token}"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback URL built here)
                return list(json.load(response)["results"])
        except (OSError, ValueError, KeyError, TypeError):
            return []  # the engine busy or restarting: next look

    def _tell(self, act: Act, firing: dict) -> None:
        deliveries = ", ".join(f"{action['channel']} {action['status']}" for action in firing["actions"])
        out = self.command.stdout
        if firing["id"] not in self.told:
            why_not = firing["explanation"].get("why_not")
            if firing["fired_at"]:
                self.happened.add(act.what)
                out.write(f"[{firing['fired_at'][11:19]}] {act.what.upper()}: {firing['trigger']} fired for "
                          f"{firing['workspace_id']}")  # fmt: skip
            else:
                out.write(f"{act.what.upper()}: {firing['trigger']} for {firing['workspace_id']} held back: {why_not}")
            out.write(f"    why: {firing_why(firing['explanation'])}")
            out.write(f"    see: {self.web}/admin/triggers/firing/{firing['id']}/change/ "
                      f"and {self.web}/reps/workspaces/{firing['workspace_id']}/")  # fmt: skip
        if self.told.get(firing["id"]) != deliveries:
            out.write(f"    {act.what} firing {firing['id']}: {deliveries}")
            self.told[firing["id"]] = deliveries
        out.flush()
