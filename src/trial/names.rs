//! The names results give the built-in tasks' requests and units, as Locust's script named
//! them: a trial's own vocabulary, which the engine records under and the report reads.

/// Provisioning well-known.
pub const WK_PROVISIONING: &str = "/.well-known/veraison/provisioning";
/// Verification well-known.
pub const WK_VERIFICATION: &str = "/.well-known/veraison/verification";
/// CoRIM submission.
pub const SUBMIT: &str = "/endorsement-provisioning/v1/submit";
/// newSession, nonce elided.
pub const NEW_SESSION: &str = "/challenge-response/v1/newSession?nonce=[NONCE]";
/// Evidence POST and DELETE.
pub const SESSION: &str = "/challenge-response/v1/[SESSION_ID]";
/// The units of the built-in tasks.
pub const WELL_KNOWN_UNIT: &str = "well-known (both services)";
/// One provisioning.
pub const PROVISION_UNIT: &str = "provisioning";
/// One challenge-response session: newSession, evidence, DELETE.
pub const VERIFY_UNIT: &str = "verification session";
/// The method name of task units.
pub const TASK: &str = "TASK";
