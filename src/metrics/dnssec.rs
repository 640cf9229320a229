//! `mxgate_dnssec_validating`: whether DANE can work at all. Without a root DNSKEY that
//! validates against `dns.dnssec_trust_anchor` (a wrong or stale anchor, resolvers that
//! strip RRSIGs) every MX is delivered opportunistically, as if no zone were signed; that
//! must show on a dashboard, not only in a log line (Postfix says it once at start up,
//! "DNSSEC validation may be unavailable", and is easily missed).

use metrics::Recorder;

use super::Metrics;

/// 1 when the root DNSKEY RRset chained to the trust anchor at the last probe, 0 when it
/// did not (DANE off until a later probe succeeds).
pub const DNSSEC_VALIDATING: &str = "mxgate_dnssec_validating";

impl Metrics {
    /// Describes the gauge; it gets a value at the first probe (none while DANE is off).
    pub fn declare_dnssec(&self) {
        self.recorder.describe_gauge(
            DNSSEC_VALIDATING.into(),
            None,
            "1 when the DNS resolvers' root DNSKEY validates against the DNSSEC trust anchor \
             (DANE in use), 0 when it does not (MX hosts get opportunistic TLS)"
                .into(),
        );
    }

    pub fn dnssec_validating(&self, ok: bool) {
        self.gauge(DNSSEC_VALIDATING, &[], if ok { 1.0 } else { 0.0 });
    }
}
