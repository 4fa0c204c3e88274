//! JSON in the shapes that helpdesk APIs document, for the local API server:
//! Zendesk (tickets, users, ticket metric sets), Zammad (ticket search with
//! its assets, ticket states and priorities),
//! Freshdesk (tickets with `include=requester,stats`) and Help Scout
//! (Mailbox API 2.0 conversations). Field names and value types follow each
//! vendor's API reference; values are made up.

use chrono::{DateTime, SecondsFormat, Utc};
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

/// Zammad's seeded ticket states (db/seeds/ticket_states.rb) as
/// `GET /api/v1/ticket_states` lists them: id, name, state_type_id (1 new,
/// 2 open, 3 pending reminder, 4 pending action, 5 closed, 6 merged,
/// 7 removed; db/seeds/ticket_state_types.rb also seeds 8 pending review
/// and 9 delegated, which no seeded state has). Custom states come after,
/// from id 8 on.
pub const ZAMMAD_STATES: &[(i64, &str, i64)] = &[
    (1, "new", 1),
    (2, "open", 2),
    (3, "pending reminder", 3),
    (4, "closed", 5),
    (5, "merged", 6),
    (6, "removed", 7),
    (7, "pending close", 4),
];

/// Zammad's seeded priorities: id, name (with its number prefix).
pub const ZAMMAD_PRIORITIES: &[(i64, &str)] = &[(1, "1 low"), (2, "2 normal"), (3, "3 high")];

/// `GET /api/v1/ticket_states`: the seeded states and `custom` ones.
pub fn zammad_ticket_states(custom: &[(i64, &str, i64)]) -> Value {
    let seeded = ZAMMAD_STATES.len() as i64;
    assert!(
        custom.iter().all(|(id, _, _)| *id > seeded),
        "custom states come after Zammad's seeded ones (id 8 on): {custom:?}"
    );
    let states: Vec<Value> = ZAMMAD_STATES
        .iter()
        .chain(custom)
        .map(|(id, name, type_id)| {
            json!({
                "id": id, "state_type_id": type_id, "name": name,
                "next_state_id": if *name == "pending close" { json!(4) } else { Value::Null },
                "ignore_escalation": *type_id > 2, "default_create": *id == 1,
                "default_follow_up": *id == 2, "note": null, "active": *id != 6,
                "updated_by_id": 1, "created_by_id": 1,
                "created_at": "2021-11-03T11:51:13.504Z", "updated_at": "2021-11-03T11:51:13.520Z"
            })
        })
        .collect();
    Value::Array(states)
}

/// `GET /api/v1/ticket_priorities`.
pub fn zammad_ticket_priorities() -> Value {
    let list: Vec<Value> = ZAMMAD_PRIORITIES
        .iter()
        .map(|(id, name)| {
            json!({
                "id": id, "name": name, "default_create": *id == 2,
                "ui_icon": if *id == 3 { json!("important") } else { Value::Null },
                "ui_color": if *id == 3 { json!("high-priority") } else { Value::Null },
                "note": null, "active": true, "updated_by_id": 1, "created_by_id": 1,
                "created_at": "2021-11-03T11:51:13.540Z", "updated_at": "2021-11-03T11:51:13.540Z"
            })
        })
        .collect();
    Value::Array(list)
}

/// A Zammad user (a customer) as the search's `assets.User` carries it.
#[derive(Clone, Debug)]
pub struct ZammadUser {
    pub id: i64,
    pub login: String,
    /// Zammad stores "" for a customer without an address.
    pub email: String,
    pub firstname: String,
    pub lastname: String,
    /// preferences.locale, e.g. "de-de"; absent when the customer never set one.
    pub locale: Option<String>,
}

impl ZammadUser {
    pub fn new(id: i64, email: &str, firstname: &str, lastname: &str) -> Self {
        Self {
            id,
            login: email.to_owned(),
            email: email.to_owned(),
            firstname: firstname.to_owned(),
            lastname: lastname.to_owned(),
            locale: None,
        }
    }

    pub fn locale(mut self, locale: &str) -> Self {
        self.locale = Some(locale.to_owned());
        self
    }

    pub fn json(&self) -> Value {
        let mut preferences = json!({"notification_sound": {"enabled": true}});
        if let (Some(locale), Some(p)) = (&self.locale, preferences.as_object_mut()) {
            p.insert("locale".into(), json!(locale));
        }
        json!({
            "id": self.id, "organization_id": null, "login": self.login,
            "firstname": self.firstname, "lastname": self.lastname, "email": self.email,
            "image": null, "image_source": null, "web": "", "password": "", "phone": "",
            "fax": "", "mobile": "", "department": "", "street": "", "zip": "", "city": "",
            "country": "", "address": "", "vip": false, "verified": false, "active": true,
            "note": "", "last_login": null, "source": null, "login_failed": 0,
            "out_of_office": false, "preferences": preferences,
            "updated_by_id": 1, "created_by_id": 1,
            "created_at": "2021-11-03T11:51:13.759Z", "updated_at": "2021-11-03T11:51:13.759Z",
            "role_ids": [3], "organization_ids": [], "authorization_ids": [], "group_ids": {},
            "accounts": {}
        })
    }
}

