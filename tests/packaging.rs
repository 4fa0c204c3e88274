//! What operators install and look at besides the daemon: `--version`, shell
//! completions, man pages, the Debian package, and the supply-chain policy
//! in deny.toml.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{NaiveDate, Utc};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_interim");

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| panic!("run {program:?} {args:?}: {e}"))
}

/// Stdout of a command that must succeed.
fn stdout_of(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let program = program.as_ref();
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program:?} {args:?} ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn interim(args: &[&str]) -> String {
    stdout_of(BIN, args)
}

/// The commands `interim --help` lists (without `help`): what completions
/// and man pages must know.
fn commands() -> Vec<String> {
    let help = interim(&["--help"]);
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    assert!(
        commands.len() > 5 && commands.iter().any(|c| c == "check-config"),
        "commands from --help:\n{help}"
    );
    commands
}

fn tool_works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn version_names_the_crate_version_and_the_commit_of_a_checkout() {
    let version = interim(&["--version"]);
    let expected = format!("interim {}", env!("CARGO_PKG_VERSION"));
    // What build.rs embedded: the commit of this checkout, or nothing when
    // the crate is not the top of one (no git, or a tarball unpacked inside
    // another repository, whose HEAD is not ours).
    let commit = env!("INTERIM_COMMIT");
    if commit.is_empty() {
        assert_eq!(
            version.trim(),
            expected,
            "no checkout of this repository: the version alone"
        );
    } else {
        assert_eq!(version.trim(), format!("{expected} ({commit})"));
        let head = Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(ROOT)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        assert!(
            head.starts_with(commit),
            "the embedded commit {commit} is this checkout's HEAD {head}"
        );
    }
    assert_eq!(interim(&["-V"]), version, "-V is --version");
}

