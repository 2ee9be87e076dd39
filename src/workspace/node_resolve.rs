//! Enough of Node's `require.resolve(spec, {paths})` to find the file an nx.json
//! `extends` names, the way Nx finds it: a relative path, or a package file
//! (`nx/presets/npm.json`, `@acme/preset/base`) looked up in `node_modules`
//! folders from each path upward, through the package's `exports` map when it
//! has one (with the conditions `require`, `node` and `default`, in the map's
//! own order, as Node does for `require`).

use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The conditions Node matches for `require` (besides `default`).
const CONDITIONS: &[&str] = &["require", "node", "node-addons"];

/// Resolves `spec` from `paths` (in order), or says why it cannot.
pub fn resolve(spec: &str, paths: &[PathBuf]) -> Result<PathBuf, String> {
    if spec.starts_with("./") || spec.starts_with("../") || spec.starts_with('/') {
        for base in paths {
            if let Some(found) = as_file(&base.join(spec)) {
                return Ok(found);
            }
        }
        return Err(format!("{spec} is not a file (looked in {})", shown(paths)));
    }
    let (name, subpath) = split_package(spec).ok_or_else(|| format!("{spec:?} is not a package path"))?;
    for base in paths {
        for dir in base.ancestors() {
            let package = dir.join("node_modules").join(name);
            if !package.is_dir() {
                continue;
            }
            return in_package(&package, spec, &subpath);
        }
    }
    Err(format!("package {name} not found in node_modules above {}", shown(paths)))
}

