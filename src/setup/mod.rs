//! A configuration as the daemon and the commands use it: the validated
//! settings and the templates they name, loaded and checked together (the
//! wording warnings need both). It sits above `config` and `templates`
//! (which reads `config::Settings`), so config does not depend on
//! templates.

mod summary;
mod wording;

pub use summary::summary;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ConfigError, Settings};
use crate::templates::Templates;

/// Settings and the templates they refer to, validated together.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub settings: Arc<Settings>,
    pub templates: Arc<Templates>,
}

/// Loads one config file and the templates it names; every problem of
/// either is one `key.path: reason` line of the error.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let mut settings = crate::config::load_settings(path)?;
    let templates = Templates::load(&settings).map_err(|lines| ConfigError {
        path: path.display().to_string(),
        lines,
    })?;
    let wording = wording::warnings(&settings, &templates);
    settings.warnings.extend(wording);
    Ok(Config {
        path: path.to_owned(),
        settings: Arc::new(settings),
        templates,
    })
}
