//! Suppression: recipients that never get a notice. Three sources, checked
//! in this order: the config (`[suppress] addresses`, `domains`), a file ops
//! can append to (re-read when it changes), and the store (`interim
//! suppress add`, and addresses a mail server rejected permanently).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::warn;

use crate::config::SuppressSettings;
use crate::store::Store;

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

pub struct Suppressor {
    settings: SuppressSettings,
    file: Mutex<FileCache>,
}

#[derive(Default)]
struct FileCache {
    modified: Option<SystemTime>,
    entries: BTreeSet<Entry>,
}

impl Suppressor {
    pub fn new(settings: &SuppressSettings) -> Self {
        Self {
            settings: settings.clone(),
            file: Mutex::new(FileCache::default()),
        }
    }

    pub fn auto(&self) -> bool {
        self.settings.auto
    }

    /// Why `address` must not get a notice, or None.
    pub async fn reason(&self, store: &Store, address: &str) -> anyhow::Result<Option<String>> {
        let address = address.trim().to_lowercase();
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default();
        if self.settings.addresses.contains(&address) {
            return Ok(Some("listed in suppress.addresses".into()));
        }
        if self.settings.domains.contains(&domain) {
            return Ok(Some(format!("domain {domain} listed in suppress.domains")));
        }
        if let Some(path) = &self.settings.file
            && let Some(entry) = self.file_match(path, &address, &domain)
        {
            return Ok(Some(format!(
                "{} listed in {}",
                entry.key(),
                path.display()
            )));
        }
        Ok(store
            .suppression_of(&address)
            .await?
            .map(|s| format!("{} suppressed ({}): {}", s.address, s.source, s.reason)))
    }

    fn file_match(&self, path: &PathBuf, address: &str, domain: &str) -> Option<Entry> {
        let mut cache = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified != cache.modified {
            match read_file(path) {
                Ok((entries, problems)) => {
                    for (line, reason) in problems {
                        warn!(file = %path.display(), line, reason = %reason, "suppression file line ignored");
                    }
                    cache.entries = entries;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => cache.entries.clear(),
                // Keep the last good list: never un-suppress on a read error.
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "cannot read the suppression file; using its last contents")
                }
            }
            cache.modified = modified;
        }
        let address = Entry::Address(address.to_owned());
        let domain = Entry::Domain(domain.to_owned());
        [address, domain]
            .into_iter()
            .find(|e| cache.entries.contains(e))
    }
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
