//! Stage ③ — routing: an accepted RCPT address → a [`Destination`](crate::envelope::Destination) (a configured route, or
//! bounce processing), per SPEC "Inbound routing". Built once from config; no IO but the
//! ERP alias tables' files ([`erp_aliases`]).

pub mod erp_aliases;
mod resolve;
pub mod srs;
pub mod token;

pub use erp_aliases::ErpAliases;
pub use resolve::{Error, Router};
