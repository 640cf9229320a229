//! Accept loop for one listener. (Being written: see the session helper.)

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use super::SessionContext;
use crate::envelope::ListenerKind;

/// Accepts connections until `ctx.shutdown` is cancelled; every session is spawned on
/// `tracker` so the server can wait for them to drain.
pub async fn serve(kind: ListenerKind, tcp: TcpListener, ctx: Arc<SessionContext>, tracker: TaskTracker) {
    let _ = (kind, tcp, ctx, tracker);
}
