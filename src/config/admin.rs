//! The chaos admin API's settings: from `run --admin-listen` and `--admin-token-file`, never
//! from the config file (a runtime switch, not a deployment fact).

use std::net::SocketAddr;

use super::ConfigError;

/// How the admin API is enabled (CLI flags, never the config file).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Loopback address to bind.
    pub listen: SocketAddr,
    /// The bearer token (at least 16 characters).
    pub token: String,
}

impl AdminConfig {
    /// Validate the flags' values.
    pub fn new(listen: SocketAddr, token: String) -> Result<AdminConfig, ConfigError> {
        if !listen.ip().is_loopback() {
            return Err(ConfigError(vec![format!(
                "--admin-listen: {listen} is not a loopback address (the admin API never leaves the host)"
            )]));
        }
        let token = token.trim().to_string();
        if token.len() < 16 {
            return Err(ConfigError(vec!["--admin-token-file: the token must have at least 16 characters".into()]));
        }
        Ok(AdminConfig { listen, token })
    }
}
