//! The DANE tests' DNS ([`SignedDns`]): an in-process hickory-server authoritative for a
//! root zone signed with a key generated here (the resolver's only trust anchor), one
//! secure domain per case plus an insecure delegation, and the certificates the sink MX
//! shows ([`server_tls`], [`test_ca`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::dnssec::crypto::Ed25519SigningKey;
use hickory_proto::dnssec::rdata::DNSKEY;
use hickory_proto::dnssec::{DnssecSigner, SigningKey};
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, MX, NS, SOA, TLSA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::dnssec::NxProofKind;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, PublicKeyData};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;

/// One host per case; each test serves them all, its sink behind every address.
pub const SECURE: &str = "secure.test";
pub const TA: &str = "ta.test";
pub const BOGUS: &str = "bogus.test";
/// DANE-secured MX host and an MTA-STS `enforce` policy that does not name it.
pub const STS_DANE: &str = "sts-dane.test";
/// Secure TLSA RRset whose only record is not usable for SMTP (PKIX-EE).
pub const ENCRYPT: &str = "encrypt.test";

/// What the TLSA record of a host says.
pub enum Assoc {
    /// DANE-EE(3) SPKI(1) SHA-256(1) of this SubjectPublicKeyInfo.
    Ee311(Vec<u8>),
    /// DANE-TA(2) Cert(0) SHA-256(1) of this CA certificate.
    Ta201(Vec<u8>),
}

impl Assoc {
    pub fn rdata(&self) -> RData {
        let (usage, selector, data) = match self {
            Assoc::Ee311(spki) => (CertUsage::DaneEe, Selector::Spki, spki),
            Assoc::Ta201(cert) => (CertUsage::DaneTa, Selector::Full, cert),
        };
        let digest = Sha256::digest(data).to_vec();
        RData::TLSA(TLSA::new(usage, selector, Matching::Sha256, digest))
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test name")
}

fn rec(owner: &str, rdata: RData) -> Record {
    Record::from_rdata(name(owner), 300, rdata)
}

fn soa() -> RData {
    RData::SOA(SOA::new(
        name("ns.test."),
        name("hostmaster.test."),
        1,
        3600,
        600,
        86400,
        300,
    ))
}

/// The signed zone and the server answering for it.
pub struct SignedDns {
    pub addr: SocketAddr,
    /// `. 300 IN DNSKEY …` of the zone's key: what `dns.dnssec_trust_anchor` names.
    pub anchor: PathBuf,
    _server: Server<ByZoneCut>,
    _dir: tempfile::TempDir,
}

/// A catalog as a recursive resolver sees the zones: DS questions go to the parent side of
/// a zone cut (the root zone), everything else to the most specific zone. hickory's
/// `Catalog` alone would ask the unsigned child for its own DS and nothing could prove the
/// delegation insecure.
struct ByZoneCut {
    all: Catalog,
    parent: Catalog,
}

#[async_trait::async_trait]
impl RequestHandler for ByZoneCut {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let ds = request
            .queries
            .queries()
            .first()
            .is_some_and(|q| q.query_type() == RecordType::DS);
        if ds {
            self.parent
                .handle_request::<R, T>(request, response_handle)
                .await
        } else {
            self.all
                .handle_request::<R, T>(request, response_handle)
                .await
        }
    }
}

