//! The documented Neovim setup (docs/editors.md includes editors/neovim/*.lua
//! verbatim): the snippet for the Neovim that scripts/setup installs runs in a
//! headless Neovim, starts `nxops serve --stdio` through Neovim's own LSP client
//! on a real Nx workspace, and a request through `vim.lsp` returns the health
//! report. Neovim is required: without it these tests fail and say how to get it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, alive, nxops_bin, repo_root};

/// Each snippet, from the newest Neovim it is for down: (file, oldest version it supports).
const SNIPPETS: [(&str, (u32, u32)); 3] =
    [("nxops.lua", (0, 11)), ("nxops-0.8.lua", (0, 8)), ("nxops-0.7.lua", (0, 7))];

/// Loads the snippet, opens a file of the workspace (which starts and attaches
/// the client), runs `:NxopsHealth`, sends `nxops/health` through the client and
/// writes what came back to $TEST_OUT as JSON. Any failure is written there too.
const DRIVER: &str = r#"
local function finish(result)
  local f = assert(io.open(os.getenv('TEST_OUT'), 'w'))
  f:write(vim.fn.json_encode(result))
  f:close()
  vim.cmd('qa!')
end
local ok, err = pcall(function()
  dofile(os.getenv('TEST_SNIPPET'))
  local notes = {}
  vim.notify = function(msg, level) table.insert(notes, { msg = msg, level = level }) end
  vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('TEST_FILE')))
  local client
  local ready = vim.wait(20000, function()
    for _, c in pairs(vim.lsp.get_active_clients()) do
      if c.name == 'nxops' and c.initialized then client = c return true end
    end
    return false
  end, 20)
  if not ready then return finish({ error = 'the nxops client never initialized (see ~/.cache/nvim/lsp.log)' }) end
  vim.cmd('NxopsHealth')
  vim.wait(20000, function() return #notes > 0 end, 20)
  local response = client.request_sync('nxops/health', vim.empty_dict(), 20000, 0)
  finish({
    health = response and response.result, rpc_error = response and response.err,
    notes = notes, pid = client.rpc.pid, root = client.config.root_dir,
    attached = vim.lsp.buf_is_attached(0, client.id),
  })
end)
if not ok then finish({ error = tostring(err) }) end
"#;

#[test]
fn the_documented_snippet_starts_the_sidecar_and_a_request_returns_the_health_report() {
    let version = nvim_version();
    let snippet = snippet_for(version);
    let scratch = Scratch::new();
    let ws = scratch.filled_workspace();
    let driver = scratch.home().join("driver.lua");
    std::fs::write(&driver, DRIVER).unwrap();
    let out = scratch.home().join("out.json");

    let mut cmd = nvim(&scratch, &ws);
    cmd.arg("-c").arg(format!("luafile {}", driver.display()));
    cmd.env("TEST_SNIPPET", &snippet).env("TEST_OUT", &out).env("TEST_FILE", ws.join("packages/alpha/project.json"));
    let mut run = Killed(cmd.spawn().expect("spawn nvim"));
    let status = wait(&mut run.0, Duration::from_secs(60), "nvim");
    let text =
        std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("nvim ({status}) wrote no {}: {e}", out.display()));
    let result: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sidecar = Sidecar(result["pid"].as_u64().unwrap_or_else(|| panic!("no sidecar pid: {result}")) as u32);

    assert!(status.success(), "nvim exited with {status}: {result}");
    assert!(result.get("error").is_none() && result.get("rpc_error").is_none(), "{result}");
    assert_eq!(result["root"], ws.to_str().unwrap(), "the client's root is the workspace: {result}");
    assert_eq!(result["attached"], true, "{result}");
    let health = &result["health"];
    assert_eq!(health["workspace"], ws.to_str().unwrap(), "{health}");
    assert_eq!(health["rating"], "Excellent", "a filled workspace with nothing wrong: {health}");
    assert_eq!(health["score"], 100, "{health}");
    let components = health["components"].as_array().unwrap();
    for name in ["processes", "cache", "mcp", "sidecar"] {
        let component = components.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name}: {health}"));
        assert_eq!(component["score"], 100, "{component}");
        assert!(component["reasons"].as_array().unwrap().is_empty(), "{component}");
    }
    // :NxopsHealth, the snippet's own command, showed the same report.
    let note = result["notes"][0]["msg"].as_str().unwrap_or_else(|| panic!("no :NxopsHealth message: {result}"));
    assert!(note.starts_with("nxops health: Excellent (100/100)\n"), "{note}");
    assert!(note.lines().any(|l| l.trim_start().starts_with("cache") && l.contains("100")), "{note}");
    // Neovim ends its clients when it exits: the sidecar must be gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(sidecar.0) {
        assert!(Instant::now() < deadline, "the sidecar {} outlived nvim", sidecar.0);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_docs_hold_each_snippet_verbatim_and_every_snippet_parses() {
    nvim_version();
    let docs = std::fs::read_to_string(repo_root().join("docs/editors.md")).unwrap();
    let scratch = Scratch::new();
    for (file, _) in SNIPPETS {
        let path = repo_root().join("editors/neovim").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(docs.contains(&text), "docs/editors.md does not include editors/neovim/{file} verbatim");
        // Syntax only: the installed Neovim may lack the APIs of a newer one.
        let check =
            format!("lua local _, e = loadfile('{}'); if e then io.stderr:write(e) vim.cmd('cq') end", path.display());
        let out = nvim(&scratch, scratch.home()).args(["-c", &check, "-c", "qa!"]).output().unwrap();
        assert!(out.status.success(), "{file} does not parse: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `nvim --headless --clean` in `cwd`, with the scratch HOME and the nxops under test first on PATH.
fn nvim(scratch: &Scratch, cwd: &Path) -> Command {
    let mut cmd = scratch.tool(cwd, "nvim");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![nxops_bin().parent().unwrap().to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    cmd.args(["--headless", "--clean", "-u", "NONE"])
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// The installed Neovim's (major, minor); fails saying how to install it.
fn nvim_version() -> (u32, u32) {
    let out = Command::new("nvim")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("nvim not found ({e}): run scripts/setup, which installs Debian's neovim package"));
    let first = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
    let numbers: Vec<u32> =
        first.trim_start_matches("NVIM v").split(['.', '-']).take(2).filter_map(|n| n.parse().ok()).collect();
    match numbers[..] {
        [major, minor] => (major, minor),
        _ => panic!("cannot read the Neovim version from {first:?}"),
    }
}

/// The snippet written for this Neovim (the newest whose oldest version it reaches).
fn snippet_for(version: (u32, u32)) -> PathBuf {
    let (file, _) = SNIPPETS
        .iter()
        .find(|(_, oldest)| version >= *oldest)
        .unwrap_or_else(|| panic!("Neovim {version:?} is older than 0.7: no documented snippet supports it"));
    repo_root().join("editors/neovim").join(file)
}

fn wait(child: &mut Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} did not finish within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child killed when the test ends, passed or failed.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sidecar Neovim started (not our child): SIGKILLed on drop if still alive.
struct Sidecar(u32);

impl Drop for Sidecar {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
}
