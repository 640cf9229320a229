//! Reads an `odoo` route's alias table (`validate_aliases`): `execute_kw(db, uid,
//! password, 'mail.alias', 'search_read', [[]], {'fields': ['alias_name']})` on
//! `/xmlrpc/2/object`, at start and every `alias_refresh`, into the router's
//! [`ErpAliases`]. A failed read keeps the table there is (persisted across restarts) and
//! is retried at the next refresh: the ERP being down never makes mxgate refuse mail.

use std::collections::HashSet;

use tokio_util::sync::CancellationToken;

use super::Error;
use super::http::Client;
use super::odoo::{self, Service};
use crate::config::OdooRoute;
use crate::routing::ErpAliases;

/// Refreshes `route_name`'s table until `shutdown`.
pub async fn run(
    client: Client,
    route_name: String,
    route: OdooRoute,
    tables: ErpAliases,
    shutdown: CancellationToken,
) {
    loop {
        let read = tokio::time::timeout(route.timeout.get(), alias_names(&client, &route)).await;
        match read.unwrap_or(Err(Error::Timeout(route.timeout.get()))) {
            Ok(names) => {
                let n = names.len();
                match tables.replace(&route_name, names) {
                    Ok(()) => {
                        tracing::info!(route = %route_name, aliases = n, "ERP alias table read")
                    }
                    Err(e) => {
                        tracing::warn!(route = %route_name, error = %e, "cannot store the ERP alias table; the last one stays")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(route = %route_name, error = %e, "cannot read the ERP alias table; the last one stays")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(route.alias_refresh.get()) => {}
        }
    }
}

/// The `alias_name`s of Odoo's `mail.alias` (aliases without a name skipped).
pub async fn alias_names(client: &Client, route: &OdooRoute) -> Result<HashSet<String>, Error> {
    let uid = match route.uid {
        Some(uid) => uid,
        None => odoo::authenticate(client, route).await?,
    };
    let xml = odoo::call_xml(client, route, Service::Object, search_read_call(route, uid)).await?;
    odoo::parse_response(&xml)?;
    Ok(names_in(&xml))
}

fn search_read_call(route: &OdooRoute, uid: u32) -> String {
    let s = |v: &str| format!("<value><string>{}</string></value>", odoo::escape(v));
    format!(
        "<?xml version=\"1.0\"?>\n<methodCall><methodName>execute_kw</methodName><params>\
         <param>{}</param><param><value><int>{uid}</int></value></param><param>{}</param>\
         <param>{}</param><param>{}</param>\
         <param><value><array><data><value><array><data></data></array></value></data></array></value></param>\
         <param><value><struct><member><name>fields</name><value><array><data>{}</data></array></value></member></struct></value></param>\
         </params></methodCall>\n",
        s(&route.database),
        s(route.password.expose()),
        s("mail.alias"),
        s("search_read"),
        s("alias_name"),
    )
}

/// Every `alias_name` member's string value in a `search_read` answer.
fn names_in(xml: &str) -> HashSet<String> {
    let key = "<name>alias_name</name>";
    xml.match_indices(key)
        .filter_map(|(i, _)| match odoo::first_value(&xml[i + key.len()..])? {
            odoo::Value::Text(t) if !t.trim().is_empty() => Some(t.trim().to_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_are_read_from_a_search_read_answer() {
        let xml = "<?xml version='1.0'?><methodResponse><params><param><value><array><data>\
            <value><struct><member><name>id</name><value><int>1</int></value></member>\
            <member><name>alias_name</name><value><string>Sales</string></value></member></struct></value>\
            <value><struct><member><name>alias_name</name><value><boolean>0</boolean></value></member></struct></value>\
            <value><struct><member><name>alias_name</name><value><string>helpdesk</string></value></member></struct></value>\
            </data></array></value></param></params></methodResponse>";
        let names = names_in(xml);
        assert_eq!(names, ["sales".to_string(), "helpdesk".to_string()].into());
    }
}
