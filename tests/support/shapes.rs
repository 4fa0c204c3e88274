//! JSON in the shapes that helpdesk APIs document, for the local API server:
//! Zendesk (tickets, users, ticket metric sets), Zammad (expanded tickets),
//! Freshdesk (tickets with `include=requester,stats`) and Help Scout
//! (Mailbox API 2.0 conversations). Field names and value types follow each
//! vendor's API reference; values are made up.

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::ago;

/// Zammad's millisecond timestamps ("2021-11-03T14:38:54.000Z").
pub fn zammad_ago(secs: i64) -> String {
    let t = Utc::now() - chrono::Duration::seconds(secs);
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Freshdesk's documented ticket fields (`include=requester,stats`), as
/// `source.fields` of an `http` source.
pub const FRESHDESK_FIELDS: &str = r#"{ id = "/id", subject = "/subject", state = "/status", priority = "/priority", queue = "/group_id", customer_email = "/requester/email", customer_name = "/requester/name", waiting_since = ["/stats/agent_responded_at", "/stats/requester_responded_at", "/created_at"], updated_at = "/updated_at" }"#;

/// A Zendesk ticket (Tickets API, "Show Ticket" / incremental export row).
pub fn zendesk_ticket(
    id: i64,
    status: &str,
    requester_id: i64,
    created: &str,
    updated: &str,
) -> Value {
    json!({
        "url": format!("https://example.zendesk.com/api/v2/tickets/{id}.json"),
        "id": id,
        "external_id": null,
        "via": {"channel": "email", "source": {"from": {}, "to": {}, "rel": null}},
        "created_at": created,
        "updated_at": updated,
        "generated_timestamp": Utc::now().timestamp(),
        "type": "incident",
        "subject": format!("Printer {id} is on fire"),
        "raw_subject": format!("Printer {id} is on fire"),
        "description": "The fire is very colorful.",
        "priority": "high",
        "status": status,
        "recipient": "support@example.zendesk.com",
        "requester_id": requester_id,
        "submitter_id": requester_id,
        "assignee_id": 235323,
        "organization_id": 509974,
        "group_id": 98738,
        "collaborator_ids": [],
        "follower_ids": [],
        "email_cc_ids": [],
        "forum_topic_id": null,
        "problem_id": null,
        "has_incidents": false,
        "is_public": true,
        "due_at": null,
        "tags": ["enterprise"],
        "custom_fields": [{"id": 27642, "value": "745"}],
        "satisfaction_rating": null,
        "sharing_agreement_ids": [],
        "custom_status_id": 123,
        "fields": [],
        "followup_ids": [],
        "ticket_form_id": 1,
        "brand_id": 1,
        "allow_channelback": false,
        "allow_attachments": true,
        "from_messaging_channel": false
    })
}

/// A Zendesk user (Users API), as side-loaded with `include=users`.
pub fn zendesk_user(id: i64, name: &str, email: &str, locale: &str, zone: &str) -> Value {
    json!({
        "id": id,
        "url": format!("https://example.zendesk.com/api/v2/users/{id}.json"),
        "name": name,
        "email": email,
        "created_at": "2019-06-04T12:00:00Z",
        "updated_at": "2019-06-04T12:00:00Z",
        "time_zone": "Berlin",
        "iana_time_zone": zone,
        "phone": null,
        "shared_phone_number": null,
        "photo": null,
        "locale_id": 1,
        "locale": locale,
        "organization_id": 509974,
        "role": "end-user",
        "verified": true,
        "external_id": null,
        "tags": [],
        "alias": "",
        "active": true,
        "shared": false,
        "shared_agent": false,
        "last_login_at": null,
        "two_factor_auth_enabled": null,
        "signature": null,
        "details": "",
        "notes": "",
        "role_type": null,
        "custom_role_id": null,
        "moderator": false,
        "ticket_restriction": "requested",
        "only_private_comments": false,
        "restricted_agent": true,
        "suspended": false,
        "default_group_id": null,
        "report_csv": false,
        "user_fields": {}
    })
}

/// A Zendesk ticket metric set (Ticket Metrics API), as side-loaded with
/// `include=metric_sets`.
pub fn zendesk_metric_set(
    ticket_id: i64,
    requester_updated: Option<&str>,
    assignee_updated: Option<&str>,
) -> Value {
    json!({
        "url": format!("https://example.zendesk.com/api/v2/ticket_metrics/{ticket_id}.json"),
        "id": ticket_id + 900_000,
        "ticket_id": ticket_id,
        "created_at": "2019-06-04T12:00:00Z",
        "updated_at": assignee_updated.or(requester_updated),
        "group_stations": 1,
        "assignee_stations": 1,
        "reopens": 0,
        "replies": 1,
        "assignee_updated_at": assignee_updated,
        "requester_updated_at": requester_updated,
        "status_updated_at": requester_updated,
        "initially_assigned_at": "2019-06-04T12:00:00Z",
        "assigned_at": "2019-06-04T12:00:00Z",
        "solved_at": null,
        "latest_comment_added_at": requester_updated,
        "reply_time_in_minutes": {"calendar": 2391, "business": 737},
        "first_resolution_time_in_minutes": {"calendar": null, "business": null},
        "full_resolution_time_in_minutes": {"calendar": null, "business": null},
        "agent_wait_time_in_minutes": {"calendar": null, "business": null},
        "requester_wait_time_in_minutes": {"calendar": null, "business": null},
        "on_hold_time_in_minutes": {"calendar": 0, "business": 0}
    })
}

/// A Zammad ticket as `expand=true` returns it: every column plus the
/// names of its associations (`state`, `priority`, `group`, `customer` =
/// the customer's login, …).
pub struct ZammadTicket<'a> {
    pub id: i64,
    pub state: &'a str,
    pub customer: &'a str,
    pub created_at: String,
    pub last_contact_agent_at: Option<String>,
    pub last_contact_customer_at: Option<String>,
}

