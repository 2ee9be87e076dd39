//! A snapshot of the process environment, taken once in `main` and passed down.
//!
//! Behaviour that depends on environment variables or the user's identity reads
//! them from here, never from `std::env`, so tests can describe any environment
//! without touching the real one (house rule 10).

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    uid: u32,
}

impl Environment {
    /// The environment of this process. Variables that are not valid UTF-8 are skipped.
    pub fn from_process() -> Self {
        let vars =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
        Environment { vars, uid: rustix::process::getuid().as_raw() }
    }

    /// An environment made of the given variables, for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let vars = pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Environment { vars, uid: rustix::process::getuid().as_raw() }
    }

    /// The variable's value, `None` when unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The variable's value when set and non-empty (JavaScript's truthiness, as Nx tests it).
    pub fn get_non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Every variable whose name starts with `prefix`, in name order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every variable, in name order.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// This environment with `vars` set over it, as the same user (a proxy's
    /// agent's variables over the owner's, see `mcp::McpPools::launch_for`).
    pub fn overlaid(&self, vars: &BTreeMap<String, String>) -> Environment {
        let mut merged = self.vars.clone();
        merged.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        Environment { vars: merged, uid: self.uid }
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The home directory as Node's `os.homedir()` answers it: `$HOME` when set,
    /// else the password database entry of the current user.
    pub fn home(&self) -> Option<PathBuf> {
        match self.get("HOME") {
            Some(home) => Some(PathBuf::from(home)),
            None => home_from_passwd(self.uid),
        }
    }
}

fn home_from_passwd(uid: u32) -> Option<PathBuf> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse::<u32>().ok()? == uid).then(|| PathBuf::from(fields[5]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_listing_is_exact() {
        let env = Environment::from_pairs([("NXOPS_A", "1"), ("NXOPSX", "2"), ("NX_B", "3"), ("NXOPS_C", "")]);
        let names: Vec<_> = env.with_prefix("NXOPS_").map(|(k, _)| k).collect();
        assert_eq!(names, ["NXOPS_A", "NXOPS_C"]);
        assert_eq!(env.get_non_empty("NXOPS_C"), None);
        assert_eq!(env.get("NXOPS_C"), Some(""));
    }
}