/// A Zammad ticket and its history of articles, kept as Zammad keeps the
/// contact times (Ticket::Article::HasTicketContactAttributesImpact, with
/// the default ticket_last_contact_behaviour "check_if_agent_already_replied"):
/// only public articles of a communication type from the customer or an
/// agent count; a customer's follow-up before an agent replied moves none.
/// Times are fixed when an article is added (`at` seconds before now), so
/// every poll reads the same instants.
#[derive(Clone, Debug)]
pub struct ZammadTicket {
    pub id: i64,
    pub state_id: i64,
    pub priority_id: i64,
    pub group_id: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_contact_at: Option<DateTime<Utc>>,
    pub last_contact_agent_at: Option<DateTime<Utc>>,
    pub last_contact_customer_at: Option<DateTime<Utc>>,
    pub article_count: i64,
    pub customer: ZammadUser,
    /// As `GET /api/v1/ticket_articles/by_ticket/ID` lists them
    /// (`attributes_with_association_names`: sender and type by name).
    pub articles: Vec<Value>,
}

/// Zammad's millisecond timestamps.
fn zammad_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn zammad_at(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| json!(zammad_time(t)))
}

fn secs_ago(secs: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::seconds(secs)
}

impl ZammadTicket {
    /// Opened by the customer's first message `created` seconds ago, in
    /// state `open`, priority "2 normal".
    pub fn opened(id: i64, created: i64, customer: ZammadUser) -> Self {
        let mut t = Self {
            id,
            state_id: 2,
            priority_id: 2,
            group_id: 1,
            created_at: secs_ago(created),
            updated_at: secs_ago(created),
            last_contact_at: None,
            last_contact_agent_at: None,
            last_contact_customer_at: None,
            article_count: 0,
            customer,
            articles: Vec::new(),
        };
        t.customer_writes(created);
        t
    }

    pub fn state(mut self, state_id: i64) -> Self {
        self.state_id = state_id;
        self
    }

    pub fn priority(mut self, priority_id: i64) -> Self {
        self.priority_id = priority_id;
        self
    }

    /// Adds an article `at` seconds ago: `sender` Customer or Agent, an
    /// email (with a Message-ID) unless `internal`, then a note.
    fn touch(&mut self, at: i64, sender: &str, internal: bool) -> DateTime<Utc> {
        let at = secs_ago(at);
        self.article_count += 1;
        self.updated_at = self.updated_at.max(at);
        let n = self.article_count;
        let message_id = match (internal, sender) {
            (true, _) => Value::Null,
            (false, "Customer") => json!(self.customer_message_id(n)),
            (false, _) => json!(format!("<agent.{}.{n}@zammad.example.com>", self.id)),
        };
        self.articles.push(json!({
            "id": self.id * 100 + n, "ticket_id": self.id,
            "type": if internal { "note" } else { "email" }, "sender": sender,
            "from": if sender == "Customer" { self.customer.email.clone() } else { "Support <support@example.com>".to_owned() },
            "to": "", "cc": null, "subject": format!("Zammad ticket {}", self.id),
            "reply_to": null, "message_id": message_id, "message_id_md5": null,
            "in_reply_to": null, "content_type": "text/plain", "references": null,
            "body": "…", "internal": internal, "preferences": {},
            "updated_by": "-", "created_by": "-", "origin_by_id": null,
            "created_at": zammad_time(at), "updated_at": zammad_time(at),
            "attachments": []
        }));
        at
    }

    /// The Message-ID of the customer's `n`th article (counting all).
    pub fn customer_message_id(&self, n: i64) -> String {
        format!("<customer.{}.{n}@mail.example.net>", self.id)
    }

    /// The customer's first message came through the web form: it has
    /// no Message-ID.
    pub fn via_web(mut self) -> Self {
        if let Some(first) = self.articles.first_mut().and_then(Value::as_object_mut) {
            first.insert("type".into(), json!("web"));
            first.insert("message_id".into(), Value::Null);
        }
        self
    }

    /// A customer's email `at` seconds ago.
    pub fn customer_writes(&mut self, at: i64) -> &mut Self {
        let at = self.touch(at, "Customer", false);
        let again = self.last_contact_customer_at.is_some()
            && self.last_contact_at.is_some()
            && self.last_contact_customer_at == self.last_contact_at;
        if again {
            return self;
        }
        let agent_replied_since = match (self.last_contact_customer_at, self.last_contact_agent_at)
        {
            (None, _) | (_, None) => true,
            (Some(customer), Some(agent)) => agent.timestamp() > customer.timestamp(),
        };
        if agent_replied_since {
            self.last_contact_customer_at = Some(at);
            self.last_contact_at = Some(at);
        }
        self
    }

