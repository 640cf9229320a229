//! RCPT address → [`Destination`], exactly as SPEC "Inbound routing" orders it:
//! exact alias → `reply+TOKEN` → `bounce+TOKEN` → `alias+detail` → catchall → 550 5.1.1.
//! Domains that are not alias domains are relaying: 550 5.7.1, whatever the local part.

use std::collections::HashMap;

use crate::clock::Clock;
use crate::config::{Config, RouteConfig};
use crate::envelope::{Address, Destination};
use crate::reply::{self, Reply};
use crate::routing::token::TokenKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("domain is not an alias domain")]
    RelayDenied,
    #[error("no alias and no catchall for this address")]
    UnknownUser,
    #[error("route refuses mail: {0}")]
    Rejected(String),
    #[error("forward route has no addresses to forward to")]
    NoForwardTargets,
}

impl Error {
    pub fn reply(&self) -> Reply {
        match self {
            Error::RelayDenied => reply::RELAY_DENIED,
            Error::UnknownUser => reply::UNKNOWN_USER,
            Error::Rejected(msg) => reply::RECIPIENT_REJECTED.with_text(msg.clone()),
            Error::NoForwardTargets => reply::FORWARD_NO_TARGETS,
        }
    }
}

struct DomainRules {
    catchall: Option<String>,
    bounce_alias: String,
    reply_alias: String,
    reply_route: Option<String>,
    bounce_feedback: bool,
}

/// The alias table, built once from config.
pub struct Router {
    domains: HashMap<String, DomainRules>,
    /// `local@domain` (local part lower-cased) → route name.
    aliases: HashMap<String, String>,
    reject_messages: HashMap<String, String>,
    /// `forward` routes whose `to` list is empty: refused at RCPT.
    empty_forwards: std::collections::HashSet<String>,
    /// Reverses our SRS addresses (see [`Router::with_srs`]).
    srs: Option<Srs>,
}

struct Srs {
    key: TokenKey,
    domain: String,
    clock: Clock,
}

impl Router {
    pub fn new(config: &Config) -> Router {
        let domains = config
            .domains
            .iter()
            .map(|d| {
                let rules = DomainRules {
                    catchall: d.catchall.clone(),
                    bounce_alias: d.bounce_alias.to_lowercase(),
                    reply_alias: d.reply_alias.to_lowercase(),
                    reply_route: d.reply_route.clone(),
                    bounce_feedback: d.bounce_feedback,
                };
                (d.name.to_ascii_lowercase(), rules)
            })
            .collect();
        let aliases = config
            .aliases
            .iter()
            .filter_map(|a| {
                Some((
                    Address::parse(&a.address)?.to_ascii_lowercase(),
                    a.route.clone(),
                ))
            })
            .collect();
        let reject_messages = config
            .routes
            .iter()
            .filter_map(|(name, r)| match r {
                RouteConfig::Reject(rj) => Some((
                    name.clone(),
                    rj.message
                        .clone()
                        .unwrap_or_else(|| reply::RECIPIENT_REJECTED.text.to_string()),
                )),
                _ => None,
            })
            .collect();
        let empty_forwards = config
            .routes
            .iter()
            .filter(|(_, r)| matches!(r, RouteConfig::Forward(f) if f.to.iter().all(|t| t.trim().is_empty())))
            .map(|(name, _)| name.clone())
            .collect();
        Router {
            domains,
            aliases,
            reject_messages,
            empty_forwards,
            srs: None,
        }
    }

    /// Recognise `SRS0=...@<bounce domain>` addresses made with `key` (forwarded copies):
    /// mail to them goes back to the original sender; forged or expired ones are unknown.
    pub fn with_srs(mut self, key: TokenKey, bounce_domain: &str, clock: Clock) -> Router {
        self.srs = Some(Srs {
            key,
            domain: bounce_domain.to_ascii_lowercase(),
            clock,
        });
        self
    }

