"""Events from Acme's background jobs, sent with the real Python sentry-sdk.

Acme's integration adds a `job` object to each event (in `before_send`, the
SDK's documented hook); the example plugin crate's `job` interface reads it.

Usage: python acme_jobs.py DSN
Prints the event ids as one JSON object on the last line.
"""
import json
import sys

import sentry_sdk

DSN = sys.argv[1]
current_job = {}


def before_send(event, hint):
    if current_job:
        event["job"] = dict(current_job)
    return event


sentry_sdk.init(dsn=DSN, release="jobs@2.0.0", before_send=before_send, send_default_pii=True)
ids = {}

# One job failing with two different exceptions: one issue (the job groups).
current_job.update({"queue": "Emails", "name": "SendWelcome", "attempt": 1})
try:
    raise ValueError("smtp refused")
except ValueError:
    ids["job_value_error"] = sentry_sdk.capture_exception()
current_job["attempt"] = 2
try:
    {}["missing"]
except KeyError:
    ids["job_key_error"] = sentry_sdk.capture_exception()

# Another job, with data to redact and hostile text in its name.
current_job.clear()
current_job.update({"queue": "billing", "name": "<script>alert('job')</script>"})
sentry_sdk.set_extra("password", "hunter2")
sentry_sdk.set_extra("order", 42)
try:
    raise RuntimeError("card declined")
except RuntimeError:
    ids["billing"] = sentry_sdk.capture_exception()

# A malformed job: the interface refuses it, the event is kept.
current_job.clear()
current_job.update({"name": "NoQueue"})
ids["bad_job"] = sentry_sdk.capture_message("job without a queue", level="warning")

# No job at all: ordinary grouping.
current_job.clear()
try:
    raise ZeroDivisionError("plain")
except ZeroDivisionError:
    ids["plain"] = sentry_sdk.capture_exception()

sentry_sdk.flush(timeout=15)
print(json.dumps(ids))
