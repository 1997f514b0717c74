//! Who a device is and what it may do: identity at CONNECT, ACL checks per publish and subscribe.
//!
//! Identity, in order: the verified client certificate (its CN or a SAN field, by config); else a
//! username checked against the password file (plain listener with `auth.plain = "password"`, or
//! a TLS device without a certificate when client certificates are optional); else, only on a lab
//! plain listener with `auth.plain = "anonymous"`, the client id. An identity must be usable in a
//! topic level (no `/`, `+`, `#`, NUL), and by default the client id must equal it.
//!
//! The ACL and the password file are [`Reloadable`]: the rotation actor swaps them when their
//! files change; a bad file keeps the previous rules.

use edge_gateway_actors::metrics::{AclAction, AclLabels, AuthFailure, AuthLabels};
use std::path::PathBuf;
use std::sync::Arc;

use edge_gateway_actors::metrics::Metrics;
use edge_gateway_actors::rotation::{CertExpiry, ReloadError, Reloadable};

use super::acl::{Acl, AclError, Decision, Who};
use super::passwd::{PasswdError, PasswordFile};
use super::tls::{Swap, identity_of};
use crate::config::{AuthConfig, PlainAuth};

/// Why a CONNECT was refused (also the `gateway_auth_failures_total` reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Username or password wrong.
    BadPassword,
    /// Neither a client certificate nor a username and password.
    NoCredentials,
    /// The client id differs from the identity.
    ClientIdMismatch,
    /// The certificate has no value in the configured identity field.
    NoIdentity,
    /// The identity cannot name a topic level (empty, `/`, `+`, `#`, NUL, too long).
    BadIdentity,
    /// The will topic is not one the identity may publish to.
    WillNotAuthorized,
}

impl From<Refusal> for AuthFailure {
    fn from(r: Refusal) -> AuthFailure {
        match r {
            Refusal::BadPassword => AuthFailure::BadPassword,
            Refusal::NoCredentials => AuthFailure::NoCredentials,
            Refusal::ClientIdMismatch => AuthFailure::ClientIdMismatch,
            Refusal::NoIdentity => AuthFailure::NoIdentity,
            Refusal::BadIdentity => AuthFailure::BadIdentity,
            Refusal::WillNotAuthorized => AuthFailure::WillNotAuthorized,
        }
    }
}

/// Why the ACL or password file named in the config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The ACL file does not load (`auth.acl_file`).
    #[error("auth.acl_file: {}: {}", path.display(), source.0.join("; "))]
    Acl {
        /// The file.
        path: PathBuf,
        /// Every problem in it.
        source: AclError,
    },
    /// The password file does not load (`auth.password_file`).
    #[error("auth.password_file: {0}")]
    Passwords(#[from] PasswdError),
}

/// Password hashes computed at once (the box has 2 cores; the I/O thread must stay free).
pub const HASHING_SLOTS: usize = 2;

static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASHING_SLOTS);

/// The identification step that still needs work.
enum Step {
    /// Refused without hashing anything.
    Refused(Refusal),
    /// A username and password to check against the file.
    Password { user: String, password: Vec<u8> },
}

/// What a CONNECT presents.
pub struct Credentials<'a> {
    /// DER of the verified client certificate, if any.
    pub cert: Option<&'a [u8]>,
    /// The connection came through the TLS listener.
    pub tls: bool,
    /// The MQTT client id (may be empty).
    pub client_id: &'a str,
    /// MQTT username.
    pub username: Option<&'a str>,
    /// MQTT password.
    pub password: Option<&'a [u8]>,
}

/// Identity and ACL decisions, shared by every connection.
#[derive(Clone)]
pub struct Authority {
    /// How identities are found.
    config: AuthConfig,
    /// Current ACL.
    acl: Arc<AclFile>,
    /// Current password file, if configured.
    passwords: Option<Arc<PasswordStore>>,
    /// Counters.
    metrics: Metrics,
}

impl Authority {
    /// Load the ACL and password files named in `config`.
    pub fn load(config: &AuthConfig, metrics: Metrics) -> Result<Authority, AuthError> {
        let acl = Arc::new(AclFile::load(config.acl_file.clone(), &config.downlink_identity)?);
        let passwords = match &config.password_file {
            Some(path) => Some(Arc::new(PasswordStore::load(path.clone())?)),
            None => None,
        };
        Ok(Authority { config: config.clone(), acl, passwords, metrics })
    }

    /// What the rotation actor reloads for us.
    pub fn reloadables(&self) -> Vec<Arc<dyn Reloadable>> {
        let mut out: Vec<Arc<dyn Reloadable>> = Vec::new();
        if self.acl.path.is_some() {
            out.push(self.acl.clone());
        }
        if let Some(p) = &self.passwords {
            out.push(p.clone());
        }
        out
    }

