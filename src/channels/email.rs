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
                humantime::format_duration(self.settings.timeout)
            ))),
        }
    }
}

/// SMTP 5xx is permanent; 4xx, timeouts and connection errors are retried.
fn classify(e: &lettre::transport::smtp::Error, settings: &EmailSettings) -> DeliveryError {
    let server = format!("{}:{}", settings.host, settings.port);
    // lettre's Display does not contain credentials; the server's reply may
    // quote our envelope, which is fine to log.
    let reason = format!("SMTP {server}: {e}");
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
