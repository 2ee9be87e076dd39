//! The versions of the JavaScript tools on `$PATH`, read from the files they ship.
//!
//! npm and pnpm are packages: their command on `$PATH` is a symlink into the
//! package (`bin/npm -> ../lib/node_modules/npm/bin/npm-cli.js`, the same for
//! pnpm installed with `npm -g`), so the symlink is resolved and the version is
//! read from the `package.json` of the package the target file belongs to (the
//! nearest one above it), after checking that package's `name`. A corepack shim
//! (`bin/pnpm -> ../lib/node_modules/corepack/dist/pnpm.js`) runs the version the
//! workspace's `packageManager` field pins, else corepack's last known good one,
//! from `$COREPACK_HOME/v1/<tool>/<version>`: that version is reported, and only
//! when corepack has it installed.
//!
//! Anything else (node itself, a standalone pnpm binary) is asked `--version`
//! once; the answer is kept by [`VersionCache`], keyed by the binary's resolved
//! path and checked against its size, inode and times, so later reports start
//! no process.
//!
//! Every way to fail ends in a [`Tool`] with a `problem` that names the file or
//! command involved; a version is never guessed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::system::Tool;
use super::version_cache::VersionCache;
use crate::environment::Environment;

/// How long a `--version` may take before it is given up.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// One tool to probe: its command name and the package names that ship it.
#[derive(Debug, Clone, Copy)]
pub struct ToolSpec {
    pub command: &'static str,
    pub packages: &'static [&'static str],
}

pub const NODE: ToolSpec = ToolSpec { command: "node", packages: &[] };
pub const NPM: ToolSpec = ToolSpec { command: "npm", packages: &["npm"] };
pub const PNPM: ToolSpec = ToolSpec { command: "pnpm", packages: &["pnpm", "@pnpm/exe"] };

/// Where the probe looks: the environment (`PATH`, `COREPACK_HOME`, `HOME`) and
/// the workspace whose `packageManager` field corepack would read.
pub struct Probe<'a> {
    pub env: &'a Environment,
    pub workspace_root: Option<&'a Path>,
    pub cache: &'a VersionCache,
}

impl Probe<'_> {
    /// The version of `spec`'s command found first on `$PATH`.
    pub fn tool(&self, spec: ToolSpec) -> Tool {
        let Some(path) = which(self.env, spec.command) else {
            return problem(None, "not found on PATH".into());
        };
        let real = match std::fs::canonicalize(&path) {
            Ok(real) => real,
            Err(e) => return problem(Some(path.clone()), format!("cannot resolve {}: {e}", path.display())),
        };
        match owning_package(&real) {
            Some(Ok(package)) if spec.packages.contains(&package.name.as_str()) => match package.version {
                Some(version) => Tool { version: Some(version), path: Some(path), problem: None },
                None => problem(Some(path), format!("{} has no version", package.manifest.display())),
            },
            Some(Ok(package)) if package.name == "corepack" => self.corepack(spec.command, path),
            Some(Err(why)) if !spec.packages.is_empty() => problem(Some(path), why),
            _ => self.asked(path, &real),
        }
    }

    /// `<real> --version`, answered from the cache when the binary is unchanged.
    fn asked(&self, path: PathBuf, real: &Path) -> Tool {
        if let Some(version) = self.cache.get(real) {
            return Tool { version: Some(version), path: Some(path), problem: None };
        }
        match run_with_timeout(real, &["--version"], VERSION_TIMEOUT) {
            Ok(out) => {
                let version = out.lines().next().unwrap_or("").trim().trim_start_matches('v').to_string();
                if version.is_empty() {
                    return problem(Some(path), format!("{} --version printed nothing", real.display()));
                }
                self.cache.put(real, &version);
                Tool { version: Some(version), path: Some(path), problem: None }
            }
            Err(why) => problem(Some(path), why),
        }
    }

    /// The version a corepack shim for `tool` runs, if corepack has it installed.
    fn corepack(&self, tool: &str, path: PathBuf) -> Tool {
        let Some(home) = corepack_home(self.env) else {
            return problem(Some(path), "corepack shim, but no COREPACK_HOME or HOME to find its versions".into());
        };
        let pinned = match self.workspace_root.and_then(package_manager_field) {
            Some((manifest, spec)) => match parse_package_manager(&spec) {
                Some((name, version)) if name == tool => Ok(version),
                Some((name, _)) => Err(format!(
                    "{} asks for {spec}: corepack refuses to run {tool} here (a {name} project)",
                    manifest.display()
                )),
                None => Err(format!("{}: packageManager {spec:?} is not name@version", manifest.display())),
            },
            None => last_known_good(&home, tool).ok_or_else(|| {
                format!("corepack shim with no {tool} version yet (no packageManager field, nothing in {}/lastKnownGood.json)", home.display())
            }),
        };
        let version = match pinned {
            Ok(version) => version,
            Err(why) => return problem(Some(path), why),
        };
        let installed = home.join("v1").join(tool).join(&version).join("package.json");
        match read_package(&installed) {
            Ok(package) if package.version.as_deref() == Some(version.as_str()) => {
                Tool { version: Some(version), path: Some(path), problem: None }
            }
            Ok(package) => problem(
                Some(path),
                format!("{} says {:?}, not the pinned {version}", installed.display(), package.version),
            ),
            Err(_) => problem(
                Some(path),
                format!("corepack would download {tool}@{version} first (not in {})", home.join("v1").display()),
            ),
        }
    }
}

