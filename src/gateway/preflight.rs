//! What `run` and `check-config` check before anything starts: the supervision file, and every
//! file the config names, each loaded once and thrown away.

use edge_gateway_actors::metrics::Metrics;
use edge_gateway_actors::supervisor::SupervisionConfig;

use crate::config::Config;
use crate::schema::Schemas;
use crate::trust::auth::Authority;

/// Read the supervision file named in the config, or the embedded default.
pub fn load_supervision(config: &Config) -> Result<SupervisionConfig, Vec<String>> {
    match &config.supervision_file {
        None => Ok(SupervisionConfig::default_config()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
            let sup = SupervisionConfig::parse(&text)?;
            for why in &sup.ignored {
                tracing::warn!(file = %path.display(), "{why}");
            }
            Ok(sup)
        }
    }
}

/// Load every file the config names (TLS sets, ACL, passwords) without starting anything;
/// each problem names its config key and file. `check-config` and `run` report them as a bad
/// configuration (exit 2).
pub fn preflight(config: &Config) -> Vec<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut problems = Vec::new();
    if let Some(t) = &config.tls {
        problems.extend(t.files.load().err().map(|e| e.to_string()));
    }
    problems.extend(Authority::load(&config.auth, Metrics::new()).err().map(|e| e.to_string()));
    problems.extend(Schemas::load(config.schemas_dir.as_deref(), Metrics::new()).err().map(|e| format!("schemas.dir: {e}")));
    for s in &config.sinks {
        if let crate::config::SinkKind::Http { tls: Some(files), .. }
        | crate::config::SinkKind::Nats { tls: Some(files), .. }
        | crate::config::SinkKind::Mqtt { tls: Some(files), .. } = &s.kind
        {
            problems.extend(crate::egress::cloud_tls::CloudTls::load(&s.name, files).err().map(|e| e.to_string()));
        }
    }
    if let Some((cert, key)) = &config.http.tls {
        problems.extend(crate::api::https::HttpTls::load(cert.clone(), key.clone()).err().map(|e| e.to_string()));
    }
    if let Some(archive) = &config.archive {
        // The S3 secret is read (and the client built) exactly as the archive actor will.
        problems.extend(crate::archive::upload::Uploader::new(archive).err().map(|e| format!("archive.upload: {e}")));
    }
    if let Some(file) = &config.http.token_file {
        problems.extend(crate::api::bearer::load_or_create(Some(file), &config.data_dir).err().map(|e| format!("http.token_file: {e}")));
    }
    problems
}
