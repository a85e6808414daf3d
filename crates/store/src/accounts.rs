//! Users, organizations, projects, project keys and API tokens.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::{now, Result, StoreError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub is_superuser: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Organization {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub created_at: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Project {
    pub id: i64,
    pub org_id: i64,
    pub org_slug: String,
    pub slug: String,
    pub name: String,
    pub platform: Option<String>,
    pub allowed_origins: String,
    pub created_at: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectKey {
    pub id: i64,
    pub project_id: i64,
    pub public_key: String,
    pub label: String,
    pub is_active: bool,
    pub rate_limit_count: Option<i64>,
    pub rate_limit_window: Option<i64>,
    pub created_at: f64,
}

/// Roles in an organization, from least to most powerful.
pub const ROLES: &[&str] = &["member", "admin", "owner"];

/// Slugs: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub fn validate_slug(kind: &str, slug: &str) -> Result<()> {
    let ok = !slug.is_empty()
        && slug.len() <= 50
        && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && slug.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid {kind} slug '{slug}': use 1 to 50 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        )))
    }
}

pub fn hash_password(password: &str) -> Result<String> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| StoreError::Invalid(format!("cannot make a password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Invalid(format!("cannot hash password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Creates a user, or updates the password (and superuser flag) of an existing one.
pub fn upsert_user(conn: &Connection, email: &str, password_hash: &str, superuser: bool) -> Result<(User, bool)> {
    let email = email.trim();
    if !email.contains('@') || email.len() > 254 {
        return Err(StoreError::Invalid(format!("invalid e-mail address '{email}'")));
    }
    let existing: Option<i64> = conn.query_row("SELECT id FROM users WHERE email = ?", [email], |r| r.get(0)).optional()?;
    let created = existing.is_none();
    let id = match existing {
        Some(id) => {
            conn.execute("UPDATE users SET password_hash = ?, is_superuser = (is_superuser OR ?) WHERE id = ?", params![password_hash, superuser, id])?;
            id
        }
        None => {
            conn.execute("INSERT INTO users (email, password_hash, is_superuser, created_at) VALUES (?, ?, ?, ?)", params![email, password_hash, superuser, now()])?;
            conn.last_insert_rowid()
        }
    };
    Ok((user_by_id(conn, id)?, created))
}

pub fn user_by_id(conn: &Connection, id: i64) -> Result<User> {
    conn.query_row("SELECT id, email, is_superuser FROM users WHERE id = ?", [id], |r| Ok(User { id: r.get(0)?, email: r.get(1)?, is_superuser: r.get(2)? }))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
}

pub fn user_by_email(conn: &Connection, email: &str) -> Result<User> {
    conn.query_row("SELECT id, email, is_superuser FROM users WHERE email = ?", [email.trim()], |r| Ok(User { id: r.get(0)?, email: r.get(1)?, is_superuser: r.get(2)? }))
        .optional()?
        .ok_or_else(|| StoreError::Missing { what: format!("user '{email}'"), fix: format!("create it with: picket createuser --email {email} --password ...") })
}

pub fn count_users(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
}

pub fn create_org(conn: &Connection, slug: &str, name: &str) -> Result<Organization> {
    validate_slug("organization", slug)?;
    let exists: bool = conn.query_row("SELECT EXISTS(SELECT 1 FROM organizations WHERE slug = ?)", [slug], |r| r.get(0))?;
    if exists {
        return Err(StoreError::Conflict(format!("organization '{slug}'")));
    }
    conn.execute("INSERT INTO organizations (slug, name, created_at) VALUES (?, ?, ?)", params![slug, name, now()])?;
    org_by_slug(conn, slug)
}

pub fn org_by_slug(conn: &Connection, slug: &str) -> Result<Organization> {
    conn.query_row("SELECT id, slug, name, created_at FROM organizations WHERE slug = ?", [slug], |r| {
        Ok(Organization { id: r.get(0)?, slug: r.get(1)?, name: r.get(2)?, created_at: r.get(3)? })
    })
    .optional()?
    .ok_or_else(|| StoreError::Missing { what: format!("organization '{slug}'"), fix: format!("create it with: picket org create {slug}") })
}

pub fn list_orgs(conn: &Connection) -> Result<Vec<Organization>> {
    let mut st = conn.prepare("SELECT id, slug, name, created_at FROM organizations ORDER BY slug")?;
    let rows = st.query_map([], |r| Ok(Organization { id: r.get(0)?, slug: r.get(1)?, name: r.get(2)?, created_at: r.get(3)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Adds a user to an organization with a role (or changes the role).
pub fn set_member(conn: &Connection, org_id: i64, user_id: i64, role: &str) -> Result<()> {
    if !ROLES.contains(&role) {
        return Err(StoreError::Invalid(format!("unknown role '{role}': use one of {}", ROLES.join(", "))));
    }
    conn.execute(
        "INSERT INTO org_members (org_id, user_id, role) VALUES (?, ?, ?) ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
        params![org_id, user_id, role],
    )?;
    Ok(())
}

/// Removes a user from an organization; false if they were not a member.
pub fn remove_member(conn: &Connection, org_id: i64, user_id: i64) -> Result<bool> {
    Ok(conn.execute("DELETE FROM org_members WHERE org_id = ? AND user_id = ?", params![org_id, user_id])? > 0)
}

/// The user's role in an organization; superusers are owners everywhere.
pub fn role_in_org(conn: &Connection, user: &User, org_id: i64) -> Result<Option<String>> {
    if user.is_superuser {
        return Ok(Some("owner".into()));
    }
    Ok(conn.query_row("SELECT role FROM org_members WHERE org_id = ? AND user_id = ?", params![org_id, user.id], |r| r.get(0)).optional()?)
}

const PROJECT_COLUMNS: &str = "p.id, p.org_id, o.slug, p.slug, p.name, p.platform, p.allowed_origins, p.created_at";

fn project_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        org_id: r.get(1)?,
        org_slug: r.get(2)?,
        slug: r.get(3)?,
        name: r.get(4)?,
        platform: r.get(5)?,
        allowed_origins: r.get(6)?,
        created_at: r.get(7)?,
    })
}

/// Creates a project with one key; returns both.
pub fn create_project(conn: &Connection, org_slug: &str, slug: &str, name: &str, platform: Option<&str>) -> Result<(Project, ProjectKey)> {
    validate_slug("project", slug)?;
    let org = org_by_slug(conn, org_slug)?;
    let exists: bool = conn.query_row("SELECT EXISTS(SELECT 1 FROM projects WHERE org_id = ? AND slug = ?)", params![org.id, slug], |r| r.get(0))?;
    if exists {
        return Err(StoreError::Conflict(format!("project '{org_slug}/{slug}'")));
    }
    conn.execute(
        "INSERT INTO projects (org_id, slug, name, platform, created_at) VALUES (?, ?, ?, ?, ?)",
        params![org.id, slug, name, platform, now()],
    )?;
    let project = project_by_id(conn, conn.last_insert_rowid())?;
    let key = create_key(conn, project.id, "Default")?;
    Ok((project, key))
}

pub fn project_by_id(conn: &Connection, id: i64) -> Result<Project> {
    conn.prepare_cached(&format!("SELECT {PROJECT_COLUMNS} FROM projects p JOIN organizations o ON o.id = p.org_id WHERE p.id = ? AND NOT p.deleting"))?
        .query_row([id], project_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("project {id}")))
}

pub fn project_by_slug(conn: &Connection, org_slug: &str, slug: &str) -> Result<Project> {
    conn.query_row(
        &format!("SELECT {PROJECT_COLUMNS} FROM projects p JOIN organizations o ON o.id = p.org_id WHERE o.slug = ? AND p.slug = ? AND NOT p.deleting"),
        [org_slug, slug],
        project_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("project '{org_slug}/{slug}'")))
}

/// Projects the user can see, ordered by organization and slug.
pub fn projects_for_user(conn: &Connection, user: &User) -> Result<Vec<Project>> {
    let mut st = conn.prepare(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects p JOIN organizations o ON o.id = p.org_id
         WHERE NOT p.deleting AND (?1 OR EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = p.org_id AND m.user_id = ?2))
         ORDER BY o.slug, p.slug"
    ))?;
    let rows = st.query_map(params![user.is_superuser, user.id], project_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Starts deleting a project: its keys go (ingest refuses its events), it
/// is hidden from every lookup, and its slug is free for a new project.
/// Its data goes afterwards, in chunks: `retention::delete` with
/// `Selection::Project`, then `retention::finish_project`.
pub fn start_project_deletion(conn: &Connection, project_id: i64) -> Result<()> {
    conn.execute("DELETE FROM project_keys WHERE project_id = ?", [project_id])?;
    // No more notifications for it, in this server or after a restart.
    conn.execute("DELETE FROM post_process WHERE project_id = ?", [project_id])?;
    conn.execute("UPDATE projects SET deleting = 1, slug = slug || '~deleted~' || id WHERE id = ? AND NOT deleting", [project_id])?;
    Ok(())
}

/// The project `org/slug` whose deletion was started and is not finished.
pub fn project_being_deleted(conn: &Connection, org_slug: &str, slug: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT p.id FROM projects p JOIN organizations o ON o.id = p.org_id
             WHERE o.slug = ?1 AND p.deleting = 1 AND p.slug = ?2 || '~deleted~' || p.id",
            [org_slug, slug],
            |r| r.get(0),
        )
        .optional()?)
}

