//! Configuration errors of the functions (defined in the pure domain so every crate shares one).

pub use relay_domain::config::ConfigError;
