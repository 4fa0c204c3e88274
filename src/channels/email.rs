//! Email over SMTP (lettre). Message-ID is derived from the notice id, so a
//! retried or duplicated notice carries the same id; ticket data never
//! creates a header line.

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{DeliveryError, Outgoing, Refusal};
use crate::config::{EmailSettings, TlsMode};
use crate::secret::ExposeSecret;
use crate::templates::{clip, single_line};

pub struct EmailChannel {
    settings: EmailSettings,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailChannel {
    pub fn new(settings: &EmailSettings) -> anyhow::Result<Self> {
        let host = settings.host.as_str();
        let mut builder = match settings.tls {
            TlsMode::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
            TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        }
        .port(settings.port)
        .timeout(Some(settings.timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            settings: settings.clone(),
            transport: builder.build(),
        })
    }

    pub async fn send(&self, out: &Outgoing<'_>) -> Result<(), DeliveryError> {
        let message = build_message(&self.settings.from, self.settings.reply_to.as_ref(), out)?;
        // lettre bounds only the TCP connect by its timeout; a server that
        // accepts and then never answers must not hold a send slot forever.
        match tokio::time::timeout(self.settings.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e, &self.settings)),
            Err(_) => Err(DeliveryError::retryable(format!(
                "SMTP {}:{}: timed out, no answer within {}",
                self.settings.host,
                self.settings.port,
                crate::clock::human_duration(self.settings.timeout)
            ))),
        }
    }
}

/// SMTP 5xx is permanent; 4xx, timeouts and connection errors are retried.
fn classify(e: &lettre::transport::smtp::Error, settings: &EmailSettings) -> DeliveryError {
    let server = format!("{}:{}", settings.host, settings.port);
    let reason = format!("SMTP {server}: {}", reply_text(e, settings));
    // A non-ASCII address to a server without SMTPUTF8 never works.
    if e.is_client() && e.to_string().contains("SMTPUTF8") {
        return DeliveryError::permanent(reason);
    }
    if !e.is_permanent() {
        return DeliveryError::retryable(reason);
    }
    let refusal = if rejects_recipient(e) {
        Refusal::RecipientRejected
    } else {
        Refusal::Other
    };
    DeliveryError::Permanent { reason, refusal }
}

/// What of an SMTP error is logged and recorded: lettre's text (which holds
/// no credentials) with the server's reply clipped; a reply that belongs
/// to the AUTH exchange, or quotes the credentials anywhere, only by its
/// codes: a server may echo what it was sent.
fn reply_text(e: &lettre::transport::smtp::Error, settings: &EmailSettings) -> String {
    let text = e.to_string();
    let Some(password) = &settings.password else {
        return crate::logging::outside(&text);
    };
    let user = settings.username.as_deref().unwrap_or("");
    if !touches_auth(&text, user, password.expose_secret()) {
        return crate::logging::outside(&text);
    }
    let kind = match e.status() {
        Some(code) if e.is_permanent() => format!("permanent error ({code})"),
        Some(code) => format!("transient error ({code})"),
        None => "error".to_string(),
    };
    let enhanced = text
        .split_whitespace()
        .find(|w| is_enhanced_status(w))
        .map(|code| format!("{code} "))
        .unwrap_or_default();
    format!(
        "{kind}: {enhanced}(the server's reply to AUTH is not shown: it may quote the credentials)"
    )
}

/// Whether an SMTP error's text is about authentication or holds the
/// credentials, as sent or in the base64 of AUTH PLAIN and AUTH LOGIN.
fn touches_auth(text: &str, user: &str, password: &str) -> bool {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let b64_unpadded = |s: &str| b64(s).trim_end_matches('=').to_owned();
    let lower = text.to_lowercase();
    if lower.contains("auth") {
        return true;
    }
    let plain = format!("\0{user}\0{password}");
    [
        password.to_owned(),
        b64(password),
        b64_unpadded(password),
        b64_unpadded(&plain),
        b64_unpadded(&format!("{user}{plain}")),
    ]
    .iter()
    .chain(
        (user.chars().count() >= 4)
            .then(|| b64_unpadded(user))
            .iter(),
    )
    .any(|form| form.chars().count() >= 4 && text.contains(form.as_str()))
}

/// `5.7.8`, `4.2.0`: an enhanced status code (RFC 3463).
fn is_enhanced_status(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()))
}

