//! Microsoft Exchange (2003 "did not reach the following recipient(s)", 2007+ "Delivery has
//! failed to these recipients or groups", Office 365 / Outlook.com NDRs).
//!
//! Exchange 2003 reports the cause as an `MSEXCH:IMS` code in parentheses; the known codes
//! are rewritten to words so the phrase tables can read them.

use std::borrow::Cow;

/// Exchange 2000/2003 internal NDR codes and what they mean.
const IMS_CODES: &[(&str, &str)] = &[
    ("000c05a6", "unknown recipient"),
    ("000b099c", "unknown recipient"),
    ("000c0595", "message filtered"),
    ("000b09aa", "expired"),
    ("000b09b6", "expired"),
    ("000c0590", "host unknown"),
    ("000c05b2", "mailbox full"),
];

/// Rewrites Exchange-specific notation into plain words (borrowed when there is none).
pub(super) fn normalize(notice: &str) -> Cow<'_, str> {
    if !notice.contains("MSEXCH:") {
        return Cow::Borrowed(notice);
    }
    let mut out = notice.to_owned();
    let lower = out.to_ascii_lowercase();
    for (code, words) in IMS_CODES {
        if lower.contains(code) {
            out.push('\n');
            out.push_str(words);
        }
    }
    Cow::Owned(out)
}