    /// The device's identity, or why it is refused (counted here). The cheap checks come
    /// first; a password hash runs off the I/O thread, at most [`HASHING_SLOTS`] at a time.
    pub async fn authenticate(&self, c: &Credentials<'_>) -> Result<String, Refusal> {
        let result = match self.identify(c) {
            Ok(id) => self.check_identity(c, id),
            Err(Step::Refused(r)) => Err(r),
            Err(Step::Password { user, password }) => match self.check_identity(c, user) {
                Ok(user) => self.verify_password(user, password).await,
                Err(r) => Err(r),
            },
        };
        if let Err(r) = result {
            self.metrics.auth_failures.get_or_create(&AuthLabels { reason: r.into() }).inc();
        }
        result
    }

    fn check_identity(&self, c: &Credentials, id: String) -> Result<String, Refusal> {
        // The downlink's identity is the HTTP API's: no MQTT client may take it.
        if !usable_identity(&id) || id == self.config.downlink_identity {
            Err(Refusal::BadIdentity)
        } else if self.config.client_id_must_match && !c.client_id.is_empty() && c.client_id != id {
            Err(Refusal::ClientIdMismatch)
        } else {
            Ok(id)
        }
    }

    fn identify(&self, c: &Credentials) -> Result<String, Step> {
        if let Some(der) = c.cert {
            return identity_of(der, self.config.identity).ok_or(Step::Refused(Refusal::NoIdentity));
        }
        if !c.tls && self.config.plain == PlainAuth::Anonymous {
            return Ok(c.client_id.to_string());
        }
        match (c.username, c.password, &self.passwords) {
            (Some(user), Some(password), Some(_)) => Err(Step::Password { user: user.to_string(), password: password.to_vec() }),
            _ => Err(Step::Refused(Refusal::NoCredentials)),
        }
    }

    async fn verify_password(&self, user: String, password: Vec<u8>) -> Result<String, Refusal> {
        let Some(store) = &self.passwords else { return Err(Refusal::NoCredentials) };
        let file = store.current.get();
        // PBKDF2 takes milliseconds of CPU: never on the ntex I/O thread, never unbounded.
        let _slot = HASHING.acquire().await.map_err(|_| Refusal::BadPassword)?;
        let checked = tokio::task::spawn_blocking(move || file.verify(&user, &password).then_some(user)).await;
        checked.ok().flatten().ok_or(Refusal::BadPassword)
    }

    /// May `who` publish to `topic`? Refusals are counted.
    pub fn may_publish(&self, who: &Who, topic: &str) -> Decision {
        self.counted(AclAction::Publish, self.acl.current.get().check_publish(who, topic))
    }

    /// May `who` subscribe to `filter`? Refusals are counted.
    pub fn may_subscribe(&self, who: &Who, filter: &str) -> Decision {
        self.counted(AclAction::Subscribe, self.acl.current.get().check_subscribe(who, filter))
    }

    fn counted(&self, action: AclAction, d: Decision) -> Decision {
        if let Decision::Deny(reason) = d {
            self.metrics.acl_denied.get_or_create(&AclLabels { action, reason }).inc();
        }
        d
    }

    /// Plain-listener devices are not authenticated (lab).
    pub fn anonymous_plain(&self) -> bool {
        self.config.plain == PlainAuth::Anonymous
    }
}

/// An identity must be one topic level: `devices/{identity}/#` must not reach other namespaces,
/// and `%u/#` must not reach reserved `$` topics.
fn usable_identity(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.starts_with('$') && !id.contains(['/', '+', '#', '\0'])
}

/// The ACL in use and where it comes from.
pub struct AclFile {
    /// `None`: the built-in default namespace only.
    path: Option<PathBuf>,
    /// The rules every check reads.
    current: Swap<Acl>,
}

impl AclFile {
    fn load(path: Option<PathBuf>, downlink: &str) -> Result<AclFile, AuthError> {
        let acl = match &path {
            Some(p) => Acl::load(p).map_err(|source| AuthError::Acl { path: p.clone(), source })?,
            None => Acl::built_in(downlink),
        };
        Ok(AclFile { path, current: Swap::new(acl) })
    }
}

impl Reloadable for AclFile {
    fn name(&self) -> String {
        "acl".into()
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.path.iter().cloned().collect()
    }

    fn reload(&self) -> Result<(), ReloadError> {
        let Some(path) = &self.path else { return Ok(()) };
        let acl = Acl::load(path).map_err(|source| AuthError::Acl { path: path.clone(), source })?;
        tracing::info!(file = %path.display(), rules = acl.rule_count(), "ACL loaded.");
        self.current.set(acl);
        Ok(())
    }

    fn expiry(&self) -> Vec<CertExpiry> {
        Vec::new()
    }
}

/// The password file in use.
pub struct PasswordStore {
    /// Where it is read from.
    path: PathBuf,
    /// The hashes every check reads.
    current: Swap<PasswordFile>,
}

impl PasswordStore {
    fn load(path: PathBuf) -> Result<PasswordStore, AuthError> {
        let file = PasswordFile::load(&path)?;
        Ok(PasswordStore { path, current: Swap::new(file) })
    }
}

impl Reloadable for PasswordStore {
    fn name(&self) -> String {
        "passwords".into()
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn reload(&self) -> Result<(), ReloadError> {
        let file = PasswordFile::load(&self.path)?;
        self.current.set(file);
        Ok(())
    }

    fn expiry(&self) -> Vec<CertExpiry> {
        Vec::new()
    }
}
