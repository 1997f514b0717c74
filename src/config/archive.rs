//! `[archive]` and `[[archive.classes]]`: the retention tier. Which topics are kept in Parquet
//! files (a class per group of topic filters), how long (the compliance window and the
//! deletion age), how much disk a class may use, and where closed files are uploaded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::trust::acl::pattern::Pattern;

/// The archive's settings (`None` in [`super::Config`] when `archive.enabled = false`).
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Where the files, the manifest and the audit log live (`data_dir/archive` by default).
    pub dir: PathBuf,
    /// Open files are closed when their rows reach about this many bytes (payloads and
    /// metadata, before compression).
    pub max_file_bytes: u64,
    /// ... or when the oldest open row is this old.
    pub max_file_age: Duration,
    /// How often retention (deletion past `max_keep_days`, quotas) and uploads are checked.
    pub sweep_every: Duration,
    /// The retention classes; a topic belongs to the first class with a matching filter, and a
    /// topic in none is not archived.
    pub classes: Vec<ClassConfig>,
    /// Where closed files and the manifest are uploaded.
    pub upload: UploadTarget,
}

/// One retention class.
#[derive(Debug, Clone)]
pub struct ClassConfig {
    /// The name: a folder under the archive dir, a metric label.
    pub name: String,
    /// MQTT topic filters (wildcards `+` and `#`).
    pub topics: Vec<String>,
    /// The compliance window: no file is deleted before its newest message is this old (not
    /// by the quota, not by an operator without `--force` and a reason).
    pub min_keep_days: u32,
    /// Files are deleted once their newest message is this old (0: never).
    pub max_keep_days: u32,
    /// A legal hold from the config: no file of the class is deleted while it is set
    /// (`edge-gateway archive hold` sets one without a restart).
    pub legal_hold: bool,
    /// Most bytes of files the class keeps (0: no quota).
    pub quota_bytes: u64,
    /// What happens at the quota, once no file outside the window is left to delete.
    pub on_full: OnFull,
}

/// What a class at its quota does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Refuse new publishes to the class's topics (MQTT 5: PUBACK 0x97 quota exceeded; MQTT
    /// 3.1.1: the connection is closed, as for a full store). What was accepted is archived.
    RefuseIngest,
    /// Go on accepting and forwarding, stop archiving the class (counted, alerted).
    StopArchiving,
}

impl OnFull {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFull::RefuseIngest => "refuse_ingest",
            OnFull::StopArchiving => "stop_archiving",
        }
    }
}

/// Where closed files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadTarget {
    /// Nowhere: the files stay local.
    None,
    /// Copied into a local directory (another disk, a mounted share).
    Dir(PathBuf),
    /// Put into an S3-compatible bucket.
    S3(S3Target),
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    /// `http(s)://host:port` of the S3 API (path-style requests).
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The SigV4 region.
    pub region: String,
    /// Prepended to every object name (`site-a/`).
    pub prefix: String,
    /// The access key id.
    pub access_key_id: String,
    /// A file holding the secret access key (first line).
    pub secret_key_file: PathBuf,
    /// How long one request may take.
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawArchive {
    enabled: bool,
    dir: String,
    max_file_bytes: u64,
    max_file_age_secs: u64,
    sweep_every_secs: u64,
    classes: Vec<RawClass>,
    upload: RawUpload,
}

impl Default for RawArchive {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: String::new(),
            max_file_bytes: 32 << 20,
            max_file_age_secs: 600,
            sweep_every_secs: 60,
            classes: Vec::new(),
            upload: RawUpload::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    name: String,
    topics: Vec<String>,
    min_keep_days: u32,
    #[serde(default)]
    max_keep_days: u32,
    #[serde(default)]
    legal_hold: bool,
    #[serde(default)]
    quota_bytes: u64,
    #[serde(default = "d_on_full")]
    on_full: OnFull,
}

