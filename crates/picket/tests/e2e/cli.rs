//! The admin commands: their output contracts and their error messages.

use std::process::Command;

use crate::harness::{Picket, BIN};

#[test]
fn admin_commands_print_what_scripts_need() {
    let p = Picket::start("cli");
    // project create prints the DSN as its last line; add-key another.
    let out = p.cli_ok(&["project", "create", "acme/api", "--name", "API", "--platform", "node"]);
    let dsn = crate::harness::last_line(&out);
    assert!(dsn.starts_with("http://") && dsn.ends_with("/2"), "{dsn}");
    let dsns = p.cli_ok(&["project", "dsn", "acme/api"]);
    assert_eq!(dsns.trim(), dsn);
    // The server accepts the new project's DSN at once.
    let key = dsn.split("://").nth(1).unwrap().split('@').next().unwrap();
    let r = reqwest::blocking::Client::new().post(format!("{}/api/2/store/?sentry_key={key}", p.base_url())).body("{\"message\":\"hi\"}").send().unwrap();
    assert_eq!(r.status(), 200);
    let check = p.cli_ok(&["check"]);
    assert!(check.contains("database: ok"), "{check}");
}

#[test]
fn a_url_prefix_with_a_path_is_served_under_it() {
    let p = Picket::start_with("cli-prefix", &[("PICKET_URL_PREFIX", "https://errors.example.com/sentry/")]);
    let dsn = p.cli_ok(&["project", "dsn", "acme/web"]);
    assert_eq!(dsn.trim(), format!("https://{}@errors.example.com/sentry/{}", p.public_key, p.project_id));
    // What an SDK with that DSN sends, as a proxy that keeps the path passes it on; and without it.
    for path in ["/sentry/api", "/api"] {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}{path}/{}/store/?sentry_key={}", p.base_url(), p.project_id, p.public_key))
            .body("{\"message\":\"hi\"}")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = reqwest::blocking::Client::new().get(format!("{}/sentry/api/0/nothing-here/", p.base_url())).send().unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("no such endpoint"), "errors under the path are JSON too");
}

