//! A raw SMTP client for edge cases: sends exactly the bytes a test gives it, reads
//! (multi-line) replies, and can upgrade to TLS (accepting the server's self-signed cert).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A reply: code and the text of each line (after the code and separator).
#[derive(Clone, Debug)]
pub struct SmtpReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl SmtpReply {
    #[track_caller]
    pub fn expect_code(&self, code: u16) -> &Self {
        assert_eq!(self.code, code, "unexpected reply: {self}");
        self
    }

    /// Asserts code and that the first line starts with `prefix` (e.g. "5.7.1 Relaying denied").
    #[track_caller]
    pub fn expect(&self, code: u16, prefix: &str) -> &Self {
        self.expect_code(code);
        assert!(
            self.lines[0].starts_with(prefix),
            "expected {code} {prefix}, got {self}"
        );
        self
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    pub fn has_line(&self, s: &str) -> bool {
        self.lines.iter().any(|l| {
            l.eq_ignore_ascii_case(s) || l.to_ascii_uppercase().starts_with(&s.to_ascii_uppercase())
        })
    }
}

impl std::fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" | "))
    }
}

pub struct SmtpClient {
    io: Pin<Box<dyn Io>>,
    buf: Vec<u8>,
    /// DER of the certificate the server presented, once TLS is up.
    peer_cert: Option<Vec<u8>>,
}

impl SmtpClient {
    pub async fn connect(addr: SocketAddr) -> SmtpClient {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        SmtpClient {
            io: Box::pin(tcp),
            buf: Vec::new(),
            peer_cert: None,
        }
    }

    /// Implicit TLS (port 465 style).
    pub async fn connect_tls(addr: SocketAddr) -> SmtpClient {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let tls = tls_connector()
            .connect(server_name(), tcp)
            .await
            .expect("TLS handshake");
        SmtpClient {
            peer_cert: leaf(&tls),
            io: Box::pin(tls),
            buf: Vec::new(),
        }
    }

    /// After a 220 to STARTTLS: handshake on the same connection. Bytes already buffered
    /// from the server are a protocol violation and make the test fail.
    pub async fn upgrade_tls(self) -> SmtpClient {
        assert!(
            self.buf.is_empty(),
            "server sent data after 220 Ready to start TLS"
        );
        let tls = tls_connector()
            .connect(server_name(), self.io)
            .await
            .expect("TLS handshake");
        SmtpClient {
            peer_cert: leaf(&tls),
            io: Box::pin(tls),
            buf: Vec::new(),
        }
    }

    /// DER of the certificate the server presented in the TLS handshake.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_cert.as_deref()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    /// Sends `line` + CRLF and reads one reply.
    pub async fn cmd(&mut self, line: &str) -> SmtpReply {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    /// As `cmd`, but `None` when the connection broke (for load and crash tests).
    pub async fn try_cmd(&mut self, line: &str) -> Option<SmtpReply> {
        self.io
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .ok()?;
        self.try_read_reply().await
    }

    /// As `send_data`, but `None` when the connection broke.
    pub async fn try_send_data(&mut self, body: &str) -> Option<SmtpReply> {
        self.io.write_all(stuff(body).as_bytes()).await.ok()?;
        self.try_read_reply().await
    }

    /// Sends a message body (CRLF line ends expected), dot-stuffed, then CRLF.CRLF.
    pub async fn send_data(&mut self, body: &str) -> SmtpReply {
        self.send_raw(stuff(body).as_bytes()).await;
        self.read_reply().await
    }
}

/// Dot-stuffs `body` and appends the terminating CRLF.CRLF.
pub fn stuff(body: &str) -> String {
    {
        let mut out = String::new();
        for line in body.split_inclusive("\r\n") {
            if line.starts_with('.') {
                out.push('.');
            }
            out.push_str(line);
        }
        if !out.ends_with("\r\n") {
            out.push_str("\r\n");
        }
        out.push_str(".\r\n");
        out
    }
}

impl SmtpClient {
    /// Reads one (possibly multi-line) reply; panics after 10 s or on EOF.
    pub async fn read_reply(&mut self) -> SmtpReply {
        self.try_read_reply()
            .await
            .expect("connection closed before a reply")
    }

    /// As read_reply, but `None` when the server closed the connection.
    pub async fn try_read_reply(&mut self) -> Option<SmtpReply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("bad reply line {line:?}"));
            let sep = line.as_bytes().get(3).copied().unwrap_or(b' ');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if sep != b'-' {
                return Some(SmtpReply { code, lines });
            }
        }
    }

    async fn read_line(&mut self) -> Option<String> {
        let deadline = Duration::from_secs(10);
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Some(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(deadline, self.io.read(&mut chunk))
                .await
                .expect("no reply within 10s")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// True when the server has closed the connection (EOF or reset) within 5 s.
    pub async fn is_closed(&mut self) -> bool {
        let mut chunk = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn leaf<S>(tls: &tokio_rustls::client::TlsStream<S>) -> Option<Vec<u8>> {
    let certs = tls.get_ref().1.peer_certificates()?;
    certs.first().map(|c| c.as_ref().to_vec())
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("mx.example.test").expect("valid name")
}

pub fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Tests talk to a server with a freshly generated self-signed certificate.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
