//! The named parameters of the source queries (`:id`, `:since`,
//! `:since_unix`): part of the config contract, so config validates them
//! and the SQL source rewrites them into its backend's placeholders.

/// True when the query has an id parameter: `:id`, `$1` or `?`.
pub fn has_id_parameter(query: &str) -> bool {
    !parameter_positions(query, "id").is_empty() || query.contains("$1") || query.contains('?')
}

/// True when the query has a `:since` or `:since_unix` parameter.
pub fn since_parameter(query: &str) -> Option<&'static str> {
    if !parameter_positions(query, "since_unix").is_empty() {
        Some("since_unix")
    } else if !parameter_positions(query, "since").is_empty() {
        Some("since")
    } else {
        None
    }
}

/// Byte offsets of `:name` tokens (not `::name` casts, not `:name_more`).
pub fn parameter_positions(query: &str, name: &str) -> Vec<usize> {
    let token = format!(":{name}");
    let bytes = query.as_bytes();
    query
        .match_indices(&token)
        .map(|(at, _)| at)
        .filter(|&at| {
            let before_ok = at == 0 || bytes[at - 1] != b':';
            let after = bytes.get(at + token.len()).copied();
            let after_ok = after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b'_'));
            before_ok && after_ok
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_found_by_name_not_in_casts_or_longer_names() {
        assert!(has_id_parameter("SELECT 1 WHERE id = ?"));
        assert!(has_id_parameter("SELECT 1 WHERE id = :id"));
        assert!(!has_id_parameter("SELECT 1 WHERE x = :idx"));
        assert!(!has_id_parameter("SELECT 1"));
        assert_eq!(since_parameter("WHERE updated_at > :since"), Some("since"));
        assert_eq!(
            since_parameter("WHERE updated > :since_unix"),
            Some("since_unix")
        );
        assert_eq!(since_parameter("WHERE t > x::since"), None);
    }
}
