//! RCPT address → [`Destination`], exactly as SPEC "Inbound routing" orders it:
//! exact alias → `reply+TOKEN` → `bounce+TOKEN` → `alias+detail` → catchall → 550 5.1.1.
//! Domains that are not alias domains are relaying: 550 5.7.1, whatever the local part.

use std::collections::{HashMap, HashSet};

use crate::clock::Clock;
use crate::config::{Config, RouteConfig};
use crate::envelope::{Address, Destination};
use crate::reply::{self, Reply};
use crate::routing::erp_aliases::ErpAliases;
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
    /// Routes whose ERP alias table limits what their catchall takes (`validate_aliases`).
    validated: HashSet<String>,
    erp_aliases: ErpAliases,
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
        let validated = config
            .routes
            .iter()
            .filter(|(_, r)| matches!(r, RouteConfig::Odoo(o) if o.validate_aliases))
            .map(|(name, _)| name.clone())
            .collect();
        Router {
            domains,
            aliases,
            reject_messages,
            empty_forwards,
            srs: None,
            validated,
            erp_aliases: ErpAliases::default(),
        }
    }

    /// Checks catchall mail to `validate_aliases` routes against these tables.
    pub fn with_erp_aliases(mut self, erp_aliases: ErpAliases) -> Router {
        self.erp_aliases = erp_aliases;
        self
    }

    /// Whether a catchall `route` takes local part `base`: yes unless the route validates
    /// aliases and the ERP's table (once there is one) lacks it.
    fn catchall_takes(&self, route: &str, base: &str) -> bool {
        if !self.validated.contains(route) {
            return true;
        }
        self.erp_aliases
            .get(route)
            .is_none_or(|names| names.contains(base))
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
            Some(route) if self.catchall_takes(route, &base) => {
                Ok(route_to(route, full, None, None))
            }
            _ => Err(Error::UnknownUser),
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
#[path = "resolve_tests.rs"]
mod tests;
