//! API tokens: random secrets shown once, stored as SHA-256 hashes, compared in constant time.
//!
//! Roles: `admin` (everything, every tenant), `ingest` (POST /v1/events, optionally limited to
//! tenants), `read` (queries, export and stream of one or more tenants). The tokens file
//! (`tokens.json` in the data directory) is replaced atomically on every change.
//!
//! A secret looks like `alt_` followed by 64 hex digits; clients send it as
//! `Authorization: Bearer alt_...`.

use std::path::{Path, PathBuf};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Ingest,
    Read,
}

/// A stored token (the secret itself is never stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Tenants the token is limited to; empty means every tenant (admin, or unlimited ingest).
    pub tenants: Vec<String>,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    pub created: String,
}

/// The caller of a request, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub role: Role,
    pub tenants: Vec<String>,
    /// [`TokenStore::revocations`] read before the token was checked: a long-running request
    /// (a stream, an export) that later sees another count checks its token again, so a
    /// revocation that lands while the request is being set up is not missed.
    pub revocations_at_auth: u64,
}

impl Principal {
    /// Whether this caller's token is still there: a request authenticated before its token
    /// was revoked checks again just before it changes anything. Cheap while nothing was
    /// revoked since the request was authenticated.
    pub fn still_valid(&self, tokens: &TokenStore) -> bool {
        tokens.revocations() == self.revocations_at_auth || tokens.is_active(&self.token_id)
    }

    /// The answer to a request whose token was revoked while it was in flight.
    pub fn revoked_error() -> crate::error::ApiError {
        crate::error::ApiError::unauthorized(
            "the token was revoked while this request was in flight",
        )
    }

    /// May this caller read events of `tenant`?
    pub fn may_read(&self, tenant: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Read => self.tenants.iter().any(|t| t == tenant),
            Role::Ingest => false,
        }
    }

    /// May this caller write events of `tenant`? Never of the system tenant, which only the
    /// server itself writes ([`crate::audit::SYSTEM_TENANT`]).
    pub fn may_ingest(&self, tenant: &str) -> bool {
        if tenant == crate::audit::SYSTEM_TENANT {
            return false;
        }
        match self.role {
            Role::Admin => true,
            Role::Ingest => self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant),
            Role::Read => false,
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("this endpoint needs an admin token"))
        }
    }

    pub fn require_reader(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin | Role::Read => Ok(()),
            Role::Ingest => Err(ApiError::forbidden(
                "an ingest token cannot read events; use a read or admin token",
            )),
        }
    }
}

/// Every token, persisted in `tokens.json`.
pub struct TokenStore {
    path: PathBuf,
    records: RwLock<Vec<TokenRecord>>,
    /// Held by whoever changes the tokens, across the file's write and fsyncs; `records` is
    /// write-locked only to swap the new list in, so that authenticating requests (which
    /// read-lock it on the runtime's threads) never wait for the disk.
    changing: parking_lot::Mutex<()>,
    /// Bumped by every revocation, so a long-running request (a live stream, an export) can
    /// notice cheaply that it should check its token again ([`TokenStore::is_active`]).
    revocations: std::sync::atomic::AtomicU64,
}

