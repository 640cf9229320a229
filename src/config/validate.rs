//! Phase two of loading: semantic checks over the whole config, every problem reported.

use std::collections::{BTreeSet, HashSet};

use toml::de::{DeTable, DeValue};

use super::{Config, Problem, RouteConfig};
use crate::envelope::Address;

/// What is wrong with the `dns.dnssec_trust_anchor` file, if anything (empty = built in).
fn trust_anchor_problem(path: &std::path::Path) -> Option<String> {
    use mail_auth::hickory_resolver::proto::dnssec::TrustAnchors;
    if path.as_os_str().is_empty() {
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
    };
    match text.parse::<TrustAnchors>() {
        Err(e) => Some(format!("{}: not DNSKEY records: {e}", path.display())),
        Ok(a) if a.is_empty() => Some(format!("{}: holds no DNSKEY record", path.display())),
        Ok(_) => None,
    }
}

impl Config {
    /// Every semantic problem, in section order. Empty = the config is usable.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Problems(Vec::new());
        self.validate_server(&mut p);
        self.validate_routing(&mut p);
        self.validate_routes(&mut p);
        self.validate_relay(&mut p);
        let r = &self.relay;
        for (key, message) in super::outbound_tls::problems(&r.mta_sts, &r.tls_policy, &r.tls_rpt) {
            p.add(key, message);
        }
        self.validate_streams(&mut p);
        if let Some(e) = self.events.url.error() {
            p.add("events.url", e);
        }
        for (key, message) in self.spam.dnsbl_problems() {
            p.add(key, message);
        }
        if let Some(e) = self.events.ca_file.as_ref().and_then(|c| c.error()) {
            p.add("events.ca_file", e);
        }
        for (key, message) in self
            .suspension
            .problems()
            .into_iter()
            .chain(self.streams.problems())
            .chain(self.store.problems())
            .chain(self.spam.problems())
            .chain(self.cluster.problems())
        {
            p.add(key, message);
        }
        p.0
    }

    fn validate_server(&self, p: &mut Problems) {
        if Address::parse(&format!("postmaster@{}", self.server.hostname)).is_none() {
            p.add("server.hostname", "must be a fully qualified host name");
        }
        if self.server.worker_threads > super::server::MAX_WORKER_THREADS {
            p.add(
                "server.worker_threads",
                format!(
                    "must be at most {} (0 = one per core but one)",
                    super::server::MAX_WORKER_THREADS
                ),
            );
        }
        let mut binds = HashSet::new();
        let listeners = [
            ("listeners.inbound.bind", &self.listeners.inbound),
            ("listeners.submission.bind", &self.listeners.submission),
            ("listeners.submissions.bind", &self.listeners.submissions),
        ];
        for (path, l) in listeners {
            if let Some(l) = l
                && l.bind.port() != 0
                && !binds.insert(l.bind)
            {
                p.add(
                    path,
                    format!("{} is already used by another listener", l.bind),
                );
            }
        }
        if self.admin.bind.port() != 0 && binds.contains(&self.admin.bind) {
            p.add(
                "admin.bind",
                format!("{} is already used by a listener", self.admin.bind),
            );
        }
        let s = &self.smtp;
        if s.max_line_bytes < 512 {
            p.add(
                "smtp.max_line_bytes",
                "must be at least 512 (RFC 5321 §4.5.3.1.4)",
            );
        }
        if s.max_recipients == 0 {
            p.add("smtp.max_recipients", "must be at least 1");
        }
        if s.max_message_bytes.0 < 1024 {
            p.add("smtp.max_message_bytes", "must be at least 1KiB");
        }
        if s.max_connections == 0 || s.max_connections_per_ip == 0 {
            p.add(
                "smtp.max_connections",
                "connection limits must be at least 1",
            );
        }
    }

    fn validate_routing(&self, p: &mut Problems) {
        let mut names = HashSet::new();
        for (i, d) in self.domains.iter().enumerate() {
            let at = |k: &str| format!("domains[{i}].{k}");
            if Address::parse(&format!("x@{}", d.name)).is_none() || d.name.starts_with('[') {
                p.add(at("name"), format!("{:?} is not a domain name", d.name));
            }
            if !names.insert(d.name.to_ascii_lowercase()) {
                p.add(at("name"), format!("domain {:?} is listed twice", d.name));
            }
            for (key, route) in [("catchall", &d.catchall), ("reply_route", &d.reply_route)] {
                if let Some(r) = route {
                    self.check_route_name(p, &at(key), r);
                }
            }
        }
        let mut seen = HashSet::new();
        for (i, a) in self.aliases.iter().enumerate() {
            let at = |k: &str| format!("aliases[{i}].{k}");
            match Address::parse(&a.address) {
                None => p.add(at("address"), format!("{:?} is not an address", a.address)),
                Some(addr) if !names.contains(&addr.domain) => p.add(
                    at("address"),
                    format!("domain {:?} is not one of [[domains]]", addr.domain),
                ),
                Some(addr) => {
                    if !seen.insert(addr.to_ascii_lowercase()) {
                        p.add(
                            at("address"),
                            format!("alias {:?} is listed twice", a.address),
                        );
                    }
                }
            }
            self.check_route_name(p, &at("route"), &a.route);
        }
    }

    fn check_route_name(&self, p: &mut Problems, path: &str, name: &str) {
        if !self.routes.contains_key(name) {
            let known: BTreeSet<&str> = self.routes.keys().map(String::as_str).collect();
            p.add(path, format!("no route named {name:?} (known: {known:?})"));
        }
    }

    fn validate_routes(&self, p: &mut Problems) {
        for (name, r) in &self.routes {
            let at = |k: &str| format!("routes.{name}.{k}");
            match r {
                RouteConfig::Http(h) => {
                    if let Some(e) = h.url.error() {
                        p.add(at("url"), e);
                    }
                    if let Some(e) = h.ca_file.as_ref().and_then(|c| c.error()) {
                        p.add(at("ca_file"), e);
                    }
                }
                RouteConfig::Odoo(o) => {
                    if let Some(e) = o.url.error() {
                        p.add(at("url"), e);
                    }
                    if let Some(e) = o.ca_file.as_ref().and_then(|c| c.error()) {
                        p.add(at("ca_file"), e);
                    }
                    if o.uid.is_none() && o.user.trim().is_empty() {
                        p.add(at("uid"), "an odoo route needs `uid` or `user` (login)");
                    }
                    if o.validate_aliases && o.alias_refresh.get().as_secs() == 0 {
                        p.add(at("alias_refresh"), "must be at least 1s");
                    }
                    if o.database.trim().is_empty() {
                        p.add(at("database"), "an odoo route needs the database name");
                    }
                }
                RouteConfig::Maildir(m) if m.path.as_os_str().is_empty() => {
                    p.add(at("path"), "must not be empty")
                }
                RouteConfig::Forward(f) => {
                    for (i, to) in f.to.iter().enumerate() {
                        if Address::parse(to).is_none() {
                            p.add(
                                format!("routes.{name}.to[{i}]"),
                                format!("{to:?} is not an address"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// `streams.mass_smarthosts` names `[[relay.smarthosts]]` and leaves transactional mail
    /// a way out.
    fn validate_streams(&self, p: &mut Problems) {
        let hosts = &self.relay.smarthosts;
        let mass = &self.streams.mass_smarthosts;
        let mut seen = HashSet::new();
        for (i, name) in mass.iter().enumerate() {
            let key = format!("streams.mass_smarthosts[{i}]");
            if !hosts.iter().any(|h| &h.name == name) {
                let known: BTreeSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
                p.add(
                    key,
                    format!(
                        "no smart host named {name:?} in [[relay.smarthosts]] (known: {known:?})"
                    ),
                );
            } else if !seen.insert(name.as_str()) {
                p.add(key, format!("{name:?} is listed twice"));
            }
        }
        let all_mass = hosts.iter().all(|h| mass.contains(&h.name));
        if !mass.is_empty() && !hosts.is_empty() && all_mass && !self.relay.direct_mx {
            p.add(
                "streams.mass_smarthosts",
                "names every smart host and relay.direct_mx is off: transactional mail would have no route",
            );
        }
    }

    fn validate_relay(&self, p: &mut Problems) {
        for (i, u) in self.submission.users.iter().enumerate() {
            if argon2::PasswordHash::new(&u.password_hash).is_err() {
                p.add(
                    format!("submission.users[{i}].password_hash"),
                    "not a PHC hash string; make one with `mxgate hash-password`",
                );
            }
            if u.max_messages_per_hour == Some(0) {
                p.add(
                    format!("submission.users[{i}].max_messages_per_hour"),
                    "must be at least 1 (leave it out for no cap)",
                );
            }
        }
        let mut names = HashSet::new();
        for (i, h) in self.relay.smarthosts.iter().enumerate() {
            if !names.insert(h.name.as_str()) {
                p.add(
                    format!("relay.smarthosts[{i}].name"),
                    format!("{:?} is listed twice", h.name),
                );
            }
        }
        for (i, h) in self.relay.smarthosts.iter().enumerate() {
            if let Some(e) = h.host.error() {
                p.add(format!("relay.smarthosts[{i}].host"), e);
            }
            if let Some(e) = h.ca_file.as_ref().and_then(|c| c.error()) {
                p.add(format!("relay.smarthosts[{i}].ca_file"), e);
            }
            if h.ca_file.is_some() && !h.tls_verify {
                p.add(
                    format!("relay.smarthosts[{i}].ca_file"),
                    "has no effect with tls_verify = false (any certificate is accepted)",
                );
            }
            for (key, message) in h.auth_problems() {
                p.add(format!("relay.smarthosts[{i}].{key}"), message);
            }
        }
        if self.relay.destination_concurrency == 0 {
            p.add("relay.destination_concurrency", "must be at least 1");
        }
        if let Some(e) = trust_anchor_problem(&self.dns.dnssec_trust_anchor) {
            p.add("dns.dnssec_trust_anchor", e);
        }
        for (i, w) in self.warming.schedule.iter().enumerate() {
            if let Some(e) = w.days.error() {
                p.add(format!("warming.schedule[{i}].days"), e);
            }
        }
        for (domain, date) in &self.warming.start {
            if let Some(e) = date.error() {
                p.add(format!("warming.start.{domain}"), e);
            }
        }
        for (name, rate) in &self.warming.providers {
            let known = crate::providers::Provider::ALL
                .iter()
                .any(|pr| pr.as_label() == name.to_ascii_lowercase());
            // A name of its own needs a way to recognise its recipients; without one it is
            // most likely a misspelt built-in name (`hotmial`).
            if !known && rate.domains.is_empty() && rate.mx.is_empty() {
                p.add(
                    format!("warming.providers.{name}"),
                    "unknown provider (gmail, google_workspace, microsoft, yahoo, aol, icloud, ...); a provider of your own needs `domains` or `mx`",
                );
            }
            for (key, list) in [("domains", &rate.domains), ("mx", &rate.mx)] {
                for (i, pat) in list.iter().enumerate() {
                    if let Some(e) = pat.error() {
                        p.add(format!("warming.providers.{name}.{key}[{i}]"), e);
                    }
                }
            }
            if rate.connections == Some(0) {
                p.add(
                    format!("warming.providers.{name}.connections"),
                    "must be at least 1",
                );
            }
            if rate.new_hourly == 0 || rate.warmed_hourly == 0 {
                p.add(
                    format!("warming.providers.{name}"),
                    "hourly caps must be at least 1",
                );
            }
            for (key, cap) in [
                ("new_daily", rate.new_daily),
                ("warmed_daily", rate.warmed_daily),
            ] {
                if cap == Some(0) {
                    p.add(
                        format!("warming.providers.{name}.{key}"),
                        "must be at least 1 (remove the key for the built-in figure)",
                    );
                }
            }
        }
        let q = &self.queue;
        if q.retry_initial > q.retry_max {
            p.add("queue.retry_initial", "must not exceed queue.retry_max");
        }
        if q.concurrency == 0 {
            p.add("queue.concurrency", "must be at least 1");
        }
    }
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            line: None,
            message: message.into(),
        });
    }
}

/// Line (1-based) of the key at `path` (`aliases[2].route`) in the TOML text, if present.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut span = root.span();
    let mut table: Option<&DeTable> = Some(root.get_ref());
    let mut value: Option<&DeValue> = None;
    for seg in path.split('.') {
        let (key, idx) = match seg.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let t = table.or_else(|| value.and_then(|v| v.as_table()))?;
        let (k, v) = t.get_key_value(key)?;
        span = k.span();
        let mut cur = v;
        if let Some(i) = idx {
            cur = cur.get_ref().as_array()?.get(i)?;
            span = cur.span();
        }
        table = None;
        value = Some(cur.get_ref());
    }
    Some(text[..span.start.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let toml = r#"
[[domains]]
name = "example.test"

[[aliases]]
address = "sales@other.test"
route = "crm"

[[aliases]]
address = "info@example.test"
route = "nowhere"

[routes.crm]
kind = "http"
url = "ftp://x"
"#;
        let e = Config::from_toml(toml, Path::new("t.toml")).expect_err("invalid");
        let lines: Vec<_> = e
            .problems
            .iter()
            .map(|p| (p.path.as_str(), p.line))
            .collect();
        assert!(lines.contains(&("aliases[0].address", Some(6))), "{e}");
        assert!(lines.contains(&("aliases[1].route", Some(11))), "{e}");
        assert!(lines.contains(&("routes.crm.url", Some(15))), "{e}");
    }

    #[test]
    fn a_dnssec_trust_anchor_must_hold_dnskey_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let problem = |content: Option<&str>| {
            let path = dir.path().join("anchor.key");
            let _ = std::fs::remove_file(&path);
            if let Some(c) = content {
                std::fs::write(&path, c).expect("write");
            }
            let toml = format!(
                "[dns]\ndnssec_trust_anchor = {:?}\n",
                path.display().to_string()
            );
            match Config::from_toml(&toml, Path::new("t.toml")) {
                Ok(_) => None,
                Err(e) => e
                    .problems
                    .iter()
                    .find(|p| p.path == "dns.dnssec_trust_anchor")
                    .map(|p| p.message.clone()),
            }
        };
        assert!(problem(None).is_some_and(|m| m.contains("cannot read")));
        assert!(problem(Some("not a record\n")).is_some_and(|m| m.contains("not DNSKEY")));
        assert!(problem(Some("")).is_some_and(|m| m.contains("no DNSKEY")));
        use mail_auth::hickory_resolver::proto::dnssec::SigningKey;
        use mail_auth::hickory_resolver::proto::dnssec::crypto::Ed25519SigningKey;
        use mail_auth::hickory_resolver::proto::dnssec::rdata::DNSKEY;
        let key = Ed25519SigningKey::generate_pkcs8().expect("generate");
        let key = Ed25519SigningKey::from_pkcs8(&key).expect("key");
        let dnskey = DNSKEY::from_key(&key.to_public_key().expect("public"));
        let root = format!(". 3600 IN DNSKEY {dnskey}\n");
        assert_eq!(problem(Some(&root)), None);
    }
}
