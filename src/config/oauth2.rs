//! The `auth` keys of a `[[relay.smarthosts]]` entry checked together: `auth = "xoauth2"`
//! needs a token endpoint, a client and a mailbox, and sends its bearer token only over
//! TLS; the OAuth2 keys on a password host are a mistake worth saying (they would be
//! silently ignored).

use super::relay::{Security, SmarthostAuth, SmarthostConfig};

impl SmarthostConfig {
    /// (key under the smart host, message) for every problem of its `auth` settings.
    pub(super) fn auth_problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if self.auth == SmarthostAuth::Password {
            let oauth_keys = [
                ("token_url", self.token_url.is_some()),
                ("client_id", !self.client_id.is_empty()),
                ("client_secret", !self.client_secret.is_empty()),
                ("refresh_token", !self.refresh_token.is_empty()),
                ("scope", !self.scope.is_empty()),
                ("token_ca_file", self.token_ca_file.is_some()),
            ];
            for (key, _) in oauth_keys.into_iter().filter(|(_, set)| *set) {
                p.push((key, "only used with auth = \"xoauth2\"".to_string()));
            }
            return p;
        }
        match &self.token_url {
            None => p.push(("token_url", "required with auth = \"xoauth2\"".into())),
            Some(u) => match (u.error(), u.get()) {
                (Some(e), _) => p.push(("token_url", e.to_string())),
                // RFC 6749 §3.2: the endpoint MUST be TLS (it returns bearer tokens).
                (None, Some(url)) if url.0.scheme_str() != Some("https") => p.push((
                    "token_url",
                    "must be an https:// URL (RFC 6749 §3.2)".into(),
                )),
                _ => {}
            },
        }
        if let Some(e) = self.token_ca_file.as_ref().and_then(|c| c.error()) {
            p.push(("token_ca_file", e.to_string()));
        }
        if self.client_id.trim().is_empty() {
            p.push(("client_id", "required with auth = \"xoauth2\"".into()));
        }
        // A public client may refresh without a secret; the client-credentials grant
        // is for confidential clients only (RFC 6749 §4.4).
        if self.client_secret.is_empty() && self.refresh_token.is_empty() {
            p.push((
                "client_secret",
                "required with auth = \"xoauth2\" unless a refresh_token is set".into(),
            ));
        }
        if self.username.trim().is_empty() {
            p.push((
                "username",
                "required with auth = \"xoauth2\": the mailbox the token is for".into(),
            ));
        }
        if !self.password.is_empty() {
            p.push((
                "password",
                "not used with auth = \"xoauth2\" (the access token replaces it)".into(),
            ));
        }
        if self.security == Security::None {
            p.push((
                "security",
                "auth = \"xoauth2\" sends a bearer token: use \"tls\" or \"starttls\"".into(),
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn problems(host: &str) -> Vec<(String, String)> {
        let toml = format!("[[relay.smarthosts]]\nname = \"o365\"\nhost = \"smtp.test\"\n{host}");
        match Config::from_toml(&toml, Path::new("t.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| (p.path, p.message))
                .collect(),
        }
    }

    fn keys(host: &str) -> Vec<String> {
        problems(host).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn a_complete_xoauth2_host_is_valid_with_either_grant() {
        let base = "auth = \"xoauth2\"\nusername = \"erp@tenant.test\"\ntoken_url = \"https://login.test/token\"\nclient_id = \"app\"\n";
        assert_eq!(
            problems(&format!(
                "{base}client_secret = \"s\"\nscope = \"https://outlook.office365.com/.default\""
            )),
            []
        );
        assert_eq!(problems(&format!("{base}refresh_token = \"r\"")), []);
    }

    #[test]
    fn an_incomplete_xoauth2_host_is_reported_at_each_missing_key() {
        let k = keys("auth = \"xoauth2\"\nsecurity = \"none\"\npassword = \"x\"");
        let at = |key: &str| format!("relay.smarthosts[0].{key}");
        for key in [
            "token_url",
            "client_id",
            "client_secret",
            "username",
            "password",
            "security",
        ] {
            assert!(k.contains(&at(key)), "{key}: {k:?}");
        }
    }

    #[test]
    fn the_token_endpoint_must_be_an_https_url() {
        let base = "auth = \"xoauth2\"\nusername = \"u@t.test\"\nclient_id = \"a\"\nclient_secret = \"s\"\n";
        let p = problems(&format!("{base}token_url = \"http://login.test/token\""));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].1.contains("https://"), "{p:?}");
        let p = problems(&format!("{base}token_url = \"login.test\""));
        assert_eq!(p[0].0, "relay.smarthosts[0].token_url", "{p:?}");
    }

    #[test]
    fn oauth2_keys_on_a_password_host_are_reported() {
        let k = keys("username = \"u\"\npassword = \"p\"\nclient_id = \"a\"\nscope = \"x\"");
        assert_eq!(
            k,
            ["relay.smarthosts[0].client_id", "relay.smarthosts[0].scope"]
        );
        assert_eq!(
            problems("auth = \"plain\"\nusername = \"u\"\npassword = \"p\""),
            []
        );
    }
}