/// What [`TokenStore::revoke`] did.
#[derive(Debug)]
pub enum Revoked {
    /// The token is gone.
    Revoked(TokenRecord),
    /// No token has this id.
    NotFound,
    /// It is the last admin token: revoking it would leave no one able to manage tokens (and a
    /// restart with `AUDITLOG_ADMIN_TOKEN` set would bring the revoked one back).
    LastAdmin,
    /// The token asking was revoked itself (after its request was authenticated).
    ByRevoked,
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// The token file's identification, standing in for a binary magic (see docs/FORMAT.md).
const TOKENS_FORMAT: &str = "auditlog-tokens";
const TOKENS_VERSION: u32 = 1;

/// `tokens.json`: `{"format": "auditlog-tokens", "version": 1, "tokens": [...]}`.
#[derive(Serialize, Deserialize)]
struct TokensFile {
    format: String,
    version: u32,
    tokens: Vec<TokenRecord>,
}

impl TokenStore {
    /// Opens (or starts) the token file of a data directory.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("tokens.json");
        let invalid = |message: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {message}", path.display()),
            )
        };
        let records = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: TokensFile =
                    serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
                if file.format != TOKENS_FORMAT {
                    return Err(invalid(format!(
                        "not a token file (format {:?}, expected {TOKENS_FORMAT:?})",
                        file.format
                    )));
                }
                if file.version != TOKENS_VERSION {
                    return Err(invalid(format!(
                        "token file version {}, this build reads version {TOKENS_VERSION}",
                        file.version
                    )));
                }
                // A file written before it was created owner-only (best effort).
                let _ = std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                );
                file.tokens
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            records: RwLock::new(records),
            changing: parking_lot::Mutex::new(()),
            revocations: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.records.read().is_empty()
    }

    fn persist(&self, records: &[TokenRecord]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.path.with_extension("json.tmp");
        // Readable by the server's user only: the hashes are unsalted SHA-256, and a chosen
        // (not generated) token may be short enough to guess offline.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let contents = TokensFile {
            format: TOKENS_FORMAT.into(),
            version: TOKENS_VERSION,
            tokens: records.to_vec(),
        };
        file.write_all(&serde_json::to_vec_pretty(&contents).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Creates a token; returns its record and the secret (shown once, never stored).
    /// `secret` may be given (the first admin token from `AUDITLOG_ADMIN_TOKEN`).
    pub fn create(
        &self,
        name: &str,
        role: Role,
        tenants: Vec<String>,
        secret: Option<String>,
    ) -> std::io::Result<(TokenRecord, String)> {
        let (record, secret) = Self::new_token(name, role, tenants, secret);
        self.insert(record.clone())?;
        Ok((record, secret))
    }

    /// A new token's record and secret, not stored yet ([`TokenStore::insert`] stores it): a
    /// caller can record its creation (by id) before the token exists.
    pub fn new_token(
        name: &str,
        role: Role,
        tenants: Vec<String>,
        secret: Option<String>,
    ) -> (TokenRecord, String) {
        let secret = secret.unwrap_or_else(|| format!("alt_{}", random_hex(32)));
        let record = TokenRecord {
            id: format!("tok_{}", random_hex(8)),
            name: name.to_string(),
            role,
            tenants,
            hash: hash_secret(&secret),
            created: auditlog_engine::event::time::format_rfc3339_us(
                auditlog_engine::store::now_us(),
            ),
        };
        (record, secret)
    }

    /// Stores a token made by [`TokenStore::new_token`]: durable (and usable) once this returns.
    pub fn insert(&self, record: TokenRecord) -> std::io::Result<()> {
        self.insert_by(record, None).map(|_| ())
    }

    /// [`TokenStore::insert`] on behalf of the token with id `by`, if given: returns `false`,
    /// storing nothing, when that token is no longer there. Checked under the same lock as
    /// revocations, so a token revoked before this stores anything cannot create one (its
    /// request may have been authenticated before the revocation).
    pub fn insert_by(&self, record: TokenRecord, by: Option<&str>) -> std::io::Result<bool> {
        let _changing = self.changing.lock();
        if by.is_some_and(|by| !self.is_active(by)) {
            return Ok(false);
        }
        let mut next = self.records.read().clone();
        next.push(record);
        self.persist(&next)?;
        *self.records.write() = next;
        Ok(true)
    }

    /// Revokes a token, unless it is the last admin token.
    pub fn revoke(&self, id: &str) -> std::io::Result<Revoked> {
        self.revoke_by(id, None)
    }

    /// [`TokenStore::revoke`] on behalf of the token with id `by`, if given:
    /// [`Revoked::ByRevoked`], changing nothing, when that token is no longer there (checked
    /// under the lock revocations take).
    pub fn revoke_by(&self, id: &str, by: Option<&str>) -> std::io::Result<Revoked> {
        let _changing = self.changing.lock();
        if by.is_some_and(|by| !self.is_active(by)) {
            return Ok(Revoked::ByRevoked);
        }
        let mut next = self.records.read().clone();
        let Some(position) = next.iter().position(|r| r.id == id) else {
            return Ok(Revoked::NotFound);
        };
        let admins = next.iter().filter(|r| r.role == Role::Admin).count();
        if next[position].role == Role::Admin && admins == 1 {
            return Ok(Revoked::LastAdmin);
        }
        let removed = next.remove(position);
        self.persist(&next)?;
        *self.records.write() = next;
        self.revocations
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(Revoked::Revoked(removed))
    }

    /// How many revocations there have been: a long-running request compares it with the
    /// count it saw last and calls [`TokenStore::is_active`] only when it changed.
    pub fn revocations(&self) -> u64 {
        self.revocations.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the token with this id still exists.
    pub fn is_active(&self, id: &str) -> bool {
        self.records.read().iter().any(|r| r.id == id)
    }

    pub fn list(&self) -> Vec<TokenRecord> {
        self.records.read().clone()
    }

    /// The token a secret belongs to. Every stored hash is compared, in constant time each.
    pub fn authenticate(&self, secret: &str) -> Option<TokenRecord> {
        let hash = hash_secret(secret);
        let mut found = None;
        for record in self.records.read().iter() {
            if constant_time_eq(record.hash.as_bytes(), hash.as_bytes()) {
                found = Some(record.clone());
            }
        }
        found
    }
}

impl FromRequestParts<std::sync::Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &std::sync::Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // Browsers cannot set headers on WebSocket upgrades: the stream also takes ?token=.
        // Nothing else does: a token in a URL ends up in browser history, proxy logs and
        // Referer headers.
        let from_query = || {
            if parts.uri.path() != "/v1/stream" {
                return None;
            }
            parts.uri.query().and_then(|q| {
                form_pairs(q)
                    .into_iter()
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v)
            })
        };
        let secret = match header {
            // The scheme is case-insensitive (RFC 9110, 11.1).
            Some(value) => value
                .get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                .map(|_| value[7..].to_string())
                .ok_or_else(|| {
                    ApiError::unauthorized("Authorization must be \"Bearer <token>\"")
                })?,
            None => from_query().ok_or_else(|| {
                ApiError::unauthorized(
                    "missing token: send Authorization: Bearer <token> (only the stream also \
                     takes ?token=)",
                )
            })?,
        };
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(ApiError::unauthorized(
                "empty token: send Authorization: Bearer <token>",
            ));
        }
        let revocations_at_auth = state.tokens.revocations();
        let record = state
            .tokens
            .authenticate(secret)
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
        Ok(Principal {
            token_id: record.id,
            role: record.role,
            tenants: record.tenants,
            revocations_at_auth,
        })
    }
}

