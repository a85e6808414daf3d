//! What hooks are told about: projects, issues, users and events. Plain data,
//! read-only, built by Picket for each call. Every struct is
//! `#[non_exhaustive]`, so Picket can add fields without breaking a plugin;
//! the `new` constructors exist for Picket and for plugins' own tests.

use serde::Serialize;
use serde_json::{Map, Value};

/// A project.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ProjectRef {
    /// Numeric id (as in the DSN).
    pub id: i64,
    /// Slug, unique in its organization.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Slug of the organization.
    pub org_slug: String,
}

impl ProjectRef {
    /// A project reference.
    pub fn new(id: i64, org_slug: &str, slug: &str, name: &str) -> ProjectRef {
        ProjectRef { id, slug: slug.into(), name: name.into(), org_slug: org_slug.into() }
    }
}

/// An issue: events grouped together.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct IssueRef {
    /// Numeric id.
    pub id: i64,
    /// Project the issue belongs to.
    pub project_id: i64,
    /// Title (exception type and value, or message).
    pub title: String,
    /// Where it happened (function or module).
    pub culprit: String,
    /// Level of the first event (`error`, `warning`, ...).
    pub level: String,
    /// `unresolved`, `resolved` or `ignored`.
    pub status: String,
    /// Logger of the first event.
    pub logger: Option<String>,
    /// Events counted.
    pub times_seen: i64,
    /// First and last event, Unix seconds.
    pub first_seen: f64,
    /// Last event, Unix seconds.
    pub last_seen: f64,
    /// Absolute link to the issue in Picket's web interface.
    pub url: String,
}

impl IssueRef {
    /// An issue reference; the other fields start empty.
    pub fn new(id: i64, project_id: i64, title: &str) -> IssueRef {
        IssueRef {
            id,
            project_id,
            title: title.into(),
            culprit: String::new(),
            level: "error".into(),
            status: "unresolved".into(),
            logger: None,
            times_seen: 1,
            first_seen: 0.0,
            last_seen: 0.0,
            url: String::new(),
        }
    }
}

/// The user a request is made for.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct UserRef {
    /// Numeric id.
    pub id: i64,
    /// E-mail address (the login).
    pub email: String,
    /// Superusers may do everything, whatever plugins say.
    pub is_superuser: bool,
    /// Role in the organization concerned (`member`, `admin`, `owner`), if any.
    pub role: Option<String>,
}

impl UserRef {
    /// A user reference.
    pub fn new(id: i64, email: &str, role: Option<&str>) -> UserRef {
        UserRef { id, email: email.into(), is_superuser: false, role: role.map(str::to_string) }
    }
}

/// A normalized event, as stored.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Event {
    /// 32 hex digits.
    pub event_id: String,
    /// Project it was sent to.
    pub project_id: i64,
    /// `debug`, `info`, `warning`, `error` or `fatal`.
    pub level: String,
    /// `python`, `javascript`, ... (`other` when unknown).
    pub platform: String,
    /// Title as the issue shows it.
    pub title: String,
    /// Culprit as the issue shows it.
    pub culprit: String,
    /// Logger name, if any.
    pub logger: Option<String>,
    /// Tags, including the derived ones (`level`, `environment`, `release`, ...).
    pub tags: Vec<(String, String)>,
    /// Event time, Unix seconds.
    pub timestamp: f64,
    /// The whole normalized payload; interfaces live under their keys
    /// (`exception`, `request`, `user`, ...).
    pub data: Map<String, Value>,
}

impl Event {
    /// An event from a normalized payload, reading the standard fields from it.
    pub fn from_data(project_id: i64, data: Map<String, Value>) -> Event {
        let tags = data
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p.get(0)?.as_str()?.to_string(), p.get(1)?.as_str()?.to_string())))
            .collect();
        Event::from_data_with_tags(project_id, tags, data)
    }

    /// [`Event::from_data`] when the tags are already known (saves reading
    /// them back from `data["tags"]`, which must hold the same).
    pub fn from_data_with_tags(project_id: i64, tags: Vec<(String, String)>, data: Map<String, Value>) -> Event {
        let s = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Event {
            event_id: s("event_id"),
            project_id,
            level: s("level"),
            platform: s("platform"),
            title: s("title"),
            culprit: s("culprit"),
            logger: data.get("logger").and_then(Value::as_str).map(str::to_string),
            tags,
            timestamp: data.get("timestamp").and_then(Value::as_f64).unwrap_or(0.0),
            data,
        }
    }

    /// The data of an interface by its key (`"request"`, `"user"`, ...).
    pub fn interface(&self, key: &str) -> Option<&Value> {
        self.data.get(key).filter(|v| !v.is_null())
    }

    /// The value of a tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A request header (case-insensitive), from the `request` interface.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.interface("request")?.get("headers")?.as_array()?.iter().find_map(|pair| {
            let pair = pair.as_array()?;
            pair.first()?.as_str()?.eq_ignore_ascii_case(name).then(|| pair.get(1)?.as_str())?
        })
    }
}

/// A link: a label and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Link {
    /// Text of the link.
    pub label: String,
    /// Target URL (absolute, or a path in Picket).
    pub url: String,
}

impl Link {
    /// A link.
    pub fn new(label: impl Into<String>, url: impl Into<String>) -> Link {
        Link { label: label.into(), url: url.into() }
    }
}