impl ZammadTicket<'_> {
    pub fn json(&self) -> Value {
        let (state_id, priority) = match self.state {
            "new" => (1, "2 normal"),
            "open" => (2, "2 normal"),
            "pending reminder" => (3, "1 low"),
            "closed" => (4, "2 normal"),
            "merged" => (5, "2 normal"),
            _ => (7, "3 high"),
        };
        let last_contact = [&self.last_contact_agent_at, &self.last_contact_customer_at]
            .into_iter()
            .flatten()
            .max()
            .cloned();
        let mut ticket = json!({
            "id": self.id,
            "group_id": 1,
            "priority_id": 2,
            "state_id": state_id,
            "organization_id": null,
            "number": format!("{}", 31000 + self.id),
            "title": format!("Zammad ticket {}", self.id),
            "owner_id": 1,
            "customer_id": 100 + self.id,
            "note": null,
            "first_response_at": self.last_contact_agent_at,
            "first_response_escalation_at": null,
            "first_response_in_min": null,
            "first_response_diff_in_min": null,
            "close_at": null,
            "close_escalation_at": null,
            "close_in_min": null,
            "close_diff_in_min": null,
            "update_escalation_at": null,
            "update_in_min": null,
            "update_diff_in_min": null,
            "last_close_at": null,
            "last_contact_at": last_contact,
            "last_contact_agent_at": self.last_contact_agent_at,
            "last_contact_customer_at": self.last_contact_customer_at
        });
        let rest = json!({
            "last_owner_update_at": null,
            "create_article_type_id": 1,
            "create_article_sender_id": 2,
            "article_count": 2,
            "escalation_at": null,
            "pending_time": null,
            "type": null,
            "time_unit": null,
            "preferences": {"channel_id": 3},
            "updated_by_id": 3,
            "created_by_id": 3,
            "created_at": self.created_at,
            "updated_at": zammad_ago(60),
            "article_ids": [self.id * 10, self.id * 10 + 1],
            "ticket_time_accounting_ids": [],
            "group": "Users",
            "priority": priority,
            "state": self.state,
            "owner": "-",
            "customer": self.customer,
            "created_by": self.customer,
            "updated_by": self.customer,
            "create_article_type": "email",
            "create_article_sender": "Customer"
        });
        if let (Some(ticket), Value::Object(rest)) = (ticket.as_object_mut(), rest) {
            ticket.extend(rest);
        }
        ticket
    }
}

/// A Freshdesk ticket (`GET /api/v2/tickets?include=requester,stats`):
/// numeric `status` (2 open, 3 pending, 4 resolved, 5 closed) and
/// `priority`, the requester and the response stats embedded.
pub fn freshdesk_ticket(
    id: i64,
    status: i64,
    created: &str,
    agent: Option<&str>,
    requester: Option<&str>,
) -> Value {
    json!({
        "cc_emails": [],
        "fwd_emails": [],
        "reply_cc_emails": [],
        "ticket_cc_emails": [],
        "fr_escalated": false,
        "spam": false,
        "email_config_id": null,
        "group_id": 2,
        "priority": 1,
        "requester_id": 1000 + id,
        "responder_id": 7,
        "source": 1,
        "company_id": null,
        "status": status,
        "subject": format!("Freshdesk ticket {id}"),
        "support_email": null,
        "to_emails": null,
        "product_id": null,
        "id": id,
        "type": "Question",
        "due_by": ago(-86_400),
        "fr_due_by": ago(-3600),
        "is_escalated": false,
        "custom_fields": {},
        "created_at": created,
        "updated_at": ago(60),
        "associated_tickets_count": null,
        "tags": [],
        "requester": {
            "email": format!("requester{id}@example.com"),
            "id": 1000 + id,
            "mobile": null,
            "name": format!("Requester {id}"),
            "phone": null
        },
        "stats": {
            "agent_responded_at": agent,
            "requester_responded_at": requester,
            "first_responded_at": agent,
            "status_updated_at": created,
            "reopened_at": null,
            "resolved_at": null,
            "closed_at": null,
            "pending_since": null
        }
    })
}

/// A Help Scout conversation (Mailbox API 2.0, "List conversations").
pub fn helpscout_conversation(id: i64, status: &str, waiting_since: &str) -> Value {
    json!({
        "id": id,
        "number": 3000 + id,
        "threads": 2,
        "type": "email",
        "folderId": 1234,
        "status": status,
        "state": "published",
        "subject": format!("Help Scout conversation {id}"),
        "preview": "Hello, I have a question about…",
        "mailboxId": 85,
        "assignee": {"id": 256, "first": "Mister", "last": "Agent", "email": "agent@example.com", "type": "user"},
        "createdBy": {"id": 100 + id, "type": "customer", "email": format!("customer{id}@example.com")},
        "createdAt": waiting_since,
        "closedBy": 0,
        "closedAt": null,
        "userUpdatedAt": waiting_since,
        "customerWaitingSince": {"time": waiting_since, "friendly": "2 hours ago"},
        "source": {"type": "email", "via": "customer"},
        "tags": [],
        "cc": [],
        "bcc": [],
        "primaryCustomer": {
            "id": 100 + id,
            "first": "Vernon",
            "last": format!("Bear {id}"),
            "email": format!("customer{id}@example.com"),
            "type": "customer"
        },
        "customFields": [],
        "_embedded": {"threads": []},
        "_links": {"web": {"href": format!("https://secure.helpscout.net/conversation/{id}/")}}
    })
}
