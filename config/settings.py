"""Settings, read from the environment (CONTRACT.md §1).

Every value a deployment sets comes from an environment variable; development defaults apply only
when DEBUG is on. Misconfigurations a user can make are reported by the system checks in
`config/checks.py`, so `manage.py check` names them before anything runs.
"""

from __future__ import annotations

import os
import sys
from datetime import time as _time
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.devenv import DEMO_DIR, running_demo_env
from config.optional_secrets import optional_secret, whsec_problem

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# A local `.env` (written by `make run` on first start) supplies development values. It is never read
# under pytest, so a developer's file cannot change what the suite sees.
_env_file = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
# Beside a running `make demo`, commands use the demo's database and keys (its children set their own
# DATABASE_URL, so they are unaffected); a DATABASE_URL of your own always wins.
_demo = (
    None
    if "pytest" in sys.modules or "DATABASE_URL" in os.environ
    else running_demo_env(Path(env.str("DEMO_DATA_DIR", default=str(DEMO_DIR))))
)
if _demo is not None:
    environ.Env.read_env(str(_demo[0]), overwrite=False)
    print(f"Using the running demo's database and settings ({_demo[0]}, demo pid {_demo[1]}).", file=sys.stderr)
if _env_file and "pytest" not in sys.modules and Path(_env_file).is_file():
    environ.Env.read_env(_env_file, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# The test suite runs with production settings (DEBUG off) but may use the development fallbacks.
TESTING = "pytest" in sys.modules

if DEBUG or TESTING:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
else:
    # No fallback: production must say what its secret and hosts are.
    SECRET_KEY = env.str("SECRET_KEY")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")

INSTALLED_APPS = [
    # The admin site honours STAFF_TOTP_REQUIRED (config/admin_site.py).
    "config.apps.EngineAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "auditlog",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_prometheus",
    "config",
    # In the layers of docs/architecture.md, lowest first (pyproject.toml's import-linter contract).
    "workspaces",
    "failures",
    "events",
    "linking",
    "usage",
    "salesforce.apps.SalesforceConfig",
    "billing",
    "messaging",
    "triggers",
    "alerts",
    "processing",
    "api",
    "ops",
    "emulators",
    # Last: its post_migrate sets the groups' permissions once every other app has its own.
    "privacy",
]

MIDDLEWARE = [
    # Request counts and latencies for /metrics: first and last, so they time everything in between
    # (METRICS_REQUESTS=off removes both).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Cache-Control: no-store and the Content-Security-Policy on every answer (config/security.py).
    "config.security.SecurityHeadersMiddleware",
    # Signed webhooks go straight to their views from here: they need nothing below (events/fastpath.py).
    "events.fastpath.WebhookFastPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Idle and absolute session timeouts, then: staff powers need a verified TOTP device (config/*.py).
    "config.security.SessionTimeoutMiddleware",
    "config.staff_otp.StaffVerificationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    # Turns a login refused by django-axes into the lockout page (429).
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
# Measured on a 2-core machine: about 65 µs of CPU a request for the pair, and about 18 µs a query
# for the database counters (METRICS_DB); switch either off when ingest needs every microsecond.
if not env.bool("METRICS_REQUESTS", default=True):
    MIDDLEWARE = [name for name in MIDDLEWARE if not name.startswith("django_prometheus.")]
# Signed webhooks skip the site's session/user/CSRF middleware (events/fastpath.py); off: the whole stack.
WEBHOOK_FAST_PATH = env.bool("WEBHOOK_FAST_PATH", default=True)
if not WEBHOOK_FAST_PATH:
    MIDDLEWARE.remove("events.fastpath.WebhookFastPathMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# django-prometheus' backends are Django's own plus query and connection counters for /metrics.
_PROMETHEUS_BACKENDS = {
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
}
if env.bool("METRICS_DB", default=True):
    _engine = DATABASES["default"]["ENGINE"]
    DATABASES["default"]["ENGINE"] = _PROMETHEUS_BACKENDS.get(_engine, _engine)
if DATABASES["default"]["ENGINE"].endswith(".sqlite3"):
    # Web server and qcluster write at the same time: WAL plus immediate transactions give one
    # writer at a time instead of "database is locked" (PITFALLS.md).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        # Parameters sent apart from the SQL (server-side binding) and every statement a connection runs
        # DB_PREPARE_THRESHOLD times prepared once: PostgreSQL then skips parsing and planning it, and
        # the client no longer renders each value into the SQL text. Off behind a transaction-mode
        # connection pooler (PgBouncer < 1.21), which cannot keep prepared statements (docs/operations.md).
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=env.int("DB_PREPARE_THRESHOLD", default=2)
        )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "config.staticfinders.VendorFinder",  # plotly.js from the plotly package (charts)
]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
LOGIN_URL = "admin:login"

# --- Security (production values unless DEBUG) --------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The SSL redirect must not bounce the health probe of a load balancer speaking plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)  # after login, whatever the activity
# Signed out after this many seconds without a request (0: only SESSION_COOKIE_AGE applies).
SESSION_IDLE_TIMEOUT = env.int("SESSION_IDLE_TIMEOUT", default=30 * 60)

# --- Login hardening: throttling (django-axes) and optional TOTP for staff (django-otp) ----------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before checking it
    "django.contrib.auth.backends.ModelBackend",
]
# Off under pytest by default: Django's test client logs in without a request, which axes refuses;
# tests of the lockout turn it on (tests/privacy/test_hardening.py).
AXES_ENABLED = env.bool("AXES_ENABLED", default=not TESTING)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
# A username from one address: an attacker elsewhere cannot lock a real admin out.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "security/lockout.html"
# Quiet: axes otherwise prints "AXES: BEGIN version …" to stderr at every start of every command.
AXES_VERBOSE = False
# Successful logins are not logged with their address (privacy); failures are, until the cool-off ends.
AXES_DISABLE_ACCESS_LOG = True
# The client address is REMOTE_ADDR unless the engine sits behind that many trusted proxies.
AXES_IPWARE_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if AXES_IPWARE_PROXY_COUNT else ("REMOTE_ADDR",)
)
# On: staff must enter a TOTP code from a device registered in the admin (Django OTP → TOTP devices).
STAFF_TOTP_REQUIRED = env.bool("STAFF_TOTP_REQUIRED", default=False)
OTP_TOTP_ISSUER = "Lifecycle Engine"

