//! What a release is (the signed trusted comment) and whether it may replace the running one.

use std::fmt;

use super::UpdateError;

/// A release: its version and the store formats it reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `major.minor.patch`.
    pub version: Version,
    /// The table layout (`edge_gateway_actors::storage::FORMAT_VERSION`), read and written
    /// exactly.
    pub store: String,
    /// The record formats it reads; it writes the last.
    pub records: (u8, u8),
}

/// A `major.minor.patch` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.').map(|p| p.parse::<u64>().ok());
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => Some(Version(a, b, c)),
            _ => None,
        }
    }
}

impl Release {
    /// This build.
    pub fn running() -> Release {
        Release {
            version: Version::parse(env!("CARGO_PKG_VERSION")).expect("the crate version is major.minor.patch"),
            store: edge_gateway_actors::storage::FORMAT_VERSION.to_string(),
            records: (1, edge_gateway_actors::record::VERSION),
        }
    }

    /// The trusted comment that describes it (`edge-gateway 0.2.0 store=1 records=1-3`).
    pub fn describe(&self) -> String {
        format!("edge-gateway {} store={} records={}-{}", self.version, self.store, self.records.0, self.records.1)
    }

    /// From a trusted comment (extra words after these are ignored, so a commit may follow).
    pub fn parse(comment: &str) -> Result<Release, UpdateError> {
        let bad = || UpdateError::NotARelease(format!("trusted comment {comment:?}"));
        let mut words = comment.split_whitespace();
        if words.next() != Some("edge-gateway") {
            return Err(bad());
        }
        let version = words.next().and_then(Version::parse).ok_or_else(bad)?;
        let (mut store, mut records) = (None, None);
        for w in words {
            if let Some(v) = w.strip_prefix("store=") {
                store = Some(v.to_string());
            } else if let Some(v) = w.strip_prefix("records=") {
                let (a, b) = v.split_once('-').ok_or_else(bad)?;
                records = Some((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?));
            }
        }
        match (store, records) {
            (Some(store), Some(records)) if records.0 <= records.1 => Ok(Release { version, store, records }),
            _ => Err(bad()),
        }
    }

    /// Whether `new` may replace `self`: newer, the same table layout, and each reads the
    /// record format the other writes (the new one reads this store; after a rollback this
    /// version reads what the new one wrote).
    pub fn may_update_to(&self, new: &Release) -> Result<(), UpdateError> {
        if new.version <= self.version {
            return Err(UpdateError::NotNewer { bundle: new.version.to_string(), running: self.version.to_string() });
        }
        if new.store != self.store {
            return Err(UpdateError::Format(format!(
                "the bundle uses table layout {}, this version {}: neither could read the other's store",
                new.store, self.store
            )));
        }
        let reads = |r: &Release, format: u8| (r.records.0..=r.records.1).contains(&format);
        if !reads(new, self.records.1) {
            return Err(UpdateError::Format(format!(
                "the bundle reads record formats {}-{}, this store holds format {}",
                new.records.0, new.records.1, self.records.1
            )));
        }
        if !reads(self, new.records.1) {
            return Err(UpdateError::Format(format!(
                "the bundle writes record format {}, which this version (reads {}-{}) could not read after a rollback",
                new.records.1, self.records.0, self.records.1
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_is_newer_and_compatible_both_ways_or_refused_with_a_reason() {
        let running = Release::parse("edge-gateway 0.1.0 store=1 records=1-3").unwrap();
        assert_eq!(Release::parse(&running.describe()).unwrap(), running);
        let records = edge_gateway_actors::record::VERSION;
        assert_eq!(Release::running().describe(), format!("edge-gateway {} store=1 records=1-{records}", env!("CARGO_PKG_VERSION")));
        let ok = |c: &str| running.may_update_to(&Release::parse(c).unwrap());
        assert!(ok("edge-gateway 0.1.1 store=1 records=1-3 (abc123)").is_ok());
        assert!(ok("edge-gateway 0.2.0 store=1 records=2-3").is_ok());
        assert!(matches!(ok("edge-gateway 0.1.0 store=1 records=1-3"), Err(UpdateError::NotNewer { .. })));
        assert!(matches!(ok("edge-gateway 0.0.9 store=1 records=1-3"), Err(UpdateError::NotNewer { .. })));
        assert!(matches!(ok("edge-gateway 0.2.0 store=2 records=1-3"), Err(UpdateError::Format(_))));
        assert!(matches!(ok("edge-gateway 0.2.0 store=1 records=1-4"), Err(UpdateError::Format(_))), "old cannot read 4");
        assert!(matches!(ok("edge-gateway 0.2.0 store=1 records=4-4"), Err(UpdateError::Format(_))), "new cannot read 3");
        for bad in ["", "mosquitto 2.0.0 store=1 records=1-3", "edge-gateway 1.2 store=1 records=1-3", "edge-gateway 1.2.3 store=1"] {
            assert!(matches!(Release::parse(bad), Err(UpdateError::NotARelease(_))), "{bad:?}");
        }
    }
}
