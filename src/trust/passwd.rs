//! Salted password hashes for devices on the plain (non-TLS) listener, in the format of
//! mosquitto 2.0's `mosquitto_passwd`, so either tool can write the file.
//!
//! Format, one entry per line:
//!
//! ```text
//! username:$7$<iterations>$<base64 salt>$<base64 hash>
//! ```
//!
//! - `$7$` is PBKDF2-HMAC-SHA512 over the password bytes with the raw (decoded) salt; the hash is
//!   64 bytes. Salts are 12 bytes (mosquitto 2.0); 64-byte salts (mosquitto 2.1) are also read.
//! - base64 is the standard alphabet with `=` padding.
//! - Blank lines and lines starting with `#` are ignored; trailing whitespace is dropped.
//! - A username is non-empty, holds no `:` (the first `:` ends it) and appears once.
//! - `$6$` (one round of salted SHA-512, mosquitto 1.x) and `$argon2id$` entries are refused.
//!
//! Errors name the line and never echo a hash, nor a line that may hold a plain-text password.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// PBKDF2 rounds for new entries.
///
/// Every CONNECT on the plain listener costs one PBKDF2 run, so this trades the CPU a reconnect
/// storm burns on the 2-core gateway against the work an attacker with a leaked file pays per
/// guess. mosquitto's 101 rounds make guessing almost free; 10,000 rounds cost a few
/// milliseconds of one core per CONNECT (a storm of 1,000 devices: seconds of CPU, not minutes)
/// and make each offline guess about 100 times dearer. Entries keep their own count, so this can
/// be raised later without invalidating the file.
pub const DEFAULT_ITERATIONS: u32 = 10_000;

/// The most rounds accepted in a file or by [`hash_entry`]: a typo's extra zeros should fail
/// the load, not stall every CONNECT.
pub const MAX_ITERATIONS: u32 = 1_000_000;

const ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA512;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;
/// Salt lengths accepted when reading: mosquitto 2.0 writes 12 bytes, 2.1 writes 64.
const SALT_LENS: [usize; 2] = [SALT_LEN, HASH_LEN];
/// Salt of the PBKDF2 run made for unknown users, which is never compared against anything real.
const DUMMY_SALT: [u8; SALT_LEN] = *b"edge-gateway";
const DEFAULT_ROUNDS: NonZeroU32 = NonZeroU32::new(DEFAULT_ITERATIONS).expect("DEFAULT_ITERATIONS is not zero");

/// Problems reading a password file or making an entry.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Lines that are not valid entries, each reported as `line N: ...`.
    #[error("invalid password file:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    /// A username that cannot be written to the file.
    #[error("username {user:?}: {problem}")]
    Username {
        /// The refused name.
        user: String,
        /// Why it was refused.
        problem: &'static str,
    },
    /// A round count outside `1..=MAX_ITERATIONS`.
    #[error("iterations: {0} is not between 1 and {MAX_ITERATIONS}")]
    Iterations(u32),
    /// The system's random generator failed to produce a salt.
    #[error("no randomness available for a salt")]
    Random,
}

/// A validated password file: username to salted hash.
#[derive(Clone)]
pub struct PasswordFile {
    /// The entries, by username.
    entries: HashMap<String, Entry>,
    /// Rounds of the dummy run for unknown users: the most common count in the file, so that an
    /// unknown user takes as long as a typical known one.
    dummy_rounds: NonZeroU32,
}

/// One user's hash.
#[derive(Clone)]
struct Entry {
    /// PBKDF2 rounds.
    rounds: NonZeroU32,
    /// The decoded salt.
    salt: Vec<u8>,
    /// The decoded derived key, [`HASH_LEN`] bytes.
    hash: Vec<u8>,
    /// The line it was read from (to name the first of duplicates).
    line: usize,
}

