//! The secrets every node must share: the token key signs VERP (`bounce+TOKEN`), reply and
//! unsubscribe tokens, and a token made on node A comes back to whichever node the MX or
//! the recipient's click reaches.

use redis::AsyncCommands;

use super::{Cluster, ClusterError};

impl Cluster {
    /// The cluster's value of secret `name`: the first node to ask offers its `local` one,
    /// the others adopt it. One round trip (`SET NX` + `GET` pipelined).
    pub async fn shared_secret(&self, name: &str, local: &[u8]) -> Result<Vec<u8>, ClusterError> {
        let key = self.key(&format!("secret:{name}"));
        let mut conn = self.connection();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(local)
            .arg("NX")
            .ignore()
            .get(&key);
        let (shared,): (Vec<u8>,) = self.guard(pipe.query_async(&mut conn)).await?;
        Ok(shared)
    }

    /// Deletes secret `name` (tests of adoption).
    pub async fn forget_secret(&self, name: &str) -> Result<(), ClusterError> {
        let key = self.key(&format!("secret:{name}"));
        let mut conn = self.connection();
        self.guard(conn.del::<_, ()>(key)).await
    }
}