/// Projects whose deletion was started and is not finished (it stopped
/// halfway, or is running now).
pub fn projects_being_deleted(conn: &Connection) -> Result<Vec<i64>> {
    let mut st = conn.prepare_cached("SELECT id FROM projects WHERE deleting = 1 ORDER BY id")?;
    let ids = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Every project (of one organization, if given), ordered by organization and slug.
pub fn list_projects(conn: &Connection, org_slug: Option<&str>) -> Result<Vec<Project>> {
    let mut st = conn.prepare(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects p JOIN organizations o ON o.id = p.org_id
         WHERE NOT p.deleting AND (?1 IS NULL OR o.slug = ?1) ORDER BY o.slug, p.slug"
    ))?;
    let rows = st.query_map([org_slug], project_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Sets the browser origins allowed to send events, separated by spaces (`*`: any).
pub fn set_allowed_origins(conn: &Connection, project_id: i64, origins: &str) -> Result<()> {
    conn.execute("UPDATE projects SET allowed_origins = ? WHERE id = ?", params![origins, project_id])?;
    Ok(())
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectKey> {
    Ok(ProjectKey {
        id: r.get(0)?,
        project_id: r.get(1)?,
        public_key: r.get(2)?,
        label: r.get(3)?,
        is_active: r.get(4)?,
        rate_limit_count: r.get(5)?,
        rate_limit_window: r.get(6)?,
        created_at: r.get(7)?,
    })
}

const KEY_COLUMNS: &str = "id, project_id, public_key, label, is_active, rate_limit_count, rate_limit_window, created_at";

pub fn create_key(conn: &Connection, project_id: i64, label: &str) -> Result<ProjectKey> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let public_key = hex::encode(bytes);
    conn.execute(
        "INSERT INTO project_keys (project_id, public_key, label, created_at) VALUES (?, ?, ?, ?)",
        params![project_id, public_key, label, now()],
    )?;
    key_by_public(conn, &public_key)?.ok_or_else(|| StoreError::NotFound("new key".into()))
}

/// Adds a key with a given public part (to keep DSNs when moving from another server).
pub fn import_key(conn: &Connection, project_id: i64, public_key: &str, label: &str) -> Result<ProjectKey> {
    let normalized = normalize_public_key(public_key);
    if normalized.len() != 32 || !normalized.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(StoreError::Invalid(format!("invalid public key '{public_key}': expected 32 hex digits")));
    }
    if let Some(existing) = key_by_public(conn, &normalized)? {
        let owner = project_by_id(conn, existing.project_id)?;
        return Err(StoreError::Conflict(format!("key '{normalized}' (it belongs to project {}/{})", owner.org_slug, owner.slug)));
    }
    conn.execute(
        "INSERT INTO project_keys (project_id, public_key, label, created_at) VALUES (?, ?, ?, ?)",
        params![project_id, normalized, label, now()],
    )?;
    key_by_public(conn, &normalized)?.ok_or_else(|| StoreError::NotFound("new key".into()))
}

pub fn keys_for_project(conn: &Connection, project_id: i64) -> Result<Vec<ProjectKey>> {
    let mut st = conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM project_keys WHERE project_id = ? ORDER BY id"))?;
    let rows = st.query_map([project_id], key_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Looks a key up by its public part (dashed or undashed, any case).
pub fn key_by_public(conn: &Connection, public_key: &str) -> Result<Option<ProjectKey>> {
    Ok(conn.query_row(&format!("SELECT {KEY_COLUMNS} FROM project_keys WHERE public_key = ?"), [normalize_public_key(public_key)], key_row).optional()?)
}

/// Keys are stored as 32 lowercase hex digits; clients may send a dashed UUID or capitals.
fn normalize_public_key(public_key: &str) -> String {
    public_key.trim().chars().filter(|c| *c != '-').collect::<String>().to_ascii_lowercase()
}

/// The project's key with this public part (dashed or undashed, any case).
pub fn project_key(conn: &Connection, project_id: i64, public_key: &str) -> Result<ProjectKey> {
    key_by_public(conn, public_key)?
        .filter(|k| k.project_id == project_id)
        .ok_or_else(|| StoreError::NotFound(format!("key '{public_key}' in this project (list them with: picket project dsn ORG/SLUG)")))
}

/// Enables or disables a key: a disabled key's events are refused (403).
pub fn set_key_active(conn: &Connection, key_id: i64, active: bool) -> Result<()> {
    conn.execute("UPDATE project_keys SET is_active = ? WHERE id = ?", params![active, key_id])?;
    Ok(())
}

/// Deletes a key: SDKs with its DSN are refused from then on.
pub fn remove_key(conn: &Connection, key_id: i64) -> Result<()> {
    conn.execute("DELETE FROM project_keys WHERE id = ?", [key_id])?;
    Ok(())
}

/// Sets (or clears, with `None`) a key's rate limit: `count` events per `window` seconds.
pub fn set_key_rate_limit(conn: &Connection, key_id: i64, limit: Option<(i64, i64)>) -> Result<()> {
    conn.execute(
        "UPDATE project_keys SET rate_limit_count = ?, rate_limit_window = ? WHERE id = ?",
        params![limit.map(|l| l.0), limit.map(|l| l.1), key_id],
    )?;
    Ok(())
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates an API token for a user; only its hash is stored, so the token is shown once.
pub fn create_token(conn: &Connection, user_id: i64) -> Result<String> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("pkt_{}", hex::encode(bytes));
    conn.execute("INSERT INTO api_tokens (user_id, token_hash, created_at) VALUES (?, ?, ?)", params![user_id, token_hash(&token), now()])?;
    Ok(token)
}

/// The user a token belongs to. The lookup is by hash, so timing reveals nothing of the token.
pub fn user_for_token(conn: &Connection, token: &str) -> Result<Option<User>> {
    let id: Option<i64> = conn.query_row("SELECT user_id FROM api_tokens WHERE token_hash = ?", [token_hash(token)], |r| r.get(0)).optional()?;
    id.map(|id| user_by_id(conn, id)).transpose()
}

/// A user's API tokens: id and creation time (the tokens themselves are not stored).
pub fn tokens_for_user(conn: &Connection, user_id: i64) -> Result<Vec<(i64, f64)>> {
    let mut st = conn.prepare("SELECT id, created_at FROM api_tokens WHERE user_id = ? ORDER BY id")?;
    let rows = st.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Revokes a token by its id; false if the user has no such token.
pub fn revoke_token(conn: &Connection, user_id: i64, token_id: i64) -> Result<bool> {
    Ok(conn.execute("DELETE FROM api_tokens WHERE id = ? AND user_id = ?", params![token_id, user_id])? > 0)
}

/// Revokes a token given as itself (say, one that leaked); returns its user, if it was valid.
pub fn revoke_token_value(conn: &Connection, token: &str) -> Result<Option<User>> {
    let user = user_for_token(conn, token)?;
    conn.execute("DELETE FROM api_tokens WHERE token_hash = ?", [token_hash(token)])?;
    Ok(user)
}
