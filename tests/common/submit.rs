//! Submitting like an ERP: Python's smtplib exactly as Odoo's `ir.mail_server` does it
//! (`SMTP(host, port)` or `SMTP_SSL`, `starttls()`, `login()`, `send_message()`), and a
//! mail-send client for raw messages; plus the config snippet of a submission user.

use std::net::SocketAddr;

/// An argon2id PHC hash with small parameters so tests stay fast.
pub fn hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).expect("params");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::from_b64("dGVzdHNhbHR0ZXN0c2FsdA").expect("salt");
    argon
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

/// `[[submission.users]]` entry `odoo` / `s3cret` for `domains`.
pub fn user_toml(domains: &[&str]) -> String {
    let list: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[submission.users]]\nname = \"odoo\"\npassword_hash = \"{}\"\ndomains = [{}]\n",
        hash("s3cret"),
        list.join(", ")
    )
}

/// What the Python client did: exit status and its output (the SMTP error on failure).
#[derive(Debug)]
pub struct PyResult {
    pub ok: bool,
    pub output: String,
}

/// Python smtplib as Odoo: `implicit` = SMTP_SSL (465), else SMTP + starttls() (587).
/// `headers` are `(name, value)` pairs of the message; the envelope comes from them.
pub async fn python_send(
    addr: SocketAddr,
    implicit: bool,
    password: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> PyResult {
    let mut script = String::from(
        "import smtplib, ssl, sys\nfrom email.message import EmailMessage\n\
         ctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\n\
         m = EmailMessage()\n",
    );
    for (k, v) in headers {
        script.push_str(&format!("m[{k:?}] = {v:?}\n"));
    }
    script.push_str(&format!("m.set_content({body:?})\n"));
    let connect = if implicit {
        format!(
            "s = smtplib.SMTP_SSL('127.0.0.1', {}, context=ctx, timeout=30)\n",
            addr.port()
        )
    } else {
        format!(
            "s = smtplib.SMTP('127.0.0.1', {}, timeout=30)\ns.starttls(context=ctx)\n",
            addr.port()
        )
    };
    script.push_str("try:\n");
    for line in connect.lines() {
        script.push_str(&format!("    {line}\n"));
    }
    script.push_str(&format!(
        "    s.login('odoo', {password:?})\n    s.send_message(m)\n    s.quit()\n    print('sent')\n\
         except Exception as e:\n    print(type(e).__name__, e)\n    sys.exit(1)\n"
    ));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("join");
    PyResult {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A mail-send submission session: STARTTLS, then AUTH as `odoo` / `s3cret`.
pub async fn session(
    addr: SocketAddr,
) -> Result<mail_send::SmtpClient<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, String> {
    mail_send::SmtpClientBuilder::new_with_tls_connector(
        "127.0.0.1",
        addr.port(),
        super::smtp::tls_connector(),
    )
    .implicit_tls(false)
    .helo_host("erp.example.test")
    .credentials(("odoo", "s3cret"))
    .connect()
    .await
    .map_err(|e| e.to_string())
}

/// STARTTLS + AUTH (odoo/s3cret) + one raw message with the given envelope, via mail-send.
pub async fn submit(addr: SocketAddr, from: &str, to: &[&str], raw: &str) -> Result<(), String> {
    use mail_send::smtp::message::Message;
    let mut client = session(addr).await?;
    let msg = Message::new(from, to.to_vec(), raw.as_bytes());
    client.send(msg).await.map_err(|e| e.to_string())?;
    let _ = client.quit().await;
    Ok(())
}

/// An authenticated submission with exactly these MAIL and RCPT argument lines (ESMTP
/// parameters mail-send's `Message` cannot carry), every reply asserted 250; `bdat` sends
/// the content as one BDAT LAST chunk.
pub async fn submit_with(addr: SocketAddr, mail: &str, rcpts: &[&str], body: &str, bdat: bool) {
    let mut c = session(addr).await.expect("submission session");
    let r = c.cmd(format!("MAIL FROM:{mail}\r\n")).await.expect("MAIL");
    assert_eq!(r.code, 250, "MAIL FROM:{mail} -> {r:?}");
    for rcpt in rcpts {
        let r = c.cmd(format!("RCPT TO:{rcpt}\r\n")).await.expect("RCPT");
        assert_eq!(r.code, 250, "RCPT TO:{rcpt} -> {r:?}");
    }
    let done = if bdat {
        c.bdat(body.as_bytes()).await
    } else {
        c.data(body.as_bytes()).await
    };
    assert_eq!(done.expect("message accepted").code, 250);
    let _ = c.quit().await;
}

/// A REQUIRETLS (RFC 8689) submission from sales@example.test to `to` ([`submit_with`]).
pub async fn submit_requiretls(addr: SocketAddr, to: &str) {
    let body =
        format!("From: sales@example.test\r\nTo: {to}\r\nSubject: secret\r\n\r\nTLS only\r\n");
    let rcpt = format!("<{to}>");
    submit_with(
        addr,
        "<sales@example.test> REQUIRETLS",
        &[&rcpt],
        &body,
        false,
    )
    .await;
}
