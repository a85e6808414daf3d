// Sends a representative set of events with the real @sentry/node.
// Usage: node send.mjs DSN   (or SENTRY_DSN in the environment)
// ES modules ignore NODE_PATH and resolve packages next to the script: run a
// copy placed in the installed project ($PICKET_TEST_DEPS/node), as the test does.
// Prints the event ids it got as one JSON object on the last line.
import * as Sentry from "@sentry/node";

const dsn = process.argv[2] ?? process.env.SENTRY_DSN;
// traceLifecycle "static": v11 streams spans as `span` items by default, which
// Picket counts but does not store yet; "static" sends a `transaction` event.
Sentry.init({ dsn, release: "app@1.0.0", environment: "e2e", tracesSampleRate: 1.0, traceLifecycle: "static", sendDefaultPii: true });
const ids = {};

Sentry.setUser({ id: "42", email: "node@example.com" });
Sentry.setTag("tenant", "acme");
Sentry.setContext("order", { id: 1234, total: 99.5 });
Sentry.addBreadcrumb({ category: "checkout", message: "clicked pay" });

function charge(card) {
  throw new TypeError(`card ${card} declined`);
}

function refund(order) {
  throw new TypeError(`refund of ${order} failed`);
}

// Chained: an error with a cause.
ids.chained = Sentry.captureException(new Error("checkout failed", { cause: new RangeError("payment declined") }));

// The same error from the same place twice, different messages; then another place.
for (const [name, card] of [["same_a", "4242"], ["same_b", "5555"]]) {
  try {
    charge(card);
  } catch (e) {
    ids[name] = Sentry.captureException(e);
  }
}
try {
  refund(77);
} catch (e) {
  ids.other_place = Sentry.captureException(e);
}

// Messages with a variable part, from one place (Node attaches the stack,
// so the call site is part of the grouping, as in Sentry).
for (const [name, user] of [["message_a", 17], ["message_b", 23]]) {
  ids[name] = Sentry.captureMessage(`User ${user} failed to log in`, "error");
}

// Parameterized messages (Sentry.parameterize): the SDK sends only a
// `logentry` with the template and the values, no formatted message.
for (const [name, user] of [["param_a", "alice"], ["param_b", "bob"]]) {
  ids[name] = Sentry.captureMessage(Sentry.parameterize`User ${user} failed to pay`, "error");
}

// An attachment.
Sentry.withScope((scope) => {
  scope.addAttachment({ filename: "node.txt", data: "hello from node", contentType: "text/plain" });
  ids.attachment = Sentry.captureMessage("with attachment", "warning");
});

// Custom fingerprints.
Sentry.withScope((scope) => {
  scope.setFingerprint(["{{ default }}", "tenant-a"]);
  try {
    charge("4242");
  } catch (e) {
    ids.fingerprint_salted = Sentry.captureException(e);
  }
});
for (const name of ["fingerprint_fixed_a", "fingerprint_fixed_b"]) {
  Sentry.withScope((scope) => {
    scope.setFingerprint(["node-fixed"]);
    ids[name] = Sentry.captureMessage(name);
  });
}

// A transaction with a span.
Sentry.startSpan({ name: "checkout", op: "http.server" }, () => {
  Sentry.startSpan({ name: "SELECT * FROM orders", op: "db.query" }, () => {});
});

// A cron check-in.
ids.check_in = Sentry.captureCheckIn({ monitorSlug: "node-nightly", status: "ok", duration: 1.5 });

await Sentry.close(15000);
console.log(JSON.stringify(ids));
