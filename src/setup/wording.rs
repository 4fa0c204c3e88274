//! Warnings about `[wording]` that would otherwise fall back silently: a
//! state key one language has and another lacks (often a typo), a state a
//! policy matches without wording, a language no template is written in.

use std::collections::BTreeSet;

use crate::config::Settings;
use crate::policy::MatchField;
use crate::templates::Templates;

pub(super) fn warnings(settings: &Settings, templates: &Templates) -> Vec<String> {
    let mut out = Vec::new();
    let default = &settings.daemon.default_language;
    let languages: BTreeSet<&String> = settings.wording.keys().collect();
    let fallback = |lang: &str| {
        if lang == default {
            "the helpdesk's state name".to_owned()
        } else {
            format!("the wording of the default language {default}, else the helpdesk's state name")
        }
    };

    let all_keys: BTreeSet<&String> = settings.wording.values().flat_map(|w| w.keys()).collect();
    for lang in &languages {
        let words = &settings.wording[*lang];
        for key in all_keys.iter().filter(|k| !words.contains_key(**k)) {
            let others: Vec<String> = languages
                .iter()
                .filter(|l| settings.wording[**l].contains_key(*key))
                .map(|l| format!("wording.{l}"))
                .collect();
            out.push(format!(
                "wording.{lang}: no \"{key}\", which {} has (a typo?); a ticket in that state shows {}",
                others.join(", "),
                fallback(lang)
            ));
        }
    }

    let matched: BTreeSet<String> = settings
        .policies
        .iter()
        .flat_map(|p| &p.matcher.rules)
        .filter(|(field, _)| *field == MatchField::State)
        .flat_map(|(_, values)| values.iter().map(|v| v.to_lowercase()))
        .collect();
    for state in matched.iter().filter(|s| !all_keys.contains(s)) {
        if !languages.is_empty() {
            out.push(format!(
                "wording: no language has words for the state \"{state}\" that a policy matches; templates show it as the helpdesk names it"
            ));
        }
    }

    if !settings.policies.is_empty() {
        let written: BTreeSet<String> = settings
            .policies
            .iter()
            .flat_map(|p| templates.languages(&p.template))
            .collect();
        for lang in languages.iter().filter(|l| !written.contains(**l)) {
            out.push(format!(
                "wording.{lang}: no policy's template is written in {lang}; customers in {lang} get the {default} template"
            ));
        }
    }
    out
}
