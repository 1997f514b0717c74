//! Config parsing and validation, every error by its dotted key.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Vec::new())
}

#[test]
fn the_embedded_default_is_valid_and_local() {
    let c = parse(DEFAULT_CONFIG_TOML).unwrap();
    assert_eq!(c.mqtt.listen, "127.0.0.1:1883".parse().unwrap());
    assert!(c.http.listen.ip().is_loopback());
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert!(matches!(c.sinks[0].kind, SinkKind::File { .. }));
}

#[test]
fn every_error_is_named_by_its_dotted_key() {
    let text = r#"
        [mqtt]
        listen = "nowhere"
        max_inflight = 0
        [storage]
        overflow = "sometimes"
        [[sinks]]
        name = "cloud"
        kind = "http"
        url = "ftp://x"
        [[sinks]]
        name = "cloud"
        kind = "file"
    "#;
    let errors = parse(text).unwrap_err().0;
    for expected in ["mqtt.listen", "mqtt.max_inflight", "storage.overflow", "sinks[0].url", "sinks[1].name", "sinks[1].path"] {
        assert!(errors.iter().any(|e| e.starts_with(expected)), "{expected} missing in {errors:?}");
    }
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let errors = parse("[mqtt]\nlisten_port = 1\n").unwrap_err().0;
    assert!(errors[0].contains("listen_port"), "{errors:?}");
}

