//! Sends a representative set of events to a DSN with the real Rust `sentry`
//! crate, then prints the event ids it got as one JSON object (last line).
//!
//! Usage: `rust-sdk-client DSN`

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use sentry::protocol::{Attachment, Envelope, Map, MonitorCheckIn, MonitorCheckInStatus, Value};
use sentry::{Breadcrumb, Level, Transport, User};

/// An error whose message varies, from one place: must be one issue.
#[derive(Debug)]
struct PaymentError(String);

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payment failed: {}", self.0)
    }
}

impl std::error::Error for PaymentError {}

/// An error with a cause, for the chained-exception case.
#[derive(Debug)]
struct CheckoutError {
    source: PaymentError,
}

impl fmt::Display for CheckoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkout failed")
    }
}

impl std::error::Error for CheckoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn charge(card: &str) -> Result<(), PaymentError> {
    Err(PaymentError(format!("card {card} declined")))
}

fn main() {
    let dsn = std::env::args().nth(1).expect("usage: rust-sdk-client DSN");
    rustls::crypto::ring::default_provider().install_default().expect("install the TLS provider");
    let options = sentry::ClientOptions::new()
        .dsn(&dsn)
        .release("app@1.0.0")
        .environment("e2e")
        .traces_sample_rate(1.0)
        .auto_session_tracking(false);
    let check_in_options = options.clone();
    let guard = sentry::init(options);
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();

    sentry::start_session();
    sentry::configure_scope(|scope| {
        scope.set_user(Some(User { id: Some("42".into()), email: Some("rust@example.com".into()), ..Default::default() }));
        scope.set_tag("tenant", "acme");
        let mut order = Map::new();
        order.insert("id".into(), Value::from(1234));
        order.insert("total".into(), Value::from(99.5));
        scope.set_context("order", sentry::protocol::Context::Other(order));
    });
    sentry::add_breadcrumb(Breadcrumb { category: Some("checkout".into()), message: Some("clicked pay".into()), ..Default::default() });

    // Chained: CheckoutError caused by PaymentError.
    let chained = CheckoutError { source: PaymentError("insufficient funds".into()) };
    ids.insert("chained", sentry::capture_error(&chained).simple().to_string());

    // The same error from the same place twice, different messages.
    for (name, card) in [("same_a", "4242"), ("same_b", "5555")] {
        let err = charge(card).unwrap_err();
        ids.insert(name, sentry::capture_error(&err).simple().to_string());
    }

    // Messages with a variable part: one issue.
    for (name, user) in [("message_a", 17), ("message_b", 23)] {
        ids.insert(name, sentry::capture_message(&format!("User {user} failed to log in"), Level::Error).simple().to_string());
    }

    // An attachment on an event.
    let with_attachment = sentry::with_scope(
        |scope| {
            scope.add_attachment(Attachment { buffer: b"hello from rust".to_vec(), filename: "rust.txt".into(), content_type: Some("text/plain".into()), ty: None });
        },
        || sentry::capture_message("with attachment", Level::Warning),
    );
    ids.insert("attachment", with_attachment.simple().to_string());

    // Custom fingerprints.
    let salted = sentry::with_scope(|scope| scope.set_fingerprint(Some(&["{{ default }}", "tenant-a"])), || {
        sentry::capture_error(&charge("4242").unwrap_err())
    });
    ids.insert("fingerprint_salted", salted.simple().to_string());
    for name in ["fingerprint_fixed_a", "fingerprint_fixed_b"] {
        let id = sentry::with_scope(|scope| scope.set_fingerprint(Some(&["rust-fixed"])), || sentry::capture_message(name, Level::Info));
        ids.insert(name, id.simple().to_string());
    }

    // A transaction with a span.
    let tx = sentry::start_transaction(sentry::TransactionContext::new("checkout", "http.server"));
    let span = tx.start_child("db.query", "SELECT * FROM orders");
    std::thread::sleep(Duration::from_millis(5));
    span.finish();
    tx.finish();

    sentry::end_session();

    // A cron check-in. The crate has no helper for it, so the envelope goes
    // through the SDK's own HTTP transport.
    let transport = sentry::transports::ReqwestHttpTransportOptions::from(
        sentry::TransportOptions::try_from_client_options(&check_in_options).expect("options with a DSN"),
    )
    .build();
    let check_in = MonitorCheckIn {
        check_in_id: sentry::types::Uuid::from_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()),
        monitor_slug: "rust-nightly".into(),
        status: MonitorCheckInStatus::Ok,
        environment: Some("e2e".into()),
        duration: Some(1.5),
        monitor_config: None,
    };
    let mut envelope = Envelope::new();
    envelope.add_item(check_in);
    transport.send_envelope(envelope);
    transport.flush(Duration::from_secs(10));

    drop(guard); // flushes
    println!("{}", serde_json::to_string(&ids).unwrap());
}
