/*!
TLS on both sides (rustls, with the `ring` provider).

- **Upstreams**: `https://` URLs are verified against the system's roots
  and, when `[tls] upstream_ca` names a PEM file, its certificates too (a
  private CA in front of the model servers). `http://` stays plain.
- **The listener**: with `[tls] cert` and `key` (PEM files), clients speak
  TLS to `listen` and `internal_listen`. The files are read again by
  `/admin/reload`, so a renewed certificate takes effect without a
  restart; a broken file is refused and the old certificate stays.
*/

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// The `[tls]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The listener's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// Extra roots (PEM) trusted for `https://` upstreams, besides the
    /// system's.
    pub upstream_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_err(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// A client configuration trusting the system's roots and, with `extra`,
/// the certificates of that PEM file.
pub fn client_config(extra: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: a private CA may be all
    // the operator needs.
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(p) = extra {
        for c in certs(p)? {
            roots.add(c).map_err(|e| file_err(p, e))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The connector for upstreams: plain `http://`, verified `https://`.
pub fn connector(cfg: &TlsConfig) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, TlsError> {
    let client = client_config(cfg.upstream_ca.as_deref())?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The listener's certificate, swapped on reload.
pub struct Listener {
    acceptor: RwLock<tokio_rustls::TlsAcceptor>,
}

fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

impl Listener {
    /// `None` without `cert` and `key`.
    pub fn from_config(cfg: &TlsConfig) -> Result<Option<Arc<Listener>>, TlsError> {
        let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Listener {
            acceptor: RwLock::new(acceptor(cert, key)?),
        })))
    }

    /// Reads the files again; on error the old certificate stays.
    pub fn reload(&self, cfg: &TlsConfig) -> Result<(), TlsError> {
        let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
            return Ok(());
        };
        let a = acceptor(cert, key)?;
        if let Ok(mut cur) = self.acceptor.write() {
            *cur = a;
        }
        Ok(())
    }

    pub fn current(&self) -> tokio_rustls::TlsAcceptor {
        match self.acceptor.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}
