//! Relative paths in the config file resolve against the file's folder
//! (as Prometheus does), so the working directory of a service does not
//! change what a config means.

use std::path::Path;

use super::raw::RawConfig;

/// Rewrites every relative path the file names (store and source SQLite
/// files, `templates.dir`, file channels, `holidays_file`, `suppress.file`
/// and the `*_file` secrets) to one under `base`. An unset
/// `templates.dir` becomes `base/templates`.
pub(super) fn resolve(raw: &mut RawConfig, base: &Path) {
    let file = |value: &mut Option<String>| {
        if let Some(v) = value.as_mut() {
            *v = under(base, v);
        }
    };
    let sqlite = |value: &mut Option<String>| {
        if let Some(v) = value.as_mut() {
            *v = sqlite_under(base, v);
        }
    };
    sqlite(&mut raw.store.url);
    sqlite(&mut raw.source.url);
    file(&mut raw.source.url_file);
    file(&mut raw.source.token_file);
    file(&mut raw.source.password_file);
    for calendar in raw.calendars.values_mut() {
        file(&mut calendar.holidays_file);
    }
    for channel in raw.channels.values_mut() {
        file(&mut channel.path);
        file(&mut channel.password_file);
        file(&mut channel.secret_file);
    }
    file(&mut raw.suppress.file);
    let dir = raw.templates.dir.get_or_insert_with(|| "templates".into());
    *dir = under(base, dir);
}

fn under(base: &Path, path: &str) -> String {
    if path.is_empty() || Path::new(path).is_absolute() {
        return path.to_owned();
    }
    base.join(path).display().to_string()
}

/// `sqlite://PATH` or `sqlite:PATH` with a relative PATH (query kept);
/// absolute paths, `:memory:` and other schemes are unchanged.
fn sqlite_under(base: &Path, url: &str) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_owned();
    };
    let (path, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if path.is_empty() || path.starts_with(':') || path.starts_with('/') {
        return url.to_owned();
    }
    format!("sqlite://{}{query}", under(base, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_resolve_against_the_base() {
        let base = Path::new("/etc/interim");
        assert_eq!(
            sqlite_under(base, "sqlite://var/x.db?mode=rwc"),
            "sqlite:///etc/interim/var/x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_under(base, "sqlite:x.db"),
            "sqlite:///etc/interim/x.db"
        );
        assert_eq!(sqlite_under(base, "sqlite:///abs.db"), "sqlite:///abs.db");
        assert_eq!(sqlite_under(base, "sqlite::memory:"), "sqlite::memory:");
        assert_eq!(sqlite_under(base, "postgres://h/db"), "postgres://h/db");
    }
}
