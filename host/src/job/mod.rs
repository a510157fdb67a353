//! One job end to end: its payload, and (to come) prepare, launch, follow and finish.

pub mod payload;