/// Whether a permanent SMTP error rejects the recipient address itself (so
/// later notices to it are suppressed). lettre does not say which command
/// failed, so this reads the reply: an enhanced status 5.1.x (addressing)
/// or 5.2.1 (mailbox disabled), or without one the basic codes 550, 551,
/// 553 (mailbox unavailable, not local, name not allowed). 5.7.x (policy,
/// spam) rejects the message, not the address.
fn rejects_recipient(e: &lettre::transport::smtp::Error) -> bool {
    let text = e.to_string();
    let enhanced = text.split_whitespace().find(|w| {
        w.len() >= 5
            && w.starts_with("5.")
            && w[2..].contains('.')
            && w.chars().all(|c| c.is_ascii_digit() || c == '.')
    });
    match enhanced {
        Some(code) => code.starts_with("5.1.") || code.starts_with("5.2.1"),
        None => e
            .status()
            .is_some_and(|code| matches!(code.to_string().as_str(), "550" | "551" | "553")),
    }
}

/// Builds the notice email. Public for the file channel's `.eml` output.
pub fn build_message(
    from: &Mailbox,
    reply_to: Option<&Mailbox>,
    out: &Outgoing<'_>,
) -> Result<Message, DeliveryError> {
    let address = out.ticket.customer_email.as_deref().ok_or_else(|| {
        DeliveryError::permanent(format!("ticket {} has no customer_email", out.ticket.id))
    })?;
    let parsed: Mailbox = address.parse().map_err(|_| {
        DeliveryError::permanent(format!(
            "ticket {}: \"{}\" is not a valid email address",
            out.ticket.id,
            single_line(address)
        ))
    })?;
    let name = out
        .ticket
        .customer_name
        .as_deref()
        .map(|n| clip(&single_line(n), 100))
        .filter(|n| !n.is_empty())
        .or(parsed.name.clone());
    let to = Mailbox::new(name, ascii_domain(parsed.email));
    let domain = from.email.domain().to_owned();
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(single_line(&out.message.subject))
        .message_id(Some(format!("<{}@{}>", out.notice_id, domain)))
        .header(AutoSubmitted("auto-generated".into()))
        .header(XInterimTicket(clip(&single_line(&out.ticket.id), 200)))
        .header(XInterimNotice(out.notice_id.to_owned()));
    if let Some(number) = out.ticket.number.as_deref().map(single_line)
        && !number.trim().is_empty()
    {
        builder = builder.header(XInterimTicketNumber(clip(&number, 200)));
    }
    if let Some(reply_to) = reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    if let Some(thread) = out
        .ticket
        .thread_message_id
        .as_deref()
        .and_then(message_id_reference)
    {
        builder = builder.in_reply_to(thread.clone()).references(thread);
    }
    let built = match &out.message.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            out.message.text.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(out.message.text.clone())),
    };
    built.map_err(|e| DeliveryError::permanent(format!("cannot build the email: {e}")))
}

/// The address with an internationalised domain in its ASCII form
/// (`bücher.example` → `xn--bcher-kva.example`), which every mail server
/// accepts; a non-ASCII local part stays as it is (it needs SMTPUTF8).
fn ascii_domain(address: lettre::Address) -> lettre::Address {
    let domain = address.domain();
    if domain.is_ascii() {
        return address;
    }
    match idna::domain_to_ascii(domain) {
        Ok(ascii) => lettre::Address::new(address.user(), ascii).unwrap_or(address),
        Err(_) => address,
    }
}

/// A Message-ID reference `<id@host>` from ticket data, or nothing when the
/// value cannot be one (whitespace and control characters are never passed on).
fn message_id_reference(raw: &str) -> Option<String> {
    let inner: String = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect();
    (!inner.is_empty() && inner.contains('@') && !inner.contains(['<', '>']))
        .then(|| format!("<{inner}>"))
}

macro_rules! text_header {
    ($type:ident, $name:literal) => {
        #[derive(Debug, Clone)]
        struct $type(String);

        impl Header for $type {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }

            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(s.to_owned()))
            }

            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

text_header!(AutoSubmitted, "Auto-Submitted");
text_header!(XInterimTicket, "X-Interim-Ticket");
text_header!(XInterimNotice, "X-Interim-Notice");
text_header!(XInterimTicketNumber, "X-Interim-Ticket-Number");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_references_are_sanitised() {
        assert_eq!(
            message_id_reference("<abc@host>"),
            Some("<abc@host>".into())
        );
        assert_eq!(message_id_reference("abc@host"), Some("<abc@host>".into()));
        assert_eq!(
            message_id_reference("a\r\nBcc: x@y"),
            Some("<aBcc:x@y>".into())
        );
        assert_eq!(message_id_reference("nohost"), None);
    }
}
