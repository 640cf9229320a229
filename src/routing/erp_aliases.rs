//! The alias tables read from the ERP (`odoo` routes with `validate_aliases`): per route,
//! the `alias_name`s of Odoo's `mail.alias`. Mail that would fall to such a route as a
//! domain's catchall is accepted only for those names ([`Router`](super::Router)), so a
//! catchall no longer swallows (and later bounces) mail for addresses that do not exist.
//!
//! Each table is written to `<data_dir>/erp-aliases/<route>.json` before it is used, and
//! read back at start: an ERP that is down keeps the last table it gave. A route that never
//! gave one has no table, and mail to it is accepted as before — mxgate never refuses mail
//! because the ERP is down.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

/// The tables, shared by every config's router and the refresh tasks.
#[derive(Clone, Default)]
pub struct ErpAliases {
    dir: PathBuf,
    tables: Arc<RwLock<HashMap<String, Arc<HashSet<String>>>>>,
}

impl ErpAliases {
    /// The tables persisted under `data_dir` (unreadable files are skipped, with a warning).
    pub fn open(data_dir: &Path) -> ErpAliases {
        let dir = data_dir.join("erp-aliases");
        let mut tables = HashMap::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Some(route) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            match std::fs::read(&path).map(|b| serde_json::from_slice::<HashSet<String>>(&b)) {
                Ok(Ok(names)) => {
                    tables.insert(route.to_string(), Arc::new(names));
                }
                _ => tracing::warn!(path = %path.display(), "unreadable ERP alias table; ignored"),
            }
        }
        ErpAliases {
            dir,
            tables: Arc::new(RwLock::new(tables)),
        }
    }

    /// Route `route`'s table; `None` until the ERP gave one.
    pub fn get(&self, route: &str) -> Option<Arc<HashSet<String>>> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        tables.get(route).cloned()
    }

    /// Persists `names` (lower case) as `route`'s table, then uses it.
    pub fn replace(&self, route: &str, names: HashSet<String>) -> std::io::Result<()> {
        let names: HashSet<String> = names.into_iter().map(|n| n.to_lowercase()).collect();
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{route}.json.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(&names).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, self.dir.join(format!("{route}.json")))?;
        let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
        tables.insert(route.to_string(), Arc::new(names));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_survives_a_restart_and_none_means_unknown() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = ErpAliases::open(dir.path());
        assert!(a.get("odoo").is_none());
        a.replace("odoo", ["Sales".to_string()].into())
            .expect("persist");
        let b = ErpAliases::open(dir.path());
        assert!(b.get("odoo").expect("persisted").contains("sales"));
    }
}
