//! A small S3 client on reqwest for what the archive needs: PUT an object with its SHA-256
//! (`x-amz-checksum-sha256`, which the server checks), then HEAD it and compare the checksum
//! it reports (a GET and a local hash when the server reports none). Path-style URLs, SigV4.

use std::time::Duration;

use base64::Engine as _;

use super::sigv4::{self, Signer};
use crate::archive::ArchiveError;
use crate::config::S3Target;

/// One bucket.
pub struct Bucket {
    client: reqwest::Client,
    /// `http(s)://host:port`.
    endpoint: String,
    /// `host:port` for the signed `host` header.
    host: String,
    bucket: String,
    prefix: String,
    signer: Signer,
}

impl Bucket {
    /// The client for `target`; reads the secret key file.
    pub fn new(target: &S3Target) -> Result<Self, ArchiveError> {
        let secret = std::fs::read_to_string(&target.secret_key_file).map_err(|e| ArchiveError::io(&target.secret_key_file, e))?;
        let secret = secret.lines().next().unwrap_or_default().trim().to_string();
        let mut builder = reqwest::Client::builder();
        if target.endpoint.starts_with("http://") {
            builder = builder.tls_certs_only(Vec::new());
        }
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .timeout(target.timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ArchiveError::Upload(format!("cannot build the S3 client: {e}")))?;
        // What reqwest sends as Host: without the scheme's default port.
        let host = target.endpoint.split_once("://").map_or(target.endpoint.as_str(), |(_, h)| h).trim_end_matches('/');
        let host = match (target.endpoint.starts_with("https://"), host.rsplit_once(':')) {
            (true, Some((h, "443"))) | (false, Some((h, "80"))) => h.to_string(),
            _ => host.to_string(),
        };
        Ok(Self {
            client,
            endpoint: target.endpoint.clone(),
            host,
            bucket: target.bucket.clone(),
            prefix: target.prefix.clone(),
            signer: Signer { key_id: target.access_key_id.clone(), secret, region: target.region.clone() },
        })
    }

    /// PUT `name` (under the prefix) and check the stored object's SHA-256.
    pub async fn put_checked(&self, name: &str, bytes: Vec<u8>, sha_hex: &str) -> Result<(), ArchiveError> {
        let digest: Vec<u8> = (0..sha_hex.len() / 2).filter_map(|i| u8::from_str_radix(&sha_hex[2 * i..2 * i + 2], 16).ok()).collect();
        let checksum = base64::engine::general_purpose::STANDARD.encode(&digest);
        let len = bytes.len();
        let extra = [("x-amz-checksum-sha256", checksum.clone())];
        let response = self.send(reqwest::Method::PUT, name, &extra, bytes, sha_hex).await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ArchiveError::Upload(format!("PUT {name}: HTTP {status}: {}", body.chars().take(300).collect::<String>())));
        }
        let empty = crate::sha256::hex(b"");
        let head = self.send(reqwest::Method::HEAD, name, &[("x-amz-checksum-mode", "ENABLED".into())], Vec::new(), &empty).await?;
        if !head.status().is_success() {
            return Err(ArchiveError::Upload(format!("HEAD {name} after PUT: HTTP {}", head.status())));
        }
        let header = |k: &str| head.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        if header("content-length").and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l != len) {
            return Err(ArchiveError::Upload(format!("{name}: the stored object's length differs")));
        }
        match header("x-amz-checksum-sha256") {
            Some(got) if got == checksum => Ok(()),
            Some(got) => Err(ArchiveError::Upload(format!("{name}: stored checksum {got}, sent {checksum}"))),
            None => {
                let get = self.send(reqwest::Method::GET, name, &[], Vec::new(), &empty).await?;
                let body = get.bytes().await.map_err(|e| ArchiveError::Upload(format!("GET {name}: {e}")))?;
                if crate::sha256::hex(&body) == sha_hex {
                    Ok(())
                } else {
                    Err(ArchiveError::Upload(format!("{name}: the stored object differs")))
                }
            }
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        name: &str,
        extra: &[(&str, String)],
        body: Vec<u8>,
        payload_sha: &str,
    ) -> Result<reqwest::Response, ArchiveError> {
        let path = format!("/{}/{}", sigv4::uri_encode(&self.bucket, false), sigv4::uri_encode(&format!("{}{name}", self.prefix), true));
        let date = sigv4::amz_date(edge_gateway_actors::storage::now_ms());
        let mut headers: Vec<(&str, String)> =
            vec![("host", self.host.clone()), ("x-amz-content-sha256", payload_sha.to_string()), ("x-amz-date", date.clone())];
        headers.extend(extra.iter().cloned());
        headers.sort_by(|a, b| a.0.cmp(b.0));
        let auth = self.signer.authorization(method.as_str(), &path, "", &headers, payload_sha, &date);
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.endpoint)).header("authorization", auth);
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            request = request.header(*k, v);
        }
        request.body(body).send().await.map_err(|e| ArchiveError::Upload(format!("{method} {name}: {e}")))
    }
}
