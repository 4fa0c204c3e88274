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
        let mut options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                format!("--window-size={width},{height}"), "--lang=en-US",
            ],
            "prefs": {"intl.accept_languages": "en-US,en"},
        });
        // A window is at least 500 pixels wide: a phone's viewport is
        // emulated instead.
        if width < 500 {
            options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "touch": true},
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Some(Self { client, driver })
    }

    /// Waits (polling, 20 s at most) until the page's URL is `path` with
    /// `query` in its query string: a click or a submit returns before the
    /// browser has loaded the page it leads to.
    pub async fn wait_for_page(&self, path: &str, query: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let at = self.client.current_url().await.expect("a URL");
            if at.path() == path && at.query().unwrap_or("").contains(query) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still at {at}, not at {path}?{query}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fills `field` of the form `css` selects with `value` and submits it
    /// (the caller waits for the page it leads to).
    pub async fn submit(&self, css: &str, field: &str, value: &str) {
        let form = self
            .client
            .form(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no form {css}: {e}"));
        form.set_by_name(field, value)
            .await
            .unwrap_or_else(|e| panic!("{field} of {css}: {e}"));
        form.submit()
            .await
            .unwrap_or_else(|e| panic!("submit {css}: {e}"));
    }

    /// How many elements `css` selects.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .len()
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

/// Parse errors of an HTML page (html5ever's own), its title, and the
/// mistakes a page must not have: a form control without a label, an
/// image without alt text, an SVG without a title.
pub fn html_problems(html: &str) -> (Vec<String>, String) {
    use html5ever::tendril::TendrilSink;
    use markup5ever_rcdom::{Handle, NodeData, RcDom};

    let dom = html5ever::parse_document(RcDom::default(), Default::default())
        .from_utf8()
        .read_from(&mut html.as_bytes())
        .expect("reading from memory");
    let mut problems: Vec<String> = dom.errors.borrow().iter().map(|e| e.to_string()).collect();

    /// An element: its name, its attributes, the node.
    type Element = (String, Vec<(String, String)>, Handle);
    /// Every element under `node`.
    fn elements(node: &Handle, out: &mut Vec<Element>) {
        if let NodeData::Element { name, attrs, .. } = &node.data {
            let attrs = attrs
                .borrow()
                .iter()
                .map(|a| (a.name.local.to_string(), a.value.to_string()))
                .collect();
            out.push((name.local.to_string(), attrs, node.clone()));
        }
        for child in node.children.borrow().iter() {
            elements(child, out);
        }
    }
    fn text(node: &Handle) -> String {
        let mut out = String::new();
        if let NodeData::Text { contents } = &node.data {
            out.push_str(&contents.borrow());
        }
        for child in node.children.borrow().iter() {
            out.push_str(&text(child));
        }
        out
    }
    let attr = |attrs: &[(String, String)], name: &str| {
        attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut all = Vec::new();
    elements(&dom.document, &mut all);
    let title = all
        .iter()
        .find(|(name, _, _)| name == "title")
        .map(|(_, _, node)| text(node))
        .unwrap_or_default();
    let labelled: Vec<String> = all
        .iter()
        .filter(|(name, _, _)| name == "label")
        .filter_map(|(_, attrs, _)| attr(attrs, "for"))
        .collect();
    for (name, attrs, _) in &all {
        let kind = attr(attrs, "type").unwrap_or_default();
        let control = matches!(name.as_str(), "select" | "textarea")
            || (name == "input" && !matches!(kind.as_str(), "hidden" | "submit"));
        let id = attr(attrs, "id").unwrap_or_default();
        if control && attr(attrs, "aria-label").is_none() && !labelled.contains(&id) {
            problems.push(format!(
                "a form control without a label: <{name} id={id:?}>"
            ));
        }
        if name == "img" && attr(attrs, "alt").is_none() {
            problems.push("an image without alt text".into());
        }
    }
    for (_, _, svg) in all.iter().filter(|(name, _, _)| name == "svg") {
        let mut inside = Vec::new();
        elements(svg, &mut inside);
        if !inside.iter().any(|(name, _, _)| name == "title") {
            problems.push("an SVG without a title".into());
        }
    }
    (problems, title)
}