impl SignedDns {
    /// Every case's records for a sink on 127.0.0.1:`port`: `secure.test` with `secure`
    /// as TLSA, `ta.test` with `ta`, `bogus.test` whose TLSA record is changed after
    /// signing, and `plain.test`, an insecure delegation (NS, no DS) to an unsigned zone.
    pub async fn start(port: u16, secure: Assoc, ta: Assoc) -> SignedDns {
        let mut root = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            Name::root(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
            Some(NxProofKind::Nsec),
        );
        let mut add = |r: Record| assert!(root.upsert_mut(r, 1), "record added");
        add(rec(".", soa()));
        add(rec(".", RData::NS(NS(name("ns.test.")))));
        add(rec("ns.test.", RData::A(A::new(127, 0, 0, 1))));
        for (domain, tlsa) in [
            (SECURE, &secure),
            (TA, &ta),
            (BOGUS, &secure),
            (STS_DANE, &secure),
        ] {
            let mx = format!("mx.{domain}.");
            add(rec(
                &format!("{domain}."),
                RData::MX(MX::new(10, name(&mx))),
            ));
            add(rec(&mx, RData::A(A::new(127, 0, 0, 1))));
            add(rec(&format!("_{port}._tcp.{mx}"), tlsa.rdata()));
        }
        // encrypt.test: a secure TLSA RRset with no usable record (PKIX-EE, RFC 7672
        // §3.1.3): STARTTLS mandatory, no certificate check (RFC 7672 §2.2).
        add(rec(
            &format!("{ENCRYPT}."),
            RData::MX(MX::new(10, name(&format!("mx.{ENCRYPT}.")))),
        ));
        add(rec(
            &format!("mx.{ENCRYPT}."),
            RData::A(A::new(127, 0, 0, 1)),
        ));
        add(rec(
            &format!("_{port}._tcp.mx.{ENCRYPT}."),
            RData::TLSA(TLSA::new(
                CertUsage::PkixEe,
                Selector::Spki,
                Matching::Sha256,
                vec![0; 32],
            )),
        ));
        // sts-dane.test also publishes MTA-STS (policy host on 127.0.0.1).
        add(rec(
            &format!("_mta-sts.{STS_DANE}."),
            RData::TXT(TXT::new(vec!["v=STSv1; id=1;".to_string()])),
        ));
        add(rec(
            &format!("mta-sts.{STS_DANE}."),
            RData::A(A::new(127, 0, 0, 1)),
        ));
        // The insecure delegation: NS and glue, no DS (the NSEC proves it).
        add(rec("plain.test.", RData::NS(NS(name("ns.plain.test.")))));
        add(rec("ns.plain.test.", RData::A(A::new(127, 0, 0, 1))));

        let key = Ed25519SigningKey::from_pkcs8(
            &Ed25519SigningKey::generate_pkcs8().expect("generate key"),
        )
        .expect("key");
        let dnskey = DNSKEY::from_key(&key.to_public_key().expect("public key"));
        let signer = DnssecSigner::new(
            dnskey.clone(),
            Box::new(key),
            Name::root(),
            Duration::from_secs(7 * 86400),
        );
        root.add_zone_signing_key_mut(signer).expect("add key");
        root.secure_zone_mut().expect("sign zone");
        forge_tlsa(&mut root, &format!("_{port}._tcp.mx.{BOGUS}."));

        let mut plain = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            name("plain.test."),
            ZoneType::Primary,
            AxfrPolicy::Deny,
            None,
        );
        for r in [
            rec("plain.test.", soa()),
            rec("plain.test.", RData::NS(NS(name("ns.plain.test.")))),
            rec("ns.plain.test.", RData::A(A::new(127, 0, 0, 1))),
            rec(
                "plain.test.",
                RData::MX(MX::new(10, name("mx.plain.test."))),
            ),
            rec("mx.plain.test.", RData::A(A::new(127, 0, 0, 1))),
        ] {
            assert!(plain.upsert_mut(r, 1), "record added");
        }

        let root: Arc<dyn ZoneHandler> = Arc::new(root);
        let mut all = Catalog::new();
        all.upsert(LowerName::from(Name::root()), vec![root.clone()]);
        let plain: Arc<dyn ZoneHandler> = Arc::new(plain);
        all.upsert(LowerName::from(name("plain.test.")), vec![plain]);
        let mut parent = Catalog::new();
        parent.upsert(LowerName::from(Name::root()), vec![root]);

        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("addr");
        let mut server = Server::new(ByZoneCut { all, parent });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 65_535);

        let dir = tempfile::tempdir().expect("tempdir");
        let anchor = dir.path().join("root.key");
        std::fs::write(&anchor, format!(". 300 IN DNSKEY {dnskey}\n")).expect("write anchor");
        SignedDns {
            addr,
            anchor,
            _server: server,
            _dir: dir,
        }
    }

    /// `[dns]` for mxgate: this server, this zone's key as the only trust anchor.
    pub fn config_toml(&self) -> String {
        self.config_toml_anchored(&self.anchor)
    }

    /// `[dns]` for mxgate: this server, the DNSKEY records in `anchor` as trust anchor.
    pub fn config_toml_anchored(&self, anchor: &std::path::Path) -> String {
        format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\ndnssec_trust_anchor = \"{}\"\n",
            self.addr,
            anchor.display()
        )
    }
}

/// Replaces the record of the signed TLSA RRset at `owner` with other data, keeping the
/// signatures made over the original: the answer no longer validates (bogus).
fn forge_tlsa(zone: &mut InMemoryZoneHandler<TokioRuntimeProvider>, owner: &str) {
    let key = RrKey::new(LowerName::from(name(owner)), RecordType::TLSA);
    let rrset = zone.records_get_mut().get_mut(&key).expect("TLSA RRset");
    let rrsigs = rrset.rrsigs().to_vec();
    assert!(!rrsigs.is_empty(), "the TLSA RRset was signed");
    let forged = RData::TLSA(TLSA::new(
        CertUsage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
        vec![0x42; 32],
    ));
    let mut set = RecordSet::new(name(owner), RecordType::TLSA, 1);
    assert!(set.insert(rec(owner, forged), 1));
    set.set_rrsigs(rrsigs);
    *rrset = Arc::new(set);
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = udp.local_addr().expect("udp addr");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// A server certificate: self-signed, or issued by `ca` (then the chain sent is leaf + CA,
/// as RFC 7672 §3.2.2 asks of DANE-TA servers). Returns the acceptor and the leaf's SPKI.
pub fn server_tls(
    names: &[&str],
    ca: Option<&CertifiedIssuer<'static, KeyPair>>,
) -> (TlsAcceptor, Vec<u8>) {
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("params");
    let key = KeyPair::generate().expect("key");
    let spki = key.subject_public_key_info();
    let chain = match ca {
        Some(ca) => vec![
            params.signed_by(&key, ca).expect("sign").der().clone(),
            ca.der().clone(),
        ],
        None => vec![params.self_signed(&key).expect("self-sign").der().clone()],
    };
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    (TlsAcceptor::from(Arc::new(cfg)), spki)
}

pub fn test_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "DANE test CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}
