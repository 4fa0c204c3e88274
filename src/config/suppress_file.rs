//! The suppression file's format: one address or `@domain` a line, `#`
//! comments. Config checks the file at load; the suppressor re-reads it
//! when it changes.

use std::collections::BTreeSet;
use std::path::Path;

/// An address (lower-case) or a domain (lower-case, without `@`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    Address(String),
    Domain(String),
}

impl Entry {
    /// `a@b.example` or `@b.example`.
    pub fn parse(text: &str) -> Result<Entry, String> {
        let t = text.trim().to_lowercase();
        if let Some(domain) = t.strip_prefix('@') {
            if domain.is_empty() || domain.contains(['@', ' ']) || !domain.contains('.') {
                return Err(format!("\"{text}\" is not a domain like \"@example.com\""));
            }
            return Ok(Entry::Domain(domain.to_owned()));
        }
        t.parse::<lettre::Address>()
            .map(|a| Entry::Address(a.to_string().to_lowercase()))
            .map_err(|_| format!("\"{text}\" is not an email address or @domain"))
    }

    /// The form stored and shown: the address, or `@domain`.
    pub fn key(&self) -> String {
        match self {
            Entry::Address(a) => a.clone(),
            Entry::Domain(d) => format!("@{d}"),
        }
    }
}

/// A suppression file's entries, and the (line, reason) of lines that are
/// neither an address nor an `@domain`.
pub type FileContents = (BTreeSet<Entry>, Vec<(usize, String)>);

/// Reads a suppression file: one address or `@domain` a line, `#` comments.
pub fn read_file(path: &Path) -> std::io::Result<FileContents> {
    let text = std::fs::read_to_string(path)?;
    let mut entries = BTreeSet::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        match Entry::parse(content) {
            Ok(entry) => {
                entries.insert(entry);
            }
            Err(reason) => problems.push((index + 1, reason)),
        }
    }
    Ok((entries, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_addresses_or_domains() {
        assert_eq!(
            Entry::parse(" Ann@Example.COM "),
            Ok(Entry::Address("ann@example.com".into()))
        );
        assert_eq!(
            Entry::parse("@example.org"),
            Ok(Entry::Domain("example.org".into()))
        );
        assert!(Entry::parse("a@b@c").is_err());
        assert!(Entry::parse("@").is_err());
    }
}