#[test]
fn completions_for_bash_zsh_and_fish_know_every_command() {
    let commands = commands();
    for (shell, marker, config_flag) in [
        ("bash", "complete -F _interim", "--config"),
        ("zsh", "#compdef interim", "'--config="),
        ("fish", "complete -c interim", "-l config"),
    ] {
        let script = interim(&["completions", shell]);
        assert!(script.contains(marker), "{shell} script has {marker:?}");
        for command in &commands {
            assert!(
                script.contains(command.as_str()),
                "the {shell} completions offer `{command}`"
            );
        }
        assert!(script.contains(config_flag), "{shell} completes --config");
    }
    let out = run(BIN, &["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_man_page_is_roff_naming_every_command() {
    let page = interim(&["man"]);
    assert!(page.contains(".TH interim 1"), "a .TH title line:\n{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "the page has {section}");
    }
    assert!(
        page.contains(env!("CARGO_PKG_VERSION")),
        "the page names the version"
    );
    for command in commands() {
        // roff escapes every hyphen
        let roff_name = format!("interim\\-{}(1)", command.replace('-', "\\-"));
        assert!(page.contains(&roff_name), "the page lists {roff_name}");
    }
    assert!(!page.contains("interim\\-help"), "no page for `help`");
}

#[test]
fn man_dir_writes_a_page_for_every_command() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("man1");
    interim(&["man", "--dir", out.to_str().expect("UTF-8 path")]);
    for command in commands() {
        let page = fs::read_to_string(out.join(format!("interim-{command}.1")))
            .unwrap_or_else(|e| panic!("interim-{command}.1: {e}"));
        assert!(
            page.contains(&format!(".TH interim-{command} 1")),
            "interim-{command}.1 has its .TH"
        );
    }
    let plan = fs::read_to_string(out.join("interim-plan.1")).expect("interim-plan.1");
    for option in ["\\-\\-at", "\\-\\-horizon", "\\-\\-format"] {
        assert!(plan.contains(option), "interim-plan(1) documents {option}");
    }
    let main = fs::read_to_string(out.join("interim.1")).expect("interim.1");
    assert_eq!(
        main,
        interim(&["man"]),
        "interim.1 is what `interim man` prints"
    );
}

/// The package `deploy/debian/build-deb --dev` makes from the debug binary
/// that this test run built, unpacked.
struct Package {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    /// `dpkg-deb -c`: mode and path (without the leading `.`) of every entry.
    entries: Vec<(String, String)>,
    /// `dpkg-deb -e`: control, conffiles and maintainer scripts.
    control: PathBuf,
    /// `dpkg-deb -x`: the files.
    root: PathBuf,
}

impl Package {
    fn build() -> Option<Package> {
        let missing: Vec<&str> = [
            (
                "cargo-deb (cargo install --locked cargo-deb)",
                tool_works("cargo", &["deb", "--version"]),
            ),
            (
                "dpkg-deb (apt-get install dpkg)",
                tool_works("dpkg-deb", &["--version"]),
            ),
        ]
        .into_iter()
        .filter(|(_, works)| !works)
        .map(|(tool, _)| tool)
        .collect();
        if !missing.is_empty() {
            support::skip_or_fail(&format!("not installed: {}", missing.join(", ")));
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out_dir = dir.path().join("out");
        let started = std::time::Instant::now();
        let build = Path::new(ROOT).join("deploy/debian/build-deb");
        let out = run(
            &build,
            &[
                "--dev",
                "--quiet",
                "--output",
                out_dir.to_str().expect("UTF-8"),
            ],
        );
        assert!(
            out.status.success(),
            "deploy/debian/build-deb --dev ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("built the .deb in {:.1?}", started.elapsed());
        let debs: Vec<PathBuf> = fs::read_dir(&out_dir)
            .expect("the output folder")
            .map(|e| e.expect("a folder entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        assert_eq!(debs.len(), 1, "one .deb in {}: {debs:?}", out_dir.display());
        let deb = debs[0].clone();
        let deb_arg = deb.to_str().expect("UTF-8 path");
        let entries = stdout_of("dpkg-deb", &["-c", deb_arg])
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let path = fields.last().expect("a path").trim_start_matches('.');
                (fields[0].to_owned(), path.to_owned())
            })
            .collect();
        let control = dir.path().join("control");
        let root = dir.path().join("root");
        stdout_of(
            "dpkg-deb",
            &["-e", deb_arg, control.to_str().expect("UTF-8")],
        );
        stdout_of("dpkg-deb", &["-x", deb_arg, root.to_str().expect("UTF-8")]);
        Some(Package {
            _dir: dir,
            deb,
            entries,
            control,
            root,
        })
    }

    fn mode_of(&self, path: &str) -> &str {
        self.entries
            .iter()
            .find(|(_, p)| p == path)
            .map(|(mode, _)| mode.as_str())
            .unwrap_or_else(|| panic!("the package has {path}; it has {:#?}", self.entries))
    }

    fn control_file(&self, name: &str) -> String {
        fs::read_to_string(self.control.join(name))
            .unwrap_or_else(|e| panic!("control file {name}: {e}"))
    }

    fn file(&self, path: &str) -> String {
        fs::read_to_string(self.root.join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{path} in the package: {e}"))
    }
}

fn template_files() -> BTreeSet<String> {
    fs::read_dir(Path::new(ROOT).join("config/templates"))
        .expect("config/templates")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .collect()
}

/// `Key=value` lines of a unit file for one key, in order.
fn unit_lines<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter(|l| l.starts_with(&format!("{key}=")))
        .collect()
}

#[test]
fn the_debian_package_installs_the_service_its_user_config_and_docs() {
    let Some(package) = Package::build() else {
        return;
    };

    // The binary: the one this test run built, stripped.
    assert_eq!(package.mode_of("/usr/bin/interim"), "-rwxr-xr-x");
    let packaged = package.root.join("usr/bin/interim");
    assert_eq!(
        stdout_of(&packaged, &["--version"]),
        interim(&["--version"]),
        "the package holds the binary just built"
    );

    // The unit as in deploy/, and the package's drop-in: /usr/bin and the user.
    let unit = package.file("/usr/lib/systemd/system/interim.service");
    let deployed =
        fs::read_to_string(Path::new(ROOT).join("deploy/interim.service")).expect("the unit");
    assert_eq!(unit, deployed, "the package ships deploy/interim.service");
    let drop_in = package.file("/usr/lib/systemd/system/interim.service.d/package.conf");
    for key in ["ExecStartPre", "ExecStart"] {
        let expected: Vec<String> = unit_lines(&unit, key)
            .iter()
            .map(|l| l.replace("/usr/local/bin/interim", "/usr/bin/interim"))
            .collect();
        let mut overridden = vec![format!("{key}=")];
        overridden.extend(expected);
        assert_eq!(
            unit_lines(&drop_in, key),
            overridden,
            "the drop-in runs the unit's {key} from /usr/bin"
        );
    }
    for line in ["DynamicUser=no", "User=interim", "Group=interim"] {
        assert!(
            drop_in.lines().any(|l| l == line),
            "the drop-in sets {line}"
        );
    }

    // /etc/interim: the reference config and the templates, as conffiles.
    assert_eq!(
        package.file("/etc/interim/interim.toml"),
        fs::read_to_string(Path::new(ROOT).join("config/interim.toml")).expect("the reference")
    );
    let conffiles: BTreeSet<String> = package
        .control_file("conffiles")
        .lines()
        .map(str::to_owned)
        .collect();
    let mut expected: BTreeSet<String> = template_files()
        .iter()
        .map(|t| format!("/etc/interim/templates/{t}"))
        .collect();
    expected.insert("/etc/interim/interim.toml".to_owned());
    assert_eq!(
        conffiles, expected,
        "conffiles: the config and every template"
    );
    for file in &expected {
        assert_eq!(package.mode_of(file), "-rw-r--r--", "{file}");
    }

    // Man pages (compressed) and completions.
    for command in commands() {
        package.mode_of(&format!("/usr/share/man/man1/interim-{command}.1.gz"));
    }
    let man = package.root.join("usr/share/man/man1/interim.1.gz");
    let page = stdout_of("gzip", &["-dc", man.to_str().expect("UTF-8")]);
    assert_eq!(page, interim(&["man"]), "interim.1.gz is `interim man`");
    for (path, shell) in [
        ("/usr/share/bash-completion/completions/interim", "bash"),
        ("/usr/share/zsh/vendor-completions/_interim", "zsh"),
        ("/usr/share/fish/vendor_completions.d/interim.fish", "fish"),
    ] {
        assert_eq!(
            package.file(path),
            interim(&["completions", shell]),
            "{path}"
        );
    }

    // Control: depends on adduser for postinst; maintainer scripts.
    let control = package.control_file("control");
    assert!(control.contains("Package: interim\n"), "{control}");
    let depends = control
        .lines()
        .find(|l| l.starts_with("Depends:"))
        .unwrap_or_else(|| panic!("a Depends line:\n{control}"));
    assert!(
        depends.contains("adduser") && depends.contains("libc6"),
        "{depends}"
    );

    let postinst = package.control_file("postinst");
    assert!(
        postinst.contains("adduser --system --group --quiet --home /var/lib/interim")
            && postinst.contains(" interim\n"),
        "postinst creates the system user interim:\n{postinst}"
    );
    assert!(
        postinst.contains("install -d -o interim -g interim -m 0750 /var/lib/interim"),
        "postinst creates /var/lib/interim owned by interim:\n{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-helper update-state interim.service")
            && !postinst.contains("deb-systemd-invoke start"),
        "postinst registers the unit but neither enables nor starts it:\n{postinst}"
    );
    let prerm = package.control_file("prerm");
    assert!(
        prerm.contains("deb-systemd-invoke stop interim.service"),
        "prerm stops the service on removal:\n{prerm}"
    );
    let postrm = package.control_file("postrm");
    let purge = postrm
        .rsplit_once("if [ \"$1\" = \"purge\" ]; then")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("postrm handles purge:\n{postrm}"));
    assert!(
        purge.contains("rm -rf /var/lib/interim"),
        "purge removes the ledger"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let text = package.control_file(script);
        assert!(
            !text.contains("#DEBHELPER#"),
            "{script}: the token is replaced"
        );
        let path = package.control.join(script);
        let out = run("sh", &["-n", path.to_str().expect("UTF-8")]);
        assert!(
            out.status.success(),
            "{script} is valid sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The unit with the drop-in passes systemd-analyze verify.
    if tool_works("systemd-analyze", &["--version"]) {
        verify_unit(&package);
    } else {
        support::skip_or_fail("systemd-analyze is not installed");
    }
    println!("{}", package.deb.display());
}

/// systemd-analyze verify on the packaged unit and drop-in; the binary must
/// exist at verify time, so the drop-in points at the unpacked one.
fn verify_unit(package: &Package) {
    let units = package.root.join("usr/lib/systemd/system");
    let drop_in = units.join("interim.service.d/package.conf");
    let text = fs::read_to_string(&drop_in).expect("the drop-in");
    let packaged = package.root.join("usr/bin/interim");
    fs::write(
        &drop_in,
        text.replace("/usr/bin/interim", packaged.to_str().expect("UTF-8")),
    )
    .expect("point the drop-in at the unpacked binary");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("interim.service"))
        // The trailing colon keeps the built-in search path.
        .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
        .output()
        .expect("run systemd-analyze");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && output.trim().is_empty(),
        "systemd-analyze verify, unit and drop-in ({}):\n{output}",
        out.status
    );
}

/// The comment above an exception: `# reason: …; revisit: YYYY-MM-DD`.
fn exception_comment(line: &str) -> Option<(String, NaiveDate)> {
    let rest = line.trim().strip_prefix("# reason:")?;
    let (reason, date) = rest.rsplit_once("; revisit:")?;
    let date = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").ok()?;
    let reason = reason.trim();
    (!reason.is_empty()).then(|| (reason.to_owned(), date))
}

#[test]
fn every_supply_chain_exception_names_a_reason_and_a_revisit_date_not_yet_passed() {
    let text = fs::read_to_string(Path::new(ROOT).join("deny.toml")).expect("deny.toml");
    // Lists whose entries let a finding pass.
    let exception_lists = [
        "ignore",
        "exceptions",
        "skip",
        "skip-tree",
        "allow-git",
        "allow-org",
    ];
    let today = Utc::now().date_naive();
    let mut list: Option<String> = None;
    let mut previous = "";
    let mut seen = 0;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some((key, value)) = trimmed.split_once('=') {
            let key = key.trim();
            let value = value.trim();
            if list.is_none() && exception_lists.contains(&key) {
                assert!(
                    value == "[]" || value == "[",
                    "deny.toml:{}: write {key} one entry a line, each with its comment",
                    number + 1
                );
                if value == "[" {
                    list = Some(key.to_owned());
                }
                previous = trimmed;
                continue;
            }
        }
        if let Some(key) = &list {
            if trimmed.starts_with(']') {
                list = None;
            } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
                seen += 1;
                let (reason, revisit) = exception_comment(previous).unwrap_or_else(|| {
                    panic!(
                        "deny.toml:{}: the {key} entry {trimmed} needs the line above it to be \
                         `# reason: …; revisit: YYYY-MM-DD`",
                        number + 1
                    )
                });
                assert!(
                    revisit >= today,
                    "deny.toml:{}: revisit date {revisit} of {trimmed} has passed ({reason}): \
                     look again, then remove the exception or move the date",
                    number + 1
                );
            }
        }
        previous = trimmed;
    }
    assert!(list.is_none(), "deny.toml: an exception list is not closed");
    println!("{seen} exception(s) with a reason and a revisit date");
}

#[test]
fn an_exception_comment_needs_a_reason_and_a_date() {
    let good = "    # reason: dev-only; revisit: 2027-03-01";
    assert_eq!(
        exception_comment(good),
        Some((
            "dev-only".to_owned(),
            NaiveDate::from_ymd_opt(2027, 3, 1).expect("a date")
        ))
    );
    for bad in [
        "# reason: dev-only",
        "# reason: ; revisit: 2027-03-01",
        "# reason: dev-only; revisit: soon",
        "# dev-only; revisit: 2027-03-01",
    ] {
        assert_eq!(exception_comment(bad), None, "{bad}");
    }
}
