//! Durable state (being written).
mod types;
pub use types::*;
