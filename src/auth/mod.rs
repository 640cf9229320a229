//! Stage ② — sender authentication (SPF, DKIM, DMARC, ARC, iprev) and outbound DKIM
//! signing. Built in the authentication issue; until then every message passes through
//! without a verdict.