#[test]
fn the_environment_overrides_per_host_values() {
    let text = "[auth]\nplain = \"anonymous\"\n[[sinks]]\nname = \"cloud-eu\"\nkind = \"http\"\nurl = \"http://a\"\n";
    let env = [
        ("EDGE_GATEWAY_MQTT_LISTEN", "127.0.0.2:1884"),
        ("EDGE_GATEWAY_DATA_DIR", "/var/lib/gw"),
        ("EDGE_GATEWAY_SINK_CLOUD_EU_URL", "https://b"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let c = Config::parse(text, env).unwrap();
    assert_eq!(c.mqtt.listen, "127.0.0.2:1884".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/gw"));
    assert!(matches!(&c.sinks[0].kind, SinkKind::Http { url, .. } if url == "https://b"));
}

#[test]
fn devices_must_authenticate_unless_the_lab_setup_is_chosen() {
    let text = "[[sinks]]\nname = \"a\"\nkind = \"discard\"\n";
    let errors = parse(text).unwrap_err().0;
    assert!(errors.iter().any(|e| e.starts_with("auth.password_file: required")), "{errors:?}");
    let c = parse(&format!("[auth]\npassword_file = \"pw\"\n{text}")).unwrap();
    assert_eq!(c.auth.plain, PlainAuth::Password);
    assert!(c.tls.is_none());
}

#[test]
fn tls_and_auth_problems_are_named_by_key() {
    let text = r#"
        [mqtt]
        plain = false
        [auth]
        identity = "serial"
        [tls]
        enabled = true
        min_version = "1.0"
        client_auth = "sometimes"
        cert = ""
        renew_before_days = 10
        [[sinks]]
        name = "cloud"
        kind = "http"
        url = "https://x"
        tls_cert = "c.pem"
    "#;
    let errors = parse(text).unwrap_err().0;
    for expected in
        ["auth.identity", "tls.min_version", "tls.client_auth", "tls.cert", "tls.renew_command", "sinks[0].tls_key", "sinks[0].tls_ca"]
    {
        assert!(errors.iter().any(|e| e.starts_with(expected)), "{expected} missing in {errors:?}");
    }
}

#[test]
fn a_production_setup_has_only_the_tls_listener() {
    let text = r#"
        [mqtt]
        plain = false
        [tls]
        enabled = true
        listen = "0.0.0.0:8883"
        crl = ["crl.pem"]
        [[sinks]]
        name = "cloud"
        kind = "http"
        url = "https://x"
        tls_ca = "ca.pem"
        tls_cert = "c.pem"
        tls_key = "c.key"
    "#;
    let c = parse(text).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.files.crl, vec![PathBuf::from("crl.pem")]);
    assert!(!c.mqtt.plain);
    assert!(matches!(&c.sinks[0].kind, SinkKind::Http { tls: Some(t), .. } if t.cert.is_some()));
}

#[test]
fn an_anonymous_plain_listener_next_to_tls_is_refused() {
    let text = "[auth]\nplain = \"anonymous\"\n[tls]\nenabled = true\n[[sinks]]\nname = \"a\"\nkind = \"discard\"\n";
    let errors = parse(text).unwrap_err().0;
    assert!(errors.iter().any(|e| e.starts_with("auth.plain: \"anonymous\" next to tls.enabled")), "{errors:?}");
}

#[test]
fn a_non_loopback_http_api_needs_the_token_for_everything() {
    let base = "[auth]\nplain = \"anonymous\"\n[[sinks]]\nname = \"cloud\"\nkind = \"http\"\nurl = \"http://a\"\n";
    let with = |http: &str| parse(&format!("{base}[http]\n{http}\n"));
    let open = with("listen = \"0.0.0.0:9880\"").unwrap_err().0;
    assert!(open.iter().any(|e| e.starts_with("http.listen") && e.contains("http.auth = \"all\"")), "{open:?}");
    let closed = with("listen = \"0.0.0.0:9880\"\nauth = \"all\"").unwrap();
    assert_eq!(closed.http.auth, HttpAuth::All);
    let half = with("tls_cert = \"a.pem\"\nauth = \"some\"").unwrap_err().0;
    for key in ["http.tls_cert, http.tls_key", "http.auth"] {
        assert!(half.iter().any(|e| e.starts_with(key)), "{key} missing in {half:?}");
    }
    let loopback = parse(base).unwrap();
    assert_eq!((loopback.http.auth, loopback.http.token_file.is_none(), loopback.http.tls.is_none()), (HttpAuth::Writes, true, true));
}

#[test]
fn edge_gateway_variables_the_gateway_does_not_read_are_reported() {
    let text = "[auth]\nplain = \"anonymous\"\n[[sinks]]\nname = \"cloud-eu\"\nkind = \"http\"\nurl = \"http://a\"\n";
    let env = [
        ("EDGE_GATEWAY_MQTT_LISTN", "127.0.0.1:1"),     // typo
        ("EDGE_GATEWAY_SINK_CLOUD_US_URL", "http://b"), // no such sink
        ("EDGE_GATEWAY_SINK_CLOUD_EU_URL", "http://c"), // applied
        ("EDGE_GATEWAY_HTTP_LISTEN", "127.0.0.1:9881"), // applied
        ("PATH", "/usr/bin"),                           // not ours
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let c = Config::parse(text, env).unwrap();
    assert_eq!(c.ignored_env, ["EDGE_GATEWAY_MQTT_LISTN", "EDGE_GATEWAY_SINK_CLOUD_US_URL"]);
    assert!(matches!(&c.sinks[0].kind, SinkKind::Http { url, .. } if url == "http://c"));
}

const SINK: &str = "[[sinks]]\nname = \"local\"\nkind = \"discard\"\n";

#[test]
fn the_schema_registry_and_its_rejected_table_bounds_are_checked() {
    let c = parse(&format!(
        "{SINK}[auth]\nplain = \"anonymous\"\n[schemas]\ndir = \"/etc/schemas\"\nrejected_max = 5\nrejected_max_bytes = 2000000\n"
    ))
    .unwrap();
    assert_eq!(c.schemas_dir.as_deref(), Some(std::path::Path::new("/etc/schemas")));
    assert_eq!((c.storage.rejected_max, c.storage.rejected_max_bytes), (5, 2_000_000));
    assert_eq!(parse(DEFAULT_CONFIG_TOML).unwrap().schemas_dir, None, "no registry by default: nothing is checked");
    let errors =
        parse(&format!("{SINK}[auth]\nplain = \"anonymous\"\n[schemas]\ndir = \"s\"\nrejected_max = 0\nrejected_max_bytes = 1000\n"))
            .unwrap_err()
            .0;
    assert!(errors.iter().any(|e| e.starts_with("schemas.rejected_max: ")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("schemas.rejected_max_bytes: must be at least mqtt.max_packet_size")), "{errors:?}");
}

#[test]
fn an_mqtt_sink_needs_an_mqtt_url_and_a_prefix_without_wildcards() {
    let sink = |lines: &str| format!("[auth]\nplain = \"anonymous\"\n[[sinks]]\nname = \"up\"\n{lines}\n");
    let c = parse(&sink("kind = \"mqtt\"\nurl = \"mqtt://broker.example:1883\"\ntopic_prefix = \"site-a/\"")).unwrap();
    assert!(
        matches!(&c.sinks[0].kind, SinkKind::Mqtt { host, port: 1883, topic_prefix, .. } if host == "broker.example" && topic_prefix == "site-a/")
    );
    let errors = parse(&sink("kind = \"mqtt\"\nurl = \"http://x:1\"\ntopic_prefix = \"a/#\"")).unwrap_err().0;
    assert!(errors.iter().any(|e| e.starts_with("sinks[0].url: \"http://x:1\" must be mqtt://HOST:PORT")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("sinks[0].topic_prefix:")), "{errors:?}");
    let errors = parse(&sink("kind = \"http\"\nurl = \"http://x:1\"\ntopic_prefix = \"a/\"")).unwrap_err().0;
    assert!(errors.iter().any(|e| e.starts_with("sinks[0].topic_prefix: not used by kind \"http\"")), "{errors:?}");
}

#[test]
fn an_mqtt_sink_takes_mqtts_credentials_tls_files_and_rewrite_rules() {
    let sink = |lines: &str| format!("[auth]\nplain = \"anonymous\"\n[[sinks]]\nname = \"up\"\nkind = \"mqtt\"\n{lines}\n");
    let c = parse(&sink(
        "url = \"mqtts://edge:p@ss:w@broker.example:8883\"\ntls_ca = \"ca.pem\"\ntopic_rewrite = [{ filter = \"devices/+/t\", to = \"x/{1}\" }]",
    ))
    .unwrap();
    match &c.sinks[0].kind {
        SinkKind::Mqtt { host, port, secure, username, password, tls, topic_rewrite, .. } => {
            assert_eq!((host.as_str(), *port, *secure), ("broker.example", 8883, true));
            assert_eq!((username.as_deref(), password.as_deref()), (Some("edge"), Some("p@ss:w")), "the last @ ends the credentials");
            assert_eq!(tls.as_ref().map(|t| t.ca.display().to_string()), Some("ca.pem".into()));
            assert_eq!(topic_rewrite.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    let c = parse(&sink("url = \"mqtt://b:1883\"")).unwrap();
    assert!(matches!(&c.sinks[0].kind, SinkKind::Mqtt { secure: false, username: None, tls: None, .. }));
    let errors = parse(&sink("url = \"mqtt://u:secret@b:1883\"\ntls_ca = \"ca.pem\"\ntopic_rewrite = [{ filter = \"a/#/b\", to = \"x\" }, { filter = \"a/+\", to = \"{2}\" }]"))
        .unwrap_err()
        .0;
    assert!(errors.iter().any(|e| e == "sinks[0].tls_ca: TLS settings need a mqtts:// url"), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("sinks[0].topic_rewrite[0]: filter \"a/#/b\"")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("sinks[0].topic_rewrite[1]: to \"{2}\"")), "{errors:?}");
    let errors = parse(&sink("url = \"mqtt://u:secret@b\"")).unwrap_err().0;
    assert!(errors.iter().any(|e| e.contains("***@b") && !e.contains("secret")), "the password is not shown: {errors:?}");
}

#[test]
fn a_nats_sink_needs_a_nats_url_valid_subject_tokens_and_a_stream_name() {
    let sink = |lines: &str| format!("[auth]\nplain = \"anonymous\"\n[[sinks]]\nname = \"js\"\nkind = \"nats\"\n{lines}\n");
    let c = parse(&sink("url = \"nats://edge:pw@nats.example:4222\"\nsubject_prefix = \"edge.site1\"\nstream = \"EDGE\"")).unwrap();
    assert!(
        matches!(&c.sinks[0].kind, SinkKind::Nats { subject_prefix, stream: Some(s), tls: None, .. } if subject_prefix == "edge.site1" && s == "EDGE")
    );
    let errors =
        parse(&sink("url = \"http://edge:pw@x:1\"\nsubject_prefix = \"a..b\"\nstream = \"a.b\"\ntopic_prefix = \"x/\"")).unwrap_err().0;
    assert!(
        errors.iter().any(|e| e.starts_with("sinks[0].url: \"http://***@x:1\" must be nats://")),
        "the password is not shown: {errors:?}"
    );
    for key in ["subject_prefix", "stream", "topic_prefix"] {
        assert!(errors.iter().any(|e| e.starts_with(&format!("sinks[0].{key}:"))), "{key}: {errors:?}");
    }
    let errors = parse(&sink("url = \"nats://h:1\"\ntls_ca = \"ca.pem\"")).unwrap_err().0;
    assert!(errors.iter().any(|e| e == "sinks[0].tls_ca: TLS settings need a tls:// url"), "{errors:?}");
}

#[test]
fn a_bridge_downlink_takes_topic_filters_and_only_an_mqtt_sink_has_one() {
    let sink = |lines: &str| format!("[auth]\nplain = \"anonymous\"\n[[sinks]]\nname = \"up\"\n{lines}\n");
    let c = parse(&sink("kind = \"mqtt\"\nurl = \"mqtt://b:1883\"\ndownlink = [\"site/+/cmd/#\"]")).unwrap();
    assert!(
        matches!(&c.sinks[0].kind, SinkKind::Mqtt { downlink, downlink_identity: None, .. } if downlink == &["site/+/cmd/#".to_string()])
    );
    let errors = parse(&sink("kind = \"mqtt\"\nurl = \"mqtt://b:1883\"\ndownlink = [\"a/#/b\", \"$share/g/x\"]")).unwrap_err().0;
    assert_eq!(errors.iter().filter(|e| e.starts_with("sinks[0].downlink: ")).count(), 2, "{errors:?}");
    let errors = parse(&sink("kind = \"http\"\nurl = \"http://x:1\"\ndownlink = [\"a\"]")).unwrap_err().0;
    assert!(errors.iter().any(|e| e.starts_with("sinks[0].downlink: not used by kind \"http\"")), "{errors:?}");
    let errors = parse(&sink("kind = \"mqtt\"\nurl = \"mqtt://b:1883\"\ndownlink_identity = \"ops\"")).unwrap_err().0;
    assert!(errors.iter().any(|e| e == "sinks[0].downlink_identity: only with downlink filters"), "{errors:?}");
}

#[test]
fn archive_classes_windows_and_upload_are_checked_by_key() {
    // The embedded default without its (disabled, last) [archive] section.
    let base = format!("{}\n", DEFAULT_CONFIG_TOML.split("\n[archive]").next().unwrap());
    let ok = parse(&format!(
        "{base}[archive]\nenabled = true\n[[archive.classes]]\nname = \"telemetry\"\ntopics = [\"devices/+/telemetry\"]\nmin_keep_days = 30\nmax_keep_days = 365\n"
    ))
    .unwrap();
    let a = ok.archive.expect("enabled");
    assert_eq!(a.dir, std::path::Path::new("./data/archive"));
    assert_eq!((a.classes[0].min_keep_days, a.classes[0].on_full), (30, crate::config::OnFull::RefuseIngest));
    assert!(parse(DEFAULT_CONFIG_TOML).unwrap().archive.is_none(), "off by default");
    let text = r#"
        [[sinks]]
        name = "archive"
        kind = "discard"
        [archive]
        enabled = true
        max_file_age_secs = 0
        [[archive.classes]]
        name = "A B"
        topics = ["a/#/b"]
        min_keep_days = 30
        max_keep_days = 7
        [[archive.classes]]
        name = "x"
        topics = []
        min_keep_days = 1
        [archive.upload]
        kind = "s3"
        endpoint = "ftp://x"
    "#;
    let errors = parse(text).unwrap_err().0;
    for expected in [
        "archive.max_file_age_secs",
        "archive.classes[0].name",
        "archive.classes[0].topics[0]",
        "archive.classes[0].max_keep_days",
        "archive.upload.bucket",
        "archive.upload.endpoint",
        "sinks: the name \"archive\"",
    ] {
        assert!(errors.iter().any(|e| e.starts_with(expected)), "{expected} missing in {errors:?}");
    }
    let bad =
        parse("[archive]\n[[archive.classes]]\nname = \"x\"\ntopics = [\"#\"]\nmin_keep_days = 1\non_full = \"panic\"\n").unwrap_err().0;
    assert!(bad[0].contains("archive.classes[0].on_full"), "{bad:?}");
}
