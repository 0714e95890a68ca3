//! The checked trial: what validation yields and planning reads. A [`Trial`] is bound to its
//! environment, its tasks resolved ([`TaskRef`]), its capacities ([`Capacity`]) and variants
//! ([`Variant`]) checked.

use std::path::PathBuf;

use super::deployment::GroupSettings;
use super::environment::Environment;
use super::model::{InfraSpec, ServiceRole, TrialFile};

/// A task a load phase runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskRef {
    /// `GET /.well-known/veraison/provisioning` (and verification).
    WellKnown,
    /// CoRIM submission.
    Provision,
    /// The 3-request challenge-response session.
    Verify,
    /// A plain HTTP task of the trial's `http-tasks`.
    Http(String),
}

impl TaskRef {
    /// The name as written in trials.
    pub fn name(&self) -> &str {
        match self {
            TaskRef::WellKnown => "well-known",
            TaskRef::Provision => "provision",
            TaskRef::Verify => "verify",
            TaskRef::Http(n) => n,
        }
    }

    /// The names of the requests it issues, as results name them.
    pub fn request_names(&self, spec: &TrialFile) -> Vec<String> {
        use crate::trial::names;
        match self {
            TaskRef::WellKnown => {
                vec![names::WK_PROVISIONING.into(), names::WK_VERIFICATION.into()]
            }
            TaskRef::Provision => vec![names::SUBMIT.into()],
            TaskRef::Verify => vec![names::NEW_SESSION.into(), names::SESSION.into()],
            TaskRef::Http(n) => spec
                .http_tasks
                .get(n)
                .map(|h| h.path.clone())
                .into_iter()
                .collect(),
        }
    }
}

/// Checked auto-scaling capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capacity {
    /// min = max = desired.
    Pinned(u32),
    /// Free between min and max; desired optional.
    Range {
        /// Lower bound.
        min: u32,
        /// Upper bound.
        max: u32,
        /// Initial desired capacity.
        desired: Option<u32>,
    },
}

impl Capacity {
    /// (min, max, desired) to apply.
    pub fn bounds(&self) -> (u32, u32, Option<u32>) {
        match *self {
            Capacity::Pinned(n) => (n, n, Some(n)),
            Capacity::Range { min, max, desired } => (min, max, desired),
        }
    }
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capacity::Pinned(n) => write!(f, "pinned at {n}"),
            Capacity::Range { min, max, .. } => write!(f, "free {min}..{max}"),
        }
    }
}

/// A checked trial bound to its environment: the input of planning.
#[derive(Debug, Clone)]
pub struct Trial {
    /// Where it was read from.
    pub file: PathBuf,
    /// SHA-256 of its text.
    pub hash: String,
    /// The file as written.
    pub spec: TrialFile,
    /// The environment it runs in.
    pub env: Environment,
    /// User counts of the closed model, in order (empty for the open model).
    pub user_steps: Vec<u32>,
    /// Tasks, resolved.
    pub tasks: Vec<TaskRef>,
    /// Capacity per service.
    pub capacities: Vec<(ServiceRole, Capacity)>,
    /// What else of a service's group the trial changes (warm pool, policy, health checks).
    pub settings: Vec<(ServiceRole, GroupSettings)>,
    /// The trial's variants of `infra`, checked (empty: the trial runs once, as written).
    pub variants: Vec<Variant>,
    /// Iterations of the run sequence.
    pub iterations: u32,
}

/// One checked variant of a trial's `infra`: the capacities and settings it runs under.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Its name (its results folder).
    pub name: String,
    /// `infra` with the variant merged over it.
    pub infra: InfraSpec,
    /// Capacity per service under it.
    pub capacities: Vec<(ServiceRole, Capacity)>,
    /// Settings per service under it.
    pub settings: Vec<(ServiceRole, GroupSettings)>,
}

impl Trial {
    /// The trial as it runs under one of its variants: its `infra`, capacities and settings
    /// those of the variant, with no variants of its own.
    pub fn under(&self, variant: &Variant) -> Trial {
        let mut t = self.clone();
        t.spec.infra = variant.infra.clone();
        t.spec.variants.clear();
        t.spec.variant = Some(variant.name.clone());
        t.capacities = variant.capacities.clone();
        t.settings = variant.settings.clone();
        t.variants.clear();
        t
    }

    /// The groups the campaign locks, journals and restores: those it changes, or, when it
    /// changes only the database, the deployment's provisioning and verification groups, held
    /// as they are (the deployment lock and the undo journal are the groups').
    pub fn held_services(&self) -> Vec<ServiceRole> {
        let changed: Vec<ServiceRole> = self.capacities.iter().map(|(r, _)| *r).collect();
        if !changed.is_empty() || self.spec.infra.database.is_none() {
            return changed;
        }
        [ServiceRole::Provisioning, ServiceRole::Verification]
            .into_iter()
            .filter(|r| self.env.asg_name(*r).is_some())
            .collect()
    }
}
