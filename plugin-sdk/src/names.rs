//! The Kubernetes name rules plugins check settings against, shared with the executor and its simulator so that all three agree; each check returns the API server's reason when it fails.

pub use k8s_rules::names::{dns1123_label, dns1123_subdomain, label_value, qualified_name};

/// Whether `s` may be a label or annotation key ([`qualified_name`]), with
/// the reason when not.
pub fn label_key(s: &str) -> Result<(), String> {
    qualified_name(s)
}
