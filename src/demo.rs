//! `interim demo`: placeholder, filled in below.
use std::path::Path;
use std::time::Duration;

pub async fn run(_dir: &Path, _length: Duration) -> anyhow::Result<()> {
    anyhow::bail!("the demo is not built yet")
}
