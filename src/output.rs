//! How reports reach people and scripts: every command builds one report value,
//! then prints it either as JSON (`--json`, the same data) or as aligned text.

use std::io::Write;

use serde::Serialize;

/// A command's result, printable both ways.
pub trait Report: Serialize {
    /// The human rendering, ending with a newline.
    fn human(&self) -> String;

    /// The CLI's exit code once the report is printed: 0 unless the report says
    /// the command did not do what it was asked (see [`Reported`]).
    fn exit_code(&self) -> u8 {
        0
    }
}

/// A command whose report, already printed, says it failed: the CLI exits with
/// this code and prints nothing more.
#[derive(Debug, thiserror::Error)]
#[error("the report above says what failed")]
pub struct Reported(pub u8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// Prints `report` to stdout. A closed pipe (`nxops ... | head`) is not an error.
pub fn emit(report: &impl Report, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
        Format::Human => report.human(),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A command and its arguments as a POSIX shell would read them back: words made only of characters
/// the shell leaves alone stay bare, the others are single-quoted (`'` written as `'\''`), so that
/// `sh -c 'echo "a b"'` is shown as it was given, not as `sh -c echo "a b"`.
pub fn shell_line<'w>(words: impl IntoIterator<Item = &'w str>) -> String {
    let quote = |word: &str| {
        let bare = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
        if !word.is_empty() && word.chars().all(bare) {
            word.to_string()
        } else {
            format!("'{}'", word.replace('\'', r"'\''"))
        }
    };
    words.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// A titled block of `label  value` lines with the values aligned.
#[derive(Default)]
pub struct Section {
    title: String,
    rows: Vec<(String, String)>,
}

impl Section {
    pub fn new(title: &str) -> Self {
        Section { title: title.to_string(), rows: Vec::new() }
    }

    pub fn row(mut self, label: &str, value: impl Into<String>) -> Self {
        self.rows.push((label.to_string(), value.into()));
        self
    }

    pub fn push(&mut self, label: &str, value: impl Into<String>) {
        self.rows.push((label.to_string(), value.into()));
    }

    pub fn render(&self, out: &mut String) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&self.title);
        out.push('\n');
        let width = self.rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
        for (label, value) in &self.rows {
            // A row without a value leaves no padding behind.
            out.push_str(format!("  {label:<width$}  {value}").trim_end());
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_lines_quote_only_what_the_shell_would_split_or_expand() {
        assert_eq!(shell_line(["node", "dist/main.js", "--port=4200"]), "node dist/main.js --port=4200");
        assert_eq!(shell_line(["sh", "-c", "echo \"a b\"; sleep 1"]), r#"sh -c 'echo "a b"; sleep 1'"#);
        assert_eq!(shell_line(["echo", "it's", "", "$HOME"]), r"echo 'it'\''s' '' '$HOME'");
    }

    #[test]
    fn rows_without_a_value_end_at_their_label() {
        let mut out = String::new();
        Section::new("Vars").row("none set", "").row("a", "1").render(&mut out);
        assert_eq!(out, "Vars\n  none set\n  a         1\n");
    }

    #[test]
    fn sections_align_values() {
        let mut out = String::new();
        Section::new("First").row("a", "1").row("longer", "2").render(&mut out);
        Section::new("Second").row("b", "3").render(&mut out);
        expect_test::expect![[r#"
            First
              a       1
              longer  2

            Second
              b  3
        "#]]
        .assert_eq(&out);
    }
}
