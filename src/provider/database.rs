//! The deployment's database as read before a trial changes it (its instance class, its
//! parameter group, the parameters the trial sets): what the undo journal keeps and a restore
//! puts back exactly, "not set" (the engine's default) included.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An RDS instance's settings a trial changes, as read before the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseOriginal {
    /// The instance's identifier (resolved: never `auto`).
    pub instance: String,
    /// Its instance class (`db.t3.micro`).
    pub class: String,
    /// The parameter group it used.
    pub parameter_group: String,
    /// The parameter group whose parameters the trial sets (`None`: it sets none): a group the
    /// trial names, or the one it creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_group: Option<String>,
    /// True when the trial creates `changed_group` (the restore deletes it).
    #[serde(default)]
    pub created: bool,
    /// The values of the parameters the trial sets, as they were (`None`: not set, the
    /// engine's default): in `changed_group` when the trial names it (the restore puts them
    /// back), in the instance's own group when the trial creates one (shown, never written).
    #[serde(default)]
    pub parameters: BTreeMap<String, Option<String>>,
}

impl DatabaseOriginal {
    /// One setting as `plan` shows it (`setting` as in
    /// [`crate::trial::plan::database_changes`]).
    pub fn describe(&self, setting: &str) -> String {
        match setting {
            "instance-class" => self.class.clone(),
            "parameter-group" => self.parameter_group.clone(),
            "max-connections" => self.value_text(crate::trial::database::MAX_CONNECTIONS_PARAMETER),
            _ => "?".into(),
        }
    }

    /// A parameter's value as read, or `engine default` when it was not set.
    pub fn value_text(&self, parameter: &str) -> String {
        match self.parameters.get(parameter) {
            Some(Some(v)) => v.clone(),
            _ => "engine default".into(),
        }
    }

    /// `veraison-db: class db.t3.micro, parameter group default.postgres16, max_connections
    /// engine default`, as the preflight and the restore say it.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: class {}, parameter group {}",
            self.instance, self.class, self.parameter_group
        );
        for name in self.parameters.keys() {
            s.push_str(&format!(", {name} {}", self.value_text(name)));
        }
        s
    }
}