impl fmt::Debug for PasswordFile {
    /// Shows how many users, never their hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile").field("users", &self.entries.len()).finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// Parse a password file's text, reporting every bad line.
    pub fn parse(text: &str) -> Result<Self, PasswdError> {
        let mut entries: HashMap<String, Entry> = HashMap::new();
        let mut errors = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line, index + 1) {
                Err(problem) => errors.push(format!("line {}: {problem}", index + 1)),
                Ok((user, entry)) => match entries.get(user) {
                    Some(first) => errors.push(format!("line {}: duplicate username {user:?} (first on line {})", entry.line, first.line)),
                    None => {
                        entries.insert(user.to_string(), entry);
                    }
                },
            }
        }
        if !errors.is_empty() {
            return Err(PasswdError::Invalid(errors));
        }
        let dummy_rounds = most_common_rounds(&entries);
        Ok(Self { entries, dummy_rounds })
    }

    /// Read and parse the password file at `path`.
    pub fn load(path: &Path) -> Result<Self, PasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswdError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text)
    }

    /// Whether `password` is `user`'s. An unknown user costs one PBKDF2 run too, so the time
    /// taken does not tell which users exist.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.entries.get(user) {
            Some(entry) => pbkdf2::verify(ALGORITHM, entry.rounds, &entry.salt, password, &entry.hash).is_ok(),
            None => {
                let outcome = pbkdf2::verify(ALGORITHM, self.dummy_rounds, &DUMMY_SALT, password, &[0; HASH_LEN]);
                std::hint::black_box(outcome).ok();
                false
            }
        }
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no users (every password check fails).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A password file line for `user` (without the newline), with a fresh random salt.
pub fn hash_entry(user: &str, password: &[u8], iterations: u32) -> Result<String, PasswdError> {
    check_username(user)?;
    let rounds = NonZeroU32::new(iterations).filter(|n| n.get() <= MAX_ITERATIONS).ok_or(PasswdError::Iterations(iterations))?;
    let mut salt = [0; SALT_LEN];
    SystemRandom::new().fill(&mut salt).map_err(|_| PasswdError::Random)?;
    let mut hash = [0; HASH_LEN];
    pbkdf2::derive(ALGORITHM, rounds, &salt, password, &mut hash);
    Ok(format!("{user}:$7${iterations}${}${}", STANDARD.encode(salt), STANDARD.encode(hash)))
}

fn check_username(user: &str) -> Result<(), PasswdError> {
    let problem = if user.is_empty() {
        "is empty"
    } else if user.contains(':') {
        "contains ':'"
    } else if user.starts_with('#') {
        "starts with '#' (the line would be a comment)"
    } else if user.chars().any(char::is_control) {
        "contains a control character"
    } else if user.trim_end() != user {
        "ends with whitespace (dropped when the file is read)"
    } else {
        return Ok(());
    };
    Err(PasswdError::Username { user: user.to_string(), problem })
}

