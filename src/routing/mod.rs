//! Stage ③ — routing: an accepted RCPT address → a [`Destination`](crate::envelope::Destination) (a configured route, or
//! bounce processing), per SPEC "Inbound routing". Pure: no IO, built once from config.

mod resolve;
pub mod srs;
pub mod token;

pub use resolve::{Error, Router};
