//! The rustls client configuration every client here uses: the `ring` crypto provider
//! (the one kube uses, so the build has a single provider) and the platform's certificate
//! verifier (the system trust store on Linux). Passing it explicitly means no client here
//! needs, or installs, a process-wide default provider.

use std::sync::Arc;

use rustls_platform_verifier::BuilderVerifierExt as _;

use crate::Error;

/// A rustls client configuration with `ring` and the platform verifier. No ALPN
/// protocols are set: without them a server speaks HTTP/1.1, the only version these
/// clients use.
pub fn client_config() -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_platform_verifier()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds_without_a_process_default_provider() {
        let config = super::client_config().expect("rustls config");
        assert!(config.alpn_protocols.is_empty());
    }
}