    pub fn is_alias_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(&domain.to_ascii_lowercase())
    }

    /// Resolves one RCPT address.
    pub fn resolve(&self, rcpt: &Address) -> Result<Destination, Error> {
        if let Some(srs) = &self.srs
            && rcpt.domain == srs.domain
            && rcpt
                .local
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("srs0="))
        {
            let today = srs.clock.now_ms() / 86_400_000;
            return super::srs::reverse(&srs.key, &rcpt.local, today)
                .map(|to| Destination::SrsReturn { to })
                .ok_or(Error::UnknownUser);
        }
        let rules = self.domains.get(&rcpt.domain).ok_or(Error::RelayDenied)?;
        let local = rcpt.local.to_lowercase();
        let dest = self.match_local(rcpt, &local, rules)?;
        match &dest {
            Destination::Route { route, .. } if self.empty_forwards.contains(route) => {
                Err(Error::NoForwardTargets)
            }
            Destination::Route { route, .. } => match self.reject_messages.get(route) {
                Some(msg) => Err(Error::Rejected(msg.clone())),
                None => Ok(dest),
            },
            Destination::Bounce { .. } | Destination::Relay | Destination::SrsReturn { .. } => {
                Ok(dest)
            }
        }
    }

    /// For mail mxgate sends itself (DSNs, forwarded copies): alias domains resolve as
    /// inbound mail does; every other domain is relayed.
    pub fn resolve_or_relay(&self, rcpt: &Address) -> Result<Destination, Error> {
        match self.resolve(rcpt) {
            Err(Error::RelayDenied) => Ok(Destination::Relay),
            other => other,
        }
    }

    /// Where a bounce for relayed mail goes back to its envelope sender `sender` on one of
    /// our domains (`bounce_feedback`): the ERP route that reads that domain's mail. The
    /// ERP's own bounce address (`<bounce_alias>+<id>-<model>-<res_id>`, Odoo) is not read as
    /// one of mxgate's bounce tokens, as [`Router::resolve`] would: it goes to an alias of
    /// the exact address, of `<bounce_alias>@domain`, the catchall or the `reply_route`
    /// (the ERP's thread route), the first that exists. Any other sender resolves as
    /// inbound mail does. `None`: not our domain, feedback off, or no route takes it.
    pub fn feedback(&self, sender: &Address) -> Option<Destination> {
        let rules = self.domains.get(&sender.domain)?;
        if !rules.bounce_feedback {
            return None;
        }
        let local = sender.local.to_lowercase();
        let base = local.split_once('+').map_or(local.as_str(), |(b, _)| b);
        if base != rules.bounce_alias {
            return self
                .resolve(sender)
                .ok()
                .filter(|d| matches!(d, Destination::Route { .. }));
        }
        let full = format!("{local}@{}", sender.domain);
        let bounce_alias = format!("{}@{}", rules.bounce_alias, sender.domain);
        let route = self
            .aliases
            .get(&full)
            .or_else(|| self.aliases.get(&bounce_alias))
            .or(rules.catchall.as_ref())
            .or(rules.reply_route.as_ref())?;
        let routable =
            !self.reject_messages.contains_key(route) && !self.empty_forwards.contains(route);
        routable.then(|| {
            let address = format!("{}@{}", sender.local, sender.domain);
            route_to(route, address, None, None)
        })
    }

    fn match_local(
        &self,
        rcpt: &Address,
        local: &str,
        rules: &DomainRules,
    ) -> Result<Destination, Error> {
        let full = format!("{local}@{}", rcpt.domain);
        if let Some(route) = self.aliases.get(&full) {
            return Ok(route_to(route, full, None, None));
        }
        // Tokens keep their original case: ERPs and our HMAC tokens may be case-sensitive.
        let (base, tag) = match rcpt.local.split_once('+') {
            Some((b, t)) => (b.to_lowercase(), Some(t.to_string())),
            None => (local.to_string(), None),
        };
        if let (Some(token), Some(route)) = (&tag, &rules.reply_route)
            && base == rules.reply_alias
        {
            let alias = format!("{base}@{}", rcpt.domain);
            return Ok(route_to(route, alias, Some(token.clone()), None));
        }
        if base == rules.bounce_alias {
            return Ok(Destination::Bounce {
                token: tag.unwrap_or_default(),
            });
        }
        if let Some(detail) = tag {
            let alias = format!("{base}@{}", rcpt.domain);
            if let Some(route) = self.aliases.get(&alias) {
                return Ok(route_to(route, alias, None, Some(detail)));
            }
        }
        match &rules.catchall {
            Some(route) => Ok(route_to(route, full, None, None)),
            None => Err(Error::UnknownUser),
        }
    }
}

