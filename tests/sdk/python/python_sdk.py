"""Sends a representative set of events with the real Python sentry-sdk.

Usage: python python_sdk.py DSN   (or SENTRY_DSN in the environment)
Prints the event ids it got as one JSON object on the last line.
"""
import json
import logging
import os
import sys

import sentry_sdk
from sentry_sdk.crons.consts import MonitorStatus

DSN = sys.argv[1] if len(sys.argv) > 1 else os.environ["SENTRY_DSN"]

# Which encoding the transport really used: count the bodies it compresses
# with brotli (the SDK picks br over gzip when `brotli` imports). This wraps
# the brotli module's function; the SDK itself is untouched.
br_bodies = 0
try:
    import brotli

    _compress = brotli.compress

    def _counting_compress(*args, **kwargs):
        global br_bodies
        br_bodies += 1
        return _compress(*args, **kwargs)

    brotli.compress = _counting_compress
except ImportError:
    pass

sentry_sdk.init(
    dsn=DSN,
    release="app@1.0.0",
    environment="e2e",
    traces_sample_rate=1.0,
    send_default_pii=True,
)
ids = {}
log = logging.getLogger("payments")

sentry_sdk.get_isolation_scope().start_session(session_mode="application")
sentry_sdk.set_user({"id": 42, "email": "py@example.com"})
sentry_sdk.set_tag("tenant", "acme")
sentry_sdk.set_context("order", {"id": 1234, "total": 99.5})
sentry_sdk.add_breadcrumb(category="checkout", message="clicked pay", level="info")


def load_config():
    try:
        {}["missing"]
    except KeyError as e:
        raise RuntimeError("config unavailable") from e


def charge(card):
    raise ValueError(f"card {card} declined")


def refund(order):
    raise ValueError(f"refund of {order} failed")


# Chained: RuntimeError raised from KeyError.
try:
    load_config()
except RuntimeError:
    ids["chained"] = sentry_sdk.capture_exception()

# The same error from the same place twice, different messages; then another place.
for name, card in (("same_a", "4242"), ("same_b", "5555")):
    try:
        charge(card)
    except ValueError:
        ids[name] = sentry_sdk.capture_exception()
try:
    refund(77)
except ValueError:
    ids["other_place"] = sentry_sdk.capture_exception()

# Logging with parameters: one template, two values.
for name, user in (("log_a", "alice"), ("log_b", "bob")):
    log.error("User %s failed to pay", user)
    ids[name] = sentry_sdk.last_event_id()

# An attachment.
with sentry_sdk.new_scope() as scope:
    scope.add_attachment(bytes=b"hello from python", filename="python.txt", content_type="text/plain")
    ids["attachment"] = sentry_sdk.capture_message("with attachment", level="warning")

# Custom fingerprints: salted default, and a fixed one for two different messages.
with sentry_sdk.new_scope() as scope:
    scope.fingerprint = ["{{ default }}", "tenant-a"]
    try:
        charge("4242")
    except ValueError:
        ids["fingerprint_salted"] = sentry_sdk.capture_exception()
for name in ("fingerprint_fixed_a", "fingerprint_fixed_b"):
    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = ["python-fixed"]
        ids[name] = sentry_sdk.capture_message(name)

# A transaction with a span.
with sentry_sdk.start_transaction(op="task", name="nightly-report"):
    with sentry_sdk.start_span(op="db.query", name="SELECT * FROM orders"):
        pass

# A cron check-in.
ids["check_in"] = sentry_sdk.crons.capture_checkin(monitor_slug="python-nightly", status=MonitorStatus.OK, duration=1.5)

sentry_sdk.get_isolation_scope().end_session()
sentry_sdk.flush(timeout=15)
# Not an event id: keys starting with "_" are facts about the run.
ids["_br_bodies"] = str(br_bodies)
print(json.dumps(ids))
