//! TLS on the remoting ports, as RocketMQ's `TlsSystemConfig` configures it.
//!
//! `tls.server.mode` decides, per connection, by its first byte (a TLS handshake record starts
//! with 0x16; a remoting frame with the high byte of its length, 0 for any frame a broker takes):
//!
//! | mode | TLS client | plaintext client |
//! |---|---|---|
//! | `disabled` | closed | served |
//! | `permissive` (RocketMQ's default) | served over TLS | served |
//! | `enforcing` | served over TLS | closed |
//!
//! The certificate is `tls.server.certPath` / `tls.server.keyPath` (PEM; an unencrypted PKCS#8,
//! PKCS#1 or SEC1 key). Without them, `tls.test.mode.enable` (RocketMQ's default: true) makes a
//! self-signed certificate at start for `localhost`, 127.0.0.1 and the advertised address, as
//! RocketMQ's test mode does (RocketMQ ignores configured files in test mode; Vostok uses them
//! when given). Client certificates: `tls.server.need.client.auth` `none` (default), or
//! `optional` / `require` checked against `tls.server.trustCertPath`.
//!
//! The keys come from broker.conf, or from the `tls.config.file` properties file (RocketMQ's
//! `/etc/rocketmq/tls.properties` by default, read when it exists), whose values win as in
//! RocketMQ.

use std::net::IpAddr;
#[cfg(not(madsim))]
use std::path::Path;
use std::path::PathBuf;
#[cfg(not(madsim))]
use std::sync::Arc;

#[cfg(not(madsim))]
use tokio_rustls::rustls::pki_types::pem::PemObject;
#[cfg(not(madsim))]
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
#[cfg(not(madsim))]
use tokio_rustls::rustls::server::WebPkiClientVerifier;
#[cfg(not(madsim))]
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
#[cfg(not(madsim))]
use tokio_rustls::TlsAcceptor;

/// The first byte of a TLS handshake record.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// RocketMQ's default `tls.config.file`.
pub const DEFAULT_TLS_CONFIG_FILE: &str = "/etc/rocketmq/tls.properties";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    Disabled,
    #[default]
    Permissive,
    Enforcing,
}

impl TlsMode {
    /// RocketMQ's `TlsMode.parse`: an unknown name is permissive.
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "disabled" => TlsMode::Disabled,
            "enforcing" => TlsMode::Enforcing,
            _ => TlsMode::Permissive,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    #[default]
    None,
    Optional,
    Require,
}

/// The server side TLS keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub mode: TlsMode,
    pub test_mode: bool,
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    pub key_password: Option<String>,
    pub client_auth: ClientAuth,
    pub trust_cert_path: Option<PathBuf>,
    /// `tls.config.file`: `None` means RocketMQ's default, read when it exists.
    pub config_file: Option<PathBuf>,
    /// `tls.enable`: the broker's own connections (to its NameServers) use TLS. RocketMQ's
    /// default: on exactly when the mode is enforcing.
    pub client_enable: Option<bool>,
    /// `tls.client.authServer` (default false: any server certificate, as RocketMQ's test
    /// mode) and `tls.client.trustCertPath`.
    pub client_auth_server: bool,
    pub client_trust_cert_path: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            mode: TlsMode::Permissive,
            test_mode: true,
            cert_path: None,
            key_path: None,
            key_password: None,
            client_auth: ClientAuth::None,
            trust_cert_path: None,
            config_file: None,
            client_enable: None,
            client_auth_server: false,
            client_trust_cert_path: None,
        }
    }
}