fn d_on_full() -> OnFull {
    OnFull::RefuseIngest
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpload {
    kind: String,
    dir: String,
    endpoint: String,
    bucket: String,
    region: String,
    prefix: String,
    access_key_id: String,
    secret_key_file: String,
    timeout_ms: u64,
}

impl Default for RawUpload {
    fn default() -> Self {
        Self {
            kind: "none".into(),
            dir: String::new(),
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key_id: String::new(),
            secret_key_file: String::new(),
            timeout_ms: 30_000,
        }
    }
}

/// Whether `name` can be a class name (a folder, a metric label).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl RawArchive {
    pub(super) fn validate(self, data_dir: &Path, e: &mut Vec<String>) -> Option<ArchiveConfig> {
        if !self.enabled {
            return None;
        }
        if self.classes.is_empty() {
            e.push("archive.classes: the archive is enabled but has no class (a [[archive.classes]] with topics)".into());
        }
        if !(1 << 10..=1 << 30).contains(&self.max_file_bytes) {
            e.push("archive.max_file_bytes: must be between 1024 and 1073741824".into());
        }
        if !(1..=86_400).contains(&self.max_file_age_secs) {
            e.push("archive.max_file_age_secs: must be between 1 and 86400".into());
        }
        if !(1..=86_400).contains(&self.sweep_every_secs) {
            e.push("archive.sweep_every_secs: must be between 1 and 86400".into());
        }
        let mut classes: Vec<ClassConfig> = Vec::new();
        for (i, c) in self.classes.into_iter().enumerate() {
            let key = format!("archive.classes[{i}]");
            if !valid_name(&c.name) {
                e.push(format!("{key}.name: \"{}\": 1-64 of a-z, 0-9, _ and -", c.name));
            } else if ["holds", "upload"].contains(&c.name.as_str()) {
                e.push(format!("{key}.name: \"{}\" is a folder of the archive's own", c.name));
            } else if classes.iter().any(|o| o.name == c.name) {
                e.push(format!("{key}.name: \"{}\" is used by an earlier class", c.name));
            }
            if c.topics.is_empty() {
                e.push(format!("{key}.topics: must name at least one topic filter"));
            }
            for (j, t) in c.topics.iter().enumerate() {
                if let Err(err) = Pattern::subscription(t) {
                    e.push(format!("{key}.topics[{j}]: \"{t}\": {err}"));
                }
            }
            if c.max_keep_days != 0 && c.max_keep_days < c.min_keep_days {
                e.push(format!("{key}.max_keep_days: must be 0 (never) or at least min_keep_days ({})", c.min_keep_days));
            }
            classes.push(ClassConfig {
                name: c.name,
                topics: c.topics,
                min_keep_days: c.min_keep_days,
                max_keep_days: c.max_keep_days,
                legal_hold: c.legal_hold,
                quota_bytes: c.quota_bytes,
                on_full: c.on_full,
            });
        }
        let dir = if self.dir.is_empty() { data_dir.join("archive") } else { PathBuf::from(self.dir) };
        let upload = self.upload.validate(e);
        Some(ArchiveConfig {
            dir,
            max_file_bytes: self.max_file_bytes,
            max_file_age: Duration::from_secs(self.max_file_age_secs),
            sweep_every: Duration::from_secs(self.sweep_every_secs),
            classes,
            upload,
        })
    }
}

impl RawUpload {
    fn validate(self, e: &mut Vec<String>) -> UploadTarget {
        let mut need = |key: &str, value: &str| {
            if value.is_empty() {
                e.push(format!("archive.upload.{key}: must be set for kind = \"{}\"", self.kind));
            }
        };
        match self.kind.as_str() {
            "none" => UploadTarget::None,
            "dir" => {
                need("dir", &self.dir);
                UploadTarget::Dir(PathBuf::from(&self.dir))
            }
            "s3" => {
                for (key, value) in [
                    ("endpoint", &self.endpoint),
                    ("bucket", &self.bucket),
                    ("access_key_id", &self.access_key_id),
                    ("secret_key_file", &self.secret_key_file),
                ] {
                    need(key, value);
                }
                let host = self.endpoint.strip_prefix("http://").or_else(|| self.endpoint.strip_prefix("https://"));
                match host.map(|h| h.trim_end_matches('/')) {
                    _ if self.endpoint.is_empty() => {}
                    Some(h) if !h.is_empty() && !h.contains(['/', '?', '#', '@']) => {}
                    _ => e.push(format!(
                        "archive.upload.endpoint: \"{}\": http(s)://host[:port], without a path (path-style requests add /bucket/)",
                        self.endpoint
                    )),
                }
                if !(1000..=600_000).contains(&self.timeout_ms) {
                    e.push("archive.upload.timeout_ms: must be between 1000 and 600000".into());
                }
                UploadTarget::S3(S3Target {
                    endpoint: self.endpoint.trim_end_matches('/').to_string(),
                    bucket: self.bucket,
                    region: self.region,
                    prefix: self.prefix,
                    access_key_id: self.access_key_id,
                    secret_key_file: PathBuf::from(self.secret_key_file),
                    timeout: Duration::from_millis(self.timeout_ms),
                })
            }
            other => {
                e.push(format!("archive.upload.kind: \"{other}\": one of \"none\", \"dir\", \"s3\""));
                UploadTarget::None
            }
        }
    }
}
