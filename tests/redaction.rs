//! Redaction by parsing (issue 11, item 5): URLs with passwords and tokens
//! of any printable characters (`/ ? # @ % :` included, which break naive
//! URL parsing) never show a piece of the secret: not in the redactor's
//! output, not in `interim check-config`, not in `interim sources test`
//! against an unreachable database or API with that URL (debug logs on).
//!
//! A piece is any four consecutive characters of the secret (as written or
//! percent-encoded) that the output of the same run with a harmless secret
//! in its place does not contain. The redactor runs 256 cases, the binary
//! 6; `INTERIM_PROPTEST_CASES` sets both.

mod support;

use proptest::prelude::*;
use support::{Setup, toml_str};

fn cases(default: u32) -> u32 {
    std::env::var("INTERIM_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// Where the secret sits in the URL.
#[derive(Clone, Copy, Debug)]
enum Shape {
    PostgresPassword,
    MysqlPassword,
    PostgresPasswordParameter,
    SqliteKey,
    HttpsPassword,
    HttpsToken,
    HttpsApiKeyAndFragment,
}

impl Shape {
    fn url(self, user: &str, secret: &str) -> String {
        match self {
            Shape::PostgresPassword => format!("postgres://{user}:{secret}@127.0.0.1:1/helpdesk"),
            Shape::MysqlPassword => {
                format!("mysql://{user}:{secret}@127.0.0.1:1/helpdesk?ssl-mode=disabled")
            }
            Shape::PostgresPasswordParameter => {
                format!("postgres://{user}@127.0.0.1:1/helpdesk?sslmode=disable&password={secret}")
            }
            Shape::SqliteKey => format!("sqlite:///nonexistent/helpdesk.db?key={secret}"),
            Shape::HttpsPassword => format!("https://{user}:{secret}@127.0.0.1:1/api/tickets"),
            Shape::HttpsToken => {
                format!("https://127.0.0.1:1/api/tickets?state=open&access_token={secret}")
            }
            Shape::HttpsApiKeyAndFragment => {
                format!("https://127.0.0.1:1/api/tickets?API_KEY={secret}&page=1#{secret}")
            }
        }
    }

    fn http(self) -> bool {
        matches!(
            self,
            Shape::HttpsPassword | Shape::HttpsToken | Shape::HttpsApiKeyAndFragment
        )
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::PostgresPassword),
        Just(Shape::MysqlPassword),
        Just(Shape::PostgresPasswordParameter),
        Just(Shape::SqliteKey),
        Just(Shape::HttpsPassword),
        Just(Shape::HttpsToken),
        Just(Shape::HttpsApiKeyAndFragment),
    ]
}

/// Printable ASCII; half the time built around the characters that end a
/// URL's parts, so every case puts a few of them inside the secret.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{8,24}",
        "[ -~]{0,6}[/?#@%:&=]{1,2}[ -~]{2,6}[/?#@%:&=]{1,2}[ -~]{2,8}",
    ]
    .prop_filter("at least 8 characters", |s| s.chars().count() >= 8)
}

fn user() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,7}",
        Just("agent@example.com/token".to_string()),
    ]
}

/// A harmless secret of the same length, which no URL parser splits.
fn stand_in(secret: &str) -> String {
    "x".repeat(secret.chars().count())
}

/// The secret as written and as the `url` crate percent-encodes it in a
/// password and in a query value.
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    if let Ok(mut u) = url::Url::parse("x://h/") {
        if u.set_password(Some(secret)).is_ok()
            && let Some(p) = u.password()
        {
            out.push(p.to_string());
        }
        out.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    }
    out
}

