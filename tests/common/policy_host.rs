//! An HTTPS server standing in for `mta-sts.<domain>` of one or more domains (RFC 8461
//! §3.3): answers `GET /.well-known/mta-sts.txt` with the policy the test set for the
//! request's `Host`, over TLS with a certificate a [`TestCa`](super::test_ca::TestCa)
//! signed, and counts the requests (a cached policy must not be fetched again).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub struct PolicyHost {
    pub addr: SocketAddr,
    /// Policy text by host name (`mta-sts.example.test`).
    policies: Arc<Mutex<HashMap<String, String>>>,
    requests: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for PolicyHost {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl PolicyHost {
    /// Listening on an ephemeral loopback port with `tls`'s certificate, serving no policy
    /// yet (404).
    pub async fn start(tls: TlsAcceptor) -> PolicyHost {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = PolicyHost {
            addr: listener.local_addr().expect("addr"),
            policies: Arc::default(),
            requests: Arc::default(),
            stop: CancellationToken::new(),
        };
        let (policy, requests, stop) = (
            host.policies.clone(),
            host.requests.clone(),
            host.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let (tls, policy, requests) = (tls.clone(), policy.clone(), requests.clone());
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(tcp).await else {
                        return;
                    };
                    let mut io = BufReader::new(stream);
                    let mut request_line = String::new();
                    if io.read_line(&mut request_line).await.is_err() {
                        return;
                    }
                    // The rest of the head, up to the empty line; the Host without port.
                    let (mut line, mut host) = (String::new(), String::new());
                    loop {
                        line.clear();
                        match io.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" || line == "\n" => break,
                            Ok(_) => {
                                if let Some((k, v)) = line.split_once(':')
                                    && k.eq_ignore_ascii_case("host")
                                {
                                    let v = v.trim();
                                    host = v.split(':').next().unwrap_or(v).to_ascii_lowercase();
                                }
                            }
                        }
                    }
                    requests.fetch_add(1, Ordering::SeqCst);
                    let served = policy.lock().expect("policies").get(&host).cloned();
                    let response = if let (true, Some(body)) = (
                        request_line.starts_with("GET /.well-known/mta-sts.txt "),
                        served,
                    ) {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    };
                    let _ = io.get_mut().write_all(response.as_bytes()).await;
                    let _ = io.get_mut().shutdown().await;
                });
            }
        });
        host
    }

    /// The policy served for `mta-sts.<domain>` from now on.
    pub fn set_policy(&self, domain: &str, policy: &str) {
        self.policies
            .lock()
            .expect("policies")
            .insert(format!("mta-sts.{domain}"), policy.to_string());
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