# --- Cache: webhook rate-limit counters. Redis when CACHE_URL says so; per process otherwise. -----
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://lifecycle")}

# --- Webhooks (CONTRACT §2, §4, §5) --------------------------------------------------------------
# Optional secrets: a weak or malformed one counts as none (CONTRACT §1) — its endpoint answers 503
# not_configured and `manage.py check` warns with the reason kept here; it never stops the engine.
OPTIONAL_SECRETS_IGNORED: dict[str, str] = {}
PROVISIONING_WEBHOOK_SECRET = optional_secret(
    "PROVISIONING_WEBHOOK_SECRET", env.str("PROVISIONING_WEBHOOK_SECRET", default=""), OPTIONAL_SECRETS_IGNORED
)
STRIPE_WEBHOOK_SECRET = optional_secret(
    "STRIPE_WEBHOOK_SECRET", env.str("STRIPE_WEBHOOK_SECRET", default=""), OPTIONAL_SECRETS_IGNORED
)
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# Shorter than 24 characters: none.
MARKETO_WEBHOOK_TOKEN = optional_secret(
    "MARKETO_WEBHOOK_TOKEN", env.str("MARKETO_WEBHOOK_TOKEN", default=""), OPTIONAL_SECRETS_IGNORED
)
WEBHOOK_MAX_BODY_BYTES = 1024 * 1024
# A webhook body that stops arriving this long is answered 408 and its thread freed (events/views.py).
WEBHOOK_BODY_READ_TIMEOUT_SECONDS = max(env.float("WEBHOOK_BODY_READ_TIMEOUT_SECONDS", default=10.0), 0.1)
WEBHOOK_TOLERANCE_SECONDS = 300
# Group commit: concurrent webhook requests share one transaction (each answered after that commit),
# which is what lets one small machine take bursts at the webhook without weakening durability.
WEBHOOK_GROUP_COMMIT = env.bool("WEBHOOK_GROUP_COMMIT", default=True)
WEBHOOK_GROUP_COMMIT_MAX_BATCH = env.int("WEBHOOK_GROUP_COMMIT_MAX_BATCH", default=256)
WEBHOOK_STORE_TIMEOUT_SECONDS = env.float("WEBHOOK_STORE_TIMEOUT_SECONDS", default=10.0)
# With group commit, processing is enqueued for all commits within this window at once (one task for
# several events instead of one each: the queue's own cost per task is ~15 ms of CPU). 0: each commit.
WEBHOOK_DOORBELL_SECONDS = min(max(env.float("WEBHOOK_DOORBELL_SECONDS", default=0.1), 0.0), 5.0)
# Per-source budget of authenticated requests a minute (0: no limit); over it → 429 rate_limited with
# Retry-After. WEBHOOK_RATE_LIMIT_PER_MINUTE_<SOURCE> (PROVISIONING, STRIPE, MARKETO) overrides it.
# Requests that fail authentication count in a separate, smaller budget per source.
WEBHOOK_RATE_LIMIT_PER_MINUTE = env.int("WEBHOOK_RATE_LIMIT_PER_MINUTE", default=120_000)
WEBHOOK_RATE_LIMITS = {
    source: env.int(f"WEBHOOK_RATE_LIMIT_PER_MINUTE_{source.upper()}", default=WEBHOOK_RATE_LIMIT_PER_MINUTE)
    for source in ("provisioning", "stripe", "marketo")
}
WEBHOOK_UNAUTHENTICATED_LIMIT_PER_MINUTE = env.int("WEBHOOK_UNAUTHENTICATED_LIMIT_PER_MINUTE", default=600)

