//! `/config`: the policies, channels, calendars and templates in force,
//! as `check-config` summarises them (no secret, URLs redacted), the file
//! they came from and when, and the last reload's result.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{Asked, respond};
use crate::http::AdminState;

#[derive(Debug, Default, Deserialize)]
pub struct ConfigQuery {
    lang: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Template {
    pub name: String,
    pub languages: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ConfigPage {
    pub file: String,
    pub loaded_at: String,
    /// `check-config`'s summary of what is in force.
    pub summary: String,
    pub templates: Vec<Template>,
    pub warnings: Vec<String>,
    pub last_reload_at: Option<String>,
    /// Why the last reload was rejected; None when it was taken.
    pub last_reload_error: Option<String>,
}

pub async fn page(
    State(state): State<AdminState>,
    Query(query): Query<ConfigQuery>,
    headers: HeaderMap,
) -> Response {
    let asked = Asked::from(&headers, query.lang.as_deref(), "/config", &state.sessions);
    let live = state.dispatcher.live();
    let config = &live.config;
    let settings = &config.settings;
    let mut names: Vec<String> = settings
        .policies
        .iter()
        .map(|p| p.template.clone())
        .collect();
    names.sort();
    names.dedup();
    let reload = state.dispatcher.last_reload();
    let data = ConfigPage {
        file: config.path.display().to_string(),
        loaded_at: crate::clock::rfc3339(live.loaded_at),
        summary: crate::setup::summary(config),
        templates: names
            .into_iter()
            .map(|name| Template {
                languages: config.templates.languages(&name),
                name,
            })
            .collect(),
        warnings: settings.warnings.clone(),
        last_reload_at: reload.as_ref().map(|(at, _)| crate::clock::rfc3339(*at)),
        last_reload_error: reload.and_then(|(_, error)| error),
    };
    respond(
        &asked,
        "config.html",
        "config",
        &data,
        settings.daemon.timezone,
        Utc::now(),
    )
}