impl TlsConfig {
    /// Applies one key; `false` when `key` is not a TLS key.
    pub fn set(&mut self, key: &str, value: &str) -> bool {
        let path = || (!value.trim().is_empty()).then(|| PathBuf::from(value.trim()));
        match key {
            "tls.server.mode" => self.mode = TlsMode::parse(value),
            "tls.test.mode.enable" => self.test_mode = value.trim().eq_ignore_ascii_case("true"),
            "tls.server.certPath" => self.cert_path = path(),
            "tls.server.keyPath" => self.key_path = path(),
            "tls.server.keyPassword" => {
                self.key_password = (!value.is_empty()).then(|| value.to_owned())
            }
            "tls.server.need.client.auth" => {
                self.client_auth = match value.trim().to_ascii_lowercase().as_str() {
                    "optional" => ClientAuth::Optional,
                    "require" => ClientAuth::Require,
                    _ => ClientAuth::None,
                }
            }
            "tls.server.trustCertPath" => self.trust_cert_path = path(),
            "tls.config.file" => self.config_file = path(),
            "tls.enable" => self.client_enable = Some(value.trim().eq_ignore_ascii_case("true")),
            "tls.client.authServer" => {
                self.client_auth_server = value.trim().eq_ignore_ascii_case("true")
            }
            "tls.client.trustCertPath" => self.client_trust_cert_path = path(),
            // Read by RocketMQ too; nothing to do here (the insecure switch, client keys).
            "tls.server.authClient" => {}
            k if k.starts_with("tls.client.") => {}
            _ => return false,
        }
        true
    }

    /// Applies the `tls.config.file` properties file over these keys (its values win).
    pub fn with_config_file(mut self) -> Result<Self, String> {
        let path = self
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TLS_CONFIG_FILE));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // RocketMQ skips a missing file, named or not.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        for (key, value) in crate::config::parse_properties(&text) {
            // The mode is a system property only in RocketMQ.
            if key != "tls.server.mode" {
                self.set(&key, &value);
            }
        }
        Ok(self)
    }

    /// What a listening port does with each connection (see the module doc). `names` are what
    /// a self-signed certificate is made for. The simulator's network has no TLS: plaintext.
    pub fn listener(&self, names: &[String]) -> Result<TlsListener, String> {
        #[cfg(madsim)]
        {
            let _ = names;
            Ok(TlsListener::plaintext())
        }
        #[cfg(not(madsim))]
        Ok(TlsListener {
            mode: self.mode,
            acceptor: self.acceptor(names, Vec::new())?,
        })
    }

    /// [`Self::listener`] for the gRPC port: the same certificate and modes (RocketMQ's proxy
    /// reads the same TLS keys), with HTTP/2 offered by ALPN, which gRPC clients require.
    pub fn grpc_listener(&self, names: &[String]) -> Result<TlsListener, String> {
        #[cfg(madsim)]
        {
            let _ = names;
            Ok(TlsListener::plaintext())
        }
        #[cfg(not(madsim))]
        Ok(TlsListener {
            mode: self.mode,
            acceptor: self.acceptor(names, vec![b"h2".to_vec()])?,
        })
    }

    /// The acceptor for TLS connections, offering the `alpn` protocols; `None` when TLS is
    /// disabled.
    #[cfg(not(madsim))]
    fn acceptor(
        &self,
        names: &[String],
        alpn: Vec<Vec<u8>>,
    ) -> Result<Option<TlsAcceptor>, String> {
        if self.mode == TlsMode::Disabled {
            return Ok(None);
        }
        if self.key_password.is_some() {
            return Err(
                "tls.server.keyPassword: encrypted keys are not supported; decrypt the key to an unencrypted PKCS#8 PEM"
                    .to_owned(),
            );
        }
        let (chain, key) = match (&self.cert_path, &self.key_path) {
            (Some(cert), Some(key)) => (read_certs(cert)?, read_key(key)?),
            (None, None) if self.test_mode => self_signed(names)?,
            _ => {
                return Err(
                    "TLS needs both tls.server.certPath and tls.server.keyPath (or tls.test.mode.enable=true, or tls.server.mode=disabled)"
                        .to_owned(),
                )
            }
        };
        let builder = ServerConfig::builder();
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let trust = self.trust_cert_path.as_ref().ok_or(
                    "tls.server.need.client.auth needs tls.server.trustCertPath to check client certificates",
                )?;
                let mut roots = RootCertStore::empty();
                for cert in read_certs(trust)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", trust.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
                let verifier = if auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("the TLS certificate and key do not go together: {e}"))?;
        config.alpn_protocols = alpn;
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

#[cfg(not(madsim))]
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