# --- Processing -------------------------------------------------------------------------------
EVENT_MAX_ATTEMPTS = env.int("EVENT_MAX_ATTEMPTS", default=8)
EVENT_LEASE_SECONDS = env.int("EVENT_LEASE_SECONDS", default=120)
EVENT_RETRY_BASE_SECONDS = env.float("EVENT_RETRY_BASE_SECONDS", default=10.0)
EVENT_RETRY_MAX_SECONDS = env.float("EVENT_RETRY_MAX_SECONDS", default=3600.0)
# A processing task also takes along workspaces whose new events wait for their own task, up to this many
# workspaces in all: under a backlog tasks grow (one transaction, one claim, one commit for many
# workspaces) instead of the queue growing. 0: a task processes only the workspaces it was given. The
# workspaces of a task commit together, so more is slower for the first of them: in the freshness
# benchmark (50 events/s) 16 gave p99 1.5-1.9 s where 40 gave 3.0-11 s.
PROCESSING_TASK_MAX_WORKSPACES = max(env.int("PROCESSING_TASK_MAX_WORKSPACES", default=16), 0)

# --- Privacy (docs/privacy.md) -----------------------------------------------------------------
# Payloads of settled events older than this are cut to what ordering needs (0 or empty: kept).
EVENT_PAYLOAD_RETENTION_DAYS = int(env.str("EVENT_PAYLOAD_RETENTION_DAYS", default="90") or 0)
# Salt of the email hashes that erasure tombstones and data requests are filed under. Set once, keep:
# a new salt makes every tombstone unrecognisable. Required when DEBUG is off, like SECRET_KEY (CONTRACT
# §1): no process starts without it; with DEBUG on, privacy/identity.py falls back to a development value.
PRIVACY_HASH_SALT = env.str("PRIVACY_HASH_SALT", default="")
if not PRIVACY_HASH_SALT and not (DEBUG or TESTING):
    raise ImproperlyConfigured(
        "Set the PRIVACY_HASH_SALT environment variable (required when DEBUG is off): set it once and keep it, "
        "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )

# --- Salesforce (CONTRACT §1, §7) ---------------------------------------------------------------
SALESFORCE_SYNC = env.str("SALESFORCE_SYNC", default="off")
SALESFORCE_INSTANCE_URL = env.str("SALESFORCE_INSTANCE_URL", default="")
SALESFORCE_ACCESS_TOKEN = env.str("SALESFORCE_ACCESS_TOKEN", default="")
SALESFORCE_LOGIN_URL = env.str("SALESFORCE_LOGIN_URL", default="")
SALESFORCE_CLIENT_ID = env.str("SALESFORCE_CLIENT_ID", default="")
SALESFORCE_CLIENT_SECRET = env.str("SALESFORCE_CLIENT_SECRET", default="")
SALESFORCE_API_VERSION = env.str("SALESFORCE_API_VERSION", default="62.0")
# Every call has a timeout (simple-salesforce has none by default: PITFALLS.md); at most 30 s.
SALESFORCE_TIMEOUT_SECONDS = min(env.float("SALESFORCE_TIMEOUT_SECONDS", default=20.0), 30.0)
SALESFORCE_BATCH_SIZE = min(env.int("SALESFORCE_BATCH_SIZE", default=200), 200)
# A call that outlives this (0: twice the 95th percentile of the last 200 answered calls of its kind, of
# every call while its kind has fewer than 20, at least 0.5 s) is sent a second time, and the first
# answer is taken: a stalled connection costs that, not the timeout. Only calls that are safe to repeat
# (salesforce/adapter.py); off with 'false'.
SALESFORCE_HEDGE = env.bool("SALESFORCE_HEDGE", default=True)
SALESFORCE_HEDGE_AFTER_SECONDS = max(env.float("SALESFORCE_HEDGE_AFTER_SECONDS", default=0.0), 0.0)
SALESFORCE_MAX_ATTEMPTS = env.int("SALESFORCE_MAX_ATTEMPTS", default=8)
# One drain task sends for at most this long while work keeps coming, then hands over to a fresh one
# (queued behind whatever is waiting, so rarely; its own task timeout covers it). It exits sooner, after
# 2 s without work. With the ORM broker a task running past Q_CLUSTER["retry"] is delivered again: that
# copy finds the drainer's lease taken and ends at once.
SALESFORCE_DRAIN_SECONDS = min(max(env.float("SALESFORCE_DRAIN_SECONDS", default=900.0), 1.0), 3600.0)
# Throttle below this share of the daily API allocation (from Sforce-Limit-Info).
SALESFORCE_MAX_API_SHARE = env.float("SALESFORCE_MAX_API_SHARE", default=0.8)
SALESFORCE_LIMIT_PAUSE_MINUTES = env.int("SALESFORCE_LIMIT_PAUSE_MINUTES", default=15)
# Pilot (salesforce/pilot.py): live only for the customers these reps own (usernames: a workspace's account
# owner, else the rep its alerts were routed to), or else this stable share of workspaces (0-100); the rest
# is held. After a restart with a wider pilot (or none), held rows it now takes in are released, at most
# this many a minute (with what they depend on).
SALESFORCE_PILOT_REPS = env.list("SALESFORCE_PILOT_REPS", default=[])
SALESFORCE_PILOT_PERCENT = env.int("SALESFORCE_PILOT_PERCENT", default=100)
SALESFORCE_PILOT_RELEASE_PER_MINUTE = max(env.int("SALESFORCE_PILOT_RELEASE_PER_MINUTE", default=1000), 1)

# --- Alerts -----------------------------------------------------------------------------------
SLACK_WEBHOOK_URL = env.str("SLACK_WEBHOOK_URL", default="")
# EMAIL_URL (CONTRACT §1): SMTP. Without it the console backend when DEBUG is on; otherwise the email channel
# is off: alert emails are recorded as `skipped` with the reason (alerts/delivery.py), nothing is printed (names
# and addresses would land in the log) and `manage.py check` warns. The test suite keeps the channel on.
EMAIL_CHANNEL_ENABLED = bool(env.str("EMAIL_URL", default="")) or DEBUG or TESTING
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
elif DEBUG:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="lifecycle-engine@localhost")
# Absolute links in emails and Slack messages point here (the rep pages live under /reps/).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Loopback Slack URLs (a local stand-in) are refused unless this is on; hooks.slack.com always passes.
SLACK_ALLOW_LOOPBACK = env.bool("SLACK_ALLOW_LOOPBACK", default=DEBUG)
SLACK_TIMEOUT_SECONDS = env.int("SLACK_TIMEOUT_SECONDS", default=10)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=20)
ALERT_DELIVERY_MAX_ATTEMPTS = env.int("ALERT_DELIVERY_MAX_ATTEMPTS", default=6)
ALERT_RETRY_BASE_SECONDS = env.float("ALERT_RETRY_BASE_SECONDS", default=60.0)
ALERT_RETRY_MAX_SECONDS = env.float("ALERT_RETRY_MAX_SECONDS", default=3600.0)
# Daily digests go out at this hour (UTC).
ALERT_DIGEST_HOUR = env.int("ALERT_DIGEST_HOUR", default=8)
# A state reached longer ago than this raises no alert when first seen (replays, first deploy).
ALERT_RECENT_HOURS = env.int("ALERT_RECENT_HOURS", default=72)
# Admin alerts go to active members of "Lifecycle admins" and superusers with an email, plus these.
ALERT_ADMIN_EMAILS = env.list("ALERT_ADMIN_EMAILS", default=[])
# The rep pages total money in this currency, by the rates admins keep in the admin (Alerts › Exchange rates);
# a currency without a rate is shown apart, never converted.
REPORTING_CURRENCY = env.str("REPORTING_CURRENCY", default="USD").strip().upper()
if not (len(REPORTING_CURRENCY) == 3 and REPORTING_CURRENCY.isascii() and REPORTING_CURRENCY.isalpha()):
    raise ImproperlyConfigured(f"REPORTING_CURRENCY must be a three-letter ISO 4217 code, not {REPORTING_CURRENCY!r}")