/// What is wrong with one line of a password file; never quotes the hash.
#[derive(Debug, thiserror::Error)]
enum LineProblem {
    /// No `:` on the line.
    #[error("expected username:hash")]
    NoSeparator,
    /// Nothing before the `:`.
    #[error("empty username")]
    EmptyUser,
    /// The hash of `user` cannot be used.
    #[error("user {user:?}: {problem}")]
    Hash {
        /// The line's username.
        user: String,
        /// What is wrong with its hash.
        problem: Box<LineProblem>,
    },
    /// Not a `$7$` hash (the text says which kind it is and what to do).
    #[error("{0}")]
    Unsupported(&'static str),
    /// Not four `$`-separated fields.
    #[error("expected $7$<iterations>$<salt>$<hash>")]
    Fields,
    /// The round count is out of range.
    #[error("iterations: not a number between 1 and {MAX_ITERATIONS}")]
    Iterations,
    /// The salt or hash is not base64.
    #[error("{0}: not valid base64")]
    Base64(&'static str),
    /// The salt or hash has the wrong length.
    #[error("{what}: {len} bytes, expected {expected}")]
    Length {
        /// `salt` or `hash`.
        what: &'static str,
        /// Its decoded length.
        len: usize,
        /// The lengths allowed.
        expected: String,
    },
}

/// Split a non-blank line into its username and entry.
fn parse_line(line: &str, number: usize) -> Result<(&str, Entry), LineProblem> {
    let Some((user, encoded)) = line.split_once(':') else {
        return Err(LineProblem::NoSeparator);
    };
    if user.is_empty() {
        return Err(LineProblem::EmptyUser);
    }
    let (rounds, salt, hash) =
        parse_hash(encoded).map_err(|problem| LineProblem::Hash { user: user.to_string(), problem: Box::new(problem) })?;
    Ok((user, Entry { rounds, salt, hash, line: number }))
}

fn parse_hash(encoded: &str) -> Result<(NonZeroU32, Vec<u8>, Vec<u8>), LineProblem> {
    let Some(fields) = encoded.strip_prefix("$7$") else {
        return Err(LineProblem::Unsupported(unsupported(encoded)));
    };
    let mut fields = fields.split('$');
    let (Some(rounds), Some(salt), Some(hash), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(LineProblem::Fields);
    };
    let rounds =
        rounds.parse::<u32>().ok().and_then(NonZeroU32::new).filter(|n| n.get() <= MAX_ITERATIONS).ok_or(LineProblem::Iterations)?;
    Ok((rounds, decode("salt", salt, &SALT_LENS)?, decode("hash", hash, &[HASH_LEN])?))
}

fn unsupported(encoded: &str) -> &'static str {
    if encoded.starts_with("$6$") {
        "\"$6$\" (one round of SHA-512) is not supported; set the password again with mosquitto_passwd"
    } else if encoded.starts_with("$argon2id$") {
        "\"$argon2id$\" is not supported; set the password with mosquitto_passwd -H sha512-pbkdf2"
    } else {
        "not a \"$7$\" (PBKDF2-SHA512) hash; if it is a plain-text password, hash the file with mosquitto_passwd -U"
    }
}

fn decode(what: &'static str, text: &str, lengths: &[usize]) -> Result<Vec<u8>, LineProblem> {
    let bytes = STANDARD.decode(text).map_err(|_| LineProblem::Base64(what))?;
    if !lengths.contains(&bytes.len()) {
        let expected = lengths.iter().map(usize::to_string).collect::<Vec<_>>().join(" or ");
        return Err(LineProblem::Length { what, len: bytes.len(), expected });
    }
    Ok(bytes)
}

fn most_common_rounds(entries: &HashMap<String, Entry>) -> NonZeroU32 {
    let mut counts: HashMap<NonZeroU32, usize> = HashMap::new();
    for entry in entries.values() {
        *counts.entry(entry.rounds).or_default() += 1;
    }
    counts.into_iter().max_by_key(|&(rounds, n)| (n, rounds)).map_or(DEFAULT_ROUNDS, |(rounds, _)| rounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `mosquitto_passwd -c -b x.pw alice secret` (mosquitto 2.0.11).
    const MOSQUITTO_LINE: &str =
        "alice:$7$101$OkwKo2PHxUEz8tT/$rTP5M1Bg5aWkiWUr8DfA0IUI+ysbiQVj6bntjoWY1wvZwUsmqvKOGh6809UmQxBZC/2nlttNSBy5tjWp5EsDgQ==";

    fn invalid(text: &str) -> Vec<String> {
        match PasswordFile::parse(text) {
            Err(PasswdError::Invalid(errors)) => errors,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_hashed_entry_verifies_with_its_password_and_no_other() {
        let line = hash_entry("dev-1", b"s3cret", 1_000).unwrap_or_else(|e| panic!("{e}"));
        let file = PasswordFile::parse(&line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.len(), 1);
        assert!(file.verify("dev-1", b"s3cret"));
        assert!(!file.verify("dev-1", b"s3cret "));
        assert!(!file.verify("dev-1", b""));
    }

    #[test]
    fn entries_have_mosquittos_shape() {
        let line = hash_entry("dev-1", b"pw", DEFAULT_ITERATIONS).unwrap_or_else(|e| panic!("{e}"));
        let fields: Vec<&str> = line.split('$').collect();
        assert_eq!(fields[..3], ["dev-1:", "7", "10000"]);
        assert_eq!((fields[3].len(), fields[4].len()), (16, 88), "12-byte salt, 64-byte hash, padded base64");
        assert_ne!(line, hash_entry("dev-1", b"pw", DEFAULT_ITERATIONS).unwrap_or_default(), "salts are random");
    }

    #[test]
    fn an_unknown_user_is_refused() {
        let file = PasswordFile::parse(MOSQUITTO_LINE).unwrap_or_else(|e| panic!("{e}"));
        assert!(!file.verify("bob", b"secret"));
        assert!(!PasswordFile::parse("").unwrap_or_else(|e| panic!("{e}")).verify("alice", b"secret"));
    }

    #[test]
    fn a_line_written_by_mosquitto_passwd_verifies() {
        let file = PasswordFile::parse(&format!("# devices\n\n{MOSQUITTO_LINE}\r\n")).unwrap_or_else(|e| panic!("{e}"));
        assert!(file.verify("alice", b"secret"));
        assert!(!file.verify("alice", b"Secret"));
    }

    #[test]
    fn malformed_lines_are_reported_by_line_number_without_the_hash() {
        let text = "# ok\nnocolon\n:$7$101$OkwKo2PHxUEz8tT/$AAAA\nbob:hunter2\ncarol:$6$OkwKo2PHxUEz8tT/$AAAA\n\
                    dave:$7$0$OkwKo2PHxUEz8tT/$AAAA\nerin:$7$101$!!!$AAAA\nfrank:$7$101$AAAA$AAAA\n\
                    gina:$7$101$OkwKo2PHxUEz8tT/$AAAA\nhal:$7$101$x\n";
        assert_eq!(
            invalid(text),
            [
                "line 2: expected username:hash",
                "line 3: empty username",
                "line 4: user \"bob\": not a \"$7$\" (PBKDF2-SHA512) hash; if it is a plain-text password, hash the file with mosquitto_passwd -U",
                "line 5: user \"carol\": \"$6$\" (one round of SHA-512) is not supported; set the password again with mosquitto_passwd",
                "line 6: user \"dave\": iterations: not a number between 1 and 1000000",
                "line 7: user \"erin\": salt: not valid base64",
                "line 8: user \"frank\": salt: 3 bytes, expected 12 or 64",
                "line 9: user \"gina\": hash: 3 bytes, expected 64",
                "line 10: user \"hal\": expected $7$<iterations>$<salt>$<hash>",
            ]
        );
        assert!(!invalid(text).concat().contains("hunter2"));
    }

    #[test]
    fn duplicate_usernames_are_refused() {
        let text = format!("{MOSQUITTO_LINE}\n# again\n{MOSQUITTO_LINE}\n");
        assert_eq!(invalid(&text), ["line 3: duplicate username \"alice\" (first on line 1)"]);
    }

    #[test]
    fn usernames_that_would_corrupt_the_file_are_refused() {
        for user in ["", "a:b", "#a", "a\nb", "a "] {
            assert!(matches!(hash_entry(user, b"pw", 1), Err(PasswdError::Username { .. })), "{user:?}");
        }
    }

    #[test]
    fn iteration_counts_out_of_range_are_refused() {
        assert!(matches!(hash_entry("a", b"pw", 0), Err(PasswdError::Iterations(0))));
        assert!(matches!(hash_entry("a", b"pw", MAX_ITERATIONS + 1), Err(PasswdError::Iterations(_))));
    }

    #[test]
    fn loading_a_missing_file_names_its_path() {
        let error = PasswordFile::load(Path::new("/nonexistent/passwd")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.starts_with("/nonexistent/passwd: "), "{error}");
    }

    #[test]
    fn debug_output_shows_no_hashes() {
        let file = PasswordFile::parse(MOSQUITTO_LINE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{file:?}"), "PasswordFile { users: 1, .. }");
    }
}
