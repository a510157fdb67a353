//! Label and field selectors as the Kubernetes API server parses and matches them; this module only gathers its parts.

mod error;
mod field;
mod label;
mod parser;

pub use error::SelectorError;
pub(crate) use field::field_value;
pub use field::{FieldRequirement, FieldSelector};
pub use label::{LabelOperator, LabelRequirement, LabelSelector};
pub(crate) use label::{validate_label_key, validate_label_value};

#[cfg(test)]
mod tests;