# --- Behaviour channels (CONTRACT §1, §9) ----------------------------------------------------------
# In-app messages: a Standard Webhooks-signed POST to the product. Without both the channel is off; a
# secret that is not a usable whsec_ key counts as none (manage.py check warns, lifecycle.W070).
PRODUCT_WEBHOOK_URL = env.str("PRODUCT_WEBHOOK_URL", default="").strip()
PRODUCT_WEBHOOK_SECRET = env.str("PRODUCT_WEBHOOK_SECRET", default="").strip()
if PRODUCT_WEBHOOK_SECRET and (_problem := whsec_problem(PRODUCT_WEBHOOK_SECRET)):
    OPTIONAL_SECRETS_IGNORED["PRODUCT_WEBHOOK_SECRET"] = _problem
    PRODUCT_WEBHOOK_SECRET = ""
# Loopback product URLs (a local stand-in) are refused unless this is on; https elsewhere always passes.
PRODUCT_WEBHOOK_ALLOW_LOOPBACK = env.bool("PRODUCT_WEBHOOK_ALLOW_LOOPBACK", default=DEBUG)
PRODUCT_WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("PRODUCT_WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=5.0)
PRODUCT_WEBHOOK_TIMEOUT_SECONDS = env.float("PRODUCT_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# Support tickets: the Zendesk Tickets API with an API token; off unless all three are set.
ZENDESK_URL = env.str("ZENDESK_URL", default="").strip().rstrip("/")
ZENDESK_EMAIL = env.str("ZENDESK_EMAIL", default="").strip()
ZENDESK_API_TOKEN = env.str("ZENDESK_API_TOKEN", default="").strip()
ZENDESK_ALLOW_LOOPBACK = env.bool("ZENDESK_ALLOW_LOOPBACK", default=DEBUG)
ZENDESK_CONNECT_TIMEOUT_SECONDS = env.float("ZENDESK_CONNECT_TIMEOUT_SECONDS", default=5.0)
ZENDESK_TIMEOUT_SECONDS = env.float("ZENDESK_TIMEOUT_SECONDS", default=15.0)


# --- Triggers' politeness and their messages' retries (triggers/decide.py, messaging/delivery.py) -----
def _cap(name: str, default: str) -> tuple[int, int] | None:
    """`N/SECONDS` (at most N firings in SECONDS across triggers), or `off`."""
    value = env.str(name, default=default).strip().lower()
    if value == "off":
        return None
    count, _, seconds = value.partition("/")
    if not (count.isdigit() and seconds.isdigit() and int(count) >= 1 and int(seconds) >= 1):
        raise ImproperlyConfigured(f"{name} must be N/SECONDS (e.g. 3/86400: three a day) or off, not {value!r}")
    return int(count), int(seconds)


def _quiet_hours(name: str, default: str) -> tuple[str, str] | None:
    """`HH:MM-HH:MM` in the recipient's zone (may wrap midnight), or `off`."""
    value = env.str(name, default=default).strip().lower()
    if value == "off":
        return None
    start, _, end = value.partition("-")
    try:
        _time.fromisoformat(start), _time.fromisoformat(end)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be HH:MM-HH:MM (e.g. 21:00-08:00) or off, not {value!r}") from None
    return start, end


TRIGGERS_WORKSPACE_CAP = _cap("TRIGGERS_WORKSPACE_CAP", "3/86400")
TRIGGERS_PERSON_CAP = _cap("TRIGGERS_PERSON_CAP", "3/86400")
TRIGGERS_QUIET_HOURS = _quiet_hours("TRIGGERS_QUIET_HOURS", "21:00-08:00")
DISPATCH_LEASE_SECONDS = env.float("DISPATCH_LEASE_SECONDS", default=300.0)
DISPATCH_MAX_ATTEMPTS = env.int("DISPATCH_MAX_ATTEMPTS", default=6)
DISPATCH_RETRY_BASE_SECONDS = env.float("DISPATCH_RETRY_BASE_SECONDS", default=60.0)
DISPATCH_RETRY_MAX_SECONDS = env.float("DISPATCH_RETRY_MAX_SECONDS", default=6 * 3600.0)

# --- Usage profile (usage/metrics.py, docs/metrics.md) -------------------------------------------
# On: each usage batch re-evaluates its workspaces' profiles, cohorts and stages in the same transaction,
# and a sweep every minute handles what time alone changes. Off only to measure what it costs.
BEHAVIOUR_PROFILES = env.bool("BEHAVIOUR_PROFILES", default=True)
# At most this many profiles a sweep run; the rest stay due and go in the next minute's run.
BEHAVIOUR_SWEEP_LIMIT = env.int("BEHAVIOUR_SWEEP_LIMIT", default=50_000)
# PostgreSQL: the usage rollup's work falls into this many partitions of the workspaces, rolled up side by side
# by as many workers (usage/rollups.py); 1 makes the rollup one queue. SQLite always has one.
USAGE_ROLLUP_PARTITIONS = env.int("USAGE_ROLLUP_PARTITIONS", default=2)
# One depth_<product>_30d metric per product named here (lower-case names, as usage events send them).
USAGE_PRODUCTS = env.list("USAGE_PRODUCTS", default=["esign", "admin", "api", "sdk"])

# --- Operations: health, SLAs, error alerts, metrics -----------------------------------------------
# /healthz answers 503 when a heartbeat is older than this: the queue's is stamped every minute by a
# scheduled task, the sweeper's by every sweep. Off: heartbeats are reported but never fail the check.
HEALTH_CHECK_HEARTBEATS = env.bool("HEALTH_CHECK_HEARTBEATS", default=True)
HEALTH_QUEUE_HEARTBEAT_MAX_AGE_SECONDS = env.int("HEALTH_QUEUE_HEARTBEAT_MAX_AGE_SECONDS", default=180)
HEALTH_SWEEPER_HEARTBEAT_MAX_AGE_SECONDS = env.int("HEALTH_SWEEPER_HEARTBEAT_MAX_AGE_SECONDS", default=300)
# For this long after a process starts, a missing or stale heartbeat does not fail its /healthz (the first
# beat comes about a minute after a clean start); the database and the queue count at once. 0: no grace.
HEALTH_STARTUP_GRACE_SECONDS = env.int("HEALTH_STARTUP_GRACE_SECONDS", default=180)
# Admins are alerted when one kind of error happens this often within one window (0: never).
ERROR_ALERT_RATE = env.int("ERROR_ALERT_RATE", default=20)
ERROR_ALERT_WINDOW_MINUTES = env.int("ERROR_ALERT_WINDOW_MINUTES", default=10)
# SLAs, checked every few minutes; each breach alerts admins once per SLA_ALERT_WINDOW_MINUTES.
SLA_EVENT_SECONDS = env.int("SLA_EVENT_SECONDS", default=300)
SLA_SALESFORCE_MINUTES = env.int("SLA_SALESFORCE_MINUTES", default=15)
SLA_ALERT_WINDOW_MINUTES = env.int("SLA_ALERT_WINDOW_MINUTES", default=60)
# A source is silent when its last event is older than FACTOR × its mean gap over the lookback
# (and at least MIN minutes); judged only with at least MIN_EVENTS events in the lookback.
SLA_SOURCE_SILENCE_FACTOR = env.float("SLA_SOURCE_SILENCE_FACTOR", default=10.0)
SLA_SOURCE_SILENCE_MIN_MINUTES = env.int("SLA_SOURCE_SILENCE_MIN_MINUTES", default=60)
SLA_SOURCE_LOOKBACK_DAYS = env.int("SLA_SOURCE_LOOKBACK_DAYS", default=7)
SLA_SOURCE_MIN_EVENTS = env.int("SLA_SOURCE_MIN_EVENTS", default=20)
# The ops page's recent window (lag percentiles, error rate).
OPS_WINDOW_MINUTES = env.int("OPS_WINDOW_MINUTES", default=60)
# /metrics answers a scraper sending `Authorization: Bearer <METRICS_TOKEN>` (or a staff login).
# Shorter than 24 characters: none (scrapers get 404; `manage.py check` warns).
METRICS_TOKEN = optional_secret("METRICS_TOKEN", env.str("METRICS_TOKEN", default=""), OPTIONAL_SECRETS_IGNORED)

# --- Task queue (django-q2) -------------------------------------------------------------------
Q_BROKER = env.str("Q_BROKER", default="orm")
# Successful task results kept for the admin's "Successful tasks" (-1: none are saved).
Q_SUCCESS_KEEP = env.int("Q_SUCCESS_KEEP", default=500)
Q_CLUSTER: dict = {
    "name": "lifecycle",
    "workers": env.int("Q_WORKERS", default=2),
    # retry must exceed timeout, or the ORM broker runs copies of a slow task concurrently.
    "timeout": 120,
    "retry": 300,
    "max_attempts": 3,
    "ack_failures": True,
    # Missed schedules must not replay one by one after downtime (a catch-up storm).
    "catch_up": False,
    # 0: django-q2 saves each success without pruning. Its own pruning (save_limit > 0) locks and reads
    # every saved success on every save (~20 ms of CPU a task, bench/results/queue-*.json); the
    # scheduled "Ops: prune task results" keeps the newest Q_SUCCESS_KEEP instead. -1: save none.
    "save_limit": 0 if Q_SUCCESS_KEEP >= 0 else -1,
    "queue_limit": 100,
    "poll": 0.2,
    "label": "Task queue",
}
if Q_BROKER == "orm":
    Q_CLUSTER["orm"] = "default"
else:
    Q_CLUSTER["redis"] = Q_BROKER

# --- API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
# A read API token is refused this many days after it was made (0: never); `manage.py api_token` makes,
# lists and revokes them (api/tokens.py).
API_TOKEN_LIFETIME_DAYS = env.int("API_TOKEN_LIFETIME_DAYS", default=90)
SPECTACULAR_SETTINGS = {
    "TITLE": "Lifecycle Engine API",
    "DESCRIPTION": "Read API and signed webhooks of the Lifecycle Engine (CONTRACT.md).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files are served by the engine itself: the docs work offline and without a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "WorkspaceStatusEnum": "workspaces.models.Workspace.Status",
        "EventStatusEnum": "events.models.Event.Status",
    },
    # The webhooks are plain Django views: their hand-written OpenAPI is merged in after the enums.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.workspaces.schema_query_filters",
        "events.openapi.add_webhooks",
    ],
}

# --- Audit ------------------------------------------------------------------------------------
# Client IP addresses are personal data: not recorded unless the privacy policy allows it.
AUDITLOG_DISABLE_REMOTE_ADDR = env.bool("AUDITLOG_RECORD_REMOTE_ADDR", default=False) is False
SYSTEM_ACTOR_USERNAME = "lifecycle-engine"

# --- Logging ----------------------------------------------------------------------------------
# json: one object a line with the event and workspace ids the pipeline passes (ops/logging.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "ops.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