/// Decodes `application/x-www-form-urlencoded` pairs (query strings).
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    fn hex_digit(byte: u8) -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            b'A'..=b'F' => Some(byte - b'A' + 10),
            _ => None,
        }
    }
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let byte = bytes[i];
            if byte == b'+' {
                out.push(b' ');
            } else if byte == b'%' && i + 2 < bytes.len() {
                match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            } else {
                out.push(byte);
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (decode(key), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_reopen_and_only_the_secret_authenticates() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let (record, secret) = store
            .create("siem", Role::Read, vec!["acct_1".into()], None)
            .unwrap();
        let reopened = TokenStore::open(dir.path()).unwrap();
        assert_eq!(reopened.authenticate(&secret).unwrap().id, record.id);
        assert!(reopened.authenticate("alt_wrong").is_none());
        let text = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!text.contains(&secret), "the secret itself is never stored");
        assert!(text.contains("\"format\": \"auditlog-tokens\""), "{text}");
    }

    #[test]
    fn tokens_file_of_another_version_is_refused_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokens.json"),
            r#"{"format":"auditlog-tokens","version":2,"tokens":[]}"#,
        )
        .unwrap();
        let error = TokenStore::open(dir.path()).err().unwrap();
        assert!(
            error
                .to_string()
                .contains("token file version 2, this build reads version 1"),
            "{error}"
        );
    }

    #[test]
    fn tokens_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        store
            .create("admin", Role::Admin, Vec::new(), None)
            .unwrap();
        let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode();
        let path = dir.path().join("tokens.json");
        assert_eq!(mode(&path) & 0o777, 0o600);
        // A file an older build left readable by others is tightened at open.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        TokenStore::open(dir.path()).unwrap();
        assert_eq!(mode(&path) & 0o777, 0o600);
    }

    #[test]
    fn the_last_admin_token_cannot_be_revoked_and_revocations_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let (first, _) = store
            .create("admin", Role::Admin, Vec::new(), None)
            .unwrap();
        let (reader, _) = store
            .create("siem", Role::Read, vec!["acct_1".into()], None)
            .unwrap();
        assert!(matches!(
            store.revoke(&first.id).unwrap(),
            Revoked::LastAdmin
        ));
        assert!(store.is_active(&first.id));
        assert_eq!(store.revocations(), 0);
        let (second, _) = store
            .create("admin 2", Role::Admin, Vec::new(), None)
            .unwrap();
        assert!(matches!(
            store.revoke(&first.id).unwrap(),
            Revoked::Revoked(_)
        ));
        assert!(!store.is_active(&first.id));
        assert!(matches!(
            store.revoke(&second.id).unwrap(),
            Revoked::LastAdmin
        ));
        assert!(matches!(
            store.revoke(&reader.id).unwrap(),
            Revoked::Revoked(_)
        ));
        assert!(matches!(
            store.revoke(&reader.id).unwrap(),
            Revoked::NotFound
        ));
        assert_eq!(store.revocations(), 2);
    }
}
