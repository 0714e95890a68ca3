//! Store drivers: clear and count Veraison's stores between runs.
//!
//! * [`postgres`] — the `sql`/`pgx` backend on RDS or any PostgreSQL (optionally through an
//!   [`tunnel`] SSH port forward, since RDS is only reachable inside the VPC);
//! * [`sqlite`] — the docker and native deployments' `*-store.sql` files;
//! * [`command`] — clear and count by running configured commands (`veraison clear-stores`);
//! * [`memcached`] — the verification session cache.
//!
//! Which tables depends on the Veraison release: the K-V era's `endorsements`,
//! `trust_anchors`, `policies`, or the corim-store era's tables.

pub mod command;
pub mod memcached;
pub mod postgres;
pub mod sqlite;
pub mod tunnel;

use crate::veraison::release::StoreEra;

/// The K-V era's tables (services `deployments/aws/misc/sentinel-commands`).
pub const KV_TABLES: &[&str] = &["endorsements", "trust_anchors", "policies"];

/// The corim-store era's tables (corim-store `pkg/migrations`), plus the K-V `policies` table
/// that policies still use.
pub const CORIM_STORE_TABLES: &[&str] = &[
    "manifests",
    "tokens",
    "module_tags",
    "key_triples",
    "value_triples",
    "environments",
    "measurements",
    "digests",
    "cryptokeys",
    "entities",
    "roles",
    "locators",
    "linked_tags",
    "extensions",
    "policies",
];

/// The tables to clear and count for a store era.
pub fn tables_for(era: StoreEra) -> &'static [&'static str] {
    match era {
        StoreEra::KeyValue => KV_TABLES,
        StoreEra::CorimStore => CORIM_STORE_TABLES,
    }
}
