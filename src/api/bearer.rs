//! The bearer token of the local HTTP API and of the admin API: one check, in constant time
//! (`subtle`), as an axum middleware.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::ApiError;

/// The shortest token accepted (a token file, `--admin-token-file`).
pub const MIN_TOKEN_LEN: usize = 16;

/// A bearer token.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    /// A token of at least [`MIN_TOKEN_LEN`] characters (surrounding whitespace dropped).
    pub fn new(token: &str) -> Option<Token> {
        let token = token.trim();
        (token.len() >= MIN_TOKEN_LEN).then(|| Token(token.into()))
    }

    /// Whether `request` carries `Authorization: Bearer <this token>`.
    fn admits(&self, request: &Request) -> bool {
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(self.0.as_bytes())))
    }
}

/// Middleware: 401 unless the request carries the token.
pub async fn require(State(token): State<Token>, request: Request, next: Next) -> Response {
    if token.admits(&request) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "missing or wrong bearer token\n").into_response()
    }
}

/// The HTTP API's token: from `file` when configured, else from `data_dir/http.token`, which is
/// created with 32 random bytes (hex, mode 0600) when it does not exist yet.
pub fn load_or_create(file: Option<&Path>, data_dir: &Path) -> Result<Token, ApiError> {
    let (path, configured) = match file {
        Some(f) => (f.to_path_buf(), true),
        None => (data_dir.join("http.token"), false),
    };
    let bad = |reason: String| ApiError::Token { path: path.clone(), reason };
    match std::fs::read_to_string(&path) {
        Ok(text) => Token::new(&text).ok_or_else(|| bad(format!("the token must have at least {MIN_TOKEN_LEN} characters"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !configured => create(&path).map_err(|e| bad(e.to_string())),
        Err(e) => Err(bad(e.to_string())),
    }
}

fn create(path: &Path) -> std::io::Result<Token> {
    let token: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    crate::atomic_file::write(path, format!("{token}\n").as_bytes(), Some(0o600))?;
    tracing::info!(path = %path.display(), "Created the HTTP API token (needed for POST /api/store/acknowledge, and for everything with http.auth = \"all\").");
    Ok(Token(token.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_default_token_is_created_once_and_a_short_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(None, dir.path()).unwrap();
        let again = load_or_create(None, dir.path()).unwrap();
        assert_eq!(first.0, again.0, "created once, then read");
        assert_eq!(first.0.len(), 64);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(dir.path().join("http.token")).unwrap().permissions().mode() & 0o777, 0o600);
        let short = dir.path().join("short");
        std::fs::write(&short, "tooshort\n").unwrap();
        assert!(matches!(load_or_create(Some(&short), dir.path()), Err(ApiError::Token { .. })));
        let missing = dir.path().join("missing");
        assert!(load_or_create(Some(&missing), dir.path()).is_err(), "a configured token file is never created");
    }
}