/// Every four-character piece of a form of `secret` that `output` shows
/// and `control` (the same run with [`stand_in`]) does not, but for the
/// redactor's mark (`***` and delimiters).
fn leaks(secret: &str, output: &str, control: &str) -> Vec<String> {
    let mut found = Vec::new();
    for form in forms(secret) {
        let chars: Vec<char> = form.chars().collect();
        for window in chars.windows(4) {
            let piece: String = window.iter().collect();
            // `***` next to a delimiter is the redactor's own mark.
            let marker = window.iter().all(|c| "*/?#@:&=;".contains(*c));
            if !marker
                && output.contains(&piece)
                && !control.contains(&piece)
                && !found.contains(&piece)
            {
                found.push(piece);
            }
        }
    }
    found
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn the_redactor_shows_no_piece_of_a_secret(shape in shape(), user in user(), secret in secret()) {
        let url = shape.url(&user, &secret);
        let shown = interim::secret::redact_url(&url);
        let control = interim::secret::redact_url(&shape.url(&user, &stand_in(&secret)));
        let leaked = leaks(&secret, &shown, &control);
        prop_assert!(leaked.is_empty(), "{url:?} shows as {shown:?}: {leaked:?}");
        let scheme = url.split(':').next().unwrap_or_default();
        prop_assert!(shown.starts_with(scheme), "{shown:?} keeps its scheme");
        prop_assert!(shown.contains("***"), "{shown:?} marks what it masked");
        // A driver's error that quotes the URL, the secret, or the pieces a
        // misreading makes of it (before and after a `/`), loses them too.
        let quote = |url: &str, secret: &str| {
            let (port, database) = secret.split_once('/').unwrap_or((secret, ""));
            format!("cannot connect to {url}: password \"{secret}\", port {port}, database {database}")
        };
        let stand_in = stand_in(&secret);
        let scrubbed = interim::secret::scrub(&quote(&url, &secret), &url);
        let control_url = shape.url(&user, &stand_in);
        let control = interim::secret::scrub(&quote(&control_url, &stand_in), &control_url);
        let leaked = leaks(&secret, &scrubbed, &control);
        prop_assert!(leaked.is_empty(), "{url:?}: error text scrubbed to {scrubbed:?}: {leaked:?}");
    }
}

/// `check-config` and `sources test` output (stdout and stderr, debug
/// logs) for a config whose source URL is `url`.
fn outputs(shape: Shape, url: &str) -> String {
    let mut setup = Setup::new();
    setup
        .set("source.url", &toml_str(url))
        .set("source.timeout", &toml_str("1s"));
    if shape.http() {
        setup
            .unset("source.query")
            .set("source.kind", "\"http\"")
            .set(
                "source.fields",
                r#"{ id = "/id", state = "/state", waiting_since = "/waiting_since" }"#,
            );
    }
    setup.toml(&format!(
        "[channels.outbox]\nkind = \"file\"\npath = {}",
        toml_str(&setup.path("outbox").display().to_string())
    ));
    let mut all = String::new();
    for args in [&["check-config"][..], &["sources", "test"][..]] {
        let out = setup.cli(args);
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(6), max_shrink_iters: 16, ..ProptestConfig::default() })]

    #[test]
    fn check_config_and_sources_test_show_no_piece_of_a_secret(shape in shape(), user in user(), secret in secret()) {
        let url = shape.url(&user, &secret);
        let shown = outputs(shape, &url);
        let control = outputs(shape, &shape.url(&user, &stand_in(&secret)));
        let leaked = leaks(&secret, &shown, &control);
        prop_assert!(leaked.is_empty(), "{url:?}: {leaked:?} in\n{shown}");
        // Named by `sources test`, or by check-config's error when the
        // secret's characters leave no URL (`https://a:x>y@…`).
        prop_assert!(
            shown.contains("source:") || shown.contains("source.url: "),
            "the source is named:\n{shown}"
        );
    }
}

/// The report's case: a database password with `/`, `?`, `#` and `@` is
/// printed neither by `check-config` nor in the error of `sources test`.
#[test]
fn a_database_password_with_url_delimiters_stays_hidden() {
    let secret = "Pa/ss?w#rd@1";
    for shape in [Shape::PostgresPassword, Shape::MysqlPassword] {
        let url = shape.url("helpdesk", secret);
        let shown = outputs(shape, &url);
        for piece in ["Pa/ss", "ss?w", "w#rd", "rd@1", "Pa%2Fss"] {
            assert!(!shown.contains(piece), "{piece:?} of {url:?} in\n{shown}");
        }
        assert!(
            shown.contains("helpdesk:***@127.0.0.1:1/helpdesk"),
            "the URL is shown redacted, host and database visible:\n{shown}"
        );
    }
}

/// A password that begins with `/` after an empty port parses as a path
/// (`https://a:/pw@host` is host `a`): check-config refuses it, naming the
/// key and how to write it, and shows no piece of it.
#[test]
fn an_https_password_that_parses_as_a_path_is_refused_unseen() {
    let secret = "/SqR<~aQ\"I";
    let url = Shape::HttpsPassword.url("a", secret);
    let shown = outputs(Shape::HttpsPassword, &url);
    let control = outputs(
        Shape::HttpsPassword,
        &Shape::HttpsPassword.url("a", &stand_in(secret)),
    );
    let leaked = leaks(secret, &shown, &control);
    assert!(leaked.is_empty(), "{url:?}: {leaked:?} in\n{shown}");
    assert!(
        shown.contains("source.url: has an @ in its path and no user info: percent-encode"),
        "check-config names the key and the way out:\n{shown}"
    );
}
