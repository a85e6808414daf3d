//! Permissions a plugin may allow or veto through [`Plugin::has_perm`](crate::Plugin::has_perm).
//! Picket asks in one place (its authorization function), with the classic names.

use serde::Serialize;

/// An action that needs permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Permission {
    /// Create a project in an organization.
    AddProject,
    /// Create an organization (Picket's teams).
    AddTeam,
    /// Add a member to an organization.
    AddTeamMember,
    /// Change a member's role.
    EditTeamMember,
    /// Remove a member.
    RemoveTeamMember,
    /// Change a project's settings.
    EditProject,
    /// Delete a project.
    RemoveProject,
    /// Enable, disable or configure a plugin for a project.
    ConfigureProjectPlugin,
    /// Act on an issue: resolve, ignore, delete, use plugin actions.
    AdminEvent,
    /// Send an event to a project (asked at ingest, with no user).
    CreateEvent,
    /// Create a DSN key.
    AddProjectKey,
    /// Remove a DSN key.
    RemoveProjectKey,
}

impl Permission {
    /// Every permission, for documentation and tests.
    pub const ALL: &'static [Permission] = &[
        Permission::AddProject,
        Permission::AddTeam,
        Permission::AddTeamMember,
        Permission::EditTeamMember,
        Permission::RemoveTeamMember,
        Permission::EditProject,
        Permission::RemoveProject,
        Permission::ConfigureProjectPlugin,
        Permission::AdminEvent,
        Permission::CreateEvent,
        Permission::AddProjectKey,
        Permission::RemoveProjectKey,
    ];

    /// The classic name (`add_project`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::AddProject => "add_project",
            Permission::AddTeam => "add_team",
            Permission::AddTeamMember => "add_team_member",
            Permission::EditTeamMember => "edit_team_member",
            Permission::RemoveTeamMember => "remove_team_member",
            Permission::EditProject => "edit_project",
            Permission::RemoveProject => "remove_project",
            Permission::ConfigureProjectPlugin => "configure_project_plugin",
            Permission::AdminEvent => "admin_event",
            Permission::CreateEvent => "create_event",
            Permission::AddProjectKey => "add_project_key",
            Permission::RemoveProjectKey => "remove_project_key",
        }
    }
}
