//! The file channel: one `.eml` or `.json` per notice in a folder, written
//! atomically (temp file, then rename), for demos, audits and dry runs.

use std::path::PathBuf;

use lettre::message::Mailbox;

use super::{DeliveryError, Outgoing, notice_document};
use crate::config::{FileFormat, FileSettings};

pub struct FileChannel {
    settings: FileSettings,
}

impl FileChannel {
    pub fn new(settings: &FileSettings) -> Self {
        Self {
            settings: settings.clone(),
        }
    }

    pub async fn send(&self, out: &Outgoing<'_>) -> Result<(), DeliveryError> {
        let (extension, bytes) = match self.settings.format {
            FileFormat::Json => {
                let doc = serde_json::to_vec_pretty(&notice_document(out))
                    .map_err(|e| DeliveryError::permanent(e.to_string()))?;
                ("json", doc)
            }
            FileFormat::Eml => ("eml", eml(out)),
        };
        let dir = &self.settings.path;
        let fail = |what: &str, e: std::io::Error| {
            DeliveryError::retryable(format!("{what} {}: {e}", dir.display()))
        };
        let target: PathBuf = dir.join(format!("{}.{extension}", out.notice_id));
        let temp = dir.join(format!(".{}.{extension}.tmp", out.notice_id));
        // Notices hold customer data: folder 0700, files 0600.
        let (folder, file) = (dir.clone(), temp.clone());
        tokio::task::spawn_blocking(move || {
            crate::private_files::create_dir_all(&folder).map_err(|e| ("cannot create", e))?;
            crate::private_files::write(&file, &bytes).map_err(|e| ("cannot write to", e))
        })
        .await
        .map_err(|e| fail("cannot write to", std::io::Error::other(e)))?
        .map_err(|(what, e)| fail(what, e))?;
        tokio::fs::rename(&temp, &target)
            .await
            .map_err(|e| fail("cannot write to", e))?;
        Ok(())
    }
}

/// The notice as the email would look; tickets without a valid address get
/// a readable stand-in with the same headers.
fn eml(out: &Outgoing<'_>) -> Vec<u8> {
    let from: Mailbox = "interim <interim@localhost>"
        .parse()
        .unwrap_or_else(|_| unreachable!("a constant address parses"));
    match super::email::build_message(&from, None, out) {
        Ok(message) => message.formatted(),
        Err(_) => format!(
            "X-Interim-Ticket: {}\r\n{}X-Interim-Notice: {}\r\nSubject: {}\r\n\r\n{}",
            crate::templates::single_line(&out.ticket.id),
            out.ticket
                .number
                .as_deref()
                .map(|n| format!(
                    "X-Interim-Ticket-Number: {}\r\n",
                    crate::templates::single_line(n)
                ))
                .unwrap_or_default(),
            out.notice_id,
            out.message.subject,
            out.message.text
        )
        .into_bytes(),
    }
}