#[cfg(not(madsim))]
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "{}: not an unencrypted PEM private key: {e}",
            path.display()
        )
    })
}

#[cfg(not(madsim))]
/// A certificate for `names` (host names or IP addresses), signed by its own key.
fn self_signed(
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| format!("cannot make the test-mode certificate: {e}"))?;
    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
    Ok((vec![made.cert.der().clone()], PrivateKeyDer::Pkcs8(key)))
}

#[cfg(not(madsim))]
impl TlsConfig {
    /// The broker's TLS for its own connections to NameServers (`tls.enable`), `None` for
    /// plaintext.
    pub fn client(&self) -> Result<Option<tokio_rustls::TlsConnector>, String> {
        use tokio_rustls::rustls::ClientConfig;
        if !self
            .client_enable
            .unwrap_or(self.mode == TlsMode::Enforcing)
        {
            return Ok(None);
        }
        let builder = ClientConfig::builder();
        let config = if self.client_auth_server {
            let trust = self.client_trust_cert_path.as_ref().ok_or(
                "tls.client.authServer=true needs tls.client.trustCertPath to check NameServers' certificates",
            )?;
            let mut roots = RootCertStore::empty();
            for cert in read_certs(trust)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", trust.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCertificate::new()))
                .with_no_client_auth()
        };
        Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(config))))
    }
}

/// RocketMQ's client default (`tls.client.authServer=false`): any server certificate is taken;
/// the handshake's signatures are still checked.
#[cfg(not(madsim))]
#[derive(Debug)]
struct AnyServerCertificate {
    algorithms: tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms,
}

#[cfg(not(madsim))]
impl AnyServerCertificate {
    fn new() -> Self {
        let provider = tokio_rustls::rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| {
                Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider())
            });
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

#[cfg(not(madsim))]
impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &tokio_rustls::rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: tokio_rustls::rustls::pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error>
    {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How the broker dials its NameServers: plaintext, or TLS (`tls.enable`).
#[derive(Clone, Default)]
pub struct NamesrvTls {
    #[cfg(not(madsim))]
    pub connector: Option<tokio_rustls::TlsConnector>,
}

/// What a listening port does with each connection's first byte.
#[derive(Clone)]
pub struct TlsListener {
    pub mode: TlsMode,
    #[cfg(not(madsim))]
    pub acceptor: Option<TlsAcceptor>,
}

impl TlsListener {
    /// No TLS: a TLS client is closed, everything else served.
    pub fn plaintext() -> Self {
        Self {
            mode: TlsMode::Disabled,
            #[cfg(not(madsim))]
            acceptor: None,
        }
    }
}

/// What a test-mode certificate is made for: `localhost`, loopback and `advertised`.
pub fn certificate_names(advertised: IpAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !names.contains(&advertised.to_string()) {
        names.push(advertised.to_string());
    }
    names
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[test]
    fn keys_and_modes_as_rocketmq_names_them() {
        let mut c = TlsConfig::default();
        assert_eq!(c.mode, TlsMode::Permissive);
        assert!(c.set("tls.server.mode", "enforcing"));
        assert_eq!(c.mode, TlsMode::Enforcing);
        c.set("tls.server.mode", "Strict");
        assert_eq!(c.mode, TlsMode::Permissive, "unknown names are permissive");
        assert!(c.set("tls.server.need.client.auth", "REQUIRE"));
        assert_eq!(c.client_auth, ClientAuth::Require);
        assert!(!c.set("listenPort", "1"));
    }

    #[test]
    fn a_test_mode_certificate_is_made_and_a_half_configured_one_refused() {
        let c = TlsConfig::default();
        let names = certificate_names("127.0.0.1".parse().unwrap());
        assert!(c.listener(&names).unwrap().acceptor.is_some());
        let half = TlsConfig {
            cert_path: Some("/nonexistent/cert.pem".into()),
            ..TlsConfig::default()
        };
        assert!(half.listener(&[]).err().unwrap().contains("both"));
        let disabled = TlsConfig {
            mode: TlsMode::Disabled,
            ..TlsConfig::default()
        };
        assert!(disabled.listener(&[]).unwrap().acceptor.is_none());
    }
}
