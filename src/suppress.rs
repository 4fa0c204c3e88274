//! Suppression: recipients that never get a notice. Three sources, checked
//! in this order: the config (`[suppress] addresses`, `domains`), a file ops
//! can append to (re-read when it changes), and the store (`interim
//! suppress add`, and addresses a mail server rejected permanently).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::warn;

use crate::config::SuppressSettings;
pub use crate::config::suppress_file::{Entry, FileContents, read_file};
use crate::ledger::DeliveryLedger;

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
    pub async fn reason(
        &self,
        ledger: &impl DeliveryLedger,
        address: &str,
    ) -> anyhow::Result<Option<String>> {
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
        Ok(ledger
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
