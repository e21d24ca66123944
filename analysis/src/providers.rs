//! Provider implementations, one file each.

pub mod cloudwatch;
pub mod datadog;
pub mod dynatrace;
pub mod externalmetrics;
pub mod graphite;
pub mod http;
pub mod influxdb;
pub mod keptn;
pub mod newrelic;
pub mod prometheus;
pub mod router_stats;
pub mod splunk;
pub mod stackdriver;

/// An HTTP client builder for providers: rustls with the ring provider (the one kube uses),
/// installed as the process default first if nothing else installed one.
pub fn http() -> reqwest::ClientBuilder {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may win the race; then its provider (also ring) is the default and
        // this one is dropped, which is what we want.
        if rustls::crypto::ring::default_provider()
            .install_default()
            .is_err()
        {
            tracing::debug!("a TLS crypto provider was installed meanwhile");
        }
    }
    reqwest::Client::builder()
}
