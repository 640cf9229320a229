//! Exim notices: `A message that you sent could not be delivered ... The following
//! address(es) failed:`, two-space indented addresses, the reason indented under them,
//! `SMTP error from remote mail server after RCPT TO:<a@b>:`.

/// Drops Exim's boilerplate lines from a recipient block.
pub(super) fn strip(block: &str) -> String {
    const BOILERPLATE: &[&str] = &[
        "the following text was generated during the delivery attempt",
        "this is a permanent error",
        "this is a temporary error",
        "could not be delivered to one or more of its",
        "the following address(es) failed",
        "reporting-mta:",
    ];
    let lower = block.to_ascii_lowercase();
    if !BOILERPLATE.iter().any(|b| lower.contains(b)) {
        return block.to_owned();
    }
    block
        .lines()
        .filter(|l| {
            let t = l.to_ascii_lowercase();
            !BOILERPLATE.iter().any(|b| t.contains(b))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