fn route_to(
    route: &str,
    alias: String,
    thread: Option<String>,
    detail: Option<String>,
) -> Destination {
    Destination::Route {
        route: route.to_string(),
        alias,
        thread,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn router(catchall: bool) -> Router {
        let toml = format!(
            r#"
[[domains]]
name = "example.test"
{}
reply_route = "threads"
[[aliases]]
address = "Sales@example.test"
route = "crm"
[[aliases]]
address = "old@example.test"
route = "closed"
[routes.crm]
kind = "http"
url = "http://127.0.0.1:1/"
[routes.threads]
kind = "http"
url = "http://127.0.0.1:1/"
[routes.inbox]
kind = "discard"
[routes.closed]
kind = "reject"
message = "Gone"
"#,
            if catchall { "catchall = \"inbox\"" } else { "" }
        );
        Router::new(&Config::from_toml(&toml, Path::new("t")).unwrap_or_else(|e| panic!("{e}")))
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).expect("valid test address")
    }

    fn route_of(d: Destination) -> (String, Option<String>, Option<String>) {
        match d {
            Destination::Route {
                route,
                thread,
                detail,
                ..
            } => (route, thread, detail),
            other => panic!("expected a route, got {other:?}"),
        }
    }

    #[test]
    fn feedback_takes_the_erps_bounce_address_to_a_route_and_others_as_inbound_mail() {
        let r = router(true);
        let odoo = addr("bounce+42-crm.lead-7@example.test");
        assert_eq!(route_of(r.feedback(&odoo).expect("routed")).0, "inbox");
        assert_eq!(
            r.resolve(&odoo).ok(),
            Some(Destination::Bounce {
                token: "42-crm.lead-7".into()
            })
        );
        assert_eq!(
            route_of(r.feedback(&addr("bounce@example.test")).expect("ok")).0,
            "inbox"
        );
        let r = router(false);
        assert_eq!(route_of(r.feedback(&odoo).expect("routed")).0, "threads");
        assert_eq!(
            route_of(r.feedback(&addr("sales@example.test")).expect("ok")).0,
            "crm"
        );
        assert_eq!(r.feedback(&addr("nobody@example.test")), None);
        assert_eq!(
            r.feedback(&addr("old@example.test")),
            None,
            "a reject route"
        );
        assert_eq!(r.feedback(&addr("bounce+1@elsewhere.test")), None);
    }

    #[test]
    fn exact_alias_matches_case_insensitively() {
        let r = router(false);
        assert_eq!(
            route_of(r.resolve(&addr("SALES@Example.Test")).expect("ok")).0,
            "crm"
        );
    }

    #[test]
    fn reply_token_goes_to_thread_route_with_token_kept() {
        let (route, thread, _) = route_of(
            router(false)
                .resolve(&addr("reply+AbC123@example.test"))
                .expect("ok"),
        );
        assert_eq!(
            (route.as_str(), thread.as_deref()),
            ("threads", Some("AbC123"))
        );
    }

    #[test]
    fn bounce_token_goes_to_bounce_processing() {
        let d = router(false)
            .resolve(&addr("bounce+TOK@example.test"))
            .expect("ok");
        assert_eq!(
            d,
            Destination::Bounce {
                token: "TOK".into()
            }
        );
    }

    #[test]
    fn alias_detail_goes_to_alias_with_detail() {
        let (route, _, detail) = route_of(
            router(false)
                .resolve(&addr("sales+q3@example.test"))
                .expect("ok"),
        );
        assert_eq!((route.as_str(), detail.as_deref()), ("crm", Some("q3")));
    }

    #[test]
    fn unknown_local_part_uses_catchall_or_is_unknown_user() {
        assert_eq!(
            route_of(router(true).resolve(&addr("who@example.test")).expect("ok")).0,
            "inbox"
        );
        assert_eq!(
            router(false).resolve(&addr("who@example.test")),
            Err(Error::UnknownUser)
        );
    }

    #[test]
    fn other_domains_are_relay_denied() {
        let r = router(true);
        for a in [
            "sales@other.test",
            "sales@example.test.evil.test",
            "sales@sub.example.test",
        ] {
            assert_eq!(r.resolve(&addr(a)), Err(Error::RelayDenied), "{a}");
        }
    }

    #[test]
    fn reject_route_refuses_with_its_message() {
        assert_eq!(
            router(true).resolve(&addr("old@example.test")),
            Err(Error::Rejected("Gone".into()))
        );
    }
}
