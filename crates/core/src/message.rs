//! Message parameterization for grouping: variable parts of a message (ids,
//! numbers, e-mails, URLs, ...) are replaced by placeholders so that
//! `"User 42 failed"` and `"User 43 failed"` group together.

use regex::Regex;
use std::sync::LazyLock;

/// Replacements applied in order; earlier, more specific patterns win.
static PATTERNS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        ("email", r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"),
        ("url", r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\x22<>]+"),
        ("ip", r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b"),
        ("uuid", r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b"),
        ("sha1", r"\b[0-9a-fA-F]{40}\b"),
        ("md5", r"\b[0-9a-fA-F]{32}\b"),
        ("date", r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?)?\b|\b\d{2}:\d{2}:\d{2}\b"),
        ("duration", r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|secs|seconds|min|mins|minutes|h|hours)\b"),
        ("hex", r"\b0[xX][0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b"),
        ("float", r"-?\b\d+\.\d+\b"),
        ("int", r"-?\b\d+\b"),
        ("quoted_str", r#"'[^'\n]*'|"[^"\n]*""#),
        ("bool", r"\b(?:[Tt]rue|[Ff]alse)\b"),
    ]
    .into_iter()
    .map(|(name, re)| (name, Regex::new(re).expect("static regex")))
    .collect()
});

/// Keeps the first two non-empty lines and replaces variable parts by `<name>`.
pub fn normalize_for_grouping(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut text: String = lines.by_ref().take(2).collect::<Vec<_>>().join("\n");
    if lines.next().is_some() {
        text.push_str("...");
    }
    for (name, re) in PATTERNS.iter() {
        if re.is_match(&text) {
            let placeholder = format!("<{name}>");
            text = re.replace_all(&text, placeholder.as_str()).into_owned();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameterizes() {
        assert_eq!(normalize_for_grouping("User 42 failed"), "User <int> failed");
        assert_eq!(normalize_for_grouping("User 42 failed"), normalize_for_grouping("User 1337 failed"));
        assert_eq!(normalize_for_grouping("mail to bob@example.com bounced"), "mail to <email> bounced");
        assert_eq!(normalize_for_grouping("GET https://x.io/a?b=1 timed out after 3.5s"), "GET <url> timed out after <duration>");
        assert_eq!(normalize_for_grouping("id 9ec79c33-ec99-42ab-8353-589fcb2e04dc gone"), "id <uuid> gone");
        assert_eq!(normalize_for_grouping("key 'abc' missing"), "key <quoted_str> missing");
        assert_eq!(normalize_for_grouping("ptr 0xdeadbeef"), "ptr <hex>");
        assert_eq!(normalize_for_grouping("from 10.0.0.1"), "from <ip>");
        assert_eq!(normalize_for_grouping("a\n\nb\nc"), "a\nb...");
        assert_eq!(normalize_for_grouping("at 2024-03-19T15:18:27Z"), "at <date>");
        assert_eq!(normalize_for_grouping("ratio 0.75"), "ratio <float>");
        assert_eq!(normalize_for_grouping("flag True"), "flag <bool>");
    }
}