fn shown(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// `@scope/name/sub/path` -> (`@scope/name`, `./sub/path`); `name` -> (`name`, `.`).
fn split_package(spec: &str) -> Option<(&str, String)> {
    let segments = if spec.starts_with('@') { 2 } else { 1 };
    let name_end = spec.match_indices('/').nth(segments - 1).map_or(spec.len(), |(i, _)| i);
    let name = &spec[..name_end];
    if name.is_empty() || (segments == 2 && !name.contains('/')) {
        return None;
    }
    let rest = &spec[name_end..];
    Some((name, if rest.is_empty() { ".".to_string() } else { format!(".{rest}") }))
}

/// A package.json's `exports`, with objects in their written order (Node
/// picks the first matching condition, and serde_json's maps are sorted).
#[derive(Debug, Clone, PartialEq)]
enum Exports {
    Path(String),
    List(Vec<Exports>),
    Map(Vec<(String, Exports)>),
    Nothing,
}

impl<'de> Deserialize<'de> for Exports {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Exports, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Exports;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an exports value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Exports, E> {
                Ok(Exports::Path(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Exports, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Exports::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Exports, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Exports::Map(entries))
            }
            fn visit_unit<E>(self) -> Result<Exports, E> {
                Ok(Exports::Nothing)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Exports, E> {
                Ok(Exports::Nothing)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Exports, E> {
                Ok(Exports::Nothing)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Exports, E> {
                Ok(Exports::Nothing)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Exports, E> {
                Ok(Exports::Nothing)
            }
        }
        deserializer.deserialize_any(Ordered)
    }
}

#[derive(serde::Deserialize)]
struct Manifest {
    exports: Option<Exports>,
}

fn in_package(package: &Path, spec: &str, subpath: &str) -> Result<PathBuf, String> {
    let manifest: Option<Manifest> =
        std::fs::read(package.join("package.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let Some(exports) = manifest.and_then(|m| m.exports) else {
        // No exports map: the path inside the package, as it is.
        return as_file(&package.join(subpath)).ok_or_else(|| format!("{spec}: no such file in {}", package.display()));
    };
    let target = exported(&exports, subpath)
        .ok_or_else(|| format!("{spec}: {subpath:?} is not exported by {}", package.join("package.json").display()))?;
    let file = package.join(target.trim_start_matches("./"));
    if file.is_file() { Ok(file) } else { Err(format!("{spec}: {} does not exist", file.display())) }
}

/// The target `exports` maps `subpath` to, if any.
fn exported(exports: &Exports, subpath: &str) -> Option<String> {
    let entries = match exports {
        // A string, an array or a conditions object is the export of "." alone.
        Exports::Map(entries) if entries.iter().all(|(k, _)| k.starts_with('.')) => entries,
        other => return (subpath == ".").then(|| target(other, None)).flatten(),
    };
    if let Some((_, exact)) = entries.iter().find(|(k, _)| k == subpath && !k.contains('*')) {
        return target(exact, None);
    }
    // Patterns: the longest part before `*` wins, then the longest key (Node's PATTERN_KEY_COMPARE).
    let mut best: Option<(&str, &Exports, &str)> = None;
    for (key, value) in entries {
        let Some((before, after)) = key.split_once('*') else { continue };
        let fits =
            subpath.len() >= before.len() + after.len() && subpath.starts_with(before) && subpath.ends_with(after);
        if !fits {
            continue;
        }
        let better = best.is_none_or(|(held, _, _)| {
            let held_before = held.split_once('*').map_or(0, |(b, _)| b.len());
            before.len() > held_before || (before.len() == held_before && key.len() > held.len())
        });
        if better {
            best = Some((key, value, &subpath[before.len()..subpath.len() - after.len()]));
        }
    }
    let (_, value, star) = best?;
    target(value, Some(star))
}

/// A target with conditions chosen (the first that applies and resolves, in
/// written order), and `*` replaced by `star`.
fn target(value: &Exports, star: Option<&str>) -> Option<String> {
    match value {
        Exports::Path(path) if path.starts_with("./") => Some(match star {
            Some(star) => path.replace('*', star),
            None => path.clone(),
        }),
        Exports::List(items) => items.iter().find_map(|item| target(item, star)),
        Exports::Map(conditions) => conditions
            .iter()
            .filter(|(condition, _)| condition == "default" || CONDITIONS.contains(&condition.as_str()))
            .find_map(|(_, value)| target(value, star)),
        _ => None,
    }
}

/// `path` as a file, or with `.json` added (what `require.resolve` tries for a JSON file).
fn as_file(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let mut with_json = path.as_os_str().to_owned();
    with_json.push(".json");
    let with_json = PathBuf::from(with_json);
    with_json.is_file().then_some(with_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Exports {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn package_specs_split_into_name_and_subpath() {
        assert_eq!(split_package("nx/presets/npm.json"), Some(("nx", "./presets/npm.json".into())));
        assert_eq!(split_package("@acme/preset/base"), Some(("@acme/preset", "./base".into())));
        assert_eq!(split_package("@acme/preset"), Some(("@acme/preset", ".".into())));
        assert_eq!(split_package("lodash"), Some(("lodash", ".".into())));
        assert_eq!(split_package("@acme"), None);
    }

    #[test]
    fn exports_follow_nodes_rules() {
        // Nx 24's own map: "./presets/*.json" beats "./presets/*" (same prefix, longer key).
        let nx = json(
            r#"{".": "./dist/index.js",
            "./presets/*": {"@nx/nx-source": "./presets/*.json", "default": "./dist/presets/*.json"},
            "./presets/*.json": {"@nx/nx-source": "./presets/*.json", "default": "./dist/presets/*.json"}}"#,
        );
        assert_eq!(exported(&nx, "./presets/npm.json").as_deref(), Some("./dist/presets/npm.json"));
        assert_eq!(exported(&nx, "./presets/npm").as_deref(), Some("./dist/presets/npm.json"));
        assert_eq!(exported(&nx, "./other.json"), None);
        // Conditions in the map's order; `import` is not ours.
        let conditional =
            json(r#"{"./base": {"import": "./esm.json", "require": "./cjs.json", "default": "./d.json"}}"#);
        assert_eq!(exported(&conditional, "./base").as_deref(), Some("./cjs.json"));
        // The first condition that applies, in the order written (not sorted).
        let written = json(r#"{"./base": {"require": "./r.json", "node": "./n.json"}}"#);
        assert_eq!(exported(&written, "./base").as_deref(), Some("./r.json"));
        assert_eq!(exported(&json(r#""./main.json""#), ".").as_deref(), Some("./main.json"));
        assert_eq!(exported(&json(r#"{"./x": null}"#), "./x"), None);
    }

    #[test]
    fn relative_specs_and_packages_resolve_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("node_modules/@acme/preset/dist")).unwrap();
        std::fs::write(root.join("nx.base.json"), "{}").unwrap();
        std::fs::write(
            root.join("node_modules/@acme/preset/package.json"),
            r#"{"exports": {"./base": {"default": "./dist/base.json"}}}"#,
        )
        .unwrap();
        std::fs::write(root.join("node_modules/@acme/preset/dist/base.json"), "{}").unwrap();
        let paths = [root.join(".nx/installation"), root.clone()];
        assert_eq!(resolve("./nx.base.json", &paths).unwrap(), root.join("nx.base.json"));
        assert_eq!(resolve("./nx.base", &paths).unwrap(), root.join("nx.base.json"));
        assert_eq!(
            resolve("@acme/preset/base", &paths).unwrap(),
            root.join("node_modules/@acme/preset/dist/base.json")
        );
        let missing = resolve("@acme/preset/other", &paths).unwrap_err();
        assert!(missing.contains("not exported"), "{missing}");
        assert!(resolve("./nope.json", &paths).unwrap_err().contains("is not a file"));
        assert!(resolve("nope/x.json", &paths).unwrap_err().contains("package nope not found"));
    }
}