/// The first executable `name` in `$PATH`.
pub fn which(env: &Environment, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = env.get("PATH")?;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `require.resolve('nx/package.json')` from the workspace root: the nearest
/// `node_modules/nx/package.json` walking up.
pub fn installed_nx(root: &Path) -> Tool {
    for dir in root.ancestors() {
        let manifest = dir.join("node_modules/nx/package.json");
        if !manifest.exists() {
            continue;
        }
        return match read_package(&manifest) {
            Ok(Package { version: Some(v), .. }) => Tool { version: Some(v), path: Some(manifest), problem: None },
            Ok(_) => problem(Some(manifest.clone()), format!("{} has no version", manifest.display())),
            Err(why) => problem(Some(manifest), why),
        };
    }
    problem(None, "nx is not installed in the workspace (no node_modules/nx)".into())
}

/// The parts of a `package.json` read here.
#[derive(Debug)]
struct Package {
    manifest: PathBuf,
    name: String,
    version: Option<String>,
}

fn problem(path: Option<PathBuf>, why: String) -> Tool {
    Tool { version: None, path, problem: Some(why) }
}

/// The package `file` belongs to: the nearest `package.json` above it, as Node
/// decides it. `None` when there is none; `Err` when it cannot be read.
fn owning_package(file: &Path) -> Option<Result<Package, String>> {
    let manifest = file.ancestors().skip(1).map(|dir| dir.join("package.json")).find(|m| m.is_file())?;
    Some(read_package(&manifest))
}

fn read_package(manifest: &Path) -> Result<Package, String> {
    let text = std::fs::read_to_string(manifest).map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let field = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
    Ok(Package { manifest: manifest.to_path_buf(), name: field("name").unwrap_or_default(), version: field("version") })
}

/// Corepack's home: `$COREPACK_HOME`, else `$XDG_CACHE_HOME/node/corepack`, else
/// `~/.cache/node/corepack` (corepack's `getCorepackHomeFolder`).
fn corepack_home(env: &Environment) -> Option<PathBuf> {
    if let Some(home) = env.get("COREPACK_HOME") {
        return Some(PathBuf::from(home));
    }
    let cache = env.get("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| Some(env.home()?.join(".cache")))?;
    Some(cache.join("node/corepack"))
}

/// The nearest `package.json` with a `packageManager` field, walking up from
/// `root` and skipping `node_modules` folders, as corepack's `loadSpec` does.
fn package_manager_field(root: &Path) -> Option<(PathBuf, String)> {
    root.ancestors().filter(|dir| !dir.components().any(|c| c.as_os_str() == "node_modules")).find_map(|dir| {
        let manifest = dir.join("package.json");
        let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).ok()?).ok()?;
        let spec = value.get("packageManager")?.as_str()?.to_string();
        Some((manifest, spec))
    })
}

