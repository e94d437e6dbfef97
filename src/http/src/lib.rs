//! The one HTTP stack of every peaqos client: the chain's JSON-RPC and MCR clients, the
//! stream's S3 and Walrus destinations and the Machine Markets client all use `reqwest` on
//! rustls with the ring provider (no aws-lc C build, no OpenSSL), built here.
//!
//! Async callers take [`client`]; synchronous ones (the stream's upload thread, the
//! `peaqos-stream` tool) take [`blocking_client`], which must be made, used and dropped outside
//! an async runtime, as reqwest requires.
use std::time::Duration;

pub use reqwest;
pub use rustls;

/// Install ring as rustls' process-wide crypto provider (idempotent; a provider already
/// installed is kept).
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An async client with an overall request `timeout`.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    install_tls();
    reqwest::Client::builder().timeout(timeout).build()
}

/// A blocking client with an overall request `timeout`.
pub fn blocking_client(timeout: Duration) -> reqwest::Result<reqwest::blocking::Client> {
    install_tls();
    reqwest::blocking::Client::builder().timeout(timeout).build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_with_the_ring_provider() {
        super::client(std::time::Duration::from_secs(1)).unwrap();
        std::thread::spawn(|| super::blocking_client(std::time::Duration::from_secs(1)).unwrap()).join().unwrap();
    }
}