#[test]
fn check_reads_without_creating_or_migrating() {
    let p = Picket::start("cli-check");
    let missing = p.dir.join("typo");
    let out = Command::new(BIN).args(["check"]).env("PICKET_DATA_DIR", &missing).current_dir(&p.dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no database at") && stderr.contains("PICKET_DATA_DIR"), "{stderr}");
    assert!(!missing.exists(), "check created the data directory it was pointed at");
    let out = p.cli_ok(&["check"]);
    assert!(out.contains("database: ok") && out.contains("1 user,"), "{out}");
    let out = Command::new(BIN).args(["check"]).env("PICKET_MAX_QUEUE", "-5").current_dir(&p.dir).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid ingest.max_queue -5"));
}

#[test]
fn keys_tokens_and_members_can_be_revoked() {
    let p = Picket::start("cli-revoke");
    let store = |key: &str| {
        reqwest::blocking::Client::new().post(format!("{}/api/{}/store/?sentry_key={key}", p.base_url(), p.project_id)).body("{\"message\":\"hi\"}").send().unwrap()
    };
    let key_of = |dsn: &str| dsn.split("://").nth(1).unwrap().split('@').next().unwrap().to_string();
    // A disabled key is refused at once (it was never used, so no server cache holds it) and listed apart.
    let disabled = key_of(&crate::harness::last_line(&p.cli_ok(&["project", "add-key", "acme/web", "--label", "CI"])));
    assert!(p.cli_ok(&["project", "disable-key", "acme/web", &disabled]).contains("disabled key"));
    let r = store(&disabled);
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("disabled"));
    let dsn = p.cli(&["project", "dsn", "acme/web"]);
    assert!(!String::from_utf8_lossy(&dsn.stdout).contains(&disabled) && String::from_utf8_lossy(&dsn.stderr).contains(&format!("disabled: http://{disabled}@")));
    p.cli_ok(&["project", "enable-key", "acme/web", &disabled]);
    assert!(String::from_utf8_lossy(&p.cli(&["project", "dsn", "acme/web"]).stdout).contains(&disabled));
    let removed = key_of(&crate::harness::last_line(&p.cli_ok(&["project", "add-key", "acme/web"])));
    p.cli_ok(&["project", "remove-key", "acme/web", &removed]);
    assert_eq!(store(&removed).status(), 403);
    let out = p.cli(&["project", "disable-key", "acme/web", "00000000000000000000000000000000"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("picket project dsn"), "an unknown key says how to list them");
    let out = p.cli(&["project", "add-key", "acme/web", "--public-key", &disabled]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to project acme/web"));

    // Tokens: listed by id, revoked by id, all at once, or as themselves.
    let second = crate::harness::last_line(&p.cli_ok(&["token", "create", "--email", "admin@example.com"]));
    let list = p.cli_ok(&["token", "list", "--email", "admin@example.com"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    let ok = |token: &str| reqwest::blocking::Client::new().get(format!("{}/api/0/projects/", p.base_url())).bearer_auth(token).send().unwrap().status().as_u16();
    assert_eq!(ok(&second), 200);
    let out = p.command().args(["token", "revoke"]).env("PICKET_TOKEN", &second).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked the token of admin@example.com"));
    assert_eq!(ok(&second), 401, "revoked at once: tokens are not cached");
    let first_id = list.lines().next().unwrap().split('\t').next().unwrap().to_string();
    assert!(p.cli_ok(&["token", "revoke", "--email", "admin@example.com", &first_id]).contains("revoked 1 token of admin@example.com"));
    assert_eq!(ok(&p.token), 401);
    let out = p.cli(&["token", "revoke", "--email", "admin@example.com", &first_id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("has no token with id {first_id}")));

    // Members.
    p.cli_ok(&["createuser", "--email", "dev@example.com", "--password", "a long password"]);
    assert!(p.cli_ok(&["org", "add-member", "acme", "--email", "dev@example.com", "--role", "admin"]).contains("dev@example.com is now admin of acme"));
    assert!(p.cli_ok(&["org", "remove-member", "acme", "--email", "dev@example.com"]).contains("removed dev@example.com from acme"));
    let out = p.cli(&["org", "remove-member", "acme", "--email", "dev@example.com"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a member of acme"));
}

#[test]
fn errors_say_what_to_do() {
    let p = Picket::start("cli-errors");
    let err = |args: &[&str]| {
        let out = p.cli(args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    };
    assert!(err(&["org", "create", "acme"]).contains("organization 'acme' already exists"));
    assert!(err(&["org", "create", "Bad Slug"]).contains("invalid organization slug"));
    assert!(err(&["project", "create", "nope/web"]).contains("picket org create nope"));
    assert!(err(&["project", "create", "acme"]).contains("expected ORG/SLUG"));
    assert!(err(&["token", "create", "--email", "ghost@example.com"]).contains("picket createuser"));
    assert!(err(&["createuser", "--email", "x@example.com", "--password", "short"]).contains("at least 8"));
    let out = p.command().args(["createuser", "--email", "x@example.com"]).env_remove("PICKET_PASSWORD").output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("set PICKET_PASSWORD"), "{out:?}");
    assert!(err(&["project", "add-key", "acme/web", "--public-key", "xyz"]).contains("32 hex digits"));
    // Configuration errors name the setting and the fix.
    let out = Command::new(BIN).args(["check"]).env("PICKET_DATABASE_URL", "postgres://localhost/x").current_dir(&p.dir).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("PostgreSQL is not supported"));
    let out = Command::new(BIN).args(["check"]).env("PICKET_BIND", "nowhere").current_dir(&p.dir).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid bind address 'nowhere'"));
    std::fs::write(p.dir.join("bad.toml"), "bnd = 1\n").unwrap();
    let out = Command::new(BIN).args(["--config", "bad.toml", "check"]).current_dir(&p.dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid configuration file 'bad.toml'") && stderr.contains("unknown field"), "{stderr}");
}

#[test]
fn a_second_serve_on_the_same_database_refuses_to_start() {
    let mut p = Picket::start("cli-lock");
    // Another port, the same data directory.
    let other = format!("127.0.0.1:{}", crate::harness::free_port());
    let out = p.command().arg("serve").env("PICKET_BIND", &other).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second serve must not start: {stderr}");
    assert!(stderr.contains("another `picket serve`") && stderr.contains("is already using the database"), "{stderr}");
    // The first one still serves, and the lock goes with it.
    assert_eq!(p.api("/api/0/projects/acme/web/stats/")["events"], 0);
    assert!(p.terminate().success());
    p.spawn();
    assert_eq!(p.api("/api/0/projects/acme/web/stats/")["events"], 0, "a new serve starts once the old one is gone");
}

/// Memory given back inside a transparent huge page stays resident, so
/// Picket opts out whatever the system's setting (`docs/configuration.md`).
#[cfg(target_os = "linux")]
#[test]
fn serve_runs_without_transparent_huge_pages() {
    let mut p = Picket::start("cli-thp");
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
    let thp = status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).map(str::trim);
    // Kernels before 6.0 have no such line; the opt-out is still made.
    if let Some(thp) = thp {
        assert_eq!(thp, "0", "{status}");
    }
    assert!(p.terminate().success());
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut p = Picket::start("cli-sigterm");
    let status = p.terminate();
    assert!(status.success(), "exit status {status:?}; log:\n{}", p.log());
    assert!(p.log().contains("shutting down"));
}

#[test]
fn cleanup_deletes_old_events_and_their_issues_beside_a_running_server() {
    let p = Picket::start("cli-cleanup");
    let send = |message: &str| p.store(&serde_json::json!({ "message": message }));
    send("old one");
    send("old two");
    p.wait_for_events(2);
    assert!(p.cli_ok(&["cleanup"]).contains("nothing is older than 90 days"), "the default is retention_days");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Received a second ago or more: older than 1s.
    let out = p.cli_ok(&["cleanup", "--older-than", "1s"]);
    assert!(out.contains("deleted 2 events, 2 issues"), "{out}");
    assert_eq!(p.event_count(), 0);
    assert!(p.issues(None).is_empty());
    // The server goes on: a new event is a new issue.
    send("old one");
    p.wait_for_events(1);
    assert_eq!(p.issues(None).len(), 1);
    let out = p.cli(&["cleanup", "--older-than", "30"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a number and a unit"), "{out:?}");
    let out = p.command().args(["cleanup"]).env("PICKET_RETENTION_DAYS", "0").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--older-than 30d"), "{out:?}");
}

#[test]
fn a_project_is_removed_only_with_yes_and_then_whole() {
    let p = Picket::start("cli-remove-project");
    p.store(&serde_json::json!({"message": "hello"}));
    p.wait_for_events(1);
    let out = p.cli(&["project", "remove", "acme/web"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("with its keys and 1 event, 1 issue") && err.contains("--yes"), "{err}");
    assert_eq!(p.event_count(), 1, "nothing changed without --yes");
    let api_dsn = crate::harness::last_line(&p.cli_ok(&["project", "create", "acme/api"]));
    let out = p.cli_ok(&["project", "remove", "acme/web", "--yes"]);
    assert!(out.contains("deleted project acme/web: 1 event, 1 issue"), "{out}");
    let (status, _, _) = p.api_request("GET", "/api/0/projects/acme/web/", None);
    assert_eq!(status, 404);
    // The server may still hold the removed key for a few seconds and queue an
    // event for the deleted project: the digest drops it and goes on.
    let send = |key: &str, id: &str| {
        reqwest::blocking::Client::new().post(format!("{}/api/{id}/store/?sentry_key={key}", p.base_url())).body("{\"message\":\"late\"}").send().unwrap().status().as_u16()
    };
    assert!(matches!(send(&p.public_key, &p.project_id.to_string()), 200 | 403));
    let (key, id) = api_dsn.split_once("://").unwrap().1.split_once('@').map(|(k, rest)| (k.to_string(), rest.rsplit('/').next().unwrap().to_string())).unwrap();
    assert_eq!(send(&key, &id), 200);
    p.wait_for("the other project's event", || p.api("/api/0/projects/acme/api/stats/")["events"] == 1);
    let out = p.cli(&["project", "remove", "acme/web", "--yes"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{out:?}");
}

#[test]
fn a_backup_taken_beside_a_running_server_is_a_working_database() {
    let p = Picket::start("cli-backup");
    p.store(&serde_json::json!({"message": "kept in the backup"}));
    p.wait_for_events(1);
    let to = p.dir.join("backup.sqlite3");
    let out = p.cli_ok(&["backup", to.to_str().unwrap()]);
    assert!(out.contains("checked") && out.contains("to restore, stop picket"), "{out}");
    let out = p.cli(&["backup", to.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"), "never overwrites: {out:?}");
    // The copy is a database Picket opens, with the project and its event.
    let on_copy = |args: &[&str]| p.command().args(args).env("PICKET_DATABASE_URL", format!("sqlite:{}", to.display())).output().unwrap();
    let check = on_copy(&["check"]);
    assert!(check.status.success(), "{check:?}");
    assert!(String::from_utf8_lossy(&on_copy(&["project", "list"]).stdout).starts_with("acme/web\t"));
    let events = on_copy(&["cleanup", "--older-than", "0s"]);
    assert!(String::from_utf8_lossy(&events.stdout).contains("deleted 1 event, 1 issue"), "{events:?}");
    assert_eq!(p.event_count(), 1, "the server's own database is untouched");
}

#[test]
fn projects_are_listed_per_organization() {
    let p = Picket::start("cli-project-list");
    p.cli_ok(&["org", "create", "beta"]);
    p.cli_ok(&["project", "create", "beta/api", "--name", "API"]);
    let all = p.cli_ok(&["project", "list"]);
    let slugs: Vec<&str> = all.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(slugs, ["acme/web", "beta/api"], "{all}");
    let beta = p.cli_ok(&["project", "list", "beta"]);
    assert!(beta.starts_with("beta/api\tAPI\t") && beta.lines().count() == 1, "{beta}");
    assert!(String::from_utf8_lossy(&p.cli(&["project", "list", "nope"]).stderr).contains("not found"));
}
