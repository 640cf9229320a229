//! Sendmail (and look-alikes: Bigfoot, V5, appliances) transcripts:
//! `----- Transcript of session follows -----`, `>>> RCPT To:<a@b>`, `<<< 550 5.1.1 ...`.
//! The remote reply to the recipient's command is the diagnostic; the boilerplate around it
//! ("The following addresses had permanent fatal errors") says nothing.

/// The `<<<` reply lines that answer the command naming `address` (or, failing that, the
/// `(reason: ...)` line sendmail writes under the address).
pub(super) fn transcript_reply(block: &str, address: &str) -> Option<String> {
    if !block.contains(">>>") && !block.contains("eason: ") {
        return None;
    }
    let lower = block.to_ascii_lowercase();
    let mut lines = lower.lines().zip(block.lines()).peekable();
    let mut reply = String::new();
    while let Some((l, _)) = lines.next() {
        let l = l.trim_start();
        let about_recipient = l.starts_with(">>> ") && l.contains(address);
        let data_after_it = l.starts_with(">>> data") && !reply.is_empty();
        if !about_recipient && !data_after_it {
            continue;
        }
        while let Some((next, orig)) = lines.peek() {
            if !next.trim_start().starts_with("<<<") {
                break;
            }
            reply.push_str(orig.trim_start().trim_start_matches('<').trim());
            reply.push('\n');
            lines.next();
        }
    }
    if !reply.is_empty() {
        return Some(reply);
    }
    lower.find("(reason: ").map(|i| {
        let rest = &block[i + 9..];
        rest[..rest.find(')').unwrap_or(rest.len())].to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_to_the_recipients_rcpt_is_the_diagnostic() {
        let block = "<a@b.test>\n\n----- Transcript of session follows -----\n\
            ... while talking to mx.b.test.:\n>>> RCPT To:<a@b.test>\n<<< 550 5.1.1 <a@b.test>... User unknown\n";
        assert_eq!(
            transcript_reply(block, "a@b.test").as_deref(),
            Some("550 5.1.1 <a@b.test>... User unknown\n")
        );
    }
}
