//! A real browser for the status pages: Debian's `chromium`, headless,
//! driven over WebDriver by `chromedriver` on a port of its own (the
//! fantoccini client). Without them the test is skipped, or fails in CI
//! (`.ci/run` installs both).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless browser window; the driver stops when this is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// A window `width` × `height` CSS pixels, English preferred; None
    /// (skipped, or a failure in CI) without chromium and chromedriver.
    pub async fn start(width: u32, height: u32) -> Option<Self> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists()
        {
            super::skip_or_fail("chromium and chromium-driver are not installed");
            return None;
        }
        let port = super::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    format!("--window-size={width},{height}"), "--lang=en-US",
                ],
                "prefs": {"intl.accept_languages": "en-US,en"},
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Some(Self { client, driver })
    }

    /// The text of the element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        let element = self
            .client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"));
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// Saves the window as `target/screenshots/NAME.png` for a reviewer.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}

/// Parse errors of an HTML page (html5ever, through scraper), its title,
/// and the mistakes a page must not have: a form control without a label,
/// an image or SVG without a title.
pub fn html_problems(html: &str) -> (Vec<String>, String) {
    let page = scraper::Html::parse_document(html);
    let mut problems: Vec<String> = page.errors.iter().map(|e| e.to_string()).collect();
    let select = |css: &str| scraper::Selector::parse(css).expect("a selector");
    let title = page
        .select(&select("title"))
        .next()
        .map(|t| t.text().collect::<String>())
        .unwrap_or_default();
    let labelled: Vec<String> = page
        .select(&select("label[for]"))
        .filter_map(|l| l.value().attr("for").map(str::to_owned))
        .collect();
    for control in page.select(&select(
        "input:not([type=hidden]):not([type=submit]), select, textarea",
    )) {
        let id = control.value().attr("id").unwrap_or("");
        let named = control.value().attr("aria-label").is_some();
        if !named && !labelled.iter().any(|l| l == id) {
            problems.push(format!(
                "a form control without a label: {}",
                control.html()
            ));
        }
    }
    for image in page.select(&select("img")) {
        if image.value().attr("alt").is_none() {
            problems.push(format!("an image without alt text: {}", image.html()));
        }
    }
    for svg in page.select(&select("svg")) {
        if svg.select(&select("title")).next().is_none() {
            problems.push("an SVG without a title".into());
        }
    }
    (problems, title)
}
