//! The team cache a workspace's Nx uses, as the workspace's health report sees it.
//!
//! A workspace uses one when Nx would find `NX_SELF_HOSTED_REMOTE_CACHE_SERVER` and
//! `NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN`: in the environment, or in the root's dotenv files,
//! which Nx loads itself (`.local.env`, `.env.local`, `.env`; the environment wins, then the first
//! file that sets a variable). The probe is one `GET /v1/stats` with the token, on a blocking
//! thread, answered within [`PROBE_TIMEOUT`] and remembered for [`PROBE_FRESH`]; any server that answers is reachable (a server other
//! than `nxops cache serve` has no `/v1/stats`, and its 404 is an answer).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::cli::{Remote, SERVER_VAR, TOKEN_VAR};
use crate::environment::Environment;
use crate::health::RemoteProbe;

/// How long a probe waits for the whole answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The files Nx 24 loads from the workspace's root, in its order.
const ROOT_ENV_FILES: [&str; 3] = [".local.env", ".env.local", ".env"];

/// The team cache the workspace at `root` is configured to use, if any.
pub fn configured(root: &Path, env: &Environment) -> Option<Remote> {
    let files: Vec<_> = ROOT_ENV_FILES
        .iter()
        .filter_map(|name| std::fs::read_to_string(root.join(name)).ok())
        .filter_map(|text| crate::mcp::config::parse_env_file(&text).ok())
        .collect();
    let get = |name: &str| {
        env.get_non_empty(name)
            .map(str::to_string)
            .or_else(|| files.iter().find_map(|vars| vars.get(name).filter(|v| !v.is_empty()).cloned()))
    };
    let server = get(SERVER_VAR)?.trim_end_matches('/').to_string();
    let insecure = get("NODE_TLS_REJECT_UNAUTHORIZED").as_deref() == Some("0");
    Some(Remote { server, token: get(TOKEN_VAR).unwrap_or_default(), insecure })
}

/// How long a probe's answer stands for later checks: the owner checks within 50 ms of events
/// that may move the rating (a crash loop makes many), and the team cache must not see each one.
pub const PROBE_FRESH: Duration = Duration::from_secs(30);

/// The last answer of each server (by URL and token), taken again once older than
/// [`PROBE_FRESH`]. The lock is held only to read or write the map, never across the probe.
pub fn probe_recent(remote: &Remote) -> RemoteProbe {
    type Answers = Mutex<HashMap<(String, String), (Instant, RemoteProbe)>>;
    static ANSWERS: OnceLock<Answers> = OnceLock::new();
    let answers = ANSWERS.get_or_init(Default::default);
    let key = (remote.server.clone(), remote.token.clone());
    let known = answers.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
    if let Some((_, answer)) = known.filter(|(at, _)| at.elapsed() < PROBE_FRESH) {
        return answer;
    }
    let answer = probe(remote);
    answers.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (Instant::now(), answer.clone()));
    answer
}

/// Asks the server once.
pub fn probe(remote: &Remote) -> RemoteProbe {
    if remote.token.is_empty() {
        return RemoteProbe::Refused(format!("{TOKEN_VAR} is not set"));
    }
    let url = format!("{}/v1/stats", remote.server);
    let tls = ureq::tls::TlsConfig::builder().disable_verification(remote.insecure).build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(PROBE_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let answer = match agent.get(&url).header("Authorization", format!("Bearer {}", remote.token)).call() {
        Ok(answer) => answer,
        Err(err) => return RemoteProbe::Unreachable(err.to_string()),
    };
    match answer.status().as_u16() {
        401 | 403 => RemoteProbe::Refused(format!("{TOKEN_VAR} refused ({})", answer.status())),
        status @ 500.. => RemoteProbe::Failing(format!("it answered {status}")),
        _ => RemoteProbe::Answered,
    }
}
