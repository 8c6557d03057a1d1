//! `cascade-gen`: realistic, reproducible multi-tenant SaaS data for Cascade's demo source
//! (`main-db/schema.sql`). Bulk mode inserts whole organizations; steady mode keeps a realistic mix
//! of transactions going at a fixed rate, so cdc and the routers have something to replicate.
//!
//! Pure parts — [`rng`], [`catalog`], [`fake`], [`money`], [`activity`], [`tenant`], [`sql`] —
//! decide every value and are unit-tested without a database; [`session`], [`bulk`], [`steady`] and
//! [`ops`] talk to PostgreSQL.

pub mod activity;
pub mod app;
pub mod bulk;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod error;
pub mod fake;
pub mod money;
pub mod ops;
pub mod progress;
pub mod rng;
pub mod rows;
pub mod session;
pub mod sql;
pub mod steady;
pub mod tenant;
pub mod words;
