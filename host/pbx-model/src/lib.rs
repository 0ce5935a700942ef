//! The PBX's vocabulary: one definition of each thing every crate talks about.
//!
//! A tenant is a [`TenantId`] everywhere: the SIP core, the guard's counters,
//! the plugin capabilities, the store and the API. Names are for people and
//! logs; they are carried beside the id where shown, never used as a key.
//!
//! # Layout
//! - [`tenant`]: [`TenantId`], [`Tenant`], [`Extension`], [`NetworkAcl`], the
//!   media and digest settings, and the [`Directory`] the SIP core resolves
//!   requests against.
//! - [`registration`]: registrar bindings and the changes written behind the
//!   SIP path.
//! - [`cdr`]: call detail records and their media counters.
//! - [`alert`]: [`Severity`] and [`Alert`].
//! - [`limits`]: [`TenantLimits`], the default call limits (with which limit
//!   applies where) and the bounds of a tenant's stored audio.
//! - [`calendar`]: a tenant's time zone and holidays; [`forwarding`]: an
//!   extension's call forwarding and do-not-disturb. Both are read by call
//!   handlers and checked here once.
//!
//! # Design
//! Plain data with serde derives (and `utoipa` schema derives, which describe
//! the admin API's bodies) and no I/O: no database, no runtime, no clock.
//! `pbx-store` maps rows to these types (its modules of the same names are the
//! same concepts at the persistence layer) and re-exports them, so callers may
//! name them through either crate; there is one definition.

pub mod alert;
pub mod calendar;
pub mod cdr;
pub mod forwarding;
pub mod limits;
pub mod registration;
pub mod tenant;

pub use alert::{Alert, Severity};
pub use calendar::{Calendar, CalendarError, Holiday};
pub use cdr::{Cdr, CdrMedia, Disposition, LegMedia};
pub use forwarding::{Forwarding, ForwardingError};
pub use limits::TenantLimits;
pub use registration::{CallerDevice, Registration, RegistrationChange, TransportKind};
pub use tenant::{
    DigestAlgorithm, DigestAlgorithms, Directory, Extension, MediaEncryption, NetworkAcl, Tenant,
    TenantId, TenantStatus,
};