    /// An agent's public email reply `at` seconds ago.
    pub fn agent_replies(&mut self, at: i64) -> &mut Self {
        let at = self.touch(at, "Agent", false);
        self.last_contact_agent_at = Some(at);
        self.last_contact_at = Some(at);
        self
    }

    /// An internal note `at` seconds ago: no contact.
    pub fn internal_note(&mut self, at: i64) -> &mut Self {
        self.touch(at, "Agent", true);
        self
    }

    pub fn number(&self) -> String {
        format!("{}", 31000 + self.id)
    }

    /// The ticket as `assets.Ticket` carries it (`attributes_with_association_ids`).
    pub fn json(&self) -> Value {
        let mut ticket = json!({
            "id": self.id, "group_id": self.group_id, "priority_id": self.priority_id,
            "state_id": self.state_id, "organization_id": null, "number": self.number(),
            "title": format!("Zammad ticket {}", self.id), "owner_id": 1,
            "customer_id": self.customer.id, "note": null,
            "first_response_at": zammad_at(self.last_contact_agent_at),
            "first_response_escalation_at": null, "first_response_in_min": null,
            "first_response_diff_in_min": null, "close_at": null, "close_escalation_at": null,
            "close_in_min": null, "close_diff_in_min": null, "update_escalation_at": null,
            "update_in_min": null, "update_diff_in_min": null, "last_close_at": null,
            "last_contact_at": zammad_at(self.last_contact_at),
            "last_contact_agent_at": zammad_at(self.last_contact_agent_at),
            "last_contact_customer_at": zammad_at(self.last_contact_customer_at)
        });
        let rest = json!({
            "last_owner_update_at": null, "create_article_type_id": 1,
            "create_article_sender_id": 2, "article_count": self.article_count,
            "escalation_at": null, "pending_time": null, "type": null, "time_unit": null,
            "preferences": {"channel_id": 3}, "updated_by_id": self.customer.id,
            "created_by_id": self.customer.id, "created_at": zammad_time(self.created_at),
            "updated_at": zammad_time(self.updated_at),
            "article_ids": [self.id * 10, self.id * 10 + 1],
            "ticket_time_accounting_ids": [], "mention_user_ids": [], "tag_ids": []
        });
        if let (Some(ticket), Value::Object(rest)) = (ticket.as_object_mut(), rest) {
            ticket.extend(rest);
        }
        ticket
    }
}

/// A Zammad group as the assets carry it.
pub fn zammad_group(id: i64, name: &str) -> Value {
    json!({
        "id": id, "signature_id": 1, "email_address_id": 1, "name": name,
        "assignment_timeout": null, "follow_up_possible": "yes", "follow_up_assignment": true,
        "active": true, "note": "Standard Group/Pool for Tickets.", "updated_by_id": 1,
        "created_by_id": 1, "created_at": "2021-11-03T11:51:13.759Z",
        "updated_at": "2021-11-03T11:51:13.759Z", "user_ids": [1]
    })
}

/// `GET /api/v1/tickets/search?query=…&page=N&per_page=M` without
/// `expand`: the page's ticket ids and their assets keyed by id (the
/// tickets, their customers and the owner, their groups); an empty page
/// past the end (`assets` then holds nothing).
pub fn zammad_search_page(tickets: &[ZammadTicket], page: usize, per_page: usize) -> Value {
    let start = page.saturating_sub(1).saturating_mul(per_page);
    let slice: Vec<&ZammadTicket> = tickets.iter().skip(start).take(per_page).collect();
    let mut ticket_assets = serde_json::Map::new();
    let mut users = serde_json::Map::new();
    let mut groups = serde_json::Map::new();
    for t in &slice {
        ticket_assets.insert(t.id.to_string(), t.json());
        users.insert(t.customer.id.to_string(), t.customer.json());
        groups.insert(t.group_id.to_string(), zammad_group(t.group_id, "Users"));
    }
    let mut assets = serde_json::Map::new();
    if !slice.is_empty() {
        let owner = ZammadUser::new(1, "", "-", "");
        users.insert("1".into(), owner.json());
        assets.insert("Ticket".into(), Value::Object(ticket_assets));
        assets.insert("User".into(), Value::Object(users));
        assets.insert("Group".into(), Value::Object(groups));
    }
    json!({
        "tickets": slice.iter().map(|t| t.id).collect::<Vec<_>>(),
        "tickets_count": slice.len(),
        "assets": assets
    })
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
