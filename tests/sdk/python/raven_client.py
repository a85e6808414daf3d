"""Sends events with the legacy raven 6.10.0 client (the /store/ endpoint).

Usage: python raven_client.py DSN   (or SENTRY_DSN in the environment)
Prints the event ids it got as one JSON object on the last line.
"""
import json
import logging
import os
import sys

from raven import Client
from raven.handlers.logging import SentryHandler
from raven.transport.http import HTTPTransport

DSN = sys.argv[1] if len(sys.argv) > 1 else os.environ["SENTRY_DSN"]
# The synchronous transport, so that every event is sent before exit.
client = Client(DSN, transport=HTTPTransport, release="app@1.0.0", environment="e2e", raise_send_errors=True)
ids = {}
# raven skips an exception it thinks it already sent, keyed on id() of the
# exception and traceback objects: once one is freed, CPython may give the
# next the same address and raven silently drops it. Keep them all alive.
kept = []

client.user_context({"id": 7, "email": "raven@example.com"})
client.tags_context({"tenant": "acme"})
client.extra_context({"order": 1234})
client.captureBreadcrumb(message="clicked pay", category="checkout")


def charge(card):
    raise ValueError("card %s declined" % card)


def refund(order):
    raise ValueError("refund of %s failed" % order)


# raven has no chained exceptions: plain ones. The same error from the same
# place twice, different messages; then another place.
for name, card in (("same_a", "4242"), ("same_b", "5555")):
    try:
        charge(card)
    except ValueError:
        kept.append(sys.exc_info())
        ids[name] = client.captureException()
try:
    refund(77)
except ValueError:
    kept.append(sys.exc_info())
    ids["other_place"] = client.captureException()

# Custom fingerprints: salted default, and a fixed one for two different messages.
try:
    charge("4242")
except ValueError:
    kept.append(sys.exc_info())
    ids["fingerprint_salted"] = client.captureException(fingerprint=["{{ default }}", "tenant-a"])
for name in ("fingerprint_fixed_a", "fingerprint_fixed_b"):
    ids[name] = client.captureMessage(name, fingerprint=["raven-fixed"])

for name, user in (("message_a", "alice"), ("message_b", "bob")):
    ids[name] = client.captureMessage("User %s failed to pay", params=(user,))

# The logging handler, as most raven users send messages.
log = logging.getLogger("raven-e2e")
log.propagate = False
log.addHandler(SentryHandler(client))
log.error("Disk %s is full", "/var")
ids["logging"] = client.last_event_id

print(json.dumps(ids))