/// `pnpm@9.15.0+sha512.abc` -> (`pnpm`, `9.15.0`). Ranges and URLs are not
/// versions corepack runs, so they are not accepted here.
fn parse_package_manager(spec: &str) -> Option<(String, String)> {
    let (name, rest) = spec.rsplit_once('@').filter(|(name, _)| !name.is_empty())?;
    let version = rest.split('+').next()?;
    let exact = version.split('.').count() >= 3 && version.chars().next()?.is_ascii_digit();
    (exact && !version.contains(['^', '~', '>', '<', '*', ' ', '/'])).then(|| (name.to_string(), version.to_string()))
}

fn last_known_good(home: &Path, tool: &str) -> Option<String> {
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("lastKnownGood.json")).ok()?).ok()?;
    value.get(tool)?.as_str().map(str::to_string)
}

fn run_with_timeout(program: &Path, args: &[&str], timeout: Duration) -> Result<String, String> {
    let mut child = crate::reaper::spawn(
        Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()),
    )
    .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut text = String::new();
        stdout.map(|mut s| s.read_to_string(&mut text));
        text
    });
    match child.exit.wait_timeout(timeout) {
        Some(exit) if exit.success() => Ok(reader.join().unwrap_or_default()),
        Some(exit) => Err(format!("{} --version exited with {exit}", program.display())),
        None => {
            crate::reaper::signal_process(child.pid, rustix::process::Signal::KILL);
            child.exit.wait();
            Err(format!("{} --version did not answer within {}s", program.display(), timeout.as_secs()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    /// A prefix laid out like a Node install: `bin/` on PATH, packages in `lib/node_modules`.
    struct Prefix {
        dir: tempfile::TempDir,
    }

    impl Prefix {
        fn new() -> Prefix {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("bin")).unwrap();
            Prefix { dir }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let file = self.path(rel);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, text).unwrap();
            file
        }

        fn executable(&self, rel: &str, text: &str) -> PathBuf {
            let file = self.write(rel, text);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
            file
        }

        /// A package in `lib/node_modules/<name>` with `bin/<command>` linked to `<bin>`, as npm -g does.
        fn package(&self, name: &str, manifest: &str, command: &str, bin: &str) {
            self.write(&format!("lib/node_modules/{name}/package.json"), manifest);
            self.executable(&format!("lib/node_modules/{name}/{bin}"), "#!/bin/sh\nexit 99\n");
            symlink(format!("../lib/node_modules/{name}/{bin}"), self.path(&format!("bin/{command}"))).unwrap();
        }

        fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Environment {
            let path = self.path("bin");
            let home = self.path("home");
            let mut pairs = vec![("PATH", path.to_str().unwrap()), ("HOME", home.to_str().unwrap())];
            pairs.extend_from_slice(extra);
            Environment::from_pairs(pairs)
        }
    }

    fn probe(env: &Environment, root: Option<&Path>, spec: ToolSpec) -> Tool {
        let cache = VersionCache::default();
        Probe { env, workspace_root: root, cache: &cache }.tool(spec)
    }

    #[test]
    fn npm_is_read_from_the_package_its_bin_symlink_points_into() {
        let prefix = Prefix::new();
        prefix.package("npm", r#"{"name":"npm","version":"11.19.1"}"#, "npm", "bin/npm-cli.js");
        let tool = probe(&prefix.env(&[]), None, NPM);
        assert_eq!(tool.version.as_deref(), Some("11.19.1"), "{tool:?}");
        assert_eq!(tool.path, Some(prefix.path("bin/npm")), "the path is the command on PATH");
        assert_eq!(tool.problem, None);
    }

    #[test]
    fn pnpm_installed_with_npm_g_is_read_from_its_package() {
        let prefix = Prefix::new();
        prefix.package("pnpm", r#"{"name":"pnpm","version":"10.4.1"}"#, "pnpm", "bin/pnpm.cjs");
        assert_eq!(probe(&prefix.env(&[]), None, PNPM).version.as_deref(), Some("10.4.1"));
    }

    #[test]
    fn a_package_json_that_cannot_be_read_is_named_not_guessed() {
        let prefix = Prefix::new();
        prefix.package("npm", r#"{"name":"npm","version":"#, "npm", "bin/npm-cli.js");
        let tool = probe(&prefix.env(&[]), None, NPM);
        assert_eq!(tool.version, None);
        let why = tool.problem.unwrap();
        assert!(why.starts_with("cannot read ") && why.contains("lib/node_modules/npm/package.json"), "{why}");
    }

    #[test]
    fn a_package_json_without_a_version_says_so() {
        let prefix = Prefix::new();
        prefix.package("npm", r#"{"name":"npm"}"#, "npm", "bin/npm-cli.js");
        let why = probe(&prefix.env(&[]), None, NPM).problem.unwrap();
        assert!(why.ends_with("lib/node_modules/npm/package.json has no version"), "{why}");
    }

    #[test]
    fn missing_tools_say_why() {
        let prefix = Prefix::new();
        let tool = probe(&prefix.env(&[]), None, PNPM);
        assert_eq!((tool.version, tool.path), (None, None));
        assert_eq!(tool.problem.as_deref(), Some("not found on PATH"));
    }

    /// corepack's layout: the shim in corepack's package, versions in `$COREPACK_HOME/v1/<tool>/<version>`.
    fn corepack(prefix: &Prefix, installed: &[&str]) -> String {
        corepack_in(prefix, "corepack", installed)
    }

    fn corepack_in(prefix: &Prefix, home: &str, installed: &[&str]) -> String {
        prefix.package("corepack", r#"{"name":"corepack","version":"0.34.6"}"#, "pnpm", "dist/pnpm.js");
        for version in installed {
            prefix.write(
                &format!("{home}/v1/pnpm/{version}/package.json"),
                &format!(r#"{{"name":"pnpm","version":"{version}"}}"#),
            );
        }
        prefix.path(home).to_str().unwrap().to_string()
    }

    #[test]
    fn pnpm_through_corepack_is_the_version_the_workspace_pins() {
        let prefix = Prefix::new();
        let home = corepack(&prefix, &["9.15.0", "10.4.1"]);
        prefix.write("corepack/lastKnownGood.json", r#"{"pnpm":"10.4.1"}"#);
        prefix.write("ws/package.json", r#"{"name":"ws","packageManager":"pnpm@9.15.0+sha512.76e2379760a4328ec4415815bcd6628dee727af3779aaa4c914e3944156c4299921a89f976381ee107d41f12cfa4b66681ca9c718f0668fa0831ed4c6d8ba56c"}"#);
        let nested = prefix.path("ws/packages/app");
        prefix.write("ws/packages/app/package.json", r#"{"name":"app"}"#);
        let tool = probe(&prefix.env(&[("COREPACK_HOME", &home)]), Some(&nested), PNPM);
        assert_eq!(tool.version.as_deref(), Some("9.15.0"), "{tool:?}");
        assert_eq!(tool.path, Some(prefix.path("bin/pnpm")));
    }

    #[test]
    fn pnpm_through_corepack_without_a_pin_is_its_last_known_good() {
        let prefix = Prefix::new();
        // No COREPACK_HOME: corepack's default under XDG_CACHE_HOME.
        corepack_in(&prefix, "xdg/node/corepack", &["10.4.1"]);
        prefix.write("xdg/node/corepack/lastKnownGood.json", r#"{"pnpm":"10.4.1"}"#);
        let cache = prefix.path("xdg");
        let tool = probe(&prefix.env(&[("XDG_CACHE_HOME", cache.to_str().unwrap())]), None, PNPM);
        assert_eq!(tool.version.as_deref(), Some("10.4.1"), "{tool:?}");
    }

    #[test]
    fn pnpm_through_corepack_that_is_not_downloaded_yet_is_no_version() {
        let prefix = Prefix::new();
        let home = corepack(&prefix, &[]);
        prefix.write("ws/package.json", r#"{"packageManager":"pnpm@9.15.0"}"#);
        let tool = probe(&prefix.env(&[("COREPACK_HOME", &home)]), Some(&prefix.path("ws")), PNPM);
        assert_eq!(tool.version, None);
        let why = tool.problem.unwrap();
        assert!(why.starts_with("corepack would download pnpm@9.15.0 first"), "{why}");
    }

    #[test]
    fn pnpm_through_corepack_in_a_yarn_project_says_corepack_refuses() {
        let prefix = Prefix::new();
        let home = corepack(&prefix, &["10.4.1"]);
        prefix.write("ws/package.json", r#"{"packageManager":"yarn@4.5.0"}"#);
        let why = probe(&prefix.env(&[("COREPACK_HOME", &home)]), Some(&prefix.path("ws")), PNPM).problem.unwrap();
        assert!(why.contains("asks for yarn@4.5.0") && why.contains("refuses"), "{why}");
    }

    #[test]
    fn package_manager_specs_are_exact_versions_only() {
        assert_eq!(parse_package_manager("pnpm@9.15.0+sha512.ab"), Some(("pnpm".into(), "9.15.0".into())));
        assert_eq!(parse_package_manager("pnpm@10.0.0-rc.1"), Some(("pnpm".into(), "10.0.0-rc.1".into())));
        assert_eq!(parse_package_manager("pnpm@^9"), None);
        assert_eq!(parse_package_manager("pnpm"), None);
        assert_eq!(parse_package_manager("@9.1.0"), None);
    }

    #[test]
    fn a_binary_outside_any_package_is_asked_once_while_it_is_unchanged() {
        let prefix = Prefix::new();
        let counter = prefix.path("runs");
        let script = format!("#!/bin/sh\necho x >> '{}'\necho v20.20.2\n", counter.display());
        prefix.executable("bin/node", &script);
        let env = prefix.env(&[]);
        let state = prefix.path("state");
        let ask = || {
            let cache = VersionCache::open(Some(&state));
            let tool = Probe { env: &env, workspace_root: None, cache: &cache }.tool(NODE);
            cache.save();
            tool
        };
        let runs = || std::fs::read_to_string(&counter).unwrap_or_default().lines().count();
        assert_eq!(ask().version.as_deref(), Some("20.20.2"));
        assert_eq!(ask().version.as_deref(), Some("20.20.2"));
        assert_eq!(runs(), 1, "the second report read the cache in {}", state.display());

        // An upgrade rewrites the binary: asked again.
        prefix.executable("bin/node", &script.replace("v20.20.2", "v22.12.0"));
        assert_eq!(ask().version.as_deref(), Some("22.12.0"));
        assert_eq!(runs(), 2);
    }

    #[test]
    fn a_binary_that_fails_its_version_is_reported_and_not_cached() {
        let prefix = Prefix::new();
        prefix.executable("bin/node", "#!/bin/sh\nexit 3\n");
        let env = prefix.env(&[]);
        let cache = VersionCache::open(Some(&prefix.path("state")));
        let tool = Probe { env: &env, workspace_root: None, cache: &cache }.tool(NODE);
        assert_eq!(tool.version, None);
        assert!(tool.problem.as_deref().unwrap().contains("--version exited with"), "{tool:?}");
        assert_eq!(cache.get(&prefix.path("bin/node")), None);
    }

    #[test]
    fn installed_nx_is_found_by_walking_up_from_the_workspace() {
        let prefix = Prefix::new();
        prefix.write("repo/node_modules/nx/package.json", r#"{"name":"nx","version":"24.0.6"}"#);
        let ws = prefix.path("repo/apps/ws");
        std::fs::create_dir_all(&ws).unwrap();
        let tool = installed_nx(&ws);
        assert_eq!(tool.version.as_deref(), Some("24.0.6"));
        assert_eq!(tool.path, Some(prefix.path("repo/node_modules/nx/package.json")));
        let empty = prefix.path("elsewhere");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(installed_nx(&empty).problem.unwrap().contains("no node_modules/nx"));
    }
}
