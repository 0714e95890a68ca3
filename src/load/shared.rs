//! What every virtual user of a run shares: the wire, the recorder, the jobs, the devices, the
//! service's EAR key, and the counters of the checks' CPU and of the tasks run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::recorder::{EndpointId, Recorder};
use super::tasks::{CheckCpu, DeviceMaterial, Job, Runner, Target, UserCtx, Wire};
use crate::trial::LoadPhase;

/// What every virtual user of a run shares.
pub(super) struct Shared {
    /// How requests travel.
    pub wire: Wire,
    /// The target.
    pub target: Arc<Target>,
    /// Where every sample goes.
    pub recorder: Arc<Recorder>,
    /// The token endpoint, when the target needs tokens.
    pub token_endpoint: Option<EndpointId>,
    /// What each user (or session) does, in order.
    pub jobs: Vec<Job>,
    /// The devices users are given (one each in fleet mode, else one for all).
    pub devices: Vec<DeviceMaterial>,
    /// The phase being run.
    pub phase: LoadPhase,
    /// The verification service's EAR key.
    pub ear_key: Option<crate::veraison::ear::EarKey>,
    /// Number of the first user (non-zero in a fleet worker's share).
    pub first_user: usize,
    /// CPU the semantic checks took, over every user's sessions (sampled: [`CheckCpu`]).
    pub checks: Mutex<CheckCpu>,
    /// Verification sessions begun (the sampling of [`CheckCpu`]).
    pub sessions: AtomicU64,
    /// Tasks run.
    pub tasks_done: AtomicU64,
}

impl Shared {
    /// A user's runner of tasks.
    pub fn runner(&self) -> Runner<'_> {
        Runner {
            wire: &self.wire,
            target: &self.target,
            recorder: &self.recorder,
            token_endpoint: self.token_endpoint,
            ear_key: self.ear_key.as_ref(),
            sessions: &self.sessions,
        }
    }

    /// User `user`'s own state (its device, its connections).
    pub fn ctx(&self, user: usize) -> UserCtx<'_> {
        UserCtx::new(
            &self.devices[user % self.devices.len()],
            self.phase.nonce,
            self.first_user + user,
        )
    }

    /// Adds a user's (or session's) check CPU and task count, once, at its end.
    pub fn account(&self, ctx: &UserCtx<'_>, tasks: u64) {
        self.checks.lock().expect("checks lock").merge(&ctx.checks);
        self.tasks_done.fetch_add(tasks, Ordering::Relaxed);
    }
}
