//! What an admission hook decides: allow or deny, with warnings.

/// An admission decision. Whether the Job was mutated is not part of it: the
/// SDK compares the Job before and after [`crate::Admission::admit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    denied: Option<String>,
    warnings: Vec<String>,
}

impl Verdict {
    /// Let the Job be created (with whatever changes were made to it).
    pub fn allow() -> Self {
        Verdict::default()
    }

    /// Refuse the Job; `message` tells the job's user why.
    pub fn deny(message: impl Into<String>) -> Self {
        Verdict {
            denied: Some(message.into()),
            warnings: Vec::new(),
        }
    }

    /// Adds a warning, shown to the job's user and the operator whatever the decision.
    #[must_use]
    pub fn warn(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// Adds several warnings.
    #[must_use]
    pub fn with_warnings(mut self, warnings: impl IntoIterator<Item = String>) -> Self {
        self.warnings.extend(warnings);
        self
    }

    /// The denial message, if the Job is denied.
    pub fn denied(&self) -> Option<&str> {
        self.denied.as_deref()
    }

    /// The warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub(crate) fn into_parts(self) -> (Option<String>, Vec<String>) {
        (self.denied, self.warnings)
    }
}
