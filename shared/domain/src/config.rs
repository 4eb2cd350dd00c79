//! The configuration error every function's loader returns: it names the variable, never the
//! value (which may be a secret).

/// A configuration error naming the variable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable is set to an unusable value.
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong (never the value itself).
        reason: String,
    },
}
