//! The Nx plugin validates its options against nx-plugin/settings.json; that
//! file must list exactly the settings the binary knows (run with
//! `UPDATE_SETTINGS=1` to rewrite it from the registry).

mod common;

use serde_json::{Value, json};

#[test]
fn the_plugin_knows_every_setting_the_binary_knows() {
    let registry: Vec<Value> = nxops::config::SETTINGS
        .iter()
        .map(|d| {
            let kind = match d.kind {
                nxops::config::Kind::Size => "size",
                nxops::config::Kind::Duration => "duration",
                nxops::config::Kind::Count => "count",
            };
            json!({"key": d.key, "kind": kind, "default": d.default, "doc": d.doc})
        })
        .collect();
    let expected = serde_json::to_string_pretty(&json!({"settings": registry})).unwrap() + "\n";
    let path = common::repo_root().join("nx-plugin/settings.json");
    if std::env::var_os("UPDATE_SETTINGS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "nx-plugin/settings.json is stale: run UPDATE_SETTINGS=1 cargo test --test plugin_settings"
    );
}
